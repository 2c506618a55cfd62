//! Bindings of the frozen `likeness:style@0.1.0` (`wit/v0.1/style.wit`, world `style`), and the
//! adapter that runs a 0.1 package in the 0.2 pipeline:
//!
//! - capabilities: the diffusion methods and control maps (0.1 knows no size limits or
//!   style transfer);
//! - options: the host's checked, typed options written back as text, as 0.1 styles expect;
//! - parameter specs: 0.1's kinds without bounds (text up to [`TEXT_MAX_CHARS`]) and defaults
//!   written as text (an empty default: no default);
//! - the plan: method X with the plan's settings; fallback X becomes `fallbacks: [X with the
//!   same settings]`, `none` becomes `[none]`; the reference face becomes the list of one. A
//!   0.1 style cannot see the pack's sizes, so its size is scaled down (aspect kept) and rounded
//!   to the pack's limits, as the 0.1 host did.

use likeness::style::types as w;
use likeness_contract as c;

use super::convert::{Edge, enums, records};
use crate::wasm::canvas::Image as HostImage;

wasmtime::component::bindgen!({
    path: "../wit/v0.1",
    world: "style",
    exports: { default: async },
});

pub use likeness::style::log::Level;

/// The longest text option a 0.1 style is given, in characters (0.1 declares no bound).
pub const TEXT_MAX_CHARS: u32 = 4096;

records! {
    w::Point = c::Point { x, y }
    w::Rect = c::Rect { x1, y1, x2, y2 }
    w::Landmarks = c::Landmarks { left_eye, right_eye, nose, mouth_left, mouth_right }
    w::Face = c::Face { bbox, score, landmarks, share, dominant }
    w::Analysis = c::Analysis { width, height, faces }
    w::Size = c::Size { width, height }
    w::ControlMap = c::ControlMap { kind, weight, start, end }
}

enums! {
    w::ControlKind = c::ControlKind { Canny, Depth, FaceKeypoints, Pose }
}

impl Edge<w::Image> for HostImage {
    fn edge(self) -> w::Image {
        w::Image {
            width: self.width,
            height: self.height,
            rgba: self.rgba,
        }
    }
}

impl Edge<HostImage> for w::Image {
    fn edge(self) -> HostImage {
        HostImage {
            width: self.width,
            height: self.height,
            rgba: self.rgba,
        }
    }
}

/// A 0.2 method kind as 0.1 spells it; 0.1 has no style transfer.
fn method_v0_1(kind: c::MethodKind) -> Option<w::IdentityMethod> {
    Some(match kind {
        c::MethodKind::InstantId => w::IdentityMethod::InstantId,
        c::MethodKind::Pulid => w::IdentityMethod::Pulid,
        c::MethodKind::Controlnet => w::IdentityMethod::Controlnet,
        c::MethodKind::None => w::IdentityMethod::None,
        c::MethodKind::StyleTransfer => return None,
    })
}

fn method_v0_2(method: w::IdentityMethod) -> c::MethodKind {
    match method {
        w::IdentityMethod::InstantId => c::MethodKind::InstantId,
        w::IdentityMethod::Pulid => c::MethodKind::Pulid,
        w::IdentityMethod::Controlnet => c::MethodKind::Controlnet,
        w::IdentityMethod::None => c::MethodKind::None,
    }
}

/// What a 0.1 style is told the host can run: the diffusion methods and the control maps.
pub fn capabilities(capabilities: &c::Capabilities) -> w::Capabilities {
    w::Capabilities {
        identity_methods: capabilities
            .methods
            .iter()
            .copied()
            .filter(|m| m.is_diffusion())
            .filter_map(method_v0_1)
            .collect(),
        control_maps: capabilities.control_maps.clone().edge(),
    }
}

/// The checked options as 0.1's text pairs.
pub fn options(options: &c::Options) -> w::Options {
    options
        .iter()
        .map(|(name, value)| (name.clone(), value.to_text()))
        .collect()
}

