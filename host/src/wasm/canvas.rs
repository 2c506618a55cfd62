//! The `canvas` interface of contract 0.2: images the host owns on a style's behalf.
//!
//! An [`Image`] lives in the calling instance's resource table (so it dies with the instance,
//! like everything else of one call), and its pixels count against the instance's memory cap
//! beside its linear memory. This module holds the resource's basic operations (construction,
//! size, reading and writing pixels, copies and dropping) and the native operations (resize,
//! blur, smoothing, posterise, palette, edges, adjust, blend, composite, masks, noise), which
//! `likeness-imaging` computes (`likeness_imaging::canvas`). Every native operation runs on
//! the thread polling the guest, inside its metered slice, so its CPU time is the style's; it
//! is refused before it starts when the budget is spent or its result and working memory would
//! pass the memory cap, and a call that overran inside one fails with the timeout error.

use likeness_imaging::{self as imaging, SizeError};
use wasmtime::component::Resource;

use super::bindings::v0_2::likeness::style::canvas::{BlendMode, Host, HostImage, Region, Rgba};
use super::bindings::v0_2::likeness::style::types::{Rect, Size};
use super::sandbox::Sandbox;

/// An 8-bit RGBA image (straight alpha), rows top to bottom, held by the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 4` bytes.
    pub rgba: Vec<u8>,
}

impl Image {
    /// An image from its pixels; `None` when `rgba` is not `width * height * 4` bytes.
    pub fn new(width: u32, height: u32, rgba: Vec<u8>) -> Option<Image> {
        (rgba.len() as u128 == u128::from(width) * u128::from(height) * 4).then_some(Image {
            width,
            height,
            rgba,
        })
    }

    /// The byte range of row `y`'s pixels `x..x + width` (all inside the image).
    fn row_span(&self, x: u32, y: u32, width: u32) -> std::ops::Range<usize> {
        let start = (y as usize * self.width as usize + x as usize) * 4;
        start..start + width as usize * 4
    }

    /// Whether `region` lies inside the image.
    fn contains(&self, region: &Region) -> bool {
        u64::from(region.x) + u64::from(region.width) <= u64::from(self.width)
            && u64::from(region.y) + u64::from(region.height) <= u64::from(self.height)
    }

    /// The bytes of `region` (all of it when `None`), rows top to bottom.
    pub fn read(&self, region: Option<Region>) -> Result<Vec<u8>, String> {
        let Some(region) = region else {
            return Ok(self.rgba.clone());
        };
        if !self.contains(&region) {
            return Err(self.outside(&region));
        }
        let mut out = Vec::with_capacity(region.width as usize * region.height as usize * 4);
        for y in region.y..region.y + region.height {
            out.extend_from_slice(&self.rgba[self.row_span(region.x, y, region.width)]);
        }
        Ok(out)
    }

    /// Writes `rgba` (`region.width * region.height * 4` bytes) at `region`.
    pub fn write(&mut self, region: Region, rgba: &[u8]) -> Result<(), String> {
        if !self.contains(&region) {
            return Err(self.outside(&region));
        }
        let expected = region.width as usize * region.height as usize * 4;
        if rgba.len() != expected {
            return Err(format!(
                "{} bytes were given for a {}x{} region (expected {expected})",
                rgba.len(),
                region.width,
                region.height
            ));
        }
        let row = region.width as usize * 4;
        for (i, y) in (region.y..region.y + region.height).enumerate() {
            let span = self.row_span(region.x, y, region.width);
            self.rgba[span].copy_from_slice(&rgba[i * row..(i + 1) * row]);
        }
        Ok(())
    }

    fn outside(&self, region: &Region) -> String {
        format!(
            "the region {}x{} at ({}, {}) is outside the {}x{} image",
            region.width, region.height, region.x, region.y, self.width, self.height
        )
    }
}

/// A trap for a host call on a handle that is not a live image of this instance.
fn stale(error: wasmtime::component::ResourceTableError) -> wasmtime::Error {
    wasmtime::Error::msg(format!("canvas: not a live image handle ({error})"))
}

