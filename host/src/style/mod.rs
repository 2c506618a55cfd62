//! Style packages: their manifest, loading and validation, the registry that serves them, hot
//! reload, and building styles from source (Rust, Python, JavaScript).

pub mod build;
pub mod canary;
pub mod conformance;
pub mod deploy;
pub mod guest;
pub mod manifest;
pub mod package;
pub mod preview;
pub mod registry;
pub mod toolchain;
pub mod watch;

pub use manifest::Manifest;
pub use package::LoadedStyle;
pub use registry::{Registry, RegistrySettings, Reload, StyleState, StyleStatus};
