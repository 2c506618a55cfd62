//! The claymation style: a soft plasticine figure, like a stop-motion film frame.
//!
//! With diffusion it prefers PuLID (identity survives heavy stylisation) and falls back to
//! ControlNet. Without diffusion, when the host has its style-transfer networks, a blend of
//! soft learned painting styles redraws the photo in rounded strokes at a low working side,
//! faces a little lighter, and the post-process sculpts that rendition into clay. Without
//! those networks either (method `none`) the post-process renders the look from the photo
//! itself: strong edge-preserving smoothing, a few rounded colour levels, soft lighting
//! from the upper left over the bulging colour regions, a fine clay grain and a warm tint.

#![deny(missing_docs)]

use likeness_sdk::image::{Plane, Rgba, face_mask, max_f32};
use likeness_sdk::noise;
use likeness_sdk::options;
use likeness_sdk::{
    Analysis, Image, Method, MethodKind, ParamSpec, Plan, Style, StyleError, StyleSpec,
    TransferLook, Values,
};

/// The style's id, as in `style.toml`.
const ID: &str = "claymation";
/// One sentence for clients, as in `style.toml`.
const DESCRIPTION: &str =
    "Turns the portrait into a soft plasticine figure, like a frame from a stop-motion film.";
/// The prompt template.
const PROMPT: &str = "claymation figure of {caption}, plasticine, stop-motion animation, handmade clay texture, soft rounded shapes, soft studio lighting, miniature set";
/// What diffusion should avoid.
const NEGATIVE: &str = "photo, photorealistic, realistic skin, drawing, flat illustration, lowres, blurry, deformed face, extra fingers, watermark, text, signature";

/// Who the style is and how it plans.
const SPEC: StyleSpec = StyleSpec {
    id: ID,
    name: "Claymation",
    version: env!("CARGO_PKG_VERSION"),
    description: DESCRIPTION,
    prompt: PROMPT,
    negative_prompt: NEGATIVE,
    preferred: MethodKind::Pulid,
};
/// The look by style transfer: learned styles 12 (soft pastel strokes) and 0 (warm smooth
/// paint) at 512 pixels, so that the strokes are broad, the faces keeping half of the photo's
/// detail.
pub const TRANSFER: TransferLook = TransferLook {
    learned: &[(12, 0.7), (0, 0.3)],
    picture: None,
    strength: 0.8,
    working_side: Some(512),
    face_preservation: 0.5,
    threshold: 0.3,
};
/// The option that sets the strength of the clay's shine.
const SHINE: &str = "shine";

fn params() -> Vec<ParamSpec> {
    vec![
        options::caption(),
        options::seed(),
        options::number(
            SHINE,
            "How glossy the clay looks when drawn without diffusion, 0 (matte) to 1.",
            0.5,
            0.0,
            1.0,
        ),
    ]
}

