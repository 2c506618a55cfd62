//! One UNet call: the scaled latents and timestep of the step, the constant conditioning
//! (prepared once per generation), the summed ControlNet residuals or zeros, and the identity
//! inputs (`ip_scale`, `id_embedding`, `id_scale`) where the UNet takes them.

use ort::value::DynValue;

use crate::control::Residuals;
use crate::error::DiffusionError;
use crate::graph::{Feed, Graph, HostTensor, Place};

/// UNet inputs that are the same at every step.
pub struct UnetConstants {
    /// `encoder_hidden_states` (text context, plus face tokens when the UNet takes `ip_scale`).
    pub context: DynValue,
    /// `text_embeds`.
    pub text_embeds: DynValue,
    /// `time_ids`.
    pub time_ids: DynValue,
    /// `ip_scale`, `id_embedding`, `id_scale`, where the UNet takes them.
    pub extras: Vec<(String, DynValue)>,
    /// Residual input names in order (`down_block_res_0..N`, `mid_block_res`); empty when the
    /// UNet takes none.
    pub residual_names: Vec<String>,
    /// Zero residuals for steps where no control map applies.
    pub zero_residuals: Vec<DynValue>,
}

/// Runs the UNet once and returns `out_sample` on the host.
pub fn predict(
    unet: &Graph,
    c: &UnetConstants,
    sample: &HostTensor,
    timestep: &HostTensor,
    residuals: &Residuals,
) -> Result<HostTensor, DiffusionError> {
    let mut feeds: Vec<(&str, Feed<'_>)> = vec![
        ("sample", Feed::Host(sample)),
        ("timestep", Feed::Host(timestep)),
        ("encoder_hidden_states", Feed::Value(&c.context)),
        ("text_embeds", Feed::Value(&c.text_embeds)),
        ("time_ids", Feed::Value(&c.time_ids)),
    ];
    for (name, v) in &c.extras {
        feeds.push((name.as_str(), Feed::Value(v)));
    }
    match residuals {
        Residuals::None => {
            for (name, v) in c.residual_names.iter().zip(&c.zero_residuals) {
                feeds.push((name.as_str(), Feed::Value(v)));
            }
        }
        Residuals::Device(values) => {
            for (name, v) in c.residual_names.iter().zip(values) {
                feeds.push((name.as_str(), Feed::Value(v)));
            }
        }
        Residuals::Host(tensors) => {
            for (name, t) in c.residual_names.iter().zip(tensors) {
                feeds.push((name.as_str(), Feed::Host(t)));
            }
        }
    }
    let out = unet.run(&feeds, &[("out_sample", Place::Host)])?;
    let v = out
        .first()
        .ok_or_else(|| DiffusionError::inference("unet", "produced no out_sample"))?;
    let t = unet.to_host(v)?;
    if t.shape != sample.shape {
        return Err(DiffusionError::inference(
            "unet",
            format!(
                "out_sample has shape {:?} but the sample was {:?}",
                t.shape, sample.shape
            ),
        ));
    }
    Ok(t)
}
