//! The host's default identity-method decision, offered to styles as `policy.default-plan`
//! (moved here from the Rust SDK's `select`, so that a style in any language gets it):
//!
//! 1. No diffusion method at all (no diffusion pack): `none`, rendered from the photo.
//! 2. No face, several faces of similar size (the second largest box at least
//!    [`CROWD_RATIO`] of the largest), or a dominant face too small (share below
//!    [`MIN_FACE_SHARE`] or box's shorter side below [`MIN_FACE_SIDE`] pixels): `controlnet`,
//!    structure only.
//! 3. A usable face: the style's preferred identity method if the host has it, else the other
//!    identity method, else `controlnet`. An identity method falls back to `controlnet` (when
//!    the host has it) and then to `none`; `controlnet` falls back to `none`.
//! 4. `controlnet` without ControlNet on the host: `none`.
//!
//! Every outcome carries one sentence, for the client, saying why. Each diffusion method gets
//! its [`Sampling`] settings, the style's prompts and seed, and no size (the host's default for
//! the photo's aspect ratio, within the pack's limits).

use crate::types::{
    Analysis, Capabilities, ControlKind, ControlMap, Diffusion, Face, Method, MethodKind, Plan,
};

/// The smallest share of the image a face may cover and still be kept as an identity.
pub const MIN_FACE_SHARE: f32 = 0.02;
/// The smallest shorter side, in pixels, of a face box kept as an identity.
pub const MIN_FACE_SIDE: f32 = 48.0;
/// Several faces count as a group when the second largest box has at least this share of the
/// largest box's area.
pub const CROWD_RATIO: f32 = 0.5;

/// Faces covering less than this share of the image cannot change the decision for a photo
/// whose largest face covers [`MIN_FACE_SHARE`] or more: such a face is neither the dominant one
/// nor [`CROWD_RATIO`] of its size. The host detects down to this share first (a cheaper
/// detection) and looks again at every size only when [`settled_without_faces_under`] says no.
pub const SKIPPABLE_FACE_SHARE: f32 = CROWD_RATIO * MIN_FACE_SHARE;

/// Whether [`default_plan`] decides the same for `analysis` as for the same photo with every
/// face, when faces covering less than `skipped` of the image may be missing from it: its
/// largest face is too large for a missing one to be [`CROWD_RATIO`] of it, and its faces are
/// no group (the group's reason counts every face). No face at all is never settled (a missing
/// face may be one too small to keep, which the reason says).
pub fn settled_without_faces_under(analysis: &Analysis, skipped: f32) -> bool {
    let image = analysis.width as f32 * analysis.height as f32;
    let mut areas: Vec<f32> = analysis.faces.iter().map(|f| f.bbox.area()).collect();
    areas.sort_by(|a, b| b.total_cmp(a));
    match areas.as_slice() {
        [] => false,
        [largest, rest @ ..] => {
            CROWD_RATIO * largest >= skipped * image
                && rest
                    .first()
                    .is_none_or(|second| *second < CROWD_RATIO * largest)
        }
    }
}

/// What a style wants from the default decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Preferences {
    /// The look's name for the client's reason sentence, e.g. "anime".
    pub look: String,
    /// The identity method for one clear face (`instant-id` or `pulid`; `controlnet` for
    /// structure only, `none` for no neural network).
    pub preferred: MethodKind,
    /// The prompt.
    pub prompt: String,
    /// What diffusion should avoid.
    pub negative_prompt: String,
    /// Noise seed for the diffusion methods; `None` lets the host choose.
    pub seed: Option<u64>,
}

/// The sampling settings of a diffusion method.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Denoising steps.
    pub steps: u32,
    /// Classifier-free guidance scale.
    pub guidance: f32,
    /// Identity strength.
    pub identity_weight: f32,
}

impl Sampling {
    /// The settings for `method`: InstantID 30 steps, guidance 5.0, identity 0.8; PuLID
    /// (Lightning) 4 steps, guidance 1.2, identity 0.9; ControlNet 30 steps, guidance 7.0;
    /// the other methods sample nothing.
    pub fn for_method(method: MethodKind) -> Sampling {
        let (steps, guidance, identity_weight) = match method {
            MethodKind::InstantId => (30, 5.0, 0.8),
            MethodKind::Pulid => (4, 1.2, 0.9),
            MethodKind::Controlnet => (30, 7.0, 0.0),
            MethodKind::StyleTransfer | MethodKind::None => (0, 0.0, 0.0),
        };
        Sampling {
            steps,
            guidance,
            identity_weight,
        }
    }
}

