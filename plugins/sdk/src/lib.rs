//! Guest-side SDK for Likeness style plugins.
//!
//! A style is a Rust crate built as a `cdylib` (plus `rlib`, for native tests and benchmarks)
//! for `wasm32-wasip2`. It implements [`Guest`] and exports it with [`export_style!`]:
//!
//! ```ignore
//! use likeness_sdk::Guest;
//! pub struct MyStyle;
//! impl Guest for MyStyle { /* describe, plan, post_process */ }
//! // Export only from the component, so that several styles can link natively.
//! #[cfg(target_arch = "wasm32")]
//! likeness_sdk::export_style!(MyStyle);
//! ```
//!
//! Besides the bindings, the SDK holds the pieces every style needs:
//!
//! - [`options`]: the style's parameters and the validation of a request's options;
//! - [`select`]: the shared identity-method decision and the plan it leads to;
//! - [`size`]: the working size for diffusion;
//! - [`prompt`]: prompt templates and the cleaning of user text;
//! - [`image`]: RGBA and single-channel float buffers with fast, pure-Rust filters (the
//!   `likeness-imaging` crate, which the host's `canvas` operations run too);
//! - [`noise`]: deterministic random numbers and smooth value noise for textures;
//! - `preview` and `testing` (feature `preview`, native only): PNG loading and saving for style
//!   previews, fixtures for style tests.

#![warn(missing_docs)]

#[doc(hidden)]
#[allow(clippy::too_many_arguments)] // generated: the WIT `plan` record lowers to many arguments
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/v0.1",
        world: "style",
        pub_export_macro: true,
        export_macro_name: "export_style",
        default_bindings_module: "likeness_sdk::bindings",
    });
}

pub mod image;
pub use likeness_imaging::noise;
pub mod options;
#[cfg(feature = "preview")]
pub mod preview;
pub mod prompt;
pub mod select;
pub mod size;
pub mod style;
#[cfg(any(test, feature = "preview"))]
pub mod testing;

pub use bindings::likeness::style::log::{self, Level};
pub use bindings::likeness::style::types::{
    Analysis, Capabilities, ControlKind, ControlMap, Face, IdentityMethod, Image, Landmarks,
    Options, ParamKind, ParamSpec, Plan, Point, Rect, Size, StyleError, StyleInfo,
};
pub use bindings::{Guest, export_style};

/// Sends `message` to the host's log when running as a component; does nothing in a native
/// build (unit tests, benchmarks), where the host's `log` import does not exist.
pub fn log_message(level: Level, message: &str) {
    #[cfg(target_family = "wasm")]
    log::log(level, message);
    #[cfg(not(target_family = "wasm"))]
    let _ = (level, message);
}
