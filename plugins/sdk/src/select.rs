//! The identity-method decision, shared by all styles, and the plan it leads to.
//!
//! [`select`] decides how the person's identity is carried into the picture from what the host
//! saw ([`Analysis`]) and what it can run ([`Capabilities`]):
//!
//! 1. No identity method at all (no diffusion pack): `none`, rendered from the photo.
//! 2. No face, several faces of similar size (the second largest box at least
//!    [`CROWD_RATIO`] of the largest), or a dominant face too small (share below
//!    [`MIN_FACE_SHARE`] or box's shorter side below [`MIN_FACE_SIDE`] pixels): `controlnet`,
//!    structure only.
//! 3. A usable face: the style's preferred identity method if the host has it, else the other
//!    identity method, else `controlnet`. An identity method falls back to `controlnet`, or to
//!    `none` when that is missing too.
//! 4. `controlnet` without ControlNet on the host: `none`.
//!
//! Every outcome carries one sentence, for the client, saying why.
//! [`Selection::into_plan`] then adds the sampling settings of the chosen method
//! ([`Sampling::for_method`]) and the request's prompt, size and seed.

use crate::{Analysis, Capabilities, ControlKind, ControlMap, Face, IdentityMethod, Plan, Size};

/// The smallest share of the image a face may cover and still be kept as an identity.
pub const MIN_FACE_SHARE: f32 = 0.02;
/// The smallest shorter side, in pixels, of a face box kept as an identity.
pub const MIN_FACE_SIDE: f32 = 48.0;
/// Several faces count as a group when the second largest box has at least this share of the
/// largest box's area.
pub const CROWD_RATIO: f32 = 0.5;

/// The outcome of [`select`]: everything of a plan that depends on the identity decision.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The method to run.
    pub method: IdentityMethod,
    /// What to run if `method` fails for this request.
    pub fallback: IdentityMethod,
    /// Index into `analysis.faces` of the face whose identity is kept (identity methods only).
    pub reference_face: Option<u32>,
    /// The ControlNet conditions for `method`.
    pub control_maps: Vec<ControlMap>,
    /// One sentence for the client: why this method.
    pub reason: String,
}

/// The sampling settings of a method.
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
    /// none: nothing to sample.
    pub fn for_method(method: IdentityMethod) -> Sampling {
        match method {
            IdentityMethod::InstantId => Sampling {
                steps: 30,
                guidance: 5.0,
                identity_weight: 0.8,
            },
            IdentityMethod::Pulid => Sampling {
                steps: 4,
                guidance: 1.2,
                identity_weight: 0.9,
            },
            IdentityMethod::Controlnet => Sampling {
                steps: 30,
                guidance: 7.0,
                identity_weight: 0.0,
            },
            IdentityMethod::None => Sampling {
                steps: 0,
                guidance: 0.0,
                identity_weight: 0.0,
            },
        }
    }
}

impl Selection {
    /// The full plan: this selection, the method's [`Sampling`], and the request's prompts,
    /// working size and seed.
    pub fn into_plan(
        self,
        prompt: String,
        negative_prompt: String,
        size: Size,
        seed: Option<u64>,
    ) -> Plan {
        let sampling = Sampling::for_method(self.method);
        Plan {
            method: self.method,
            fallback: self.fallback,
            reference_face: self.reference_face,
            prompt,
            negative_prompt,
            control_maps: self.control_maps,
            identity_weight: sampling.identity_weight,
            steps: sampling.steps,
            guidance: sampling.guidance,
            size,
            seed,
            reason: self.reason,
        }
    }
}

/// A method's name as a client reads it.
pub fn method_name(method: IdentityMethod) -> &'static str {
    match method {
        IdentityMethod::InstantId => "InstantID",
        IdentityMethod::Pulid => "PuLID",
        IdentityMethod::Controlnet => "ControlNet",
        IdentityMethod::None => "no neural network",
    }
}

/// The area of a face box, in square pixels (0 for an inverted box).
pub fn face_area(face: &Face) -> f32 {
    let b = &face.bbox;
    (b.x2 - b.x1).max(0.0) * (b.y2 - b.y1).max(0.0)
}

