//! Likeness diffusion: SDXL + ControlNet + InstantID + PuLID on ONNX Runtime, from a model pack
//! whose contract is docs/model-packs.md.
//!
//! ```no_run
//! use likeness_diffusion::{CancelToken, DiffusionEngine, EngineOptions, GenerationInput, Method, Runtime, RuntimeOptions};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let lib = likeness_diffusion::locate_library(std::path::Path::new(".")).ok_or("no ONNX Runtime")?;
//! // The process's one ONNX Runtime, shared with the vision layer (`likeness_vision::Vision`).
//! let runtime = Runtime::init(&lib, RuntimeOptions::default())?;
//! let engine = DiffusionEngine::load(std::path::Path::new("models/sdxl"), runtime, EngineOptions { slots: 1 })?;
//! let caps = engine.capabilities();
//! let input = GenerationInput::new(Method::Controlnet, "a watercolor portrait", 8, 5.0, 42);
//! let image = engine.generate(&input, &|k, n| println!("step {k}/{n}"), &CancelToken::new())?;
//! println!("{}x{}, {:?}", image.width, image.height, caps.methods);
//! # Ok(()) }
//! ```
//!
//! From the plan (`likeness_contract::Plan`) to [`GenerationInput`]: the method's kind ->
//! [`Method`] (`none` and `style-transfer` never reach the engine; the fallbacks are the host's
//! business), the method's settings -> `settings`, the contract's [`Diffusion`] as it is (the
//! host fills in the size and the seed when the plan leaves them to it), `reference-faces` -> the
//! host picks that face's embedding / aligned crop / PuLID features and its keypoint image.
//! Control images, the face embedding (or aligned face) and the optional img2img photo come
//! from the host's vision layer; the PuLID features from [`DiffusionEngine::pulid_features`] on
//! the face the vision layer aligns (`likeness_vision::align::align_face_ffhq`), with the pack's
//! EVA02-CLIP and face parsing.
//!
//! Modules, one per part: [`tokenizer`], [`text`] (both text encoders), [`scheduler`],
//! [`unet`] (one UNet step), [`control`], [`instantid`], [`pulid`], [`vae`], `pipeline` (the
//! loop), [`engine`] (public entry point, slots, capabilities), [`pack`] + [`manifest`] +
//! [`onnx`] (the pack contract), [`graph`] (sessions and I/O binding), [`noise`], [`image`].
//!
//! ONNX Runtime itself (the environment, the execution providers, session options) is owned by
//! [`likeness_vision::Runtime`], re-exported here as [`Runtime`]: the engine takes an
//! `Arc<Runtime>`, so the host runs vision and diffusion on one environment.

#![deny(missing_docs)]

pub mod control;
pub mod engine;
pub mod error;
pub mod graph;
pub mod image;
pub mod instantid;
pub mod manifest;
pub mod noise;
pub mod onnx;
pub mod pack;
mod pipeline;
pub mod pulid;
pub mod scheduler;
pub mod text;
pub mod tokenizer;
pub mod unet;
pub mod vae;

pub use control::ControlKind;
pub use engine::{
    CancelToken, Capabilities, ControlImage, ControlMap, Diffusion, DiffusionEngine, EngineOptions,
    Generated, GenerationInput, Img2Img, Method, Size,
};
pub use error::{DiffusionError, PackError};
pub use graph::{HostTensor, locate_library};
pub use image::{Image, RgbImage};
pub use likeness_vision::onnx::{Provider, ProviderChoice, Runtime, RuntimeOptions};
pub use pack::{Pack, Role};
pub use pipeline::MAX_STEPS;
pub use pulid::PulidFeatures;
pub use scheduler::{SamplerKind, Spacing};
