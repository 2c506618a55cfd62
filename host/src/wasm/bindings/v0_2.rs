//! Bindings of `likeness:style@0.2.0` (`wit/style.wit`, world `plugin`): the exports are
//! called asynchronously (so epoch deadlines yield to tokio); the imports (`log`, `canvas`,
//! `policy`) may trap, which is how a host call refuses a stale handle or a budget overrun.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    imports: { default: trappable },
    exports: { default: async },
    with: {
        "likeness:style/canvas.image": crate::wasm::canvas::Image,
    },
});

pub use likeness::style::log::Level;

use likeness::style::policy as p;
use likeness::style::types as w;
use likeness_contract as c;
use likeness_contract::policy as cp;

use super::convert::{Edge, enums, records};

records! {
    w::Point = c::Point { x, y }
    w::Rect = c::Rect { x1, y1, x2, y2 }
    w::Landmarks = c::Landmarks { left_eye, right_eye, nose, mouth_left, mouth_right }
    w::Face = c::Face { bbox, score, landmarks, share, dominant }
    w::Analysis = c::Analysis { width, height, faces }
    w::Size = c::Size { width, height }
    w::SizeLimits = c::SizeLimits { multiple, min_side, max_side, default_side }
    w::TransferCapabilities = c::TransferCapabilities { learned_styles, style_pictures, max_side }
    w::Capabilities = c::Capabilities { methods, control_maps, diffusion_sizes, transfer }
    w::ControlMap = c::ControlMap { kind, weight, start, end }
    w::Diffusion = c::Diffusion {
        prompt, negative_prompt, control_maps, identity_weight, steps, guidance, size, seed
    }
    w::Transfer = c::Transfer {
        learned_styles, style_picture, strength, working_side, face_preservation
    }
    w::IdentityGate = c::IdentityGate { threshold, attempts }
    w::Plan = c::Plan { method, fallbacks, reference_faces, identity_gate, reason }
    w::ParamSpec = c::ParamSpec { name, description, kind, default_value }
    w::StyleInfo = c::StyleInfo { id, name, version, description, params }
    p::Preferences = cp::Preferences { look, preferred, prompt, negative_prompt, seed }
}

enums! {
    w::MethodKind = c::MethodKind { InstantId, Pulid, Controlnet, StyleTransfer, None }
    w::ControlKind = c::ControlKind { Canny, Depth, FaceKeypoints, Pose }
}

impl Edge<c::Method> for w::Method {
    fn edge(self) -> c::Method {
        match self {
            w::Method::InstantId(d) => c::Method::InstantId(d.edge()),
            w::Method::Pulid(d) => c::Method::Pulid(d.edge()),
            w::Method::Controlnet(d) => c::Method::Controlnet(d.edge()),
            w::Method::StyleTransfer(t) => c::Method::StyleTransfer(t.edge()),
            w::Method::None => c::Method::None,
        }
    }
}

impl Edge<w::Method> for c::Method {
    fn edge(self) -> w::Method {
        match self {
            c::Method::InstantId(d) => w::Method::InstantId(d.edge()),
            c::Method::Pulid(d) => w::Method::Pulid(d.edge()),
            c::Method::Controlnet(d) => w::Method::Controlnet(d.edge()),
            c::Method::StyleTransfer(t) => w::Method::StyleTransfer(t.edge()),
            c::Method::None => w::Method::None,
        }
    }
}

impl Edge<c::Value> for w::Value {
    fn edge(self) -> c::Value {
        match self {
            w::Value::Text(s) => c::Value::Text(s),
            w::Value::Integer(n) => c::Value::Integer(n),
            w::Value::Number(x) => c::Value::Number(x),
            w::Value::Boolean(b) => c::Value::Boolean(b),
        }
    }
}

impl Edge<w::Value> for c::Value {
    fn edge(self) -> w::Value {
        match self {
            c::Value::Text(s) => w::Value::Text(s),
            c::Value::Integer(n) => w::Value::Integer(n),
            c::Value::Number(x) => w::Value::Number(x),
            c::Value::Boolean(b) => w::Value::Boolean(b),
        }
    }
}

impl Edge<c::ParamKind> for w::ParamKind {
    fn edge(self) -> c::ParamKind {
        match self {
            w::ParamKind::Text(max) => c::ParamKind::Text(max),
            w::ParamKind::Integer(r) => c::ParamKind::Integer {
                min: r.min,
                max: r.max,
            },
            w::ParamKind::Number(r) => c::ParamKind::Number {
                min: r.min,
                max: r.max,
            },
            w::ParamKind::Boolean => c::ParamKind::Boolean,
            w::ParamKind::Choice(choices) => c::ParamKind::Choice(choices),
        }
    }
}

impl Edge<w::ParamKind> for c::ParamKind {
    fn edge(self) -> w::ParamKind {
        match self {
            c::ParamKind::Text(max) => w::ParamKind::Text(max),
            c::ParamKind::Integer { min, max } => {
                w::ParamKind::Integer(w::IntegerRange { min, max })
            }
            c::ParamKind::Number { min, max } => w::ParamKind::Number(w::NumberRange { min, max }),
            c::ParamKind::Boolean => w::ParamKind::Boolean,
            c::ParamKind::Choice(choices) => w::ParamKind::Choice(choices),
        }
    }
}

impl Edge<c::StyleError> for w::StyleError {
    fn edge(self) -> c::StyleError {
        match self {
            w::StyleError::InvalidOptions(m) => c::StyleError::InvalidOptions(m),
            w::StyleError::UnusableInput(m) => c::StyleError::UnusableInput(m),
            w::StyleError::Internal(m) => c::StyleError::Internal(m),
        }
    }
}
