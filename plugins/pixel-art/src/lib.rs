//! The pixel-art style: a retro video-game portrait on a fixed palette.
//!
//! With diffusion it prefers PuLID (identity survives the heavy stylisation) and falls back to
//! ControlNet. The post-process always snaps the picture to a grid of large pixels and to a
//! classic palette. Without diffusion, when the host has its style-transfer networks, a
//! learned poster style first redraws the photo in flat, bold colours; the grid then keeps
//! half-size pixels inside the faces, so that a face a few art pixels wide stays
//! recognisable. Without those networks either (method `none`) the grid and palette are the
//! whole look, with a little smoothing, contrast and ordered dithering so that the photo reads
//! well in few colours.

#![deny(missing_docs)]

use likeness_sdk::image::{Color, Rgba, face_mask, luma_u8};
use likeness_sdk::options;
use likeness_sdk::{
    Analysis, Image, Method, MethodKind, ParamSpec, Plan, Style, StyleError, StyleSpec,
    TransferLook, Values,
};

/// The style's id, as in `style.toml`.
const ID: &str = "pixel-art";
/// One sentence for clients, as in `style.toml`.
const DESCRIPTION: &str =
    "Turns the portrait into retro pixel art on a classic game-console palette.";
/// The prompt template.
const PROMPT: &str = "pixel art portrait of {caption}, 16-bit retro video game style, limited palette, crisp large pixels, clean sprite shading";
/// What diffusion should avoid.
const NEGATIVE: &str = "photo, photorealistic, smooth gradients, blurry, antialiasing, 3d render, lowres, deformed face, watermark, text, signature";

/// Who the style is and how it plans.
const SPEC: StyleSpec = StyleSpec {
    id: ID,
    name: "Pixel Art",
    version: env!("CARGO_PKG_VERSION"),
    description: DESCRIPTION,
    prompt: PROMPT,
    negative_prompt: NEGATIVE,
    preferred: MethodKind::Pulid,
};
/// The look by style transfer: learned style 21 (flat poster colours) at 512 pixels, blended
/// with the photo, the faces keeping most of the photo's detail (the grid removes the rest).
pub const TRANSFER: TransferLook = TransferLook {
    learned: &[(21, 1.0)],
    picture: None,
    strength: 0.6,
    working_side: Some(512),
    face_preservation: 0.6,
    threshold: 0.15,
};
/// The option for the size of one art pixel.
const PIXEL_SIZE: &str = "pixel-size";
/// The option for the palette.
const PALETTE: &str = "palette";

/// PICO-8's 16 colours.
#[rustfmt::skip]
const PICO8: [Color; 16] = [
    [0x00, 0x00, 0x00], [0x1d, 0x2b, 0x53], [0x7e, 0x25, 0x53], [0x00, 0x87, 0x51],
    [0xab, 0x52, 0x36], [0x5f, 0x57, 0x4f], [0xc2, 0xc3, 0xc7], [0xff, 0xf1, 0xe8],
    [0xff, 0x00, 0x4d], [0xff, 0xa3, 0x00], [0xff, 0xec, 0x27], [0x00, 0xe4, 0x36],
    [0x29, 0xad, 0xff], [0x83, 0x76, 0x9c], [0xff, 0x77, 0xa8], [0xff, 0xcc, 0xaa],
];

/// The original Game Boy's four greens, darkest first.
#[rustfmt::skip]
const GAMEBOY: [Color; 4] =
    [[0x0f, 0x38, 0x0f], [0x30, 0x62, 0x30], [0x8b, 0xac, 0x0f], [0x9b, 0xbc, 0x0f]];

/// The NES's colours (the common 2C02 rendition, without the duplicate blacks).
#[rustfmt::skip]
const NES: [Color; 54] = [
    [0x7c, 0x7c, 0x7c], [0x00, 0x00, 0xfc], [0x00, 0x00, 0xbc], [0x44, 0x28, 0xbc],
    [0x94, 0x00, 0x84], [0xa8, 0x00, 0x20], [0xa8, 0x10, 0x00], [0x88, 0x14, 0x00],
    [0x50, 0x30, 0x00], [0x00, 0x78, 0x00], [0x00, 0x68, 0x00], [0x00, 0x58, 0x00],
    [0x00, 0x40, 0x58], [0x00, 0x00, 0x00], [0xbc, 0xbc, 0xbc], [0x00, 0x78, 0xf8],
    [0x00, 0x58, 0xf8], [0x68, 0x44, 0xfc], [0xd8, 0x00, 0xcc], [0xe4, 0x00, 0x58],
    [0xf8, 0x38, 0x00], [0xe4, 0x5c, 0x10], [0xac, 0x7c, 0x00], [0x00, 0xb8, 0x00],
    [0x00, 0xa8, 0x00], [0x00, 0xa8, 0x44], [0x00, 0x88, 0x88], [0xf8, 0xf8, 0xf8],
    [0x3c, 0xbc, 0xfc], [0x68, 0x88, 0xfc], [0x98, 0x78, 0xf8], [0xf8, 0x78, 0xf8],
    [0xf8, 0x58, 0x98], [0xf8, 0x78, 0x58], [0xfc, 0xa0, 0x44], [0xf8, 0xb8, 0x00],
    [0xb8, 0xf8, 0x18], [0x58, 0xd8, 0x54], [0x58, 0xf8, 0x98], [0x00, 0xe8, 0xd8],
    [0x78, 0x78, 0x78], [0xfc, 0xfc, 0xfc], [0xa4, 0xe4, 0xfc], [0xb8, 0xb8, 0xf8],
    [0xd8, 0xb8, 0xf8], [0xf8, 0xb8, 0xf8], [0xf8, 0xa4, 0xc0], [0xf0, 0xd0, 0xb0],
    [0xfc, 0xe0, 0xa8], [0xf8, 0xd8, 0x78], [0xd8, 0xf8, 0x78], [0xb8, 0xf8, 0xb8],
    [0xb8, 0xf8, 0xd8], [0x00, 0xfc, 0xfc],
];

