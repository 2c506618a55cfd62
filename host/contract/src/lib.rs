//! The style contract's concepts as plain Rust types, one type per concept, shared by the host,
//! its vision and diffusion crates. The Wasm bindings of each contract version (`wit/style.wit`
//! 0.2, `wit/v0.1/style.wit`) convert to and from these at the WIT edge only; the HTTP API has
//! its own views.
//!
//! - [`types`]: analysis, capabilities, plans, options, style descriptions;
//! - [`options`]: checking a request's string options against a style's parameter specs;
//! - [`policy`]: the host's default identity-method decision (`policy.default-plan`).

#![deny(missing_docs)]

pub mod options;
pub mod policy;
pub mod types;

pub use types::*;
