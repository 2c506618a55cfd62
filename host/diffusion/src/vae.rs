//! The VAE: decoding the final latents (divided by the scaling factor) to pixels in -1..1, and
//! encoding the photo for img2img (the encoder's `latent_sample` is the latent distribution's
//! mean, multiplied by the scaling factor here).

use crate::error::DiffusionError;
use crate::graph::{Feed, Graph, HostTensor};
use crate::image::Image;

/// Decodes `[1, C, h, w]` latents to a `[1, 3, H, W]` image in -1..1.
pub fn decode(
    decoder: &Graph,
    latents: &HostTensor,
    scaling_factor: f32,
) -> Result<HostTensor, DiffusionError> {
    let scaled = HostTensor {
        shape: latents.shape.clone(),
        data: latents.data.iter().map(|v| v / scaling_factor).collect(),
    };
    let mut out = decoder.run_host(&[("latent_sample", Feed::Host(&scaled))], &["sample"])?;
    match out.pop() {
        Some(t) if t.shape.len() == 4 && t.shape[1] == 3 => Ok(t),
        _ => Err(DiffusionError::inference(
            "vae_decoder",
            "did not return a [1, 3, H, W] image",
        )),
    }
}

/// Encodes the photo, resized to `width` x `height`, to scaled latents `[1, C, h, w]`.
pub fn encode(
    encoder: &Graph,
    photo: &Image,
    width: u32,
    height: u32,
    scaling_factor: f32,
) -> Result<HostTensor, DiffusionError> {
    let pixels = HostTensor {
        shape: vec![1, 3, height as usize, width as usize],
        data: photo
            .to_planar(width, height)
            .into_iter()
            .map(|v| v / 127.5 - 1.0)
            .collect(),
    };
    let mut out = encoder.run_host(&[("sample", Feed::Host(&pixels))], &["latent_sample"])?;
    match out.pop() {
        Some(mut t) if t.shape.len() == 4 => {
            t.data.iter_mut().for_each(|v| *v *= scaling_factor);
            Ok(t)
        }
        _ => Err(DiffusionError::inference(
            "vae_encoder",
            "did not return [1, C, h, w] latents",
        )),
    }
}
