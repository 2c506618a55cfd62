//! A 0.2 test style for the identity gate, written on the contract alone (no SDK): it plans
//! the host's default plan (`policy.default-plan`, preferring InstantID, seed 11) with an
//! identity gate whose threshold and attempts are the request's options `threshold` (0..1,
//! default 0.5) and `attempts` (1..8, default 2); post-process hands the image back as it is.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "plugin",
});

use exports::likeness::style::style::Guest;
use likeness::style::canvas::Image;
use likeness::style::policy::{Preferences, default_plan};
use likeness::style::types::{
    Analysis, Capabilities, IdentityGate, IntegerRange, MethodKind, NumberRange, Options,
    ParamKind, ParamSpec, Plan, StyleError, StyleInfo, Value,
};

struct Gated;

impl Guest for Gated {
    fn describe() -> StyleInfo {
        StyleInfo {
            id: "gated".into(),
            name: "Gated".into(),
            version: "0.1.0".into(),
            description: "A 0.2 test style: the host's default plan with an identity gate set \
                          by the options; the image passes through."
                .into(),
            params: vec![
                ParamSpec {
                    name: "threshold".into(),
                    description: "The identity gate's threshold.".into(),
                    kind: ParamKind::Number(NumberRange { min: 0.0, max: 1.0 }),
                    default_value: Some(Value::Number(0.5)),
                },
                ParamSpec {
                    name: "attempts".into(),
                    description: "The identity gate's attempts per diffusion method.".into(),
                    kind: ParamKind::Integer(IntegerRange { min: 1, max: 8 }),
                    default_value: Some(Value::Integer(2)),
                },
            ],
        }
    }

    fn choose_plan(
        analysis: Analysis,
        capabilities: Capabilities,
        options: Options,
    ) -> Result<Plan, StyleError> {
        let mut threshold = 0.5;
        let mut attempts = 2;
        for (name, value) in &options {
            match (name.as_str(), value) {
                ("threshold", Value::Number(n)) => threshold = *n as f32,
                ("attempts", Value::Integer(n)) => attempts = *n as u32,
                _ => {}
            }
        }
        let mut plan = default_plan(
            &analysis,
            &capabilities,
            &Preferences {
                look: "gated".into(),
                preferred: MethodKind::InstantId,
                prompt: "a portrait".into(),
                negative_prompt: String::new(),
                seed: Some(11),
            },
        );
        plan.identity_gate = Some(IdentityGate {
            threshold,
            attempts,
        });
        Ok(plan)
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

export!(Gated);
