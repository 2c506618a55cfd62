//! The host's checks of what a style returns (`wasm::checks`: a plan against the analysis and
//! capabilities it was made for, `describe()`'s style info, a post-processed image against its
//! input) on values built from the input. A guest may return anything its WIT types allow:
//! every value must pass or give a `BadField` naming the field (in its message too), never a
//! panic.
//!
//! The input is read as a stream of choices (`arbitrary::Unstructured`): floats are raw bits
//! (NaN, infinities and subnormals included), strings are either arbitrary or a repeated
//! character of a length around the bounds, lists are of arbitrary length.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use likeness_contract::{
    Analysis, Capabilities, ControlKind, ControlMap, Diffusion, Face, IdentityGate, Landmarks,
    Method, MethodKind, ParamKind, ParamSpec, Plan, Point, Rect, Size, SizeLimits, StyleInfo,
    Transfer, TransferCapabilities, Value,
};
use likeness_host::wasm::{Image, checks};

/// The longest string built (a little past the checks' largest string bound).
const TEXT_MAX: usize = 5_000;
/// The longest list built (past the checks' largest list bound).
const LIST_MAX: usize = 100;

fn text(u: &mut Unstructured) -> Result<String> {
    if u.arbitrary()? {
        u.arbitrary()
    } else {
        let c: char = u.arbitrary()?;
        Ok(std::iter::repeat_n(c, u.int_in_range(0..=TEXT_MAX)?).collect())
    }
}

fn list<T>(u: &mut Unstructured, item: fn(&mut Unstructured) -> Result<T>) -> Result<Vec<T>> {
    let len = if u.arbitrary()? {
        u.int_in_range(0..=4)?
    } else {
        u.int_in_range(0..=LIST_MAX)?
    };
    (0..len).map(|_| item(u)).collect()
}

fn method_kind(u: &mut Unstructured) -> Result<MethodKind> {
    Ok(*u.choose(&[
        MethodKind::InstantId,
        MethodKind::Pulid,
        MethodKind::Controlnet,
        MethodKind::StyleTransfer,
        MethodKind::None,
    ])?)
}

fn kind(u: &mut Unstructured) -> Result<ControlKind> {
    Ok(*u.choose(&[
        ControlKind::Canny,
        ControlKind::Depth,
        ControlKind::FaceKeypoints,
        ControlKind::Pose,
    ])?)
}

fn point(u: &mut Unstructured) -> Result<Point> {
    Ok(Point {
        x: u.arbitrary()?,
        y: u.arbitrary()?,
    })
}

fn face(u: &mut Unstructured) -> Result<Face> {
    Ok(Face {
        bbox: Rect {
            x1: u.arbitrary()?,
            y1: u.arbitrary()?,
            x2: u.arbitrary()?,
            y2: u.arbitrary()?,
        },
        score: u.arbitrary()?,
        landmarks: Landmarks {
            left_eye: point(u)?,
            right_eye: point(u)?,
            nose: point(u)?,
            mouth_left: point(u)?,
            mouth_right: point(u)?,
        },
        share: u.arbitrary()?,
        dominant: u.arbitrary()?,
    })
}

fn control_map(u: &mut Unstructured) -> Result<ControlMap> {
    Ok(ControlMap {
        kind: kind(u)?,
        weight: u.arbitrary()?,
        start: u.arbitrary()?,
        end: u.arbitrary()?,
    })
}

fn size(u: &mut Unstructured) -> Result<Size> {
    Ok(Size {
        width: u.arbitrary()?,
        height: u.arbitrary()?,
    })
}

fn diffusion(u: &mut Unstructured) -> Result<Diffusion> {
    Ok(Diffusion {
        prompt: text(u)?,
        negative_prompt: text(u)?,
        control_maps: list(u, control_map)?,
        identity_weight: u.arbitrary()?,
        steps: u.arbitrary()?,
        guidance: u.arbitrary()?,
        size: if u.arbitrary()? { Some(size(u)?) } else { None },
        seed: u.arbitrary()?,
    })
}

fn transfer(u: &mut Unstructured) -> Result<Transfer> {
    Ok(Transfer {
        learned_styles: list(u, |u| Ok((text(u)?, u.arbitrary()?)))?,
        style_picture: if u.arbitrary()? { Some(text(u)?) } else { None },
        strength: u.arbitrary()?,
        working_side: u.arbitrary()?,
        face_preservation: u.arbitrary()?,
    })
}