/// A method's name as a client reads it.
pub fn method_name(method: MethodKind) -> &'static str {
    match method {
        MethodKind::InstantId => "InstantID",
        MethodKind::Pulid => "PuLID",
        MethodKind::Controlnet => "ControlNet",
        MethodKind::StyleTransfer => "style transfer",
        MethodKind::None => "no neural network",
    }
}

/// The index of the face the identity methods use: the one marked `dominant`, else the largest.
pub fn dominant_face(analysis: &Analysis) -> Option<usize> {
    if let Some(i) = analysis.faces.iter().position(|f| f.dominant) {
        return Some(i);
    }
    let mut best: Option<(usize, f32)> = None;
    for (i, face) in analysis.faces.iter().enumerate() {
        let area = face.bbox.area();
        if best.is_none_or(|(_, b)| area > b) {
            best = Some((i, area));
        }
    }
    best.map(|(i, _)| i)
}

fn control(kind: ControlKind, weight: f32, end: f32) -> ControlMap {
    ControlMap {
        kind,
        weight,
        start: 0.0,
        end,
    }
}

/// The control maps for `method`: ControlNet gets canny (0.5) plus depth (0.4) when the host
/// has it; InstantID gets the face keypoints for IdentityNet (0.8) plus canny and depth (0.4
/// each) when the host has them; the other methods get none.
pub fn control_maps(method: MethodKind, capabilities: &Capabilities) -> Vec<ControlMap> {
    let mut maps = Vec::new();
    match method {
        MethodKind::Controlnet => {
            maps.push(control(ControlKind::Canny, 0.5, 0.9));
            if capabilities.draws(ControlKind::Depth) {
                maps.push(control(ControlKind::Depth, 0.4, 0.8));
            }
        }
        MethodKind::InstantId => {
            maps.push(control(ControlKind::FaceKeypoints, 0.8, 1.0));
            if capabilities.draws(ControlKind::Canny) {
                maps.push(control(ControlKind::Canny, 0.4, 0.8));
            }
            if capabilities.draws(ControlKind::Depth) {
                maps.push(control(ControlKind::Depth, 0.4, 0.8));
            }
        }
        MethodKind::Pulid | MethodKind::StyleTransfer | MethodKind::None => {}
    }
    maps
}

/// The usable face's index, or why there is none, as the start of a sentence.
fn usable_face(analysis: &Analysis) -> Result<usize, String> {
    let faces = &analysis.faces;
    if faces.is_empty() {
        return Err("No face was found in the photo".to_string());
    }
    if faces.len() > 1 {
        let mut areas: Vec<f32> = faces.iter().map(|f: &Face| f.bbox.area()).collect();
        areas.sort_by(|a, b| b.total_cmp(a));
        if areas[0] > 0.0 && areas[1] >= CROWD_RATIO * areas[0] {
            return Err(format!(
                "The photo shows {} people of similar size and the likeness methods keep only one person",
                faces.len()
            ));
        }
    }
    let index = dominant_face(analysis).unwrap_or(0);
    let face = &faces[index];
    let (w, h) = (face.bbox.width(), face.bbox.height());
    if face.share < MIN_FACE_SHARE || w.min(h) < MIN_FACE_SIDE {
        let percent = face.share * 100.0;
        let share = if percent < 1.0 {
            format!("{percent:.1}%")
        } else {
            format!("{percent:.0}%")
        };
        return Err(format!(
            "The face is too small to keep a likeness ({} x {} pixels, {share} of the photo)",
            w.round(),
            h.round()
        ));
    }
    Ok(index)
}

/// The diffusion method `kind` with its control maps, [`Sampling`] and the preferences'
/// prompts and seed.
fn diffusion(kind: MethodKind, capabilities: &Capabilities, prefs: &Preferences) -> Method {
    let sampling = Sampling::for_method(kind);
    let settings = Diffusion {
        prompt: prefs.prompt.clone(),
        negative_prompt: prefs.negative_prompt.clone(),
        control_maps: control_maps(kind, capabilities),
        identity_weight: sampling.identity_weight,
        steps: sampling.steps,
        guidance: sampling.guidance,
        size: None,
        seed: prefs.seed,
    };
    Method::with_diffusion(kind, settings).unwrap_or(Method::None)
}

