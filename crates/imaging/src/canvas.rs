//! The operations of the WIT `canvas` interface (`wit/style.wit`), one function each, as the
//! host runs them for styles. Each is total: arguments out of range are clamped as documented
//! (never a panic, never unbounded work), and the size checks that can fail return a
//! [`SizeError`]. Grey results (noise, edges, masks) are opaque images with `r = g = b`.
//!
//! Each operation is tested against a reference implementation (OpenCV, Pillow or NumPy) in
//! `tests/reference.rs`; the tolerances are stated there and in docs/style-guide.md.

use crate::{BlendMode, Color, Filter, Plane, Rgba, SizeError, ellipse_mask as mask, to_byte};

/// The longest side an image may have.
pub const MAX_SIDE: u32 = 16384;

/// Most palette colours `quantize` uses and `palette` returns.
pub const MAX_PALETTE: usize = 256;

/// The widest blur (`blur`, `edges`), in pixels of standard deviation: it bounds the working
/// memory of the box blurs' edge padding. Wider blurs: resize down, blur, resize up.
pub const MAX_SIGMA: f32 = 100.0;

/// Checks the size of an image about to be made: both sides in `1..=MAX_SIDE`.
pub fn check_size(width: u32, height: u32) -> Result<(), SizeError> {
    if (1..=MAX_SIDE).contains(&width) && (1..=MAX_SIDE).contains(&height) {
        Ok(())
    } else {
        Err(SizeError(format!(
            "{width} x {height} pixels: each side must be 1 to {MAX_SIDE}"
        )))
    }
}

/// An opaque grey image of a plane's values (`0..=1` to `0..=255`, clamped).
fn grey(plane: &Plane) -> Rgba {
    let data = plane
        .data
        .iter()
        .flat_map(|&v| {
            let g = to_byte(v);
            [g, g, g, 255]
        })
        .collect();
    Rgba {
        width: plane.width,
        height: plane.height,
        data,
    }
}

/// `v` if it is finite, else `fallback`, clamped to `lo..=hi`.
fn finite(v: f32, fallback: f32, lo: f32, hi: f32) -> f32 {
    if v.is_finite() { v } else { fallback }.clamp(lo, hi)
}

/// The longest side, the bound on every radius.
fn longest(image: &Rgba) -> f32 {
    image.width.max(image.height) as f32
}

/// A blur's sigma: not finite or negative is 0 (no blur), at most [`MAX_SIGMA`].
fn sigma(sigma: f32) -> f32 {
    finite(sigma, 0.0, 0.0, MAX_SIGMA)
}

/// A `width` x `height` image of one colour (`rgba`).
pub fn filled(width: u32, height: u32, rgba: [u8; 4]) -> Result<Rgba, SizeError> {
    check_size(width, height)?;
    Ok(Rgba {
        width,
        height,
        data: rgba.repeat(width as usize * height as usize),
    })
}

/// Smooth value noise in `0..=255` (grey, opaque) with features about `scale` pixels wide (at
/// least 1), fixed by `seed` ([`crate::noise::value_noise`], not wrapping).
pub fn noise(width: u32, height: u32, scale: f32, seed: u64) -> Result<Rgba, SizeError> {
    check_size(width, height)?;
    let scale = finite(scale, 1.0, 1.0, MAX_SIDE as f32);
    Ok(grey(&crate::noise::value_noise(
        width, height, scale, seed, false,
    )))
}

/// `image` resampled to `width` x `height`: Lanczos 3 (antialiased, premultiplied alpha) or,
/// when `nearest`, the source pixel under each output pixel's centre.
pub fn resize(image: &Rgba, width: u32, height: u32, nearest: bool) -> Result<Rgba, SizeError> {
    check_size(width, height)?;
    let filter = if nearest {
        Filter::Nearest
    } else {
        Filter::Lanczos3
    };
    Ok(image.resample(width, height, filter))
}

