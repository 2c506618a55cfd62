//! Bounds on everything a style returns, checked on every call (the dry runs at load and every
//! request): a guest may return any value its WIT types allow, and none of it may reach a
//! response, a header or the diffusion engine unchecked.
//!
//! These are pure, total functions over the WIT types (they never panic, whatever the values),
//! so that fuzz targets can call them with random input. A failure names the field, as the WIT
//! spells it.

use std::fmt;

use super::bindings::v0_1::{Analysis, Capabilities, IdentityMethod, Image, Plan, StyleInfo};

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
/// Longest side of a plan's output size, in pixels.
pub const SIDE_MAX: u32 = 16_384;
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

/// Checks a plan made for `analysis` on a host with `capabilities`: prompt lengths, a
/// non-empty bounded reason, a method and fallback the host can run (`none` always can), the
/// reference face, control maps, every number finite and in range, and the size.
pub fn plan(plan: &Plan, analysis: &Analysis, capabilities: &Capabilities) -> Result<(), BadField> {
    let runnable = |method: IdentityMethod| {
        method == IdentityMethod::None || capabilities.identity_methods.contains(&method)
    };
    for (field, method) in [
        ("plan.method", plan.method),
        ("plan.fallback", plan.fallback),
    ] {
        if !runnable(method) {
            return Err(bad(
                field,
                format_args!("is {}, which this host does not offer", method.as_str()),
            ));
        }
    }
    text("plan.prompt", &plan.prompt, PROMPT_MAX_BYTES)?;
    text(
        "plan.negative-prompt",
        &plan.negative_prompt,
        PROMPT_MAX_BYTES,
    )?;
    text("plan.reason", &plan.reason, REASON_MAX_BYTES)?;
    if plan.reason.trim().is_empty() {
        return Err(bad("plan.reason", "is empty; a plan must say why"));
    }
    if let Some(face) = plan.reference_face
        && face as usize >= analysis.faces.len()
    {
        return Err(bad(
            "plan.reference-face",
            format_args!(
                "is {face}, but the analysis has {} faces",
                analysis.faces.len()
            ),
        ));
    }
    if plan.control_maps.len() > CONTROL_MAPS_MAX {
        return Err(bad(
            "plan.control-maps",
            format_args!(
                "has {} maps; at most {CONTROL_MAPS_MAX} are allowed",
                plan.control_maps.len()
            ),
        ));
    }
    for (i, map) in plan.control_maps.iter().enumerate() {
        number(
            &format!("plan.control-maps[{i}].weight"),
            map.weight,
            WEIGHT_MAX,
        )?;
        number(&format!("plan.control-maps[{i}].start"), map.start, 1.0)?;
        number(&format!("plan.control-maps[{i}].end"), map.end, 1.0)?;
        if map.start > map.end {
            return Err(bad(
                format!("plan.control-maps[{i}].end"),
                format_args!("is {}, before its start {}", map.end, map.start),
            ));
        }
    }
    number("plan.identity-weight", plan.identity_weight, WEIGHT_MAX)?;
    number("plan.guidance", plan.guidance, GUIDANCE_MAX)?;
    if plan.steps > STEPS_MAX {
        return Err(bad(
            "plan.steps",
            format_args!("is {}; at most {STEPS_MAX} are allowed", plan.steps),
        ));
    }
    let size = &plan.size;
    if !(1..=SIDE_MAX).contains(&size.width) || !(1..=SIDE_MAX).contains(&size.height) {
        return Err(bad(
            "plan.size",
            format_args!(
                "is {}x{}; each side must be in 1..={SIDE_MAX}",
                size.width, size.height
            ),
        ));
    }
    Ok(())
}

