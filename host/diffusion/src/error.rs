//! Error types: [`PackError`] for everything found wrong while loading a pack, and
//! [`DiffusionError`] for a generation that cannot run or was stopped.

use std::path::PathBuf;

/// A model pack that cannot be used. Every variant's message is one sentence naming the file and
/// the problem, fit to show to the person who installed the pack.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// A file cannot be read (missing, unreadable).
    #[error("{file}: {reason}")]
    Io {
        /// The file.
        file: PathBuf,
        /// What happened.
        reason: String,
    },
    /// `pack.toml` is not valid, or lacks something the contract requires.
    #[error("{file}: {reason}")]
    Manifest {
        /// The manifest file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A required role has no graph in the pack.
    #[error("{file}: the pack has no [graphs.{role}] entry, which every pack needs")]
    MissingRole {
        /// The manifest file.
        file: PathBuf,
        /// The missing role.
        role: String,
    },
    /// A file's SHA-256 differs from the one in `pack.toml`.
    #[error(
        "{file}: SHA-256 is {actual} but pack.toml says {expected}; the file is corrupt or was replaced"
    )]
    Checksum {
        /// The file.
        file: PathBuf,
        /// The checksum pack.toml lists.
        expected: String,
        /// The checksum of the file on disk.
        actual: String,
    },
    /// A graph's inputs/outputs differ from the contract or from what `pack.toml` declares.
    #[error("{file}: {reason}")]
    Signature {
        /// The graph file.
        file: PathBuf,
        /// What differs.
        reason: String,
    },
    /// A tokenizer file is invalid.
    #[error("{file}: {reason}")]
    Tokenizer {
        /// The vocab or merges file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Why a generation failed.
#[derive(Debug, thiserror::Error)]
pub enum DiffusionError {
    /// The cancel token was set; the loop stopped between two steps.
    #[error("the generation was canceled after {completed} of {total} steps")]
    Canceled {
        /// Steps finished before the stop.
        completed: u32,
        /// Steps planned.
        total: u32,
    },
    /// The request cannot run on this pack or is malformed (bad size, missing control image, ...).
    #[error("invalid generation input: {0}")]
    Invalid(String),
    /// The pack lacks a graph this request needs.
    #[error("the model pack cannot run this: {0}")]
    Unsupported(String),
    /// A graph failed to load (lazily, at first use) or to run.
    #[error("{graph}: {reason}")]
    Inference {
        /// The graph's role.
        graph: String,
        /// ONNX Runtime's message or the engine's finding.
        reason: String,
    },
}

impl DiffusionError {
    pub(crate) fn inference(graph: &str, reason: impl std::fmt::Display) -> Self {
        DiffusionError::Inference {
            graph: graph.to_string(),
            reason: reason.to_string(),
        }
    }
}
