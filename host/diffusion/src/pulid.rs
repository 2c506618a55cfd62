//! PuLID: the identity features made as PuLID's `get_id_embedding` makes them (the aligned
//! 512x512 face, its background whitened from face parsing, the rest turned grey, through
//! EVA02-CLIP; `id_cond` = face embedding ‖ L2-normalised class token), and the ID encoder that
//! turns `id_cond` and the EVA hidden states into ID tokens, which the UNet's extra
//! cross-attention takes as `id_embedding`, scaled by `id_scale`. The unconditional branch
//! encodes zeros, as PuLID's pipeline does.

use crate::error::DiffusionError;
use crate::graph::{Feed, Graph, HostTensor};
use crate::image::Image;

/// The side of PuLID's aligned face crop (facexlib's `face_size`), which the `face_parsing` and
/// `pulid_eva_clip` graphs take; the EVA graph resizes it to its own input (336) itself.
pub const FACE_SIZE: u32 = 512;

/// The face-parsing labels (facexlib's BiSeNet, CelebAMask-HQ's 19 classes) PuLID whitens:
/// background, cloth, hat, both ears, earring, neck and necklace; skin, brows, eyes, glasses,
/// nose, mouth, lips and hair are kept.
pub const BACKGROUND_LABELS: [usize; 8] = [0, 16, 18, 7, 8, 9, 14, 15];

/// Which pixels of the aligned face (row-major, `FACE_SIZE`²) PuLID keeps: from the
/// `face_parsing` graph when the pack has one (the arg-max label outside
/// [`BACKGROUND_LABELS`]), else [`landmark_mask`].
pub fn face_mask(
    parsing: Option<&Graph>,
    face: &Image,
    landmarks: &[[f32; 2]; 5],
) -> Result<Vec<bool>, DiffusionError> {
    let Some(graph) = parsing else {
        return Ok(landmark_mask(FACE_SIZE, landmarks));
    };
    let s = FACE_SIZE as usize;
    let input = HostTensor {
        shape: vec![1, 3, s, s],
        data: face
            .to_planar(FACE_SIZE, FACE_SIZE)
            .iter()
            .map(|v| v / 255.0)
            .collect(),
    };
    let out = graph
        .run_host(&[("face", Feed::Host(&input))], &["parsing"])?
        .pop()
        .filter(|t| t.shape.len() == 4 && t.shape[0] == 1 && t.shape[2] == s && t.shape[3] == s)
        .ok_or_else(|| {
            DiffusionError::inference(
                "face_parsing",
                format!("must return parsing logits [1, classes, {s}, {s}]"),
            )
        })?;
    let classes = out.shape[1];
    let plane = s * s;
    Ok((0..plane)
        .map(|i| {
            let mut best = 0;
            for c in 1..classes {
                if out.data[c * plane + i] > out.data[best * plane + i] {
                    best = c;
                }
            }
            !BACKGROUND_LABELS.contains(&best)
        })
        .collect())
}