/// A 0.1 `describe()` answer in the host's terms; `Err` names the parameter whose default does
/// not parse as its kind.
pub fn style_info(info: w::StyleInfo) -> Result<c::StyleInfo, (String, String)> {
    let mut params = Vec::with_capacity(info.params.len());
    for (i, param) in info.params.into_iter().enumerate() {
        let kind = match param.kind {
            w::ParamKind::Text => c::ParamKind::Text(TEXT_MAX_CHARS),
            w::ParamKind::Integer => c::ParamKind::Integer {
                min: i64::MIN,
                max: i64::MAX,
            },
            w::ParamKind::Number => c::ParamKind::Number {
                min: f64::MIN,
                max: f64::MAX,
            },
            w::ParamKind::Boolean => c::ParamKind::Boolean,
            w::ParamKind::Choice => c::ParamKind::Choice(param.choices),
        };
        let mut spec = c::ParamSpec {
            name: param.name,
            description: param.description,
            kind,
            default_value: None,
        };
        if !param.default_value.is_empty() {
            let value = c::options::parse(&spec, &param.default_value).map_err(|e| {
                (
                    format!("style-info.params[{i}].default-value"),
                    format!("style-info.params[{i}].default-value: {}", e.message),
                )
            })?;
            spec.default_value = Some(value);
        }
        params.push(spec);
    }
    Ok(c::StyleInfo {
        id: info.id,
        name: info.name,
        version: info.version,
        description: info.description,
        params,
    })
}

/// `size` scaled down (aspect kept) to the pack's largest side and rounded down to its
/// multiple, at least its smallest side.
fn fit(size: w::Size, limits: &c::SizeLimits) -> c::Size {
    let multiple = limits.multiple.max(1);
    let long = size.width.max(size.height).max(1);
    let scale = (f64::from(limits.max_side) / f64::from(long)).min(1.0);
    let min = limits.min_side.div_ceil(multiple) * multiple;
    let side = |s: u32| ((((f64::from(s) * scale) as u32) / multiple) * multiple).max(min);
    c::Size {
        width: side(size.width),
        height: side(size.height),
    }
}

/// A 0.1 plan as the 0.2 plan the host runs (see the module docs).
pub fn plan(plan: w::Plan, capabilities: &c::Capabilities) -> c::Plan {
    let size = capabilities
        .diffusion_sizes
        .as_ref()
        .map(|limits| fit(plan.size, limits));
    let settings = c::Diffusion {
        prompt: plan.prompt,
        negative_prompt: plan.negative_prompt,
        control_maps: plan.control_maps.edge(),
        identity_weight: plan.identity_weight,
        steps: plan.steps,
        guidance: plan.guidance,
        size,
        seed: plan.seed,
    };
    let method = |kind: w::IdentityMethod| {
        c::Method::with_diffusion(method_v0_2(kind), settings.clone()).unwrap_or(c::Method::None)
    };
    c::Plan {
        method: method(plan.method),
        fallbacks: vec![method(plan.fallback)],
        reference_faces: plan.reference_face.into_iter().collect(),
        identity_gate: None,
        reason: plan.reason,
    }
}

/// The plan that ran, as 0.1's `post-process` takes it: the method and the first fallback (a
/// style transfer reads as `none`), the method's settings, the size of `image`. A method
/// without settings (`none`) carries no seed in 0.2, but a 0.1 plan always did (0.1 styles
/// seed their textures from it): the `seed` option's value stands in.
pub fn plan_that_ran(plan: &c::Plan, image: &HostImage, options: &c::Options) -> w::Plan {
    let kind = |m: &c::Method| method_v0_1(m.kind()).unwrap_or(w::IdentityMethod::None);
    let none = c::Diffusion {
        prompt: String::new(),
        negative_prompt: String::new(),
        control_maps: Vec::new(),
        identity_weight: 0.0,
        steps: 0,
        guidance: 0.0,
        size: None,
        seed: None,
    };
    let seed_option = options.iter().find_map(|(name, value)| match value {
        c::Value::Integer(n) if name == "seed" => u64::try_from(*n).ok(),
        _ => None,
    });
    let mut settings = plan.method.diffusion().unwrap_or(&none).clone();
    settings.seed = settings.seed.or(seed_option);
    w::Plan {
        method: kind(&plan.method),
        fallback: plan.fallbacks.first().map_or(w::IdentityMethod::None, kind),
        reference_face: plan.reference_faces.first().copied(),
        prompt: settings.prompt,
        negative_prompt: settings.negative_prompt,
        control_maps: settings.control_maps.edge(),
        identity_weight: settings.identity_weight,
        steps: settings.steps,
        guidance: settings.guidance,
        size: w::Size {
            width: image.width,
            height: image.height,
        },
        seed: settings.seed,
        reason: plan.reason.clone(),
    }
}