/// The index of the face the identity methods use: the one marked `dominant`, else the largest.
pub fn dominant_face(analysis: &Analysis) -> Option<usize> {
    if let Some(i) = analysis.faces.iter().position(|f| f.dominant) {
        return Some(i);
    }
    let mut best: Option<(usize, f32)> = None;
    for (i, f) in analysis.faces.iter().enumerate() {
        let a = face_area(f);
        if best.is_none_or(|(_, b)| a > b) {
            best = Some((i, a));
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
/// each) when the host has them; PuLID and none get none.
pub fn control_maps(method: IdentityMethod, capabilities: &Capabilities) -> Vec<ControlMap> {
    let has = |k: ControlKind| capabilities.control_maps.contains(&k);
    let mut maps = Vec::new();
    match method {
        IdentityMethod::Controlnet => {
            maps.push(control(ControlKind::Canny, 0.5, 0.9));
            if has(ControlKind::Depth) {
                maps.push(control(ControlKind::Depth, 0.4, 0.8));
            }
        }
        IdentityMethod::InstantId => {
            maps.push(control(ControlKind::FaceKeypoints, 0.8, 1.0));
            if has(ControlKind::Canny) {
                maps.push(control(ControlKind::Canny, 0.4, 0.8));
            }
            if has(ControlKind::Depth) {
                maps.push(control(ControlKind::Depth, 0.4, 0.8));
            }
        }
        IdentityMethod::Pulid | IdentityMethod::None => {}
    }
    maps
}

/// Why a usable face was not found, as the start of a sentence.
fn face_problem(analysis: &Analysis) -> Result<usize, String> {
    let faces = &analysis.faces;
    if faces.is_empty() {
        return Err("No face was found in the photo".to_string());
    }
    if faces.len() > 1 {
        let mut areas: Vec<f32> = faces.iter().map(face_area).collect();
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
    let w = (face.bbox.x2 - face.bbox.x1).max(0.0);
    let h = (face.bbox.y2 - face.bbox.y1).max(0.0);
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

/// Decides the method for a style that shows its look as `style_name` (e.g. "anime") and
/// prefers the identity method `preferred`. See the module documentation for the rules.
pub fn select(
    style_name: &str,
    analysis: &Analysis,
    capabilities: &Capabilities,
    preferred: IdentityMethod,
) -> Selection {
    let has = |m: IdentityMethod| capabilities.identity_methods.contains(&m);
    let none = |reason: String| Selection {
        method: IdentityMethod::None,
        fallback: IdentityMethod::None,
        reference_face: None,
        control_maps: Vec::new(),
        reason,
    };

    // 1. No diffusion pack at all.
    if !capabilities
        .identity_methods
        .iter()
        .any(|m| *m != IdentityMethod::None)
    {
        return none(format!(
            "This server has no diffusion models installed, so the {style_name} look was rendered directly from the photo (no neural network)."
        ));
    }

    // 2. and 3.: an identity method for a usable face, else the cause for structure only.
    let structure_cause = match face_problem(analysis) {
        Err(cause) => cause,
        Ok(face) => {
            let other = match preferred {
                IdentityMethod::InstantId => Some(IdentityMethod::Pulid),
                IdentityMethod::Pulid => Some(IdentityMethod::InstantId),
                _ => None,
            };
            let fallback = if has(IdentityMethod::Controlnet) {
                IdentityMethod::Controlnet
            } else {
                IdentityMethod::None
            };
            let identity = |method: IdentityMethod, reason: String| Selection {
                method,
                fallback,
                reference_face: Some(face as u32),
                control_maps: control_maps(method, capabilities),
                reason,
            };
            match (preferred, other) {
                (IdentityMethod::None, _) => {
                    return none(format!(
                        "The {style_name} look is rendered directly from the photo (no neural network)."
                    ));
                }
                (IdentityMethod::Controlnet, _) => {
                    "This style guides the picture by the photo's structure only".to_string()
                }
                (p, _) if has(p) => {
                    return identity(
                        p,
                        format!(
                            "One clear face was found, so {} keeps the person's likeness in the {style_name} picture.",
                            method_name(p)
                        ),
                    );
                }
                (p, Some(o)) if has(o) => {
                    return identity(
                        o,
                        format!(
                            "{} is not installed on this server, so {} keeps the person's likeness in the {style_name} picture instead.",
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
    if has(IdentityMethod::Controlnet) {
        let maps = control_maps(IdentityMethod::Controlnet, capabilities);
        let guides = if maps.iter().any(|m| m.kind == ControlKind::Depth) {
            "the photo's outlines and depth guide"
        } else {
            "the photo's outlines guide"
        };
        Selection {
            method: IdentityMethod::Controlnet,
            fallback: IdentityMethod::None,
            reference_face: None,
            control_maps: maps,
            reason: format!("{structure_cause}, so only {guides} the {style_name} picture."),
        }
    } else {
        none(format!(
            "{structure_cause} and this server cannot generate from the photo's structure either, so the {style_name} look was rendered directly from the photo (no neural network)."
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Landmarks, Point, Rect};

    fn face(x: f32, y: f32, w: f32, h: f32, image: (u32, u32)) -> Face {
        let p = Point { x, y };
        Face {
            bbox: Rect {
                x1: x,
                y1: y,
                x2: x + w,
                y2: y + h,
            },
            score: 0.9,
            landmarks: Landmarks {
                left_eye: p,
                right_eye: p,
                nose: p,
                mouth_left: p,
                mouth_right: p,
            },
            share: w * h / (image.0 * image.1) as f32,
            dominant: false,
        }
    }

    fn analysis(boxes: &[(f32, f32)]) -> Analysis {
        let mut faces: Vec<Face> = boxes
            .iter()
            .enumerate()
            .map(|(i, (w, h))| face(i as f32 * 10.0, 0.0, *w, *h, (1000, 1000)))
            .collect();
        if let Some(f) = faces.first_mut() {
            f.dominant = true;
        }
        Analysis {
            width: 1000,
            height: 1000,
            faces,
        }
    }

    fn caps(methods: &[IdentityMethod], maps: &[ControlKind]) -> Capabilities {
        Capabilities {
            identity_methods: methods.to_vec(),
            control_maps: maps.to_vec(),
        }
    }

    fn full() -> Capabilities {
        use IdentityMethod::*;
        caps(
            &[InstantId, Pulid, Controlnet],
            &[
                ControlKind::Canny,
                ControlKind::Depth,
                ControlKind::FaceKeypoints,
                ControlKind::Pose,
            ],
        )
    }

    fn kinds(s: &Selection) -> Vec<(ControlKind, f32)> {
        s.control_maps.iter().map(|m| (m.kind, m.weight)).collect()
    }

    use IdentityMethod::{Controlnet, InstantId, Pulid};

    #[test]
    fn no_diffusion_pack_means_none() {
        let s = select(
            "anime",
            &analysis(&[(300.0, 300.0)]),
            &caps(&[], &[]),
            InstantId,
        );
        assert_eq!(s.method, IdentityMethod::None);
        assert_eq!(s.fallback, IdentityMethod::None);
        assert_eq!(s.reference_face, None);
        assert!(s.control_maps.is_empty());
        assert_eq!(
            s.reason,
            "This server has no diffusion models installed, so the anime look was rendered directly from the photo (no neural network)."
        );
        let only_none = caps(&[IdentityMethod::None], &[ControlKind::Canny]);
        assert_eq!(
            select("anime", &analysis(&[]), &only_none, Pulid).method,
            IdentityMethod::None
        );
    }

    #[test]
    fn one_clear_face_gets_the_preferred_method() {
        let s = select(
            "anime",
            &analysis(&[(300.0, 300.0), (100.0, 100.0)]),
            &full(),
            InstantId,
        );
        assert_eq!(s.method, InstantId);
        assert_eq!(s.fallback, Controlnet);
        assert_eq!(s.reference_face, Some(0));
        assert_eq!(
            kinds(&s),
            vec![
                (ControlKind::FaceKeypoints, 0.8),
                (ControlKind::Canny, 0.4),
                (ControlKind::Depth, 0.4)
            ]
        );
        assert!(s.reason.contains("InstantID"), "{}", s.reason);

        let s = select("claymation", &analysis(&[(300.0, 300.0)]), &full(), Pulid);
        assert_eq!(s.method, Pulid);
        assert!(s.control_maps.is_empty());
        assert!(s.reason.contains("PuLID"));
    }

    #[test]
    fn zero_faces_means_structure_only() {
        let s = select("anime", &analysis(&[]), &full(), InstantId);
        assert_eq!(s.method, Controlnet);
        assert_eq!(s.fallback, IdentityMethod::None);
        assert_eq!(s.reference_face, None);
        assert_eq!(
            kinds(&s),
            vec![(ControlKind::Canny, 0.5), (ControlKind::Depth, 0.4)]
        );
        assert_eq!(
            s.reason,
            "No face was found in the photo, so only the photo's outlines and depth guide the anime picture."
        );
        // Without a depth map, canny alone.
        let c = caps(&[InstantId, Controlnet], &[ControlKind::Canny]);
        let s = select("anime", &analysis(&[]), &c, InstantId);
        assert_eq!(kinds(&s), vec![(ControlKind::Canny, 0.5)]);
        assert!(s.reason.contains("only the photo's outlines guide"));
    }

    #[test]
    fn similar_sized_faces_mean_structure_only() {
        // Exactly half the area: a group.
        let s = select(
            "anime",
            &analysis(&[(200.0, 200.0), (100.0, 200.0), (50.0, 50.0)]),
            &full(),
            InstantId,
        );
        assert_eq!(s.method, Controlnet);
        assert!(s.reason.contains("3 people"), "{}", s.reason);
        // Just under half: the large face wins.
        let s = select(
            "anime",
            &analysis(&[(200.0, 200.0), (99.0, 200.0)]),
            &full(),
            InstantId,
        );
        assert_eq!(s.method, InstantId);
        assert_eq!(s.reference_face, Some(0));
    }

    #[test]
    fn the_group_check_does_not_trust_the_order() {
        // Largest last, not flagged dominant.
        let mut a = analysis(&[(100.0, 100.0), (300.0, 300.0)]);
        a.faces[0].dominant = false;
        let s = select("anime", &a, &full(), Pulid);
        assert_eq!(s.method, Pulid);
        assert_eq!(s.reference_face, Some(1));
    }

    #[test]
    fn dominant_flag_picks_the_reference() {
        let mut a = analysis(&[(300.0, 300.0), (100.0, 100.0)]);
        assert_eq!(dominant_face(&a), Some(0));
        a.faces[0].dominant = false;
        a.faces[1].dominant = true;
        assert_eq!(dominant_face(&a), Some(1));
        // The flagged face is 100 x 100, 1% of the image: too small, whatever the others.
        let s = select("anime", &a, &full(), InstantId);
        assert_eq!(s.method, Controlnet);
        assert!(
            s.reason.contains("100 x 100 pixels, 1% of the photo"),
            "{}",
            s.reason
        );
        a.faces[1].dominant = false;
        assert_eq!(dominant_face(&a), Some(0));
        assert_eq!(dominant_face(&analysis(&[])), None);
    }

    #[test]
    fn small_faces_mean_structure_only() {
        // Share boundary: 2% of 1000x1000 is 20000 px, e.g. 200 x 100.
        let s = select("anime", &analysis(&[(200.0, 100.0)]), &full(), InstantId);
        assert_eq!(s.method, InstantId, "{}", s.reason);
        let s = select("anime", &analysis(&[(199.0, 100.0)]), &full(), InstantId);
        assert_eq!(s.method, Controlnet);
        assert_eq!(
            s.reason,
            "The face is too small to keep a likeness (199 x 100 pixels, 2% of the photo), so only the photo's outlines and depth guide the anime picture."
        );
        // Side boundary: 48 px is enough, 47 is not, whatever the share.
        let mut a = Analysis {
            width: 100,
            height: 100,
            faces: vec![face(0.0, 0.0, 48.0, 60.0, (100, 100))],
        };
        a.faces[0].dominant = true;
        assert_eq!(select("anime", &a, &full(), InstantId).method, InstantId);
        a.faces[0] = face(0.0, 0.0, 47.0, 60.0, (100, 100));
        let s = select("anime", &a, &full(), InstantId);
        assert_eq!(s.method, Controlnet);
        assert!(
            s.reason.contains("47 x 60 pixels, 28% of the photo"),
            "{}",
            s.reason
        );
        // Tiny shares print a decimal.
        let s = select("anime", &analysis(&[(60.0, 60.0)]), &full(), InstantId);
        assert!(s.reason.contains("0.4% of the photo"), "{}", s.reason);
    }

    #[test]
    fn missing_preferred_method_uses_the_other() {
        let c = caps(
            &[Pulid, Controlnet],
            &[ControlKind::Canny, ControlKind::Depth],
        );
        let s = select("watercolor", &analysis(&[(300.0, 300.0)]), &c, InstantId);
        assert_eq!(s.method, Pulid);
        assert_eq!(s.fallback, Controlnet);
        assert_eq!(
            s.reason,
            "InstantID is not installed on this server, so PuLID keeps the person's likeness in the watercolor picture instead."
        );
        let c = caps(&[InstantId], &[ControlKind::Canny]);
        let s = select("claymation", &analysis(&[(300.0, 300.0)]), &c, Pulid);
        assert_eq!(s.method, InstantId);
        assert_eq!(s.fallback, IdentityMethod::None);
        assert_eq!(
            kinds(&s),
            vec![(ControlKind::FaceKeypoints, 0.8), (ControlKind::Canny, 0.4)]
        );
    }

    #[test]
    fn no_identity_method_means_controlnet() {
        let c = caps(&[Controlnet], &[ControlKind::Canny]);
        let s = select("anime", &analysis(&[(300.0, 300.0)]), &c, InstantId);
        assert_eq!(s.method, Controlnet);
        assert_eq!(s.reference_face, None);
        assert_eq!(
            s.reason,
            "No likeness model (InstantID or PuLID) is installed on this server, so only the photo's outlines guide the anime picture."
        );
    }

    #[test]
    fn controlnet_without_controlnet_means_none() {
        let c = caps(&[InstantId], &[ControlKind::Canny]);
        let s = select("anime", &analysis(&[]), &c, InstantId);
        assert_eq!(s.method, IdentityMethod::None);
        assert_eq!(s.fallback, IdentityMethod::None);
        assert!(s.control_maps.is_empty());
        assert_eq!(
            s.reason,
            "No face was found in the photo and this server cannot generate from the photo's structure either, so the anime look was rendered directly from the photo (no neural network)."
        );
    }

    #[test]
    fn reasons_are_single_sentences() {
        let cases = [
            select("anime", &analysis(&[]), &full(), InstantId),
            select("anime", &analysis(&[(60.0, 60.0)]), &full(), InstantId),
            select(
                "anime",
                &analysis(&[(300.0, 300.0), (300.0, 300.0)]),
                &full(),
                InstantId,
            ),
            select(
                "anime",
                &analysis(&[(300.0, 300.0)]),
                &caps(&[], &[]),
                InstantId,
            ),
        ];
        for s in cases {
            assert!(s.reason.ends_with('.'), "{}", s.reason);
            assert_eq!(s.reason.matches(". ").count(), 0, "{}", s.reason);
        }
    }

    #[test]
    fn plans_carry_the_sampling_of_the_method() {
        let size = Size {
            width: 1024,
            height: 1280,
        };
        let s = select("anime", &analysis(&[(300.0, 300.0)]), &full(), Pulid);
        let plan = s.into_plan("p".into(), "n".into(), size, Some(7));
        assert_eq!(
            (plan.steps, plan.guidance, plan.identity_weight),
            (4, 1.2, 0.9)
        );
        assert_eq!(plan.seed, Some(7));
        assert_eq!(plan.size.height, 1280);
        assert_eq!(
            Sampling::for_method(InstantId),
            Sampling {
                steps: 30,
                guidance: 5.0,
                identity_weight: 0.8
            }
        );
        assert_eq!(Sampling::for_method(Controlnet).guidance, 7.0);
        assert_eq!(Sampling::for_method(IdentityMethod::None).steps, 0);
    }
}
