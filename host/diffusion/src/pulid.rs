//! PuLID: the ID encoder turns `id_cond` (face embedding + EVA-CLIP class token) and the EVA
//! hidden states into ID tokens, which the UNet's extra cross-attention takes as `id_embedding`,
//! scaled by `id_scale`. The unconditional branch encodes zeros, as PuLID's pipeline does.

use crate::error::DiffusionError;
use crate::graph::{Feed, Graph, HostTensor};

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