/// A 0.1 style error in the host's terms.
pub fn style_error(error: w::StyleError) -> c::StyleError {
    match error {
        w::StyleError::InvalidOptions(m) => c::StyleError::InvalidOptions(m),
        w::StyleError::UnusableInput(m) => c::StyleError::UnusableInput(m),
        w::StyleError::Internal(m) => c::StyleError::Internal(Some(m)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_v0_1(method: w::IdentityMethod, fallback: w::IdentityMethod) -> w::Plan {
        w::Plan {
            method,
            fallback,
            reference_face: Some(0),
            prompt: "a portrait".into(),
            negative_prompt: String::new(),
            control_maps: Vec::new(),
            identity_weight: 0.8,
            steps: 30,
            guidance: 5.0,
            size: w::Size {
                width: 1280,
                height: 1024,
            },
            seed: Some(5),
            reason: "Because.".into(),
        }
    }

    #[test]
    fn a_0_1_plan_becomes_a_0_2_plan() {
        let all = c::Capabilities::all();
        let adapted = plan(
            plan_v0_1(w::IdentityMethod::InstantId, w::IdentityMethod::Controlnet),
            &all,
        );
        let settings = adapted.method.diffusion().unwrap().clone();
        assert_eq!(adapted.method, c::Method::InstantId(settings.clone()));
        assert_eq!(
            adapted.fallbacks,
            vec![c::Method::Controlnet(settings.clone())]
        );
        assert_eq!(adapted.reference_faces, vec![0]);
        assert_eq!(settings.seed, Some(5));
        // 1280 x 1024 fits an SDXL pack as it is.
        assert_eq!(
            settings.size,
            Some(c::Size {
                width: 1280,
                height: 1024
            })
        );
        let mut tiny = all.clone();
        tiny.diffusion_sizes = Some(c::SizeLimits {
            multiple: 32,
            min_side: 32,
            max_side: 512,
            default_side: 64,
        });
        let fitted = plan(
            plan_v0_1(w::IdentityMethod::Controlnet, w::IdentityMethod::None),
            &tiny,
        );
        let settings = fitted.method.diffusion().unwrap();
        assert_eq!(
            settings.size,
            Some(c::Size {
                width: 512,
                height: 384
            })
        );
        assert_eq!(fitted.fallbacks, vec![c::Method::None]);
    }

    #[test]
    fn a_none_plan_gives_0_1_its_seed_back() {
        let adapted = plan(
            plan_v0_1(w::IdentityMethod::None, w::IdentityMethod::None),
            &c::Capabilities::none(),
        );
        assert_eq!(adapted.method, c::Method::None);
        let image = HostImage::new(4, 2, vec![0; 32]).unwrap();
        let options = vec![("seed".to_string(), c::Value::Integer(5))];
        let ran = plan_that_ran(&adapted, &image, &options);
        assert_eq!(
            (ran.method, ran.fallback),
            (w::IdentityMethod::None, w::IdentityMethod::None)
        );
        assert_eq!(ran.seed, Some(5));
        assert_eq!((ran.size.width, ran.size.height), (4, 2));
        assert_eq!(plan_that_ran(&adapted, &image, &Vec::new()).seed, None);
    }
}
