//! Bindings of the frozen `likeness:style@0.1.0` (`wit/v0.1/style.wit`, world `style`), for
//! packages built before 0.2.

wasmtime::component::bindgen!({
    path: "../wit/v0.1",
    world: "style",
    exports: { default: async },
});

pub use likeness::style::log::Level;
pub use likeness::style::types::{
    ControlKind, ControlMap, Face, IdentityMethod, Landmarks, ParamKind, ParamSpec, Point, Rect,
    Size,
};

impl IdentityMethod {
    /// The method's name as the WIT contract and the HTTP API spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityMethod::InstantId => "instant-id",
            IdentityMethod::Pulid => "pulid",
            IdentityMethod::Controlnet => "controlnet",
            IdentityMethod::None => "none",
        }
    }
}

impl ControlKind {
    /// The control map's name as the WIT contract and the HTTP API spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            ControlKind::Canny => "canny",
            ControlKind::Depth => "depth",
            ControlKind::FaceKeypoints => "face-keypoints",
            ControlKind::Pose => "pose",
        }
    }
}

impl ParamKind {
    /// The parameter kind's name as the WIT contract spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ParamKind::Text => "text",
            ParamKind::Integer => "integer",
            ParamKind::Number => "number",
            ParamKind::Boolean => "boolean",
            ParamKind::Choice => "choice",
        }
    }
}

impl Capabilities {
    /// What a host without any diffusion model pack can run: nothing but method `none`.
    pub fn none() -> Self {
        Capabilities {
            identity_methods: Vec::new(),
            control_maps: Vec::new(),
        }
    }

    /// Everything the contract knows of (used to dry-run a style's planning).
    pub fn all() -> Self {
        Capabilities {
            identity_methods: vec![
                IdentityMethod::InstantId,
                IdentityMethod::Pulid,
                IdentityMethod::Controlnet,
            ],
            control_maps: vec![
                ControlKind::Canny,
                ControlKind::Depth,
                ControlKind::FaceKeypoints,
                ControlKind::Pose,
            ],
        }
    }
}
