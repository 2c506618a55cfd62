//! Samplers: Euler, Euler-ancestral and DPM++ 2M, following diffusers' `EulerDiscreteScheduler`,
//! `EulerAncestralDiscreteScheduler` and `DPMSolverMultistepScheduler` (dpmsolver++, order 2,
//! midpoint, `lower_order_final`, `final_sigmas_type = "zero"`), with leading, trailing (Lightning,
//! Turbo) or linspace timestep spacing. Coefficients are computed in f64; latents stay f32.

use serde::Deserialize;

/// How betas grow over the training timesteps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    /// `linspace(sqrt(start), sqrt(end))²` (SDXL).
    ScaledLinear,
    /// `linspace(start, end)`.
    Linear,
}

/// What the UNet predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prediction {
    /// The noise.
    Epsilon,
    /// The velocity `alpha * eps - sigma * x0`.
    VPrediction,
}

/// How inference timesteps are picked from the training ones (diffusers' `timestep_spacing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Spacing {
    /// `0, r, 2r, ...` reversed, plus `steps_offset` (SDXL base).
    Leading,
    /// From the last training timestep down (SDXL-Lightning, Turbo).
    Trailing,
    /// Evenly spaced over the whole range.
    Linspace,
}

/// The sampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SamplerKind {
    /// Euler (deterministic).
    #[serde(rename = "euler")]
    Euler,
    /// Euler ancestral (fresh noise at every step).
    #[serde(rename = "euler-ancestral")]
    EulerAncestral,
    /// DPM++ 2M (multistep, deterministic).
    #[serde(rename = "dpmpp-2m")]
    DpmPp2m,
}

impl SamplerKind {
    /// The name used in pack.toml.
    pub fn name(&self) -> &'static str {
        match self {
            SamplerKind::Euler => "euler",
            SamplerKind::EulerAncestral => "euler-ancestral",
            SamplerKind::DpmPp2m => "dpmpp-2m",
        }
    }
}

/// Everything that defines a schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SchedulerConfig {
    /// Training timesteps (1000).
    pub num_train_timesteps: u32,
    /// First beta.
    pub beta_start: f64,
    /// Last beta.
    pub beta_end: f64,
    /// Beta curve.
    pub beta_schedule: BetaSchedule,
    /// What the model predicts.
    pub prediction: Prediction,
    /// Timestep spacing.
    pub spacing: Spacing,
    /// Offset added to leading timesteps.
    pub steps_offset: u32,
    /// The sampler.
    pub kind: SamplerKind,
}

/// The timesteps fed to the UNet and the sigmas (one more, ending in 0) of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// The configuration it came from.
    pub config: SchedulerConfig,
    /// Timesteps, descending.
    pub timesteps: Vec<f64>,
    /// Sigmas, `timesteps.len() + 1` values, the last 0.
    pub sigmas: Vec<f64>,
}

fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    // numpy.linspace: i * step + start, the last value set to stop exactly.
    if num == 0 {
        return Vec::new();
    }
    if num == 1 {
        return vec![start];
    }
    let step = (stop - start) / (num - 1) as f64;
    let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    v[num - 1] = stop;
    v
}

fn arange_desc(start: f64, stop: f64, step: f64) -> Vec<f64> {
    // numpy.arange(start, stop, step) with step < 0: ceil((stop - start) / step) values.
    let n = ((stop - start) / step).ceil().max(0.0) as usize;
    (0..n).map(|i| start + i as f64 * step).collect()
}

fn interp(x: f64, fp: &[f64]) -> f64 {
    // numpy.interp(x, arange(len(fp)), fp).
    let last = fp.len() - 1;
    if x <= 0.0 {
        return fp[0];
    }
    if x >= last as f64 {
        return fp[last];
    }
    let j = x.floor() as usize;
    let slope = fp[j + 1] - fp[j];
    slope * (x - j as f64) + fp[j]
}

impl SchedulerConfig {
    /// `alphas_cumprod` over the training timesteps.
    pub fn alphas_cumprod(&self) -> Vec<f64> {
        let n = self.num_train_timesteps as usize;
        let betas: Vec<f64> = match self.beta_schedule {
            BetaSchedule::ScaledLinear => linspace(self.beta_start.sqrt(), self.beta_end.sqrt(), n)
                .into_iter()
                .map(|b| b * b)
                .collect(),
            BetaSchedule::Linear => linspace(self.beta_start, self.beta_end, n),
        };
        let mut acc = 1.0;
        betas
            .into_iter()
            .map(|b| {
                acc *= 1.0 - b;
                acc
            })
            .collect()
    }
}