/// The substitute for face parsing: an ellipse on the face, from the five landmarks in the
/// aligned crop, aligned with the eye line. Its centre is 40% of the way from the eyes' midpoint
/// to the mouth's; it reaches 1.1 eye distances to each side and 1.55 eye-to-mouth distances up
/// and down: on facexlib's template, x 117..395 and y 89..495 of 512, about the skin and hair
/// that BiSeNet keeps (hat, ears, neck and clothes fall mostly outside).
pub fn landmark_mask(size: u32, landmarks: &[[f32; 2]; 5]) -> Vec<bool> {
    let mid = |a: [f32; 2], b: [f32; 2]| [(a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0];
    let (eyes, mouth) = (
        mid(landmarks[0], landmarks[1]),
        mid(landmarks[3], landmarks[4]),
    );
    let eye_dist = (landmarks[1][0] - landmarks[0][0]).hypot(landmarks[1][1] - landmarks[0][1]);
    let down = [mouth[0] - eyes[0], mouth[1] - eyes[1]];
    let mouth_dist = down[0].hypot(down[1]);
    let centre = [eyes[0] + 0.4 * down[0], eyes[1] + 0.4 * down[1]];
    let (rx, ry) = (1.1 * eye_dist, 1.55 * mouth_dist);
    let angle = (landmarks[1][1] - landmarks[0][1]).atan2(landmarks[1][0] - landmarks[0][0]);
    let (sin, cos) = angle.sin_cos();
    let n = size as usize;
    (0..n * n)
        .map(|i| {
            let (dx, dy) = (
                (i % n) as f32 + 0.5 - centre[0],
                (i / n) as f32 + 0.5 - centre[1],
            );
            let (u, v) = (dx * cos + dy * sin, -dx * sin + dy * cos);
            rx > 0.0 && ry > 0.0 && (u / rx).powi(2) + (v / ry).powi(2) <= 1.0
        })
        .collect()
}

/// PuLID's `face_features_image`: the face turned grey (`0.299 R + 0.587 G + 0.114 B` of the
/// 0..1 values) where `keep`, white elsewhere; `[1, 3, S, S]` (the grey repeated on each channel).
pub fn whitened(face: &Image, keep: &[bool]) -> HostTensor {
    let s = FACE_SIZE as usize;
    let planar = face.to_planar(FACE_SIZE, FACE_SIZE);
    let plane = s * s;
    let grey: Vec<f32> = (0..plane)
        .map(|i| {
            if keep.get(i).copied().unwrap_or(false) {
                let [r, g, b] = [0, 1, 2].map(|c| planar[c * plane + i] / 255.0);
                0.299 * r + 0.587 * g + 0.114 * b
            } else {
                1.0
            }
        })
        .collect();
    HostTensor {
        shape: vec![1, 3, s, s],
        data: grey.repeat(3),
    }
}

/// PuLID's features of `face` (the aligned `FACE_SIZE`² crop, landmarks in its pixels) with the
/// face `embedding` (antelopev2's raw embedding, as PuLID takes it): mask, whitening, the
/// `pulid_eva_clip` graph, then `id_cond` = `embedding` ‖ the normalised class token.
pub fn features(
    eva: &Graph,
    parsing: Option<&Graph>,
    face: &Image,
    landmarks: &[[f32; 2]; 5],
    embedding: &[f32],
) -> Result<PulidFeatures, DiffusionError> {
    if face.width != FACE_SIZE || face.height != FACE_SIZE {
        return Err(DiffusionError::Invalid(format!(
            "the PuLID face crop must be {FACE_SIZE}x{FACE_SIZE} (got {}x{})",
            face.width, face.height
        )));
    }
    let keep = face_mask(parsing, face, landmarks)?;
    let input = whitened(face, &keep);
    let mut out = eva.run_host(
        &[("face", Feed::Host(&input))],
        &["id_cond_vit", "id_vit_hidden"],
    )?;
    let (Some(hidden), Some(class)) = (out.pop(), out.pop()) else {
        return Err(DiffusionError::inference(
            "pulid_eva_clip",
            "returned fewer outputs than id_cond_vit and id_vit_hidden",
        ));
    };
    if class.shape.len() != 2
        || class.shape[0] != 1
        || hidden.shape.len() != 4
        || hidden.shape[0] != 1
    {
        return Err(DiffusionError::inference(
            "pulid_eva_clip",
            "must return id_cond_vit [1, width] and id_vit_hidden [1, layers, tokens, width]",
        ));
    }
    let mut id_cond = embedding.to_vec();
    id_cond.extend_from_slice(&class.data);
    Ok(PulidFeatures {
        id_cond,
        id_vit_hidden: hidden.data,
    })
}

/// The identity features PuLID needs, as PuLID computes them.
#[derive(Debug, Clone, PartialEq)]
pub struct PulidFeatures {
    /// `id_cond`: the 512-d face embedding followed by EVA02-CLIP's L2-normalised class token
    /// (768-d): `[pulid].id_cond_dim` values.
    pub id_cond: Vec<f32>,
    /// EVA02-CLIP hidden states of the aligned face, stacked `[layers, tokens, width]`
    /// (`[pulid].vit_hidden_shape`), row-major.
    pub id_vit_hidden: Vec<f32>,
}

/// ID tokens `[B, tokens, C]`; with guidance `[enc(0), enc(features)]`.
pub fn id_tokens(
    encoder: &Graph,
    features: &PulidFeatures,
    vit_shape: [usize; 3],
    guidance: bool,
) -> Result<HostTensor, DiffusionError> {
    let b = if guidance { 2 } else { 1 };
    let with_zeros = |v: &[f32]| {
        let mut out = Vec::with_capacity(v.len() * b);
        if guidance {
            out.extend(std::iter::repeat_n(0.0, v.len()));
        }
        out.extend_from_slice(v);
        out
    };
    let cond = HostTensor {
        shape: vec![b, features.id_cond.len()],
        data: with_zeros(&features.id_cond),
    };
    let vit = HostTensor {
        shape: vec![b, vit_shape[0], vit_shape[1], vit_shape[2]],
        data: with_zeros(&features.id_vit_hidden),
    };
    let mut out = encoder.run_host(
        &[
            ("id_cond", Feed::Host(&cond)),
            ("id_vit_hidden", Feed::Host(&vit)),
        ],
        &["id_embedding"],
    )?;
    match out.pop() {
        Some(t) if t.shape.len() == 3 && t.shape[0] == b => Ok(t),
        _ => Err(DiffusionError::inference(
            "pulid_id_encoder",
            "returned ID tokens of an unexpected shape",
        )),
    }
}
