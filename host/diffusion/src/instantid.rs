//! InstantID: the face embedding (from the pack's recogniser, or given) through the image
//! projection (Resampler) into face tokens. The tokens are appended to the UNet's text context
//! (the UNet's IP attention takes the last `tokens` tokens, scaled by `ip_scale`), and alone are
//! the context of IdentityNet and of every other ControlNet of the run. The unconditional branch
//! projects a zero embedding, as InstantID's pipeline does.

use crate::error::DiffusionError;
use crate::graph::{Feed, Graph, HostTensor};
use crate::image::Image;

/// Side of the aligned face the recogniser takes (antelopev2 / ArcFace: 112).
pub const RECOGNIZER_SIZE: u32 = 112;

/// The 512-d (pack's `embedding_dim`) embedding of an aligned face, by the pack's recogniser:
/// RGB, `(x - 127.5) / 127.5`, NCHW, as insightface's ArcFace models take it.
pub fn embed_face(recognizer: &Graph, face: &Image) -> Result<Vec<f32>, DiffusionError> {
    let s = RECOGNIZER_SIZE;
    let data: Vec<f32> = face
        .to_planar(s, s)
        .into_iter()
        .map(|v| (v - 127.5) / 127.5)
        .collect();
    let t = HostTensor {
        shape: vec![1, 3, s as usize, s as usize],
        data,
    };
    let mut out = recognizer.run_host(&[("face", Feed::Host(&t))], &["embedding"])?;
    out.pop()
        .map(|t| t.data)
        .ok_or_else(|| DiffusionError::inference("face_recognizer", "no embedding"))
}

/// Face tokens `[B, tokens, C]` for the embedding; with guidance `[proj(0), proj(embedding)]`.
pub fn face_tokens(
    image_proj: &Graph,
    embedding: &[f32],
    guidance: bool,
) -> Result<HostTensor, DiffusionError> {
    let d = embedding.len();
    let mut data = Vec::with_capacity(2 * d);
    if guidance {
        data.extend(std::iter::repeat_n(0.0, d));
    }
    data.extend_from_slice(embedding);
    let b = if guidance { 2 } else { 1 };
    let t = HostTensor {
        shape: vec![b, 1, d],
        data,
    };
    let mut out = image_proj.run_host(
        &[("image_embeds", Feed::Host(&t))],
        &["image_prompt_embeds"],
    )?;
    match out.pop() {
        Some(tokens) if tokens.shape.len() == 3 && tokens.shape[0] == b => Ok(tokens),
        _ => Err(DiffusionError::inference(
            "instantid_image_proj",
            "returned face tokens of an unexpected shape",
        )),
    }
}
