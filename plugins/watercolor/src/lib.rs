//! The watercolor style: a loose watercolor painting on textured paper.
//!
//! With diffusion it prefers InstantID and falls back to ControlNet canny + depth; the
//! post-process then lays the picture onto the paper texture shipped in the style's assets
//! (`/assets/paper.pgm`, granted read-only by the host). Without diffusion, when the host has
//! its style-transfer networks, a blend of learned pastel wash styles paints the photo, faces a
//! little lighter, and the post-process lays that rendition onto the paper with ragged bare
//! margins. Without those networks either (method `none`) the post-process paints the look
//! from the photo itself: edge-preserving smoothing into washes,
//! colours that bleed and wobble, pigment granulation in the paper's grain, darker pooled
//! edges, a faint pencil sketch, and washes that fade into bare paper at the margins.

#![deny(missing_docs)]

mod pixel;

use likeness_sdk::image::{Plane, Rgba, face_mask, min_f32, to_byte};
use likeness_sdk::noise;
use likeness_sdk::options;
use likeness_sdk::{
    Analysis, Image, Method, MethodKind, ParamSpec, Plan, Style, StyleError, StyleSpec,
    TransferLook, Values,
};

/// The style's id, as in `style.toml`.
const ID: &str = "watercolor";
/// One sentence for clients, as in `style.toml`.
const DESCRIPTION: &str = "Turns the portrait into a loose watercolor painting on textured paper.";
/// The prompt template.
const PROMPT: &str = "watercolor painting of {caption}, loose brushstrokes, soft washes, wet-in-wet bleeding colours, pigment granulation, white paper showing through, delicate pencil sketch";
/// What diffusion should avoid.
const NEGATIVE: &str = "photo, photorealistic, 3d render, digital art, harsh outlines, oversaturated, lowres, blurry, deformed face, extra fingers, watermark, text, signature";

/// Who the style is and how it plans.
const SPEC: StyleSpec = StyleSpec {
    id: ID,
    name: "Watercolor",
    version: env!("CARGO_PKG_VERSION"),
    description: DESCRIPTION,
    prompt: PROMPT,
    negative_prompt: NEGATIVE,
    preferred: MethodKind::InstantId,
};
/// The look by style transfer: learned styles 14 (pale washes and pencil) and 12 (soft
/// pastel strokes) at 768 pixels, the faces keeping half of the photo's detail.
pub const TRANSFER: TransferLook = TransferLook {
    learned: &[(14, 0.7), (12, 0.3)],
    picture: None,
    strength: 0.85,
    working_side: Some(768),
    face_preservation: 0.5,
    threshold: 0.45,
};
/// Where the host mounts the style's assets.
pub const PAPER_PATH: &str = "/assets/paper.pgm";
/// The option for how strongly the paper shows.
const PAPER: &str = "paper";

fn params() -> Vec<ParamSpec> {
    vec![
        options::caption(),
        options::seed(),
        options::number(
            PAPER,
            "How strongly the paper texture shows, 0 (smooth) to 1.",
            0.6,
            0.0,
            1.0,
        ),
    ]
}

/// Reads the paper texture from the style's assets.
pub fn load_paper(path: &str) -> Result<Plane, StyleError> {
    let bytes = std::fs::read(path).map_err(|e| {
        StyleError::Internal(Some(format!(
            "the watercolor paper texture {path} cannot be read: {e}"
        )))
    })?;
    Plane::from_pgm(&bytes).map_err(|e| {
        StyleError::Internal(Some(format!(
            "the watercolor paper texture {path} is broken: {e}"
        )))
    })
}

/// The paper's relief shading, one value per texel: brightness of bare paper, about 0.9..1,
/// lit from the upper left.
fn paper_relief(texture: &Plane, strength: f32) -> Plane {
    let (tw, th) = (texture.width, texture.height);
    let mut relief = Plane::new(tw, th, 1.0);
    for y in 0..th {
        for x in 0..tw {
            let here = texture.get(x, y);
            let upper_left = texture.get((x + tw - 1) % tw, (y + th - 1) % th);
            let light = (here - upper_left) * 0.5;
            relief.data[(y * tw + x) as usize] =
                1.0 - strength * (0.06 * (1.0 - here) - light).clamp(-0.02, 0.1);
        }
    }
    relief
}