/// A trap for arguments no image can be made of (a side of 0 or over 16,384 pixels).
fn bad_size(what: &str, error: SizeError) -> wasmtime::Error {
    wasmtime::Error::msg(format!("canvas.image.{what}: {error}"))
}

impl From<imaging::Rgba> for Image {
    fn from(pixels: imaging::Rgba) -> Image {
        Image {
            width: pixels.width,
            height: pixels.height,
            rgba: pixels.data,
        }
    }
}

impl From<&Image> for imaging::Rgba {
    fn from(image: &Image) -> imaging::Rgba {
        imaging::Rgba {
            width: image.width,
            height: image.height,
            data: image.rgba.clone(),
        }
    }
}

impl From<BlendMode> for imaging::BlendMode {
    fn from(mode: BlendMode) -> imaging::BlendMode {
        match mode {
            BlendMode::Normal => imaging::BlendMode::Normal,
            BlendMode::Multiply => imaging::BlendMode::Multiply,
            BlendMode::Screen => imaging::BlendMode::Screen,
            BlendMode::Overlay => imaging::BlendMode::Overlay,
            BlendMode::SoftLight => imaging::BlendMode::SoftLight,
        }
    }
}

/// Working memory of the operations, in bytes per pixel of their input, besides the image they
/// make (which counts as a live image): the copy of the input, and the `f32` planes of one
/// colour channel at a time (the channel, the filter's buffers) or the byte buffers of the rest.
mod scratch {
    /// Blur: the channel, the padded plane and a box pass's two buffers.
    pub const BLUR: usize = 24;
    /// Edges: one luma plane through the blur and the Sobel operator.
    pub const EDGES: usize = 28;
    /// The guided filter: the channel and its statistics planes.
    pub const SMOOTH: usize = 40;
    /// Byte-wise operations: a copy of each input and of the result.
    pub const BYTES: usize = 8;
    /// Masks and noise: one plane.
    pub const PLANE: usize = 4;
    /// The box blurs' edge padding, in pixels per unit of sigma (three radii of about 1.7
    /// sigma each, rounded up).
    pub const PAD_PER_SIGMA: f32 = 5.5;
}

/// Pixels (not bytes) of a `width x height` image.
fn pixels(width: u32, height: u32) -> usize {
    width as usize * height as usize
}

/// The padded ring the box blurs of `sigma` add around a `width x height` plane, in pixels.
fn blur_ring(width: u32, height: u32, sigma: f32) -> usize {
    let sigma = if sigma.is_finite() {
        sigma.clamp(0.0, imaging::canvas::MAX_SIGMA)
    } else {
        0.0
    };
    let pad = (sigma * scratch::PAD_PER_SIGMA).ceil() as usize;
    let (w, h) = (width as usize + 2 * pad, height as usize + 2 * pad);
    w * h - pixels(width, height)
}

impl Sandbox {
    fn image(&self, handle: &Resource<Image>) -> wasmtime::Result<&Image> {
        self.table().get(handle).map_err(stale)
    }

    /// Takes the image a guest returned out of the instance's table (its pixels no longer
    /// count against the instance's memory: the host owns them now).
    pub(crate) fn take_image(&mut self, handle: Resource<Image>) -> wasmtime::Result<Image> {
        let image = self.table_mut().delete(handle).map_err(stale)?;
        self.release_image_bytes(image.rgba.len());
        Ok(image)
    }

    /// The size of a live image.
    fn size_of(&self, handle: &Resource<Image>) -> wasmtime::Result<(u32, u32)> {
        let image = self.image(handle)?;
        Ok((image.width, image.height))
    }

    /// Stores a new image, counting its pixels against the memory cap.
    pub(crate) fn add_image(&mut self, image: Image) -> wasmtime::Result<Resource<Image>> {
        let bytes = image.rgba.len();
        self.admit_bytes(bytes, "a canvas image")?;
        let handle = self
            .table_mut()
            .push(image)
            .map_err(|e| wasmtime::Error::msg(format!("canvas: {e}")))?;
        self.hold_image_bytes(bytes);
        Ok(handle)
    }

