//! The crate's error type for everything past ingestion: runtime, packs, models, inference, fetch.

use std::path::PathBuf;

use crate::ingest::IngestError;

/// Result alias for this crate.
pub type Result<T, E = VisionError> = std::result::Result<T, E>;

/// Every failure of the vision layer, with a stable machine-readable [`code`](VisionError::code).
#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    /// The image could not be ingested (see [`IngestError`]).
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// The ONNX Runtime library could not be loaded or initialised.
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    /// A model pack is missing, malformed, or one of its files fails verification.
    #[error("model pack {pack}: {reason}")]
    Pack {
        /// The pack's folder name.
        pack: String,
        /// A human sentence naming the file at fault.
        reason: String,
    },
    /// A model file could not be turned into a session, or does not have the expected inputs/outputs.
    #[error("model {file}: {reason}")]
    Model {
        /// The model's file.
        file: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Running a model failed.
    #[error("inference with {model} failed: {reason}")]
    Inference {
        /// The model's role or name.
        model: String,
        /// What went wrong.
        reason: String,
    },
    /// No installed pack provides a model with this role.
    #[error("no installed model pack provides a {0} model")]
    MissingModel(String),
    /// An image holds no face where one is needed (e.g. identity comparison).
    #[error("no face found in {0}")]
    NoFace(String),
    /// Downloading or unpacking models or test photos failed.
    #[error("fetch: {0}")]
    Fetch(String),
    /// A file-system error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl VisionError {
    /// A stable machine-readable code, e.g. `"no_face"` or `"model_pack_invalid"`.
    pub fn code(&self) -> &'static str {
        match self {
            VisionError::Ingest(e) => e.code(),
            VisionError::Runtime(_) => "runtime_unavailable",
            VisionError::Pack { .. } => "model_pack_invalid",
            VisionError::Model { .. } => "model_invalid",
            VisionError::Inference { .. } => "inference_failed",
            VisionError::MissingModel(_) => "model_missing",
            VisionError::NoFace(_) => "no_face",
            VisionError::Fetch(_) => "fetch_failed",
            VisionError::Io { .. } => "io_error",
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        VisionError::Io {
            context: context.into(),
            source,
        }
    }

    /// A failed or refused inference of `model`, and why.
    pub fn inference(model: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        VisionError::Inference {
            model: model.into(),
            reason: reason.to_string(),
        }
    }
}
