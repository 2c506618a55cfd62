//! A 0.2 test style for the host's style transfer, written on the contract alone (no SDK): when
//! the host offers `style-transfer` it plans it with learned style `style-19`, or with the style
//! picture named by the option `picture` (a path inside the package's `assets/`), at the
//! options' `strength`, `preservation` (face preservation) and `side` (working side; 0: the
//! host's), with an identity gate of threshold `threshold` (0: no gate) and 2 attempts; else
//! method `none`. Post-process hands the rendition back as it is.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "plugin",
});

use exports::likeness::style::style::Guest;
use likeness::style::canvas::Image;
use likeness::style::types::{
    Analysis, Capabilities, IdentityGate, IntegerRange, Method, NumberRange, Options, ParamKind,
    ParamSpec, Plan, StyleError, StyleInfo, Transfer, Value,
};

struct Probe;

fn number(name: &str, description: &str, default: f64) -> ParamSpec {
    ParamSpec {
        name: name.into(),
        description: description.into(),
        kind: ParamKind::Number(NumberRange { min: 0.0, max: 1.0 }),
        default_value: Some(Value::Number(default)),
    }
}

impl Guest for Probe {
    fn describe() -> StyleInfo {
        StyleInfo {
            id: "transfer".into(),
            name: "Transfer".into(),
            version: "0.1.0".into(),
            description: "A 0.2 test style: plans style-transfer when the host offers it \
                          (learned style-19, or the style picture named by the option picture, \
                          inside the package's assets/); the rendition passes through."
                .into(),
            params: vec![
                ParamSpec {
                    name: "picture".into(),
                    description: "A style picture inside assets/; empty: learned style-19.".into(),
                    kind: ParamKind::Text(200),
                    default_value: Some(Value::Text(String::new())),
                },
                number(
                    "strength",
                    "How much of the rendition replaces the photo.",
                    1.0,
                ),
                number("preservation", "Face preservation.", 0.5),
                number(
                    "threshold",
                    "The identity gate's threshold; 0: no gate.",
                    0.0,
                ),
                ParamSpec {
                    name: "side".into(),
                    description: "The working side; 0: the host's default.".into(),
                    kind: ParamKind::Integer(IntegerRange { min: 0, max: 1280 }),
                    default_value: Some(Value::Integer(0)),
                },
            ],
        }
    }

    fn choose_plan(
        _analysis: Analysis,
        capabilities: Capabilities,
        options: Options,
    ) -> Result<Plan, StyleError> {
        let (mut picture, mut strength, mut preservation, mut threshold, mut side) =
            (String::new(), 1.0, 0.5, 0.0, 0);
        for (name, value) in &options {
            match (name.as_str(), value) {
                ("picture", Value::Text(t)) => picture = t.clone(),
                ("strength", Value::Number(n)) => strength = *n as f32,
                ("preservation", Value::Number(n)) => preservation = *n as f32,
                ("threshold", Value::Number(n)) => threshold = *n as f32,
                ("side", Value::Integer(n)) => side = *n as u32,
                _ => {}
            }
        }
        if capabilities.transfer.is_none() {
            return Ok(Plan {
                method: Method::None,
                fallbacks: Vec::new(),
                reference_faces: Vec::new(),
                identity_gate: None,
                reason: "This host offers no style transfer, so the photo passes through.".into(),
            });
        }
        Ok(Plan {
            method: Method::StyleTransfer(Transfer {
                learned_styles: vec![("style-19".into(), 1.0)],
                style_picture: (!picture.is_empty()).then_some(picture),
                strength,
                working_side: (side > 0).then_some(side),
                face_preservation: preservation,
            }),
            fallbacks: vec![Method::None],
            reference_faces: Vec::new(),
            identity_gate: (threshold > 0.0).then_some(IdentityGate {
                threshold,
                attempts: 2,
            }),
            reason: "The host offers style transfer, so a neural network restyles the photo."
                .into(),
        })
    }

    fn post_process(
        image: Image,
        _analysis: Analysis,
        _plan: Plan,
        _options: Options,
    ) -> Result<Image, StyleError> {
        Ok(image)
    }
}

export!(Probe);
