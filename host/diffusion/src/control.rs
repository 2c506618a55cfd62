//! ControlNets: each control map of a plan runs its ControlNet (canny, depth, pose, or
//! IdentityNet for face keypoints) on the condition image, with the map's weight as
//! `conditioning_scale` while the step lies inside its start..end share (diffusers'
//! `controlnet_keep`); the residuals of several maps are summed and fed to the UNet.

use ort::value::DynValue;

use crate::error::DiffusionError;
use crate::graph::{Feed, Graph, HostTensor, Place};

pub use likeness_contract::ControlKind;

/// One ControlNet ready to run: its graph and the inputs that stay the same at every step.
pub struct ControlUnit<'a> {
    /// The ControlNet.
    pub graph: &'a Graph,
    /// Its map's kind.
    pub kind: ControlKind,
    /// Conditioning scale.
    pub weight: f32,
    /// Share of steps where it starts, 0..1.
    pub start: f32,
    /// Share of steps where it ends, 0..1.
    pub end: f32,
    /// `controlnet_cond` `[B, 3, H, W]`, 0..1.
    pub cond: DynValue,
    /// `encoder_hidden_states`: the text context, or the face tokens under InstantID.
    pub context: DynValue,
    /// `text_embeds`.
    pub text_embeds: DynValue,
    /// `time_ids`.
    pub time_ids: DynValue,
}

impl ControlUnit<'_> {
    /// The conditioning scale at step `k` of `n`: the weight inside start..end, else 0.
    pub fn scale_at(&self, k: usize, n: usize) -> f32 {
        let (k, n) = (k as f64, n as f64);
        let outside = k / n < f64::from(self.start) || (k + 1.0) / n > f64::from(self.end);
        if outside { 0.0 } else { self.weight }
    }
}

/// Summed residuals for one UNet call.
pub enum Residuals {
    /// No map applies at this step: the UNet gets zeros.
    None,
    /// One map applies: its outputs, left where the provider put them.
    Device(Vec<DynValue>),
    /// Several maps apply: their outputs summed on the host.
    Host(Vec<HostTensor>),
}

/// Runs the maps that apply at step `k` of `n` and sums their residuals (names in UNet order).
pub fn residuals(
    units: &[ControlUnit<'_>],
    k: usize,
    n: usize,
    sample: &HostTensor,
    timestep: &HostTensor,
    names: &[String],
) -> Result<Residuals, DiffusionError> {
    let active: Vec<(&ControlUnit<'_>, f32)> = units
        .iter()
        .map(|u| (u, u.scale_at(k, n)))
        .filter(|(_, s)| *s != 0.0)
        .collect();
    let place = if active.len() == 1 {
        Place::Device
    } else {
        Place::Host
    };
    let outputs: Vec<(&str, Place)> = names.iter().map(|n| (n.as_str(), place)).collect();
    let mut sum: Option<Vec<HostTensor>> = None;
    for (unit, scale) in &active {
        let scale = HostTensor {
            shape: vec![1],
            data: vec![*scale],
        };
        let feeds = [
            ("sample", Feed::Host(sample)),
            ("timestep", Feed::Host(timestep)),
            ("encoder_hidden_states", Feed::Value(&unit.context)),
            ("controlnet_cond", Feed::Value(&unit.cond)),
            ("conditioning_scale", Feed::Host(&scale)),
            ("text_embeds", Feed::Value(&unit.text_embeds)),
            ("time_ids", Feed::Value(&unit.time_ids)),
        ];
        let out = unit.graph.run(&feeds, &outputs)?;
        if active.len() == 1 {
            return Ok(Residuals::Device(out));
        }
        let host: Vec<HostTensor> = out
            .iter()
            .map(|v| unit.graph.to_host(v))
            .collect::<Result<_, _>>()?;
        sum = Some(match sum {
            None => host,
            Some(mut acc) => {
                for (a, h) in acc.iter_mut().zip(&host) {
                    if a.data.len() != h.data.len() {
                        return Err(DiffusionError::inference(
                            unit.graph.info().role.key(),
                            "returned residuals of another shape than the other ControlNets",
                        ));
                    }
                    a.data.iter_mut().zip(&h.data).for_each(|(x, y)| *x += y);
                }
                acc
            }
        });
    }
    Ok(sum.map_or(Residuals::None, Residuals::Host))
}