    /// Runs the native operation `what`, which makes a `width x height` image using `scratch`
    /// bytes of working memory: refused before it starts when the call's budget is spent or
    /// the result and the working memory would not fit under the memory cap; its CPU time is
    /// the guest's (the host function runs inside the guest's metered poll), checked again
    /// when it ends, so a call that overran in an operation fails with the timeout error.
    fn run_op(
        &mut self,
        what: &str,
        (width, height): (u32, u32),
        scratch: usize,
        op: impl FnOnce(&Sandbox) -> wasmtime::Result<imaging::Rgba>,
    ) -> wasmtime::Result<Resource<Image>> {
        imaging::canvas::check_size(width, height).map_err(|e| bad_size(what, e))?;
        self.check_budget(&format!("canvas.image.{what}"))?;
        let out_bytes = pixels(width, height) * 4;
        self.admit_bytes(
            out_bytes.saturating_add(scratch),
            &format!("canvas.image.{what}"),
        )?;
        let image = op(self)?;
        self.check_budget(&format!("canvas.image.{what}"))?;
        self.add_image(image.into())
    }

    /// Runs `op` on a copy of the live image `handle`, making an image of the same size.
    fn map_op(
        &mut self,
        what: &str,
        handle: &Resource<Image>,
        scratch_per_pixel: usize,
        op: impl FnOnce(&imaging::Rgba) -> imaging::Rgba,
    ) -> wasmtime::Result<Resource<Image>> {
        let size = self.size_of(handle)?;
        let scratch = pixels(size.0, size.1).saturating_mul(scratch_per_pixel);
        self.run_op(what, size, scratch, |sandbox| {
            Ok(op(&imaging::Rgba::from(sandbox.image(handle)?)))
        })
    }

    /// Like [`Sandbox::map_op`] for the operations of two or three same-size images, whose
    /// size mismatch is the style's error (`Ok(Err(message))`), not a trap.
    fn layer_op(
        &mut self,
        what: &str,
        handles: &[&Resource<Image>],
        op: impl FnOnce(&[imaging::Rgba]) -> Result<imaging::Rgba, SizeError>,
    ) -> wasmtime::Result<Result<Resource<Image>, String>> {
        let size = self.size_of(handles[0])?;
        for other in &handles[1..] {
            let other = self.size_of(other)?;
            if other != size {
                return Ok(Err(format!(
                    "canvas.image.{what}: a {}x{} image cannot be layered on a {}x{} one",
                    other.0, other.1, size.0, size.1
                )));
            }
        }
        let scratch = pixels(size.0, size.1).saturating_mul(4 * handles.len() + 4);
        let made = self.run_op(what, size, scratch, |sandbox| {
            let inputs = handles
                .iter()
                .map(|h| sandbox.image(h).map(imaging::Rgba::from))
                .collect::<wasmtime::Result<Vec<_>>>()?;
            op(&inputs).map_err(|e| bad_size(what, e))
        })?;
        Ok(Ok(made))
    }
}

impl HostImage for Sandbox {
    fn new(&mut self, width: u32, height: u32, rgba: Vec<u8>) -> wasmtime::Result<Resource<Image>> {
        let len = rgba.len();
        let image = Image::new(width, height, rgba).ok_or_else(|| {
            wasmtime::Error::msg(format!(
                "canvas: {len} bytes do not make a {width}x{height} RGBA image"
            ))
        })?;
        self.add_image(image)
    }

    fn filled(
        &mut self,
        width: u32,
        height: u32,
        colour: Rgba,
    ) -> wasmtime::Result<Resource<Image>> {
        let rgba = [colour.r, colour.g, colour.b, colour.a];
        self.run_op("filled", (width, height), 0, |_| {
            imaging::canvas::filled(width, height, rgba).map_err(|e| bad_size("filled", e))
        })
    }

    fn noise(
        &mut self,
        width: u32,
        height: u32,
        scale: f32,
        seed: u64,
    ) -> wasmtime::Result<Resource<Image>> {
        let scratch = pixels(width, height).saturating_mul(scratch::PLANE);
        self.run_op("noise", (width, height), scratch, |_| {
            imaging::canvas::noise(width, height, scale, seed).map_err(|e| bad_size("noise", e))
        })
    }