/// Checks what `describe` returned: bounded names, description and parameters.
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
        text(
            &field("description"),
            &param.description,
            DESCRIPTION_MAX_BYTES,
        )?;
        text(
            &field("default-value"),
            &param.default_value,
            PARAM_VALUE_MAX_BYTES,
        )?;
        if param.choices.len() > PARAMS_MAX {
            return Err(bad(
                field("choices"),
                format_args!(
                    "has {} choices; at most {PARAMS_MAX} are allowed",
                    param.choices.len()
                ),
            ));
        }
        for choice in &param.choices {
            text(&field("choices"), choice, PARAM_VALUE_MAX_BYTES)?;
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
    use crate::runtime::{ControlKind, ControlMap, ParamKind, ParamSpec, Size};

    fn good_plan() -> Plan {
        Plan {
            method: IdentityMethod::None,
            fallback: IdentityMethod::None,
            reference_face: None,
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
            size: Size {
                width: 1024,
                height: 1024,
            },
            seed: None,
            reason: "No faces, so the look comes from the photo.".into(),
        }
    }

    fn no_faces() -> Analysis {
        Analysis {
            width: 640,
            height: 480,
            faces: Vec::new(),
        }
    }

    fn field_of(edit: impl FnOnce(&mut Plan)) -> String {
        let mut plan = good_plan();
        edit(&mut plan);
        super::plan(&plan, &no_faces(), &Capabilities::none())
            .unwrap_err()
            .field
    }

    #[test]
    fn a_good_plan_passes() {
        super::plan(&good_plan(), &no_faces(), &Capabilities::none()).unwrap();
    }

    #[test]
    fn each_bad_plan_field_is_named() {
        assert_eq!(field_of(|p| p.prompt = "x".repeat(5000)), "plan.prompt");
        assert_eq!(
            field_of(|p| p.negative_prompt = "x".repeat(5000)),
            "plan.negative-prompt"
        );
        assert_eq!(field_of(|p| p.reason = "\n ".into()), "plan.reason");
        assert_eq!(field_of(|p| p.reason = "x".repeat(2000)), "plan.reason");
        assert_eq!(
            field_of(|p| p.method = IdentityMethod::Pulid),
            "plan.method"
        );
        assert_eq!(
            field_of(|p| p.fallback = IdentityMethod::InstantId),
            "plan.fallback"
        );
        assert_eq!(
            field_of(|p| p.reference_face = Some(0)),
            "plan.reference-face"
        );
        assert_eq!(
            field_of(|p| p.control_maps = vec![p.control_maps[0]; 9]),
            "plan.control-maps"
        );
        assert_eq!(
            field_of(|p| p.control_maps[0].weight = f32::NAN),
            "plan.control-maps[0].weight"
        );
        assert_eq!(
            field_of(|p| (p.control_maps[0].start, p.control_maps[0].end) = (0.9, 0.1)),
            "plan.control-maps[0].end"
        );
        assert_eq!(
            field_of(|p| p.identity_weight = f32::NEG_INFINITY),
            "plan.identity-weight"
        );
        assert_eq!(field_of(|p| p.guidance = 1e9), "plan.guidance");
        assert_eq!(field_of(|p| p.steps = u32::MAX), "plan.steps");
        assert_eq!(field_of(|p| p.size.width = 0), "plan.size");
        assert_eq!(field_of(|p| p.size.height = u32::MAX), "plan.size");
    }

    #[test]
    fn offered_methods_pass() {
        let mut plan = good_plan();
        plan.method = IdentityMethod::Controlnet;
        plan.fallback = IdentityMethod::None;
        super::plan(&plan, &no_faces(), &Capabilities::all()).unwrap();
    }

    #[test]
    fn style_info_bounds() {
        let param = ParamSpec {
            name: "palette".into(),
            description: "Which colours.".into(),
            kind: ParamKind::Choice,
            default_value: "gameboy".into(),
            choices: vec!["gameboy".into()],
        };
        let mut info = StyleInfo {
            id: "x".into(),
            name: "X".into(),
            version: "0.1.0".into(),
            description: "Short.".into(),
            params: vec![param.clone()],
        };
        super::info(&info).unwrap();
        info.params = vec![param.clone(); 65];
        assert_eq!(super::info(&info).unwrap_err().field, "style-info.params");
        info.params = vec![ParamSpec {
            name: String::new(),
            ..param
        }];
        assert_eq!(
            super::info(&info).unwrap_err().field,
            "style-info.params[0].name"
        );
        info.description = "d".repeat(5000);
        assert_eq!(
            super::info(&info).unwrap_err().field,
            "style-info.description"
        );
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
