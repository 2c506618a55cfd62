//! `pack.toml`, as written by `tools/export` and `tools/tiny-pack` (see docs/model-packs.md).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::scheduler::{BetaSchedule, Prediction, SamplerKind, SchedulerConfig, Spacing};

/// The tensor type a graph takes and returns for its float tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// 32-bit floats.
    Fp32,
    /// 16-bit floats (the engine converts at the graph's boundary).
    Fp16,
}

impl Dtype {
    /// `fp32` or `fp16`.
    pub fn name(&self) -> &'static str {
        match self {
            Dtype::Fp32 => "fp32",
            Dtype::Fp16 => "fp16",
        }
    }
}

/// The whole manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Contract version; this engine reads 1.
    pub format: u32,
    /// The pack's name.
    pub name: String,
    /// What it is.
    #[serde(default)]
    pub description: String,
    /// Model family; this engine runs `sdxl`.
    pub family: String,
    /// Default tensor type of the graphs (a graph may override it).
    pub dtype: Dtype,
    /// Where the weights came from and under which licences.
    #[serde(default)]
    pub licence: String,
    /// Encode an empty negative prompt as zeros (SDXL's `force_zeros_for_empty_prompt`).
    #[serde(default = "yes")]
    pub force_zeros_for_empty_prompt: bool,
    /// Latent space and sizes.
    pub latent: LatentConfig,
    /// ControlNet residual layout (needed when the UNet takes residuals).
    #[serde(default)]
    pub control: Option<ControlConfig>,
    /// InstantID settings (needed when the UNet takes `ip_scale`).
    #[serde(default)]
    pub instantid: Option<InstantIdConfig>,
    /// PuLID settings (needed when the UNet takes `id_embedding`).
    #[serde(default)]
    pub pulid: Option<PulidConfig>,
    /// The noise schedule and default sampler.
    pub scheduler: SchedulerEntry,
    /// Per-method sampler defaults, keyed by method name (`instant-id`, `pulid`, `controlnet`).
    #[serde(default)]
    pub methods: BTreeMap<String, MethodDefaults>,
    /// CLIP tokenizer of `text_encoder`.
    pub tokenizer: TokenizerEntry,
    /// CLIP tokenizer of `text_encoder_2`.
    pub tokenizer_2: TokenizerEntry,
    /// The graphs, keyed by role.
    pub graphs: BTreeMap<String, GraphEntry>,
}

fn yes() -> bool {
    true
}

/// `[latent]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatentConfig {
    /// Latent channels (4 for SDXL).
    pub channels: usize,
    /// Pixels per latent cell (8).
    pub vae_scale_factor: u32,
    /// VAE scaling factor (0.13025 for SDXL).
    pub scaling_factor: f32,
    /// Width and height must be multiples of this (64 for SDXL).
    pub size_multiple: u32,
    /// Largest accepted side in pixels.
    pub max_side: u32,
    /// Size used when a request gives 0 x 0.
    pub default_size: [u32; 2],
}

/// `[control]`: the shapes of the ControlNet residuals, so that the engine can feed zeros when no
/// control map applies at a step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// Channels of `down_block_res_0..N`.
    pub down_channels: Vec<usize>,
    /// Latent-to-residual downsampling factor of each down residual.
    pub down_strides: Vec<usize>,
    /// Channels of `mid_block_res`.
    pub mid_channels: usize,
    /// Its downsampling factor.
    pub mid_stride: usize,
}

/// `[instantid]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstantIdConfig {
    /// Image-projection tokens appended to the UNet context (16).
    pub tokens: usize,
    /// Face embedding width (512).
    pub embedding_dim: usize,
}

/// `[pulid]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PulidConfig {
    /// ID tokens (10 from PuLID SDXL v1's IDEncoder).
    pub tokens: usize,
    /// Width of `id_cond` (512 face embedding + 768 EVA class token = 1280).
    pub id_cond_dim: usize,
    /// Shape of `id_vit_hidden` after the batch dimension: [layers, tokens, width] (5, 577, 1024).
    pub vit_hidden_shape: [usize; 3],
}

/// `[scheduler]`: diffusers' scheduler config keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerEntry {
    /// Training timesteps (1000).
    pub num_train_timesteps: u32,
    /// First beta.
    pub beta_start: f64,
    /// Last beta.
    pub beta_end: f64,
    /// `scaled_linear` or `linear`.
    pub beta_schedule: BetaSchedule,
    /// `epsilon` or `v_prediction`.
    #[serde(default = "eps")]
    pub prediction_type: Prediction,
    /// `leading`, `trailing` or `linspace`.
    pub timestep_spacing: Spacing,
    /// Added to leading timesteps (1 for SDXL).
    #[serde(default)]
    pub steps_offset: u32,
    /// Default sampler.
    #[serde(default = "euler")]
    pub kind: SamplerKind,
}

fn eps() -> Prediction {
    Prediction::Epsilon
}

fn euler() -> SamplerKind {
    SamplerKind::Euler
}

impl SchedulerEntry {
    /// The schedule with this sampler and spacing.
    pub fn config(&self, kind: SamplerKind, spacing: Spacing) -> SchedulerConfig {
        SchedulerConfig {
            num_train_timesteps: self.num_train_timesteps,
            beta_start: self.beta_start,
            beta_end: self.beta_end,
            beta_schedule: self.beta_schedule,
            prediction: self.prediction_type,
            spacing,
            steps_offset: self.steps_offset,
            kind,
        }
    }
}

/// `[methods.NAME]`: sampler defaults of one method (e.g. PuLID on a Lightning UNet).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodDefaults {
    /// Sampler for this method.
    #[serde(default)]
    pub scheduler: Option<SamplerKind>,
    /// Spacing for this method.
    #[serde(default)]
    pub timestep_spacing: Option<Spacing>,
}

/// `[tokenizer]` / `[tokenizer_2]`: a CLIP BPE tokenizer in the Hugging Face file format.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerEntry {
    /// `vocab.json` path inside the pack.
    pub vocab: String,
    /// Its SHA-256.
    pub vocab_sha256: String,
    /// `merges.txt` path inside the pack.
    pub merges: String,
    /// Its SHA-256.
    pub merges_sha256: String,
    /// Sequence length (77).
    pub max_length: usize,
    /// Padding token: `<|endoftext|>` for CLIP-L, `!` for OpenCLIP bigG.
    pub pad_token: String,
}

/// `[graphs.ROLE]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphEntry {
    /// The `.onnx` file inside the pack.
    pub file: String,
    /// Its SHA-256.
    pub sha256: String,
    /// Overrides the pack's dtype for this graph.
    #[serde(default)]
    pub dtype: Option<Dtype>,
    /// The graph's input names, exactly.
    pub inputs: Vec<String>,
    /// The graph's output names, exactly.
    pub outputs: Vec<String>,
    /// Text encoders: the output whose hidden states condition the UNet (the penultimate layer).
    #[serde(default)]
    pub hidden_state: Option<String>,
    /// Text encoders: the pooled output (`text_encoder_2`'s `text_embeds` feeds the UNet).
    #[serde(default)]
    pub pooled: Option<String>,
    /// External weight files (`onnx` external data) with their SHA-256.
    #[serde(default)]
    pub external_data: Vec<DataFile>,
}

/// An external data file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataFile {
    /// Path inside the pack.
    pub file: String,
    /// Its SHA-256.
    pub sha256: String,
}