/// The Hermite step from 0 at `e0` to 1 at `e1`.
fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Lays `image` onto the paper (the texture tiled from the top-left corner): the paper's tone
/// shows through and pigment settles in its grain. Used after diffusion and as the last step of
/// [`paint`].
pub fn apply_paper(image: &mut Rgba, texture: &Plane, strength: f32) {
    if texture.data.is_empty() {
        return;
    }
    let relief = paper_relief(texture, strength);
    let (tw, th) = (texture.width as usize, texture.height as usize);
    let w = image.width as usize;
    for (y, row) in image.data.chunks_exact_mut(w * 4).enumerate() {
        let t = (y % th) * tw;
        let (heights, tones) = (&texture.data[t..t + tw], &relief.data[t..t + tw]);
        // The texture's row repeats across the image's: one stretch of `tw` pixels at a time.
        for stretch in row.chunks_mut(tw * 4) {
            let texels = heights.iter().zip(tones);
            for (p, (&height, &tone)) in stretch.chunks_exact_mut(4).zip(texels) {
                pixel::on_paper(p, 1.0 + strength * 0.5 * (0.5 - height), tone);
            }
        }
    }
}

/// The watercolor look, painted from a photo without a neural network. Faces of `analysis`
/// are painted with less wobble and granulation so that the person stays recognisable.
pub fn paint(photo: &Rgba, analysis: &Analysis, texture: &Plane, strength: f32, seed: u64) -> Rgba {
    // Intermediate planes are dropped as soon as they are used: at 1280 x 1280 each costs
    // 6.5 MB of the component's memory.
    let (w, h) = (photo.width, photo.height);
    let scale = (w.min(h) as f32 / 1024.0).max(0.125);
    let px = |v: f32| ((v * scale).round() as u32).max(1);
    let faces = face_mask(w, h, analysis);
    let gentle = photo.guided_smooth(px(6.0), 0.003);

    // Sketch: a faint pencil line under the paint, from the photo's own edges.
    let sketch = {
        let detail = gentle.luma();
        let fine = detail.gaussian_blur((1.2 * scale).max(0.7));
        let mut sketch = detail.gaussian_blur((2.4 * scale).max(1.4));
        sketch.zip_map(&fine, |coarse, fine| smoothstep(0.008, 0.03, coarse - fine));
        sketch
    };

    // Washes: edge-preserving smoothing into soft areas of colour; faces keep more detail.
    let mut washes = gentle.kuwahara(px(7.0), 8.0);
    if let Some((x0, y0, x1, y1)) = faces.nonzero_bounds() {
        // Only the faces' surroundings need the finer washes.
        let pad = px(8.0);
        let (x0, y0) = (x0.saturating_sub(pad), y0.saturating_sub(pad));
        let (x1, y1) = ((x1 + pad).min(w), (y1 + pad).min(h));
        let around = gentle.crop(x0, y0, x1 - x0, y1 - y0);
        let mut fine = around.kuwahara(px(3.0), 8.0);
        fine.blend(&around, 0.3);
        let cw = (x1 - x0) as usize;
        for y in y0 as usize..y1 as usize {
            for x in x0 as usize..x1 as usize {
                let m = faces.data[y * w as usize + x];
                if m > 0.0 {
                    let o = (y * w as usize + x) * 4;
                    let f = ((y - y0 as usize) * cw + x - x0 as usize) * 4;
                    for c in 0..3 {
                        let a = washes.data[o + c] as f32;
                        washes.data[o + c] = (a + (fine.data[f + c] as f32 - a) * m + 0.5) as u8;
                    }
                }
            }
        }
    }
    drop(gentle);

    // Wet-in-wet: the washes wobble along smooth noise (less on faces) and bleed a little
    // into each other.
    let mut paint = {
        let cell = 90.0 * scale;
        let amplitude = 9.0 * scale.max(0.3);
        let calm = |d: f32, f: f32| (d - 0.5) * 2.0 * amplitude * (1.0 - 0.7 * f);
        let mut dx = noise::fractal_noise(w, h, cell, 3, seed, false);
        dx.zip_map(&faces, calm);
        let mut dy = noise::fractal_noise(w, h, cell, 3, seed ^ 0x9e37, false);
        dy.zip_map(&faces, calm);
        washes.displace(&dx, &dy)
    };
    drop(washes);
    let bled = paint.gaussian_blur(2.5 * scale.max(0.4));
    paint.blend(&bled, 0.5);
    drop(bled);
    // Transparent paint: a little less saturated than the photo.
    paint.saturate(0.9);

    // Pigment density: pooling along the washes' edges, slow turbulence, fine dispersion
    // (less on faces).
    let mut density = paint.luma().gaussian_blur(1.5 * scale.max(0.5)).sobel();
    density.map(|edge| 1.0 + 1.4 * min_f32(edge, 0.4));
    let turbulence = noise::fractal_noise(w, h, 140.0 * scale, 3, seed ^ 0x51, false);
    density.zip_map(&turbulence, |d, t| d + 0.35 * (t - 0.5));
    drop(turbulence);
    let mut dispersion = noise::value_noise(w, h, 3.0 * scale.max(0.5), seed ^ 0xd15, false);
    dispersion.zip_map(&faces, |n, f| 0.25 * (1.0 - 0.6 * f) * (n - 0.5));
    density.zip_map(&dispersion, |d, n| d + n);
    drop(dispersion);
    drop(faces);

    // Margins: the painting fades into bare paper with a ragged edge.
    let fades = margins(w, h, seed);
    for (y, row) in paint.data.chunks_exact_mut(w as usize * 4).enumerate() {
        for (x, p) in row.chunks_exact_mut(4).enumerate() {
            let i = y * w as usize + x;
            pixel::paint(
                p,
                density.data[i],
                1.0 - 0.38 * sketch.data[i],
                fades.data[i],
            );
        }
    }
    apply_paper(&mut paint, texture, strength);
    paint
}