/// A Gaussian blur of the colour channels, standard deviation `sigma` pixels (clamped to
/// `0..=MAX_SIGMA`; 0 copies): an exact kernel of radius `ceil(3 sigma)` below 3, three box
/// blurs of the same variance above (constant cost whatever the sigma).
pub fn blur(image: &Rgba, sigma: f32) -> Rgba {
    image.gaussian_blur(self::sigma(sigma))
}

/// Edge-preserving smoothing: each colour channel through a self-guided filter of `radius`
/// pixels (at most the longest side) and regularisation `epsilon` on `0..=1` intensities
/// (clamped to `1e-6..=1`; larger smooths more).
pub fn smooth(image: &Rgba, radius: u32, epsilon: f32) -> Rgba {
    let radius = radius.min(image.width.max(image.height));
    image.guided_smooth(radius, finite(epsilon, 0.01, 1e-6, 1.0))
}

/// Each colour channel snapped to `levels` evenly spaced values (`2..=255`; more copies).
pub fn posterize(image: &Rgba, levels: u32) -> Rgba {
    let mut out = image.clone();
    if levels < 256 {
        out.posterize(levels.max(2) as u8);
    }
    out
}

/// Each pixel's colour replaced by the nearest of `palette` (redmean distance, the first
/// [`MAX_PALETTE`] colours; their alpha is ignored, the image's kept), with Floyd-Steinberg
/// error diffusion when `dither`. An empty palette copies.
pub fn quantize(image: &Rgba, palette: &[[u8; 4]], dither: bool) -> Rgba {
    let colours: Vec<Color> = palette
        .iter()
        .take(MAX_PALETTE)
        .map(|c| [c[0], c[1], c[2]])
        .collect();
    let mut out = image.clone();
    if dither {
        out.quantize_diffused(&colours);
    } else {
        out.quantize(&colours);
    }
    out
}

/// Up to `count` (at most [`MAX_PALETTE`]) opaque colours that best represent the image, most
/// used first ([`Rgba::kmeans_palette`]).
pub fn palette(image: &Rgba, count: u32) -> Vec<[u8; 4]> {
    let count = (count as usize).min(MAX_PALETTE);
    image
        .kmeans_palette(count)
        .into_iter()
        .map(|[r, g, b]| [r, g, b, 255])
        .collect()
}

/// Edge strength in `0..=255` (grey, opaque): the Sobel gradient magnitude of the luma after a
/// Gaussian blur of `sigma` pixels (as [`blur`]), 255 for a black-to-white step.
pub fn edges(image: &Rgba, sigma: f32) -> Rgba {
    let luma = image
        .luma()
        .gaussian_blur(finite(sigma, 0.0, 0.0, longest(image)));
    grey(&luma.sobel())
}

/// Brightness (added, clamped to `-1..=1`), contrast and saturation (factors clamped to
/// `0..=16`, 1 keeps) as [`Rgba::adjust`]. Arguments that are not finite are neutral.
pub fn adjust(image: &Rgba, brightness: f32, contrast: f32, saturation: f32) -> Rgba {
    let mut out = image.clone();
    out.adjust(
        finite(brightness, 0.0, -1.0, 1.0),
        finite(contrast, 1.0, 0.0, 16.0),
        finite(saturation, 1.0, 0.0, 16.0),
    );
    out
}

/// `top` over `image` with `mode` and `opacity` (`0..=1`, not finite: 0), as
/// [`Rgba::blend_layer`]; both the same size.
pub fn blend(image: &Rgba, top: &Rgba, mode: BlendMode, opacity: f32) -> Result<Rgba, SizeError> {
    image.blend_layer(top, mode, finite(opacity, 0.0, 0.0, 1.0))
}

/// `top` where `mask`'s luma is white, `image` where it is black ([`Rgba::composite`]); all the
/// same size.
pub fn composite(image: &Rgba, top: &Rgba, mask: &Rgba) -> Result<Rgba, SizeError> {
    image.composite(top, mask)
}