fn method(u: &mut Unstructured) -> Result<Method> {
    Ok(match u.int_in_range(0..=4)? {
        0 => Method::InstantId(diffusion(u)?),
        1 => Method::Pulid(diffusion(u)?),
        2 => Method::Controlnet(diffusion(u)?),
        3 => Method::StyleTransfer(transfer(u)?),
        _ => Method::None,
    })
}

fn plan(u: &mut Unstructured) -> Result<Plan> {
    Ok(Plan {
        method: method(u)?,
        fallbacks: list(u, method)?,
        reference_faces: list(u, |u| u.arbitrary())?,
        identity_gate: if u.arbitrary()? {
            Some(IdentityGate {
                threshold: u.arbitrary()?,
                attempts: u.arbitrary()?,
            })
        } else {
            None
        },
        reason: text(u)?,
    })
}

fn value(u: &mut Unstructured) -> Result<Value> {
    Ok(match u.int_in_range(0..=3)? {
        0 => Value::Text(text(u)?),
        1 => Value::Integer(u.arbitrary()?),
        2 => Value::Number(u.arbitrary()?),
        _ => Value::Boolean(u.arbitrary()?),
    })
}

fn param(u: &mut Unstructured) -> Result<ParamSpec> {
    let kind = match u.int_in_range(0..=4)? {
        0 => ParamKind::Text(u.arbitrary()?),
        1 => ParamKind::Integer {
            min: u.arbitrary()?,
            max: u.arbitrary()?,
        },
        2 => ParamKind::Number {
            min: u.arbitrary()?,
            max: u.arbitrary()?,
        },
        3 => ParamKind::Boolean,
        _ => ParamKind::Choice(list(u, text)?),
    };
    Ok(ParamSpec {
        name: text(u)?,
        description: text(u)?,
        kind,
        default_value: if u.arbitrary()? {
            Some(value(u)?)
        } else {
            None
        },
    })
}

fn info(u: &mut Unstructured) -> Result<StyleInfo> {
    Ok(StyleInfo {
        id: text(u)?,
        name: text(u)?,
        version: text(u)?,
        description: text(u)?,
        params: list(u, param)?,
    })
}

/// An image whose RGBA length need not match its size (a lying guest's).
fn image(u: &mut Unstructured) -> Result<Image> {
    let len = u.int_in_range(0..=4096)?;
    Ok(Image {
        width: u.arbitrary()?,
        height: u.arbitrary()?,
        rgba: vec![0; len],
    })
}

fn check(u: &mut Unstructured) -> Result<()> {
    match u.int_in_range(0..=2)? {
        0 => {
            let analysis = Analysis {
                width: u.arbitrary()?,
                height: u.arbitrary()?,
                faces: list(u, face)?,
            };
            let capabilities = Capabilities {
                methods: list(u, method_kind)?,
                control_maps: list(u, kind)?,
                diffusion_sizes: if u.arbitrary()? {
                    Some(SizeLimits {
                        multiple: u.arbitrary()?,
                        min_side: u.arbitrary()?,
                        max_side: u.arbitrary()?,
                        default_side: u.arbitrary()?,
                    })
                } else {
                    None
                },
                transfer: if u.arbitrary()? {
                    Some(TransferCapabilities {
                        learned_styles: list(u, text)?,
                        style_pictures: u.arbitrary()?,
                        max_side: u.arbitrary()?,
                    })
                } else {
                    None
                },
            };
            named(checks::plan(&plan(u)?, &analysis, &capabilities));
        }
        1 => named(checks::info(&info(u)?)),
        _ => {
            let (output, input) = (image(u)?, image(u)?);
            named(checks::image(&output, &input));
        }
    }
    Ok(())
}

/// A refusal must name the field, in its field and its message alike.
fn named(checked: std::result::Result<(), checks::BadField>) {
    if let Err(bad) = checked {
        assert!(!bad.field.is_empty(), "a refusal names no field: {bad:?}");
        assert!(
            bad.message.contains(&bad.field),
            "the message does not name the field: {bad:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = check(&mut Unstructured::new(data));
});
