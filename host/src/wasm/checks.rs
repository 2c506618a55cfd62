//! Bounds on everything a style returns, checked on every call (the dry runs at load and every
//! request): a guest may return any value its WIT types allow, and none of it may reach a
//! response, a header or the diffusion engine unchecked.
//!
//! These are pure, total functions over the WIT types (they never panic, whatever the values),
//! so that fuzz targets can call them with random input. A failure names the field, as the WIT
//! spells it.

use std::fmt;

use likeness_contract::options::admits;
use likeness_contract::{
    Analysis, Capabilities, Diffusion, Method, ParamKind, Plan, StyleInfo, Transfer,
};

use super::Image;

/// Longest prompt and negative prompt, in bytes.
pub const PROMPT_MAX_BYTES: usize = 4096;
/// Longest plan reason, in bytes (it is sent in a response header too).
pub const REASON_MAX_BYTES: usize = 1024;
/// Most control maps in one plan.
pub const CONTROL_MAPS_MAX: usize = 8;
/// Most denoising steps.
pub const STEPS_MAX: u32 = 200;
/// Largest identity weight and control weight (the WIT's 0..2).
pub const WEIGHT_MAX: f32 = 2.0;
/// Largest guidance scale.
pub const GUIDANCE_MAX: f32 = 30.0;
/// Longest style id, name and version, in bytes.
pub const NAME_MAX_BYTES: usize = 128;
/// Longest style description and parameter description, in bytes.
pub const DESCRIPTION_MAX_BYTES: usize = 4096;
/// Most parameters a style may declare, and most choices of one parameter.
pub const PARAMS_MAX: usize = 64;
/// Longest parameter name, in bytes.
pub const PARAM_NAME_MAX_BYTES: usize = 64;
/// Longest parameter default value and choice, in bytes.
pub const PARAM_VALUE_MAX_BYTES: usize = 256;
/// The most characters a text parameter may allow.
pub const TEXT_OPTION_MAX_CHARS: u32 = 65_536;
/// Most fallbacks in one plan.
pub const FALLBACKS_MAX: usize = 8;
/// Most learned styles one transfer blends.
pub const LEARNED_STYLES_MAX: usize = 16;
/// Most identity-gate attempts.
pub const ATTEMPTS_MAX: u32 = 8;

/// A returned value outside its bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadField {
    /// The field, as the WIT spells it (e.g. `plan.control-maps[2].weight`).
    pub field: String,
    /// What is wrong with it, naming the field.
    pub message: String,
}

impl fmt::Display for BadField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BadField {}

fn bad(field: impl Into<String>, problem: impl fmt::Display) -> BadField {
    let field = field.into();
    BadField {
        message: format!("{field} {problem}"),
        field,
    }
}

fn text(field: &str, value: &str, max: usize) -> Result<(), BadField> {
    if value.len() > max {
        return Err(bad(
            field,
            format_args!("is {} bytes; at most {max} are allowed", value.len()),
        ));
    }
    Ok(())
}

fn number(field: &str, value: f32, max: f32) -> Result<(), BadField> {
    if !value.is_finite() || !(0.0..=max).contains(&value) {
        return Err(bad(
            field,
            format_args!("is {value}; it must be in 0..={max}"),
        ));
    }
    Ok(())
}