/// The Commodore 64's 16 colours (Pepto's measurement).
#[rustfmt::skip]
const C64: [Color; 16] = [
    [0x00, 0x00, 0x00], [0xff, 0xff, 0xff], [0x68, 0x37, 0x2b], [0x70, 0xa4, 0xb2],
    [0x6f, 0x3d, 0x86], [0x58, 0x8d, 0x43], [0x35, 0x28, 0x79], [0xb8, 0xc7, 0x6f],
    [0x6f, 0x4f, 0x25], [0x43, 0x39, 0x00], [0x9a, 0x67, 0x59], [0x44, 0x44, 0x44],
    [0x6c, 0x6c, 0x6c], [0x9a, 0xd2, 0x84], [0x6c, 0x5e, 0xb5], [0x95, 0x95, 0x95],
];

/// A palette and how to render onto it.
struct PaletteStyle {
    colors: &'static [Color],
    /// Ordered-dithering strength (fewer colours need more).
    dither: f32,
    /// Map by brightness only (for single-hue palettes).
    monochrome: bool,
}

/// The palettes by option value; the first is the default.
const PALETTES: [(&str, PaletteStyle); 4] = [
    (
        "pico8",
        PaletteStyle {
            colors: &PICO8,
            dither: 0.22,
            monochrome: false,
        },
    ),
    (
        "gameboy",
        PaletteStyle {
            colors: &GAMEBOY,
            dither: 0.5,
            monochrome: true,
        },
    ),
    (
        "nes",
        PaletteStyle {
            colors: &NES,
            dither: 0.15,
            monochrome: false,
        },
    ),
    (
        "c64",
        PaletteStyle {
            colors: &C64,
            dither: 0.35,
            monochrome: false,
        },
    ),
];

fn params() -> Vec<ParamSpec> {
    let names: Vec<&str> = PALETTES.iter().map(|(n, _)| *n).collect();
    vec![
        options::caption(),
        options::seed(),
        options::integer(
            PIXEL_SIZE,
            "The size of one art pixel, in image pixels (2 to 64).",
            8,
            2,
            64,
        ),
        options::choice(
            PALETTE,
            "The colour palette: pico8 (16 colours), gameboy (4 greens), nes (54 colours) or c64 (16 colours).",
            names[0],
            &names,
        ),
    ]
}

/// Stretches the brightness of `image` so that its darkest and lightest 1% reach the ends of
/// the range, which keeps small palettes from collapsing a low-contrast photo to two colours.
fn auto_levels(image: &mut Rgba) {
    let mut histogram = [0u32; 256];
    for p in image.data.chunks_exact(4) {
        histogram[luma_u8(p[0], p[1], p[2]) as usize] += 1;
    }
    let n = image.pixel_count() as u32;
    let cut = n / 100;
    let (mut lo, mut hi, mut acc) = (0usize, 255usize, 0u32);
    for (i, &c) in histogram.iter().enumerate() {
        acc += c;
        if acc > cut {
            lo = i;
            break;
        }
    }
    acc = 0;
    for (i, &c) in histogram.iter().enumerate().rev() {
        acc += c;
        if acc > cut {
            hi = i;
            break;
        }
    }
    if hi <= lo + 16 {
        return;
    }
    let mut lut = [0u8; 256];
    for (i, v) in lut.iter_mut().enumerate() {
        *v = ((i as i32 - lo as i32) * 255 / (hi - lo) as i32).clamp(0, 255) as u8;
    }
    image.apply_lut(&lut);
}

/// Snaps `image` to a grid of `pixel_size` art pixels on the palette named `palette`. With
/// `from_photo`, the photo is first smoothed and given more contrast and colour.
pub fn pixelize(image: &Rgba, pixel_size: u32, palette: &str, from_photo: bool) -> Rgba {
    let pixel_size = pixel_size.max(1);
    let small = if from_photo {
        prepare(image, pixel_size).downsample(pixel_size)
    } else {
        image.downsample(pixel_size)
    };
    to_palette(small, palette).upscale_nearest(pixel_size, image.width, image.height)
}

/// The least number of art pixels across a face that [`pixelize_faces`] keeps.
pub const FACE_PIXELS: f32 = 40.0;