    fn width(&mut self, image: Resource<Image>) -> wasmtime::Result<u32> {
        Ok(self.image(&image)?.width)
    }

    fn height(&mut self, image: Resource<Image>) -> wasmtime::Result<u32> {
        Ok(self.image(&image)?.height)
    }

    fn duplicate(&mut self, image: Resource<Image>) -> wasmtime::Result<Resource<Image>> {
        let bytes = self.image(&image)?.rgba.len();
        self.admit_bytes(bytes, "canvas.image.duplicate")?;
        let copy = self.image(&image)?.clone();
        self.add_image(copy)
    }

    fn read(
        &mut self,
        image: Resource<Image>,
        region: Option<Region>,
    ) -> wasmtime::Result<Vec<u8>> {
        self.image(&image)?
            .read(region)
            .map_err(|e| wasmtime::Error::msg(format!("canvas.image.read: {e}")))
    }

    fn write(
        &mut self,
        image: Resource<Image>,
        region: Region,
        rgba: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        let image = self.table_mut().get_mut(&image).map_err(stale)?;
        Ok(image.write(region, &rgba))
    }

    fn resize(
        &mut self,
        image: Resource<Image>,
        size: Size,
        nearest: bool,
    ) -> wasmtime::Result<Resource<Image>> {
        let (w, h) = self.size_of(&image)?;
        // The input's copy and premultiplied copy, and the horizontal pass's output.
        let scratch = (pixels(w, h) * 8).saturating_add(pixels(size.width, h) * 4);
        self.run_op("resize", (size.width, size.height), scratch, |sandbox| {
            let input = imaging::Rgba::from(sandbox.image(&image)?);
            imaging::canvas::resize(&input, size.width, size.height, nearest)
                .map_err(|e| bad_size("resize", e))
        })
    }

    fn blur(&mut self, image: Resource<Image>, sigma: f32) -> wasmtime::Result<Resource<Image>> {
        let (w, h) = self.size_of(&image)?;
        let scratch = pixels(w, h) * scratch::BLUR + blur_ring(w, h, sigma) * 16;
        self.run_op("blur", (w, h), scratch, |sandbox| {
            let input = imaging::Rgba::from(sandbox.image(&image)?);
            Ok(imaging::canvas::blur(&input, sigma))
        })
    }

    fn smooth(
        &mut self,
        image: Resource<Image>,
        radius: u32,
        epsilon: f32,
    ) -> wasmtime::Result<Resource<Image>> {
        self.map_op("smooth", &image, scratch::SMOOTH, |input| {
            imaging::canvas::smooth(input, radius, epsilon)
        })
    }

    fn posterize(
        &mut self,
        image: Resource<Image>,
        levels: u32,
    ) -> wasmtime::Result<Resource<Image>> {
        self.map_op("posterize", &image, scratch::BYTES, |input| {
            imaging::canvas::posterize(input, levels)
        })
    }

    fn quantize(
        &mut self,
        image: Resource<Image>,
        palette: Vec<Rgba>,
        dither: bool,
    ) -> wasmtime::Result<Resource<Image>> {
        let palette: Vec<[u8; 4]> = palette.iter().map(|c| [c.r, c.g, c.b, c.a]).collect();
        self.map_op("quantize", &image, scratch::BYTES, |input| {
            imaging::canvas::quantize(input, &palette, dither)
        })
    }

    fn palette(&mut self, image: Resource<Image>, count: u32) -> wasmtime::Result<Vec<Rgba>> {
        let (w, h) = self.size_of(&image)?;
        self.check_budget("canvas.image.palette")?;
        self.admit_bytes(pixels(w, h) * scratch::BYTES, "canvas.image.palette")?;
        let input = imaging::Rgba::from(self.image(&image)?);
        let colours = imaging::canvas::palette(&input, count);
        self.check_budget("canvas.image.palette")?;
        Ok(colours
            .into_iter()
            .map(|[r, g, b, a]| Rgba { r, g, b, a })
            .collect())
    }