impl Schedule {
    /// The schedule for `steps` inference steps. Fails on 0 steps or more steps than training
    /// timesteps.
    pub fn new(config: SchedulerConfig, steps: usize) -> Result<Schedule, String> {
        let n = config.num_train_timesteps as usize;
        if steps == 0 {
            return Err("steps must be at least 1".into());
        }
        if steps > n {
            return Err(format!("steps must be at most {n}"));
        }
        let nf = n as f64;
        let offset = config.steps_offset as f64;
        let timesteps: Vec<f64> = match (config.kind, config.spacing) {
            (SamplerKind::DpmPp2m, Spacing::Linspace) => {
                let mut t: Vec<f64> = linspace(0.0, nf - 1.0, steps + 1)
                    .into_iter()
                    .map(f64::round_ties_even)
                    .collect();
                t.reverse();
                t.pop();
                t
            }
            (SamplerKind::DpmPp2m, Spacing::Leading) => {
                let ratio = (n / (steps + 1)) as f64;
                let mut t: Vec<f64> = (0..=steps)
                    .map(|i| (i as f64 * ratio).round_ties_even())
                    .collect();
                t.reverse();
                t.pop();
                t.into_iter().map(|v| v + offset).collect()
            }
            (_, Spacing::Linspace) => {
                // float32 timesteps in diffusers' Euler schedulers.
                let mut t: Vec<f64> = linspace(0.0, nf - 1.0, steps)
                    .into_iter()
                    .map(|v| v as f32 as f64)
                    .collect();
                t.reverse();
                t
            }
            (_, Spacing::Leading) => {
                let ratio = (n / steps) as f64;
                let mut t: Vec<f64> = (0..steps)
                    .map(|i| (i as f64 * ratio).round_ties_even())
                    .collect();
                t.reverse();
                t.into_iter().map(|v| v + offset).collect()
            }
            (_, Spacing::Trailing) => {
                let ratio = nf / steps as f64;
                arange_desc(nf, 0.0, -ratio)
                    .into_iter()
                    .map(|v| v.round_ties_even() - 1.0)
                    .collect()
            }
        };
        let ac = config.alphas_cumprod();
        let all: Vec<f64> = ac.iter().map(|a| ((1.0 - a) / a).sqrt()).collect();
        let mut sigmas: Vec<f64> = timesteps.iter().map(|t| interp(*t, &all)).collect();
        sigmas.push(0.0);
        Ok(Schedule {
            config,
            timesteps,
            sigmas,
        })
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.timesteps.len()
    }

    /// Whether there are no steps.
    pub fn is_empty(&self) -> bool {
        self.timesteps.is_empty()
    }

    /// The standard deviation of the initial noise.
    pub fn init_noise_sigma(&self) -> f64 {
        if self.config.kind == SamplerKind::DpmPp2m {
            return 1.0;
        }
        let max = self.sigmas.iter().copied().fold(0.0, f64::max);
        match self.config.spacing {
            Spacing::Linspace | Spacing::Trailing => max,
            Spacing::Leading => (max * max + 1.0).sqrt(),
        }
    }

    /// The factor the model input is multiplied with at step `i` (`scale_model_input`).
    pub fn input_scale(&self, i: usize) -> f64 {
        match self.config.kind {
            SamplerKind::DpmPp2m => 1.0,
            _ => 1.0 / (self.sigmas[i] * self.sigmas[i] + 1.0).sqrt(),
        }
    }

    /// Noises clean latents `x0` to the level of step `i` (img2img's `add_noise`).
    pub fn add_noise(&self, x0: &[f32], noise: &[f32], i: usize) -> Vec<f32> {
        let s = self.sigmas[i];
        let (a, b) = match self.config.kind {
            SamplerKind::DpmPp2m => {
                let alpha = 1.0 / (s * s + 1.0).sqrt();
                (alpha, s * alpha)
            }
            _ => (1.0, s),
        };
        x0.iter()
            .zip(noise)
            .map(|(x, n)| (a * f64::from(*x) + b * f64::from(*n)) as f32)
            .collect()
    }

    /// A fresh sampler state for this schedule.
    pub fn sampler(&self) -> Sampler<'_> {
        Sampler {
            schedule: self,
            prev_x0: None,
            lower_order_nums: 0,
        }
    }
}

/// The state a sampler carries between steps (DPM++ 2M's previous prediction).
#[derive(Debug)]
pub struct Sampler<'a> {
    schedule: &'a Schedule,
    prev_x0: Option<Vec<f64>>,
    lower_order_nums: usize,
}

fn alpha_sigma(s: f64) -> (f64, f64) {
    let a = 1.0 / (s * s + 1.0).sqrt();
    (a, s * a)
}