/// [`pixelize`] of a style-transfer rendition with the faces of `analysis` on a finer grid,
/// so that each face is at least [`FACE_PIXELS`] art pixels wide (at most half the art pixel
/// size; never below 2 image pixels). The art pixels outside the faces are a whole number of
/// fine ones, as close to `pixel_size` as that allows.
pub fn pixelize_faces(image: &Rgba, analysis: &Analysis, pixel_size: u32, palette: &str) -> Rgba {
    let sx = image.width as f32 / analysis.width.max(1) as f32;
    let narrowest = analysis
        .faces
        .iter()
        .map(|f| (f.bbox.x2 - f.bbox.x1) * sx)
        .fold(f32::INFINITY, f32::min);
    let fine = ((narrowest / FACE_PIXELS) as u32).clamp(2, (pixel_size / 2).max(2));
    let per_art_pixel = (pixel_size as f32 / fine as f32).round() as u32;
    if per_art_pixel < 2 || analysis.faces.is_empty() {
        return pixelize(image, pixel_size, palette, true);
    }
    let mut small = prepare(image, fine).downsample(fine);
    let coarse =
        small
            .downsample(per_art_pixel)
            .upscale_nearest(per_art_pixel, small.width, small.height);
    let faces = face_mask(small.width, small.height, analysis);
    let outside = |i: usize| faces.data[i] < 0.5;
    for (i, (p, c)) in small
        .data
        .chunks_exact_mut(4)
        .zip(coarse.data.chunks_exact(4))
        .enumerate()
    {
        if outside(i) {
            p.copy_from_slice(c);
        }
    }
    // One palette mapping for both grids; outside the faces each art pixel then takes the
    // colour of its first fine pixel, so that the dithering follows the coarse grid too.
    let mut small = to_palette(small, palette);
    let (sw, k) = (small.width as usize, per_art_pixel as usize);
    for i in 0..small.pixel_count() {
        if outside(i) {
            let (x, y) = (i % sw / k * k, i / sw / k * k);
            let from = (y * sw + x) * 4;
            small.data.copy_within(from..from + 4, i * 4);
        }
    }
    small.upscale_nearest(fine, image.width, image.height)
}

/// A photo made ready for few colours at `pixel_size`: smoothed, with more colour.
fn prepare(image: &Rgba, pixel_size: u32) -> Rgba {
    let mut prepared = image.guided_smooth((pixel_size / 2).max(1), 0.004);
    prepared.saturate(1.3);
    prepared
}

/// The art pixels `small` on the palette named `palette` (the default when unknown).
fn to_palette(mut small: Rgba, palette: &str) -> Rgba {
    let style = &PALETTES
        .iter()
        .find(|(n, _)| *n == palette)
        .unwrap_or(&PALETTES[0])
        .1;
    if style.monochrome {
        small.saturate(0.0);
    }
    auto_levels(&mut small);
    if style.monochrome {
        // Brightness alone picks the shade: evenly spaced greys stand for the palette's
        // colours, darkest first.
        let n = style.colors.len().max(2);
        let greys: Vec<Color> = (0..n).map(|i| [(i * 255 / (n - 1)) as u8; 3]).collect();
        // Lift the mid-tones a little (gamma 0.9): faces sit there and read better lighter.
        let mut lut = [0u8; 256];
        for (i, v) in lut.iter_mut().enumerate() {
            *v = (255.0 * (i as f32 / 255.0).powf(0.9) + 0.5) as u8;
        }
        small.apply_lut(&lut);
        small.quantize_dithered(&greys, style.dither);
        for p in small.data.chunks_exact_mut(4) {
            let i = (p[0] as usize * (n - 1) + 127) / 255;
            p[..3].copy_from_slice(&style.colors[i.min(style.colors.len() - 1)]);
        }
    } else {
        small.quantize_dithered(style.colors, style.dither);
    }
    small
}

fn pixel_size(values: &Values) -> u32 {
    values.int(PIXEL_SIZE).unwrap_or(8).clamp(2, 64) as u32
}

/// The pixel-art style: natively its functions can be called directly.
pub struct PixelArt;

impl Style for PixelArt {
    const SPEC: StyleSpec = SPEC;
    const TRANSFER: Option<TransferLook> = Some(TRANSFER);

    fn params() -> Vec<ParamSpec> {
        params()
    }

    fn render(
        image: Image,
        analysis: &Analysis,
        plan: &Plan,
        values: &Values,
    ) -> Result<Image, StyleError> {
        let image = Rgba::from_image(image)?;
        let (size, palette) = (pixel_size(values), values.text(PALETTE));
        let out = match plan.method {
            Method::None => pixelize(&image, size, palette, true),
            Method::StyleTransfer(_) => pixelize_faces(&image, analysis, size, palette),
            _ => pixelize(&image, size, palette, false),
        };
        Ok(out.into_image())
    }
}

// Only components export the world; natively the crate is a plain library, so that several
// styles can link into one binary (benchmarks) without clashing export symbols.
#[cfg(target_arch = "wasm32")]
likeness_sdk::export_style!(PixelArt);

#[cfg(test)]
mod tests;