/// Checks a plan made for `analysis` on a host with `capabilities`: a non-empty bounded
/// reason; a method and fallbacks the host can run (`none` always can), each with its settings
/// in range (prompt lengths, control maps the host draws, finite weights, steps, a size within
/// the pack's limits, a known learned style); reference faces in the analysis; the identity
/// gate's threshold and attempts.
pub fn plan(plan: &Plan, analysis: &Analysis, capabilities: &Capabilities) -> Result<(), BadField> {
    text("plan.reason", &plan.reason, REASON_MAX_BYTES)?;
    if plan.reason.trim().is_empty() {
        return Err(bad("plan.reason", "is empty; a plan must say why"));
    }
    method("plan.method", &plan.method, capabilities)?;
    if plan.fallbacks.len() > FALLBACKS_MAX {
        return Err(bad(
            "plan.fallbacks",
            format_args!(
                "has {} methods; at most {FALLBACKS_MAX} are allowed",
                plan.fallbacks.len()
            ),
        ));
    }
    for (i, fallback) in plan.fallbacks.iter().enumerate() {
        method(&format!("plan.fallbacks[{i}]"), fallback, capabilities)?;
    }
    for (i, &face) in plan.reference_faces.iter().enumerate() {
        if face as usize >= analysis.faces.len() {
            return Err(bad(
                format!("plan.reference-faces[{i}]"),
                format_args!(
                    "is {face}, but the analysis has {} faces",
                    analysis.faces.len()
                ),
            ));
        }
    }
    if plan.reference_faces.len() > analysis.faces.len() {
        return Err(bad(
            "plan.reference-faces",
            format_args!(
                "has {} faces, but the analysis has {}",
                plan.reference_faces.len(),
                analysis.faces.len()
            ),
        ));
    }
    if let Some(gate) = &plan.identity_gate {
        number("plan.identity-gate.threshold", gate.threshold, 1.0)?;
        if !(1..=ATTEMPTS_MAX).contains(&gate.attempts) {
            return Err(bad(
                "plan.identity-gate.attempts",
                format_args!("is {}; it must be in 1..={ATTEMPTS_MAX}", gate.attempts),
            ));
        }
    }
    Ok(())
}

/// Checks one method of a plan (`field` names it: `plan.method`, `plan.fallbacks[1]`).
fn method(field: &str, method: &Method, capabilities: &Capabilities) -> Result<(), BadField> {
    let kind = method.kind();
    if !capabilities.offers(kind) {
        return Err(bad(
            field,
            format_args!("is {}, which this host does not offer", kind.name()),
        ));
    }
    match method {
        Method::InstantId(settings) | Method::Pulid(settings) | Method::Controlnet(settings) => {
            diffusion(field, settings, capabilities)
        }
        Method::StyleTransfer(settings) => transfer(field, settings, capabilities),
        Method::None => Ok(()),
    }
}

fn diffusion(field: &str, d: &Diffusion, capabilities: &Capabilities) -> Result<(), BadField> {
    let at = |name: &str| format!("{field}.{name}");
    text(&at("prompt"), &d.prompt, PROMPT_MAX_BYTES)?;
    text(&at("negative-prompt"), &d.negative_prompt, PROMPT_MAX_BYTES)?;
    if d.control_maps.len() > CONTROL_MAPS_MAX {
        return Err(bad(
            at("control-maps"),
            format_args!(
                "has {} maps; at most {CONTROL_MAPS_MAX} are allowed",
                d.control_maps.len()
            ),
        ));
    }
    for (i, map) in d.control_maps.iter().enumerate() {
        let map_field = |name: &str| format!("{field}.control-maps[{i}].{name}");
        if !capabilities.draws(map.kind) {
            return Err(bad(
                map_field("kind"),
                format_args!("is {}, which this host does not draw", map.kind.name()),
            ));
        }
        number(&map_field("weight"), map.weight, WEIGHT_MAX)?;
        number(&map_field("start"), map.start, 1.0)?;
        number(&map_field("end"), map.end, 1.0)?;
        if map.start > map.end {
            return Err(bad(
                map_field("end"),
                format_args!("is {}, before its start {}", map.end, map.start),
            ));
        }
    }
    number(&at("identity-weight"), d.identity_weight, WEIGHT_MAX)?;
    number(&at("guidance"), d.guidance, GUIDANCE_MAX)?;
    if !(1..=STEPS_MAX).contains(&d.steps) {
        return Err(bad(
            at("steps"),
            format_args!("is {}; it must be in 1..={STEPS_MAX}", d.steps),
        ));
    }
    if let Some(size) = d.size {
        let fits = capabilities
            .diffusion_sizes
            .is_some_and(|limits| limits.contains(size));
        if !fits {
            let limits = match &capabilities.diffusion_sizes {
                Some(l) => format!(
                    "sides in {}..={} and multiples of {}",
                    l.min_side, l.max_side, l.multiple
                ),
                None => "no diffusion pack".to_string(),
            };
            return Err(bad(
                at("size"),
                format_args!(
                    "is {}x{}, outside what this host runs ({limits})",
                    size.width, size.height
                ),
            ));
        }
    }
    Ok(())
}