/// A soft mask (white inside, grey, opaque) of the ellipse inscribed in `bbox` (`[x1, y1, x2,
/// y2]`), feathered over `feather` pixels (at most four times the longest side) centred on
/// its outline, as an image of `image`'s size ([`crate::ellipse_mask`]).
pub fn ellipse_mask(image: &Rgba, bbox: [f32; 4], feather: f32) -> Rgba {
    let feather = finite(feather, 0.0, 0.0, 4.0 * longest(image));
    grey(&mask(image.width, image.height, bbox, feather))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo() -> Rgba {
        let mut image = Rgba::new(40, 30);
        for (i, p) in image.data.chunks_exact_mut(4).enumerate() {
            p[0] = (i * 7 % 256) as u8;
            p[1] = (i / 40 * 8) as u8;
            p[2] = (i % 40 * 6) as u8;
        }
        image
    }

    #[test]
    fn hostile_arguments_are_clamped_not_trusted() {
        let image = photo();
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -5.0, 1e30] {
            for out in [
                blur(&image, bad),
                edges(&image, bad),
                smooth(&image, u32::MAX, bad),
                adjust(&image, bad, bad, bad),
                blend(&image, &image, BlendMode::SoftLight, bad).unwrap(),
                ellipse_mask(&image, [bad, 0.0, 10.0, 10.0], bad),
                ellipse_mask(&image, [0.0, 0.0, 10.0, 10.0], bad),
                noise(8, 8, bad, 1).unwrap(),
            ] {
                assert!(out.width > 0 && out.data.len() == out.pixel_count() * 4);
            }
        }
        assert_eq!(posterize(&image, 0), posterize(&image, 2));
        assert_eq!(posterize(&image, u32::MAX), image);
        assert_eq!(quantize(&image, &[], true), image);
        assert!(palette(&image, 0).is_empty());
        assert!(palette(&image, u32::MAX).len() <= MAX_PALETTE);
        let many = vec![[1, 2, 3, 255]; 10_000];
        assert!(
            quantize(&image, &many, false)
                .data
                .chunks_exact(4)
                .all(|p| p[..3] == [1, 2, 3])
        );
    }

    #[test]
    fn sizes_are_checked() {
        assert!(filled(0, 5, [0; 4]).is_err());
        assert!(noise(5, MAX_SIDE + 1, 1.0, 0).is_err());
        assert!(resize(&photo(), 0, 1, false).is_err());
        let message = resize(&photo(), u32::MAX, 1, true).unwrap_err().0;
        assert!(message.contains("16384"), "{message}");
        let small = Rgba::new(3, 3);
        assert!(blend(&photo(), &small, BlendMode::Normal, 1.0).is_err());
        assert!(composite(&photo(), &photo(), &small).is_err());
        assert_eq!(
            filled(2, 1, [1, 2, 3, 4]).unwrap().data,
            [1, 2, 3, 4, 1, 2, 3, 4]
        );
    }

    #[test]
    fn palettes_are_distinct_and_ordered_by_use() {
        let mut image = Rgba::new(10, 10);
        for (i, p) in image.data.chunks_exact_mut(4).enumerate() {
            let c = if i < 70 {
                [200, 10, 10]
            } else if i < 95 {
                [10, 10, 200]
            } else {
                [250, 250, 250]
            };
            p[..3].copy_from_slice(&c);
        }
        assert_eq!(
            palette(&image, 8),
            vec![[200, 10, 10, 255], [10, 10, 200, 255], [250, 250, 250, 255]]
        );
        let two = palette(&photo(), 2);
        assert_eq!(two.len(), 2);
        assert_ne!(two[0], two[1]);
        assert_eq!(palette(&photo(), 5), palette(&photo(), 5), "deterministic");
    }
}