    fn edges(&mut self, image: Resource<Image>, sigma: f32) -> wasmtime::Result<Resource<Image>> {
        let (w, h) = self.size_of(&image)?;
        let scratch = pixels(w, h) * scratch::EDGES + blur_ring(w, h, sigma) * 16;
        self.run_op("edges", (w, h), scratch, |sandbox| {
            let input = imaging::Rgba::from(sandbox.image(&image)?);
            Ok(imaging::canvas::edges(&input, sigma))
        })
    }

    fn adjust(
        &mut self,
        image: Resource<Image>,
        brightness: f32,
        contrast: f32,
        saturation: f32,
    ) -> wasmtime::Result<Resource<Image>> {
        self.map_op("adjust", &image, scratch::BYTES, |input| {
            imaging::canvas::adjust(input, brightness, contrast, saturation)
        })
    }

    fn blend(
        &mut self,
        image: Resource<Image>,
        top: Resource<Image>,
        mode: BlendMode,
        opacity: f32,
    ) -> wasmtime::Result<Result<Resource<Image>, String>> {
        self.layer_op("blend", &[&image, &top], |inputs| {
            imaging::canvas::blend(&inputs[0], &inputs[1], mode.into(), opacity)
        })
    }

    fn composite(
        &mut self,
        image: Resource<Image>,
        top: Resource<Image>,
        mask: Resource<Image>,
    ) -> wasmtime::Result<Result<Resource<Image>, String>> {
        self.layer_op("composite", &[&image, &top, &mask], |inputs| {
            imaging::canvas::composite(&inputs[0], &inputs[1], &inputs[2])
        })
    }

    fn ellipse_mask(
        &mut self,
        image: Resource<Image>,
        bbox: Rect,
        feather: f32,
    ) -> wasmtime::Result<Resource<Image>> {
        let bbox = [bbox.x1, bbox.y1, bbox.x2, bbox.y2];
        self.map_op("ellipse-mask", &image, scratch::PLANE, |input| {
            imaging::canvas::ellipse_mask(input, bbox, feather)
        })
    }

    fn drop(&mut self, image: Resource<Image>) -> wasmtime::Result<()> {
        let image = self.table_mut().delete(image).map_err(stale)?;
        self.release_image_bytes(image.rgba.len());
        Ok(())
    }
}