/// How much paint each pixel of a `width` x `height` painting keeps: 1 inside, fading to bare
/// paper (0) over a ragged margin of about 7% of the short side.
fn margins(width: u32, height: u32, seed: u64) -> Plane {
    let scale = (width.min(height) as f32 / 1024.0).max(0.125);
    let mut fade = noise::fractal_noise(width, height, 60.0 * scale, 3, seed ^ 0xed6e, false);
    let (fw, fh) = (width as f32, height as f32);
    let margin = 0.07 * fw.min(fh);
    for (y, row) in fade.data.chunks_exact_mut(width as usize).enumerate() {
        let fy = y as f32;
        let to_edge_y = min_f32(fy, fh - 1.0 - fy);
        for (x, v) in row.iter_mut().enumerate() {
            let fx = x as f32;
            let to_edge = min_f32(min_f32(fx, fw - 1.0 - fx), to_edge_y);
            *v = smoothstep(0.0, 1.0, to_edge / margin - 0.9 * (*v - 0.3));
        }
    }
    fade
}

/// The finish of a style-transfer rendition: lighter, as paint over white paper, fading into
/// bare paper at ragged margins, laid onto the paper.
pub fn finish_transfer(rendition: &Rgba, texture: &Plane, strength: f32, seed: u64) -> Rgba {
    let mut out = rendition.clone();
    let fades = margins(out.width, out.height, seed);
    for (p, &fade) in out.data.chunks_exact_mut(4).zip(&fades.data) {
        for c in &mut p[..3] {
            let v = 0.08 + 0.92 * (*c as f32 * (1.0 / 255.0));
            *c = to_byte(1.0 + (v - 1.0) * fade);
        }
    }
    apply_paper(&mut out, texture, strength);
    out
}

fn strength(values: &Values) -> f32 {
    values.float(PAPER).unwrap_or(0.6) as f32
}

/// The watercolor style: natively its functions can be called directly.
pub struct Watercolor;

impl Style for Watercolor {
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
        let texture = load_paper(PAPER_PATH)?;
        let out = match plan.method {
            Method::None => paint(
                &image,
                analysis,
                &texture,
                strength(values),
                values.seed().unwrap_or(0),
            ),
            Method::StyleTransfer(_) => finish_transfer(
                &image,
                &texture,
                strength(values),
                values.seed().unwrap_or(0),
            ),
            _ => {
                let mut image = image;
                apply_paper(&mut image, &texture, strength(values));
                image
            }
        };
        Ok(out.into_image())
    }
}

// Only components export the world; natively the crate is a plain library, so that several
// styles can link into one binary (benchmarks) without clashing export symbols.
#[cfg(target_arch = "wasm32")]
likeness_sdk::export_style!(Watercolor);

#[cfg(test)]
mod tests;