/// The default plan for `analysis` on a host with `capabilities` (see the module docs).
pub fn default_plan(analysis: &Analysis, capabilities: &Capabilities, prefs: &Preferences) -> Plan {
    let look = prefs.look.as_str();
    let has = |m: MethodKind| m != MethodKind::None && capabilities.offers(m);

    // 1. No diffusion pack at all.
    if !capabilities.methods.iter().any(|m| m.is_diffusion()) {
        return Plan::none(format!(
            "This server has no diffusion models installed, so the {look} look was rendered directly from the photo (no neural network)."
        ));
    }

    // 2. and 3.: an identity method for a usable face, else the cause for structure only.
    let structure_cause = match usable_face(analysis) {
        Err(cause) => cause,
        Ok(face) => {
            let other = match prefs.preferred {
                MethodKind::InstantId => Some(MethodKind::Pulid),
                MethodKind::Pulid => Some(MethodKind::InstantId),
                _ => None,
            };
            let identity = |method: MethodKind, reason: String| {
                let mut fallbacks = Vec::new();
                if has(MethodKind::Controlnet) {
                    fallbacks.push(diffusion(MethodKind::Controlnet, capabilities, prefs));
                }
                fallbacks.push(Method::None);
                Plan {
                    method: diffusion(method, capabilities, prefs),
                    fallbacks,
                    reference_faces: vec![face as u32],
                    identity_gate: None,
                    reason,
                }
            };
            match (prefs.preferred, other) {
                (MethodKind::None | MethodKind::StyleTransfer, _) => {
                    return Plan::none(format!(
                        "The {look} look is rendered directly from the photo (no neural network)."
                    ));
                }
                (MethodKind::Controlnet, _) => {
                    "This style guides the picture by the photo's structure only".to_string()
                }
                (p, _) if has(p) => {
                    return identity(
                        p,
                        format!(
                            "One clear face was found, so {} keeps the person's likeness in the {look} picture.",
                            method_name(p)
                        ),
                    );
                }
                (p, Some(o)) if has(o) => {
                    return identity(
                        o,
                        format!(
                            "{} is not installed on this server, so {} keeps the person's likeness in the {look} picture instead.",
                            method_name(p),
                            method_name(o)
                        ),
                    );
                }
                _ => {
                    "No likeness model (InstantID or PuLID) is installed on this server".to_string()
                }
            }
        }
    };

    // 4. Structure only, if the host has ControlNet.
    if has(MethodKind::Controlnet) {
        let guides = if capabilities.draws(ControlKind::Depth) {
            "the photo's outlines and depth guide"
        } else {
            "the photo's outlines guide"
        };
        Plan {
            method: diffusion(MethodKind::Controlnet, capabilities, prefs),
            fallbacks: vec![Method::None],
            reference_faces: Vec::new(),
            identity_gate: None,
            reason: format!("{structure_cause}, so only {guides} the {look} picture."),
        }
    } else {
        Plan::none(format!(
            "{structure_cause} and this server cannot generate from the photo's structure either, so the {look} look was rendered directly from the photo (no neural network)."
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Rect;

    fn analysis(sides: &[f32]) -> Analysis {
        let faces = sides
            .iter()
            .map(|&side| Face {
                bbox: Rect {
                    x1: 0.0,
                    y1: 0.0,
                    x2: side,
                    y2: side,
                },
                share: side * side / 1_000_000.0,
                ..Face::default()
            })
            .collect();
        Analysis {
            width: 1000,
            height: 1000,
            faces,
        }
    }

    #[test]
    fn only_a_large_single_face_settles_the_decision() {
        // 1% of a 1000x1000 photo is a 100-pixel square; 2% is about 141 pixels.
        let skipped = SKIPPABLE_FACE_SHARE;
        assert!(settled_without_faces_under(&analysis(&[150.0]), skipped));
        assert!(settled_without_faces_under(
            &analysis(&[150.0, 60.0]),
            skipped
        ));
        assert!(!settled_without_faces_under(&analysis(&[]), skipped));
        assert!(!settled_without_faces_under(&analysis(&[120.0]), skipped));
        assert!(!settled_without_faces_under(
            &analysis(&[150.0, 140.0]),
            skipped
        ));
    }
}