impl Sampler<'_> {
    /// Whether step `step` needs fresh noise (Euler-ancestral).
    pub fn needs_noise(&self) -> bool {
        self.schedule.config.kind == SamplerKind::EulerAncestral
    }

    /// One step from `x` at schedule index `i` with model output `out`; `noise` is used by
    /// Euler-ancestral only (a missing one counts as zeros).
    pub fn step(&mut self, out: &[f32], i: usize, x: &[f32], noise: Option<&[f32]>) -> Vec<f32> {
        let sch = self.schedule;
        let (s, s_next) = (sch.sigmas[i], sch.sigmas[i + 1]);
        let pred = sch.config.prediction;
        match sch.config.kind {
            SamplerKind::Euler | SamplerKind::EulerAncestral => {
                let (dt, up) = if sch.config.kind == SamplerKind::Euler {
                    (s_next - s, 0.0)
                } else {
                    let up = (s_next * s_next * (s * s - s_next * s_next) / (s * s)).sqrt();
                    let down = (s_next * s_next - up * up).max(0.0).sqrt();
                    (down - s, up)
                };
                x.iter()
                    .zip(out)
                    .enumerate()
                    .map(|(k, (xv, ov))| {
                        let (xv, ov) = (f64::from(*xv), f64::from(*ov));
                        let x0 = match pred {
                            Prediction::Epsilon => xv - s * ov,
                            Prediction::VPrediction => {
                                ov * (-s / (s * s + 1.0).sqrt()) + xv / (s * s + 1.0)
                            }
                        };
                        let n = noise.and_then(|n| n.get(k)).map_or(0.0, |v| f64::from(*v));
                        (xv + (xv - x0) / s * dt + n * up) as f32
                    })
                    .collect()
            }
            SamplerKind::DpmPp2m => {
                let (a_s, sg_s) = alpha_sigma(s);
                let x0: Vec<f64> = x
                    .iter()
                    .zip(out)
                    .map(|(xv, ov)| {
                        let (xv, ov) = (f64::from(*xv), f64::from(*ov));
                        match pred {
                            Prediction::Epsilon => (xv - sg_s * ov) / a_s,
                            Prediction::VPrediction => a_s * xv - sg_s * ov,
                        }
                    })
                    .collect();
                let (a_t, sg_t) = alpha_sigma(s_next);
                let lam_t = a_t.ln() - sg_t.ln();
                let lam_s = a_s.ln() - sg_s.ln();
                let h = lam_t - lam_s;
                let e = (-h).exp() - 1.0;
                let last = i + 1 == sch.timesteps.len();
                let result = match (&self.prev_x0, self.lower_order_nums < 1 || last) {
                    (Some(prev), false) => {
                        let (a_p, sg_p) = alpha_sigma(sch.sigmas[i - 1]);
                        let lam_p = a_p.ln() - sg_p.ln();
                        let r0 = (lam_s - lam_p) / h;
                        x.iter()
                            .zip(&x0)
                            .zip(prev)
                            .map(|((xv, d0), p)| {
                                let d1 = (1.0 / r0) * (d0 - p);
                                ((sg_t / sg_s) * f64::from(*xv) - a_t * e * d0 - 0.5 * a_t * e * d1)
                                    as f32
                            })
                            .collect()
                    }
                    _ => x
                        .iter()
                        .zip(&x0)
                        .map(|(xv, d0)| ((sg_t / sg_s) * f64::from(*xv) - a_t * e * d0) as f32)
                        .collect(),
                };
                self.prev_x0 = Some(x0);
                self.lower_order_nums = (self.lower_order_nums + 1).min(2);
                result
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdxl(kind: SamplerKind, spacing: Spacing) -> SchedulerConfig {
        SchedulerConfig {
            num_train_timesteps: 1000,
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: BetaSchedule::ScaledLinear,
            prediction: Prediction::Epsilon,
            spacing,
            steps_offset: 1,
            kind,
        }
    }

    #[test]
    fn lightning_trailing_timesteps() {
        let s = Schedule::new(sdxl(SamplerKind::Euler, Spacing::Trailing), 4).unwrap();
        assert_eq!(s.timesteps, vec![999.0, 749.0, 499.0, 249.0]);
        assert_eq!(s.sigmas.len(), 5);
        assert_eq!(*s.sigmas.last().unwrap(), 0.0);
    }

    #[test]
    fn zero_steps_is_an_error() {
        assert!(Schedule::new(sdxl(SamplerKind::Euler, Spacing::Leading), 0).is_err());
        assert!(Schedule::new(sdxl(SamplerKind::Euler, Spacing::Leading), 1001).is_err());
    }

    #[test]
    fn euler_last_step_lands_on_the_prediction() {
        let s = Schedule::new(sdxl(SamplerKind::Euler, Spacing::Leading), 2).unwrap();
        let mut sampler = s.sampler();
        let x = [1.0f32, -2.0];
        let eps = [0.5f32, 0.25];
        let out = sampler.step(&eps, 1, &x, None);
        let sig = s.sigmas[1];
        for k in 0..2 {
            let x0 = f64::from(x[k]) - sig * f64::from(eps[k]);
            assert!((f64::from(out[k]) - x0).abs() < 1e-5);
        }
    }
}
