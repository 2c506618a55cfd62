//! The anime style: a cel-shaded anime portrait.
//!
//! With diffusion it prefers InstantID (the face keeps its likeness under a strong style) and
//! falls back to ControlNet canny + depth. Without diffusion, when the host has its
//! style-transfer networks, a blend of two learned styles (bold ink outlines and flat
//! colours) redraws the photo, faces a little lighter, and the post-process cel-shades that
//! rendition: flat tones and ink lines over the transfer. Without those networks either
//! (method `none`) the post-process renders the look from the photo itself: edge-preserving
//! smoothing, a few flat tones with boosted saturation, and dark ink lines along the edges.

#![deny(missing_docs)]

use likeness_sdk::image::Rgba;
use likeness_sdk::options;
use likeness_sdk::{
    Analysis, Image, Method, MethodKind, ParamSpec, Plan, Style, StyleError, StyleSpec,
    TransferLook, Values,
};

/// The style's id, as in `style.toml`.
const ID: &str = "anime";
/// One sentence for clients, as in `style.toml`.
const DESCRIPTION: &str =
    "Turns the portrait into a cel-shaded anime illustration with flat colours and ink lines.";
/// The prompt template.
const PROMPT: &str = "anime artwork illustrating {caption}, anime style, cel shading, clean line art, vibrant colours, key visual, highly detailed";
/// What diffusion should avoid.
const NEGATIVE: &str = "photo, photorealistic, realistic skin texture, 3d render, lowres, blurry, deformed face, extra fingers, watermark, text, signature";

/// Who the style is and how it plans.
const SPEC: StyleSpec = StyleSpec {
    id: ID,
    name: "Anime",
    version: env!("CARGO_PKG_VERSION"),
    description: DESCRIPTION,
    prompt: PROMPT,
    negative_prompt: NEGATIVE,
    preferred: MethodKind::InstantId,
};
/// The look by style transfer: learned styles 22 (ink outlines, flat washes) and 21 (flat
/// poster colours), at 768 pixels, the faces keeping half of the photo's detail.
pub const TRANSFER: TransferLook = TransferLook {
    learned: &[(22, 0.6), (21, 0.4)],
    picture: None,
    strength: 0.8,
    working_side: Some(768),
    face_preservation: 0.5,
    threshold: 0.3,
};
/// The option that sets the ink lines' darkness.
const LINE_STRENGTH: &str = "line-strength";
/// The ink lines' darkness when the client sets none.
pub const DEFAULT_LINE_STRENGTH: f32 = 0.7;

fn params() -> Vec<ParamSpec> {
    vec![
        options::caption(),
        options::seed(),
        options::number(
            LINE_STRENGTH,
            "How dark the ink lines are when the look is drawn without diffusion, 0 (none) to 1.",
            f64::from(DEFAULT_LINE_STRENGTH),
            0.0,
            1.0,
        ),
    ]
}

/// Cel shading: the whole look, drawn from a photo without a neural network.
pub fn cel_shade(photo: &Rgba, line_strength: f32) -> Rgba {
    // Filter sizes are tuned at 1024 pixels and scale with the image.
    let scale = (photo.width.min(photo.height) as f32 / 1024.0).max(0.125);
    let px = |v: f32| ((v * scale).round() as u32).max(1);

    // Flat regions: two rounds of edge-preserving smoothing.
    let smooth = photo
        .guided_smooth(px(10.0), 0.006)
        .guided_smooth(px(5.0), 0.004);

    // A few flat tones: the luma snaps to levels with narrow soft steps (no jaggies), a
    // little of the original shading stays (faces stay readable), the colour keeps its hue and
    // gains saturation.
    let luma = smooth.luma();
    let levels = 4.0;
    let mut tone = luma.clone();
    tone.map(|l| {
        let x = l * levels - 0.5;
        let n = x.floor();
        let s = smoothstep(0.4, 0.6, x - n);
        let q = ((n + 0.5 + s) / levels).clamp(0.0, 1.0);
        0.7 * q + 0.3 * l
    });
    let mut planes = smooth.to_planes();
    for p in &mut planes {
        for ((v, &l), &t) in p.data.iter_mut().zip(&luma.data).zip(&tone.data) {
            *v *= (t + 0.03) / (l + 0.03);
        }
    }
    let mut out = smooth.with_planes(&planes);
    out.saturate(1.3);

    // Ink: difference of Gaussians on the lightly smoothed luma, thresholded softly.
    let photo_luma = photo.luma();
    let detail = photo_luma.guided_filter(&photo_luma, px(4.0), 0.002);
    let sigma = (1.2 * scale).max(0.8);
    let fine = detail.gaussian_blur(sigma);
    let coarse = detail.gaussian_blur(sigma * 1.8);
    let mut ink = fine;
    ink.zip_map(&coarse, |a, b| {
        let d = b - a; // positive on the dark side of an edge
        1.0 - line_strength * smoothstep(0.006, 0.025, d)
    });
    out.scale(&ink);
    out
}

/// The Hermite step from 0 at `e0` to 1 at `e1`.
fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Cel shading over a style-transfer rendition: its ink outlines stay, so the style's own ink
/// is lighter.
pub fn finish_transfer(rendition: &Rgba, line_strength: f32) -> Rgba {
    cel_shade(rendition, 0.5 * line_strength)
}

/// The light touch after diffusion: a little more colour.
fn touch_up(mut image: Rgba) -> Rgba {
    image.saturate(1.06);
    image
}

fn line_strength(values: &Values) -> f32 {
    values
        .float(LINE_STRENGTH)
        .map_or(DEFAULT_LINE_STRENGTH, |v| v as f32)
}

/// The anime style: natively its functions can be called directly.
pub struct Anime;

impl Style for Anime {
    const SPEC: StyleSpec = SPEC;
    const TRANSFER: Option<TransferLook> = Some(TRANSFER);

    fn params() -> Vec<ParamSpec> {
        params()
    }

    fn render(
        image: Image,
        _analysis: &Analysis,
        plan: &Plan,
        values: &Values,
    ) -> Result<Image, StyleError> {
        let image = Rgba::from_image(image)?;
        let out = match plan.method {
            Method::None => cel_shade(&image, line_strength(values)),
            Method::StyleTransfer(_) => finish_transfer(&image, line_strength(values)),
            _ => touch_up(image),
        };
        Ok(out.into_image())
    }
}

// Only components export the world; natively the crate is a plain library, so that several
// styles can link into one binary (benchmarks) without clashing export symbols.
#[cfg(target_arch = "wasm32")]
likeness_sdk::export_style!(Anime);

#[cfg(test)]
mod tests;
