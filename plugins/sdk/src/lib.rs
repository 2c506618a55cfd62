//! Guest-side SDK for Likeness style plugins, against contract 0.2 (`wit/style.wit`).
//!
//! A style is a Rust crate built as a `cdylib` (plus `rlib`, for native tests and benchmarks)
//! for `wasm32-wasip2`. It implements [`Style`] (who it is, its parameters, how it renders)
//! and exports it with [`export_style!`]; planning comes from the host's default policy unless
//! the style overrides [`Style::choose_plan`]:
//!
//! ```ignore
//! use likeness_sdk::{Style, StyleSpec, MethodKind};
//! pub struct MyStyle;
//! impl Style for MyStyle {
//!     const SPEC: StyleSpec = StyleSpec { id: "my-look", /* ... */ preferred: MethodKind::InstantId };
//!     fn render(image: Image, analysis: &Analysis, plan: &Plan, values: &Values)
//!         -> Result<Image, StyleError> { /* pixels */ }
//! }
//! // Export only from the component, so that several styles can link natively.
//! #[cfg(target_arch = "wasm32")]
//! likeness_sdk::export_style!(MyStyle);
//! ```
//!
//! Besides the bindings, the SDK holds the pieces every style needs:
//!
//! - [`options`]: the style's parameter specs, and typed access to the options the host
//!   checked ([`Values`]);
//! - [`style`]: [`Style`], [`StyleSpec`], the prompt and the host's default plan
//!   (`policy.default-plan`);
//! - [`prompt`]: prompt templates and the cleaning of user text;
//! - [`transfer`]: the neural CPU tier: a style's [`TransferLook`] put into the default plan
//!   when no diffusion method can run;
//! - [`image`]: RGBA and single-channel float buffers with fast, pure-Rust filters (the
//!   `likeness-imaging` crate, which the host's `canvas` operations run too); the host-owned
//!   [`Canvas`] for the host's native operations;
//! - [`noise`]: deterministic random numbers and smooth value noise for textures;
//! - `preview` and `testing` (feature `preview`, native only): PNG loading and saving for style
//!   previews, fixtures for style tests.

#![deny(missing_docs)]

#[doc(hidden)]
#[allow(missing_docs)] // generated from the WIT, which documents what it describes
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin",
        default_bindings_module: "likeness_sdk::bindings",
        additional_derives: [PartialEq],
        generate_all,
    });
}

pub mod image;
pub use likeness_imaging::noise;
pub mod options;
#[cfg(feature = "preview")]
pub mod preview;
pub mod prompt;
pub mod style;
#[cfg(any(test, feature = "preview"))]
pub mod testing;
pub mod transfer;

pub use bindings::likeness::style::canvas::{self, Image as Canvas};
pub use bindings::likeness::style::log::{self, Level};
pub use bindings::likeness::style::policy::Preferences;
pub use bindings::likeness::style::types::{
    Analysis, Capabilities, ControlKind, ControlMap, Diffusion, Face, IdentityGate, Landmarks,
    Method, MethodKind, Options, ParamKind, ParamSpec, Plan, Point, Rect, Size, SizeLimits,
    StyleError, StyleInfo, Transfer, TransferCapabilities, Value,
};
pub use options::Values;
pub use style::{Style, StyleSpec};
pub use transfer::TransferLook;

/// An 8-bit RGBA image held by the style itself, rows top to bottom, `width * height * 4`
/// bytes: what a Rust style does its own pixel work on (see [`image::Rgba`]). The host's image
/// is a [`Canvas`]; [`Image::from_canvas`] and [`Image::into_canvas`] copy between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The pixels.
    pub rgba: Vec<u8>,
}

impl Image {
    /// The pixels of the host's `canvas` (component only).
    pub fn from_canvas(canvas: &Canvas) -> Image {
        Image {
            width: canvas.width(),
            height: canvas.height(),
            rgba: canvas.read(None),
        }
    }

    /// A host image of these pixels (component only).
    pub fn into_canvas(self) -> Canvas {
        Canvas::new(self.width, self.height, &self.rgba)
    }
}

impl Method {
    /// Which kind of method this is.
    pub fn kind(&self) -> MethodKind {
        match self {
            Method::InstantId(_) => MethodKind::InstantId,
            Method::Pulid(_) => MethodKind::Pulid,
            Method::Controlnet(_) => MethodKind::Controlnet,
            Method::StyleTransfer(_) => MethodKind::StyleTransfer,
            Method::None => MethodKind::None,
        }
    }
}

/// Sends `message` to the host's log when running as a component; does nothing in a native
/// build (unit tests, benchmarks), where the host's `log` import does not exist.
pub fn log_message(level: Level, message: &str) {
    #[cfg(target_family = "wasm")]
    log::log(level, message);
    #[cfg(not(target_family = "wasm"))]
    let _ = (level, message);
}