impl Host for Sandbox {}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(x: u32, y: u32, width: u32, height: u32) -> Region {
        Region {
            x,
            y,
            width,
            height,
        }
    }

    #[test]
    fn regions_read_and_write_rows() {
        let mut image = Image::new(3, 2, (0..24).collect()).unwrap();
        assert_eq!(
            image.read(Some(region(1, 1, 2, 1))).unwrap(),
            (16..24).collect::<Vec<u8>>()
        );
        image.write(region(0, 0, 1, 2), &[9; 8]).unwrap();
        assert_eq!(&image.rgba[..4], &[9; 4]);
        assert_eq!(&image.rgba[12..16], &[9; 4]);
        assert_eq!(&image.rgba[4..8], &[4, 5, 6, 7]);
    }

    #[test]
    fn bad_regions_and_sizes_are_refused() {
        assert!(Image::new(2, 2, vec![0; 15]).is_none());
        assert!(Image::new(u32::MAX, u32::MAX, Vec::new()).is_none());
        let mut image = Image::new(2, 2, vec![0; 16]).unwrap();
        assert!(
            image
                .read(Some(region(1, 1, 2, 1)))
                .unwrap_err()
                .contains("outside")
        );
        assert!(image.read(Some(region(u32::MAX, 0, 2, 1))).is_err());
        assert!(
            image
                .write(region(0, 0, 2, 2), &[0; 15])
                .unwrap_err()
                .contains("15 bytes")
        );
    }

    use std::sync::Arc;
    use std::time::Duration;

    use super::super::budget::{Budget, Limit};
    use super::super::sandbox::Stop;

    fn sandbox(memory_cap: usize, cpu: Duration) -> Sandbox {
        let budget = Arc::new(Budget::new(cpu, Duration::from_secs(3600)));
        Sandbox::new("canvas-test", memory_cap, budget, None).unwrap()
    }

    fn photo(sandbox: &mut Sandbox, width: u32, height: u32) -> Resource<Image> {
        let rgba = (0..width * height * 4)
            .map(|i| (i * 37 % 251) as u8)
            .collect();
        HostImage::new(sandbox, width, height, rgba).unwrap()
    }

    fn pixels_of(sandbox: &Sandbox, image: &Resource<Image>) -> imaging::Rgba {
        imaging::Rgba::from(sandbox.image(image).unwrap())
    }

    fn handle(image: &Resource<Image>) -> Resource<Image> {
        Resource::new_borrow(image.rep())
    }

    #[test]
    fn every_native_operation_runs_the_imaging_crate() {
        let mut s = sandbox(256 << 20, Duration::from_secs(3600));
        let img = photo(&mut s, 40, 30);
        let base = pixels_of(&s, &img);
        let check = |made: Resource<Image>, expected: imaging::Rgba, s: &mut Sandbox| {
            assert_eq!(pixels_of(s, &made), expected);
            HostImage::drop(s, made).unwrap();
        };
        let size = Size {
            width: 17,
            height: 9,
        };
        let made = s.resize(handle(&img), size, false).unwrap();
        check(
            made,
            imaging::canvas::resize(&base, 17, 9, false).unwrap(),
            &mut s,
        );
        let made = s.blur(handle(&img), 3.5).unwrap();
        check(made, imaging::canvas::blur(&base, 3.5), &mut s);
        let made = s.smooth(handle(&img), 3, 0.02).unwrap();
        check(made, imaging::canvas::smooth(&base, 3, 0.02), &mut s);
        let made = s.posterize(handle(&img), 3).unwrap();
        check(made, imaging::canvas::posterize(&base, 3), &mut s);
        let colours = vec![
            Rgba {
                r: 0,
                g: 0,
                b: 0,
                a: 255,
            },
            Rgba {
                r: 250,
                g: 240,
                b: 10,
                a: 255,
            },
        ];
        let made = s.quantize(handle(&img), colours, true).unwrap();
        let palette = [[0, 0, 0, 255], [250, 240, 10, 255]];
        check(
            made,
            imaging::canvas::quantize(&base, &palette, true),
            &mut s,
        );
        let made = s.edges(handle(&img), 1.0).unwrap();
        check(made, imaging::canvas::edges(&base, 1.0), &mut s);
        let made = s.adjust(handle(&img), 0.1, 1.2, 0.5).unwrap();
        check(made, imaging::canvas::adjust(&base, 0.1, 1.2, 0.5), &mut s);
        let bbox = Rect {
            x1: 5.0,
            y1: 4.0,
            x2: 30.0,
            y2: 26.0,
        };
        let made = s.ellipse_mask(handle(&img), bbox, 4.0).unwrap();
        check(
            made,
            imaging::canvas::ellipse_mask(&base, [5.0, 4.0, 30.0, 26.0], 4.0),
            &mut s,
        );
        let top = s.noise(40, 30, 6.0, 9).unwrap();
        let top_pixels = pixels_of(&s, &top);
        assert_eq!(top_pixels, imaging::canvas::noise(40, 30, 6.0, 9).unwrap());
        let made = s
            .blend(handle(&img), handle(&top), BlendMode::Overlay, 0.7)
            .unwrap()
            .unwrap();
        let expected =
            imaging::canvas::blend(&base, &top_pixels, imaging::BlendMode::Overlay, 0.7).unwrap();
        check(made, expected, &mut s);
        let made = s
            .composite(handle(&img), handle(&top), handle(&top))
            .unwrap()
            .unwrap();
        let expected = imaging::canvas::composite(&base, &top_pixels, &top_pixels).unwrap();
        check(made, expected, &mut s);
        let colours = s.palette(handle(&img), 4).unwrap();
        let expected = imaging::canvas::palette(&base, 4);
        assert_eq!(
            colours
                .iter()
                .map(|c| [c.r, c.g, c.b, c.a])
                .collect::<Vec<_>>(),
            expected
        );
        let fill = Rgba {
            r: 1,
            g: 2,
            b: 3,
            a: 4,
        };
        let made = HostImage::filled(&mut s, 2, 2, fill).unwrap();
        check(
            made,
            imaging::canvas::filled(2, 2, [1, 2, 3, 4]).unwrap(),
            &mut s,
        );
        // Same-size rules are the style's error, not a trap.
        let small = photo(&mut s, 4, 4);
        let refused = s
            .blend(handle(&img), handle(&small), BlendMode::Normal, 1.0)
            .unwrap();
        assert!(refused.unwrap_err().contains("4x4"));
        assert!(
            s.composite(handle(&img), handle(&img), handle(&small))
                .unwrap()
                .is_err()
        );
        assert_eq!(s.stopped(), None);
    }

    #[test]
    fn bad_sizes_trap_with_the_operation_named_and_allocate_nothing() {
        let mut s = sandbox(64 << 20, Duration::from_secs(3600));
        let img = photo(&mut s, 8, 8);
        let black = Rgba {
            r: 0,
            g: 0,
            b: 0,
            a: 255,
        };
        let e = HostImage::filled(&mut s, u32::MAX, u32::MAX, black).unwrap_err();
        assert!(e.to_string().contains("canvas.image.filled"), "{e}");
        let e = s
            .resize(
                handle(&img),
                Size {
                    width: 0,
                    height: 5,
                },
                true,
            )
            .unwrap_err();
        assert!(e.to_string().contains("canvas.image.resize"), "{e}");
        let e = s.noise(20_000, 1, 1.0, 0).unwrap_err();
        assert!(e.to_string().contains("16384"), "{e}");
        assert_eq!(s.stopped(), None, "a bad argument is a trap, not a limit");
    }

    #[test]
    fn images_count_against_the_memory_cap_until_dropped() {
        // 1 MiB: four 256 x 256 images (256 KiB each) and not one more.
        let mut s = sandbox(1 << 20, Duration::from_secs(3600));
        let white = Rgba {
            r: 255,
            g: 255,
            b: 255,
            a: 255,
        };
        let kept: Vec<_> = (0..4)
            .map(|_| HostImage::filled(&mut s, 256, 256, white).unwrap())
            .collect();
        let e = HostImage::filled(&mut s, 256, 256, white).unwrap_err();
        assert!(e.to_string().contains("cap is 1 MiB"), "{e}");
        assert_eq!(s.stopped(), Some(Stop::Memory));
        // A big image is refused before any of it is allocated.
        let e = HostImage::filled(&mut s, 16384, 16384, white).unwrap_err();
        assert!(e.to_string().contains("1024 MiB"), "{e}");
        let e = s.duplicate(handle(&kept[0])).unwrap_err();
        assert!(e.to_string().contains("duplicate"), "{e}");
        // Working memory counts too: a blur of a quarter-MiB image needs more than is left.
        HostImage::drop(&mut s, kept.into_iter().next().unwrap()).unwrap();
        let one = HostImage::filled(&mut s, 128, 128, white).unwrap();
        assert!(
            s.blur(handle(&one), 2.0)
                .unwrap_err()
                .to_string()
                .contains("canvas.image.blur")
        );
        // Dropping gives the room back.
        let mut s = sandbox(1 << 20, Duration::from_secs(3600));
        for _ in 0..20 {
            let image = HostImage::filled(&mut s, 256, 256, white).unwrap();
            HostImage::drop(&mut s, image).unwrap();
        }
        assert_eq!(s.stopped(), None);
    }

    #[test]
    fn a_spent_budget_refuses_the_next_operation() {
        let mut s = sandbox(64 << 20, Duration::ZERO);
        let img = photo(&mut s, 8, 8);
        let e = s.blur(handle(&img), 1.0).unwrap_err();
        assert!(
            e.to_string()
                .contains("budget ran out in canvas.image.blur"),
            "{e}"
        );
        assert_eq!(s.stopped(), Some(Stop::Time(Limit::Cpu)));
        assert!(s.palette(handle(&img), 3).is_err());
    }
}