/// The Hermite step from 0 at `e0` to 1 at `e1`.
fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// The plasticine look, drawn from a photo without a neural network.
/// Faces of `analysis` are smoothed less, so that eyes and mouth stay readable.
pub fn sculpt(photo: &Rgba, analysis: &Analysis, shine: f32, seed: u64) -> Rgba {
    let scale = (photo.width.min(photo.height) as f32 / 1024.0).max(0.125);
    let px = |v: f32| ((v * scale).round() as u32).max(1);

    // Strong smoothing: the photo's texture disappears, the shapes stay. Faces get a gentler
    // version, so that the person stays recognisable.
    let gentle = photo.guided_smooth(px(8.0), 0.004);
    let mut smooth = gentle.guided_smooth(px(16.0), 0.012);
    if !analysis.faces.is_empty() {
        let mut mask = face_mask(photo.width, photo.height, analysis);
        mask.map(|m| m * 0.85);
        blend_masked(&mut smooth, &gentle, &mask);
    }

    // A few rounded levels: wide soft steps, so each level is a soft, puffy blob.
    let luma = smooth.luma();
    let levels = 5.0;
    let mut tone = luma.clone();
    tone.map(|l| {
        let x = l * levels - 0.5;
        let n = x.floor();
        let s = smoothstep(0.3, 0.7, x - n);
        let q = ((n + 0.5 + s) / levels).clamp(0.0, 1.0);
        0.6 * q + 0.4 * l
    });
    let mut planes = smooth.to_planes();
    for p in &mut planes {
        for ((v, &l), &t) in p.data.iter_mut().zip(&luma.data).zip(&tone.data) {
            *v *= (t + 0.03) / (l + 0.03);
        }
    }

    // Lighting: the blurred tones are a height field; light comes from the upper left.
    let mut height = tone.gaussian_blur(6.0 * scale.max(0.35));
    let grain = noise::fractal_noise(
        photo.width,
        photo.height,
        6.0 * scale.max(0.35),
        2,
        seed,
        false,
    );
    height.zip_map(&grain, |h, g| h + (g - 0.5) * 0.004);
    // Creases: where the surface lies below its surroundings, the light reaches less.
    let mut occlusion = height.gaussian_blur(14.0 * scale.max(0.35));
    occlusion.zip_map(&height, |around, here| {
        1.0 - 2.5 * max_f32(around - here, 0.0)
    });
    let (w, h) = (photo.width as usize, photo.height as usize);
    let relief = 30.0 * scale.max(0.35);
    let (lx, ly, lz) = normalize3(-0.5, -0.65, 0.58);
    let (hx, hy, hz) = normalize3(lx, ly, lz + 1.0); // half vector, viewer straight on
    let mut light = Plane::new(photo.width, photo.height, 1.0);
    let mut spec = Plane::new(photo.width, photo.height, 0.0);
    for y in 0..h {
        let up = &height.data[y.saturating_sub(1) * w..][..w];
        let down = &height.data[(y + 1).min(h - 1) * w..][..w];
        let row = &height.data[y * w..][..w];
        for x in 0..w {
            let dx = (row[(x + 1).min(w - 1)] - row[x.saturating_sub(1)]) * 0.5 * relief;
            let dy = (down[x] - up[x]) * 0.5 * relief;
            let (nx, ny, nz) = normalize3(-dx, -dy, 1.0);
            let diffuse = max_f32(nx * lx + ny * ly + nz * lz, 0.0);
            let i = y * w + x;
            light.data[i] = (0.55 + 0.55 * diffuse) * occlusion.data[i];
            let s = max_f32(nx * hx + ny * hy + nz * hz, 0.0);
            let s2 = s * s;
            let s4 = s2 * s2;
            spec.data[i] = shine * 0.3 * s4 * s4;
        }
    }

    // Warm tint, light and shine.
    let warm = [1.05, 1.0, 0.92];
    for (c, p) in planes.iter_mut().enumerate() {
        for ((v, &l), &s) in p.data.iter_mut().zip(&light.data).zip(&spec.data) {
            *v = *v * warm[c] * l + s;
        }
    }
    let mut out = smooth.with_planes(&planes);
    out.saturate(1.15);
    out
}

/// Mixes `other` into `image` by the per-pixel amount of `mask`.
fn blend_masked(image: &mut Rgba, other: &Rgba, mask: &Plane) {
    for ((p, o), &m) in image
        .data
        .chunks_exact_mut(4)
        .zip(other.data.chunks_exact(4))
        .zip(&mask.data)
    {
        for c in 0..3 {
            p[c] = (p[c] as f32 + (o[c] as f32 - p[c] as f32) * m + 0.5) as u8;
        }
    }
}

fn normalize3(x: f32, y: f32, z: f32) -> (f32, f32, f32) {
    let inv = 1.0 / (x * x + y * y + z * z).sqrt();
    (x * inv, y * inv, z * inv)
}

/// The light touch after diffusion: a slightly warmer grade.
fn touch_up(mut image: Rgba) -> Rgba {
    let mut lut_r = [0u8; 256];
    for (i, v) in lut_r.iter_mut().enumerate() {
        *v = (i as f32 * 1.02 + 1.0).min(255.0) as u8;
    }
    for p in image.data.chunks_exact_mut(4) {
        p[0] = lut_r[p[0] as usize];
    }
    image
}

fn shine(values: &Values) -> f32 {
    values.float(SHINE).unwrap_or(0.5) as f32
}

/// The claymation style: natively its functions can be called directly.
pub struct Claymation;

impl Style for Claymation {
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
        let out = match plan.method {
            Method::None | Method::StyleTransfer(_) => {
                sculpt(&image, analysis, shine(values), values.seed().unwrap_or(0))
            }
            _ => touch_up(image),
        };
        Ok(out.into_image())
    }
}

// Only components export the world; natively the crate is a plain library, so that several
// styles can link into one binary (benchmarks) without clashing export symbols.
#[cfg(target_arch = "wasm32")]
likeness_sdk::export_style!(Claymation);

#[cfg(test)]
mod tests;