fn transfer(field: &str, t: &Transfer, capabilities: &Capabilities) -> Result<(), BadField> {
    let at = |name: &str| format!("{field}.{name}");
    let Some(offered) = &capabilities.transfer else {
        return Err(bad(
            field,
            "is style-transfer, which this host does not offer",
        ));
    };
    if t.learned_styles.len() > LEARNED_STYLES_MAX {
        return Err(bad(
            at("learned-styles"),
            format_args!(
                "has {} styles; at most {LEARNED_STYLES_MAX} are allowed",
                t.learned_styles.len()
            ),
        ));
    }
    for (i, (name, weight)) in t.learned_styles.iter().enumerate() {
        if !offered.learned_styles.contains(name) {
            let name = name.chars().take(64).collect::<String>();
            return Err(bad(
                format!("{field}.learned-styles[{i}]"),
                format_args!("is '{name}', which this host does not have"),
            ));
        }
        number(&format!("{field}.learned-styles[{i}].weight"), *weight, 1.0)?;
    }
    if let Some(picture) = &t.style_picture {
        text(&at("style-picture"), picture, PARAM_VALUE_MAX_BYTES)?;
        if !offered.style_pictures {
            return Err(bad(
                at("style-picture"),
                "is set, but this host takes no style pictures",
            ));
        }
    }
    number(&at("strength"), t.strength, 1.0)?;
    number(&at("face-preservation"), t.face_preservation, 1.0)?;
    if let Some(side) = t.working_side
        && !(1..=offered.max_side).contains(&side)
    {
        return Err(bad(
            at("working-side"),
            format_args!("is {side}; it must be in 1..={}", offered.max_side),
        ));
    }
    Ok(())
}

/// Checks what `describe` returned: bounded names, description and parameters, each
/// parameter's bounds ordered, a choice's values present, and its default a valid value.
pub fn info(info: &StyleInfo) -> Result<(), BadField> {
    text("style-info.id", &info.id, NAME_MAX_BYTES)?;
    text("style-info.name", &info.name, NAME_MAX_BYTES)?;
    text("style-info.version", &info.version, NAME_MAX_BYTES)?;
    text(
        "style-info.description",
        &info.description,
        DESCRIPTION_MAX_BYTES,
    )?;
    if info.params.len() > PARAMS_MAX {
        return Err(bad(
            "style-info.params",
            format_args!(
                "has {} parameters; at most {PARAMS_MAX} are allowed",
                info.params.len()
            ),
        ));
    }
    for (i, param) in info.params.iter().enumerate() {
        let field = |name: &str| format!("style-info.params[{i}].{name}");
        text(&field("name"), &param.name, PARAM_NAME_MAX_BYTES)?;
        if param.name.is_empty() {
            return Err(bad(field("name"), "is empty"));
        }
        if info.params[..i].iter().any(|p| p.name == param.name) {
            return Err(bad(field("name"), "is declared twice"));
        }
        text(
            &field("description"),
            &param.description,
            DESCRIPTION_MAX_BYTES,
        )?;
        match &param.kind {
            ParamKind::Choice(choices) => {
                if choices.is_empty() || choices.len() > PARAMS_MAX {
                    return Err(bad(
                        field("kind"),
                        format_args!(
                            "has {} choices; 1..={PARAMS_MAX} are allowed",
                            choices.len()
                        ),
                    ));
                }
                for choice in choices {
                    text(&field("kind"), choice, PARAM_VALUE_MAX_BYTES)?;
                }
            }
            ParamKind::Text(max) if *max > TEXT_OPTION_MAX_CHARS => {
                return Err(bad(
                    field("kind"),
                    format_args!("allows {max} characters; at most {TEXT_OPTION_MAX_CHARS}"),
                ));
            }
            ParamKind::Integer { min, max } if min > max => {
                return Err(bad(
                    field("kind"),
                    format_args!("has min {min} above max {max}"),
                ));
            }
            ParamKind::Number { min, max } if min.is_nan() || max.is_nan() || min > max => {
                return Err(bad(
                    field("kind"),
                    format_args!("has min {min} above max {max}"),
                ));
            }
            _ => {}
        }
        if let Some(value) = &param.default_value {
            if let likeness_contract::Value::Text(t) = value {
                text(&field("default-value"), t, PARAM_VALUE_MAX_BYTES)?;
            }
            if !admits(param, value) {
                return Err(bad(
                    field("default-value"),
                    format_args!("is {value:?}, not a valid {} value", param.kind.name()),
                ));
            }
        }
    }
    Ok(())
}

/// Checks that `post-process` returned an image of the input's size with exactly its RGBA
/// length.
pub fn image(output: &Image, input: &Image) -> Result<(), BadField> {
    if (output.width, output.height) != (input.width, input.height) {
        return Err(bad(
            "image.width/height",
            format_args!(
                "is {}x{} for a {}x{} input",
                output.width, output.height, input.width, input.height
            ),
        ));
    }
    let expected = u128::from(output.width) * u128::from(output.height) * 4;
    if output.rgba.len() as u128 != expected {
        return Err(bad(
            "image.rgba",
            format_args!(
                "has {} bytes for {}x{} (expected {expected})",
                output.rgba.len(),
                output.width,
                output.height
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use likeness_contract::{
        ControlKind, ControlMap, IdentityGate, MethodKind, ParamSpec, Size, SizeLimits, Value,
    };

    fn diffusion() -> Diffusion {
        Diffusion {
            prompt: "a portrait".into(),
            negative_prompt: String::new(),
            control_maps: vec![ControlMap {
                kind: ControlKind::Canny,
                weight: 0.5,
                start: 0.0,
                end: 1.0,
            }],
            identity_weight: 0.8,
            steps: 30,
            guidance: 5.0,
            size: Some(Size {
                width: 1024,
                height: 768,
            }),
            seed: None,
        }
    }

    fn good_plan() -> Plan {
        Plan {
            method: Method::Controlnet(diffusion()),
            fallbacks: vec![Method::None],
            reference_faces: Vec::new(),
            identity_gate: Some(IdentityGate {
                threshold: 0.4,
                attempts: 2,
            }),
            reason: "No faces, so only the outlines guide the picture.".into(),
        }
    }

    fn capabilities() -> Capabilities {
        Capabilities {
            methods: vec![MethodKind::Controlnet, MethodKind::None],
            control_maps: vec![ControlKind::Canny],
            diffusion_sizes: Some(SizeLimits {
                multiple: 64,
                min_side: 256,
                max_side: 1536,
                default_side: 1024,
            }),
            transfer: None,
        }
    }

    fn no_faces() -> Analysis {
        Analysis {
            width: 640,
            height: 480,
            faces: Vec::new(),
        }
    }

    fn field_of(edit: impl FnOnce(&mut Plan, &mut Diffusion)) -> String {
        let mut plan = good_plan();
        let mut d = diffusion();
        edit(&mut plan, &mut d);
        if matches!(plan.method, Method::Controlnet(_)) {
            plan.method = Method::Controlnet(d);
        }
        super::plan(&plan, &no_faces(), &capabilities())
            .unwrap_err()
            .field
    }

    #[test]
    fn a_good_plan_passes_and_none_always_runs() {
        super::plan(&good_plan(), &no_faces(), &capabilities()).unwrap();
        super::plan(&Plan::none("Plain."), &no_faces(), &Capabilities::none()).unwrap();
    }

    #[test]
    fn each_bad_plan_field_is_named() {
        let m = "plan.method";
        assert_eq!(
            field_of(|_, d| d.prompt = "x".repeat(5000)),
            format!("{m}.prompt")
        );
        assert_eq!(
            field_of(|_, d| d.negative_prompt = "x".repeat(5000)),
            format!("{m}.negative-prompt")
        );
        assert_eq!(field_of(|p, _| p.reason = "\n ".into()), "plan.reason");
        assert_eq!(field_of(|p, _| p.reason = "x".repeat(2000)), "plan.reason");
        assert_eq!(field_of(|p, _| p.method = Method::Pulid(diffusion())), m);
        assert_eq!(
            field_of(|p, _| p.fallbacks = vec![Method::InstantId(diffusion())]),
            "plan.fallbacks[0]"
        );
        assert_eq!(
            field_of(|p, _| p.fallbacks = vec![Method::None; 9]),
            "plan.fallbacks"
        );
        assert_eq!(
            field_of(|p, _| p.reference_faces = vec![0]),
            "plan.reference-faces[0]"
        );
        assert_eq!(
            field_of(|_, d| d.control_maps = vec![d.control_maps[0]; 9]),
            format!("{m}.control-maps")
        );
        assert_eq!(
            field_of(|_, d| d.control_maps[0].kind = ControlKind::Depth),
            format!("{m}.control-maps[0].kind")
        );
        assert_eq!(
            field_of(|_, d| d.control_maps[0].weight = f32::NAN),
            format!("{m}.control-maps[0].weight")
        );
        assert_eq!(
            field_of(|_, d| (d.control_maps[0].start, d.control_maps[0].end) = (0.9, 0.1)),
            format!("{m}.control-maps[0].end")
        );
        assert_eq!(
            field_of(|_, d| d.identity_weight = f32::NEG_INFINITY),
            format!("{m}.identity-weight")
        );
        assert_eq!(field_of(|_, d| d.guidance = 1e9), format!("{m}.guidance"));
        assert_eq!(field_of(|_, d| d.steps = u32::MAX), format!("{m}.steps"));
        assert_eq!(field_of(|_, d| d.steps = 0), format!("{m}.steps"));
        // The size must be one the pack runs: within its sides and on its multiple.
        for size in [(0, 768), (1024, 770), (2048, 1024), (128, 128)] {
            let size = Size {
                width: size.0,
                height: size.1,
            };
            assert_eq!(field_of(|_, d| d.size = Some(size)), format!("{m}.size"));
        }
        assert_eq!(
            field_of(|p, _| p.identity_gate = Some(IdentityGate {
                threshold: 1.5,
                attempts: 1
            })),
            "plan.identity-gate.threshold"
        );
        assert_eq!(
            field_of(|p, _| p.identity_gate = Some(IdentityGate {
                threshold: 0.5,
                attempts: 0
            })),
            "plan.identity-gate.attempts"
        );
        assert_eq!(
            field_of(|p, _| p.method = Method::StyleTransfer(Transfer {
                learned_styles: Vec::new(),
                style_picture: None,
                strength: 1.0,
                working_side: None,
                face_preservation: 0.5,
            })),
            m
        );
    }

    #[test]
    fn style_info_bounds() {
        let param = ParamSpec {
            name: "palette".into(),
            description: "Which colours.".into(),
            kind: ParamKind::Choice(vec!["gameboy".into()]),
            default_value: Some(Value::Text("gameboy".into())),
        };
        let mut info = StyleInfo {
            id: "x".into(),
            name: "X".into(),
            version: "0.2.0".into(),
            description: "Short.".into(),
            params: vec![param.clone()],
        };
        super::info(&info).unwrap();
        let field = |info: &StyleInfo| super::info(info).unwrap_err().field;
        info.params = vec![param.clone(); 65];
        assert_eq!(field(&info), "style-info.params");
        info.params = vec![param.clone(), param.clone()];
        assert_eq!(field(&info), "style-info.params[1].name");
        info.params = vec![ParamSpec {
            default_value: Some(Value::Text("cga".into())),
            ..param.clone()
        }];
        assert_eq!(field(&info), "style-info.params[0].default-value");
        info.params = vec![ParamSpec {
            kind: ParamKind::Integer { min: 3, max: 1 },
            default_value: None,
            ..param.clone()
        }];
        assert_eq!(field(&info), "style-info.params[0].kind");
        info.params = vec![ParamSpec {
            name: String::new(),
            ..param
        }];
        assert_eq!(field(&info), "style-info.params[0].name");
        info.description = "d".repeat(5000);
        assert_eq!(field(&info), "style-info.description");
    }

    #[test]
    fn images_must_match_the_input() {
        let input = Image {
            width: u32::MAX,
            height: u32::MAX,
            rgba: Vec::new(),
        };
        // Sizes whose byte count overflows 32 bits are compared without overflow.
        assert_eq!(image(&input, &input).unwrap_err().field, "image.rgba");
        let small = Image {
            width: 2,
            height: 1,
            rgba: vec![0; 8],
        };
        image(&small, &small).unwrap();
        assert_eq!(
            image(&input, &small).unwrap_err().field,
            "image.width/height"
        );
    }
}
