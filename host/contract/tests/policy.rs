//! The host's default policy gives the decisions the Rust SDK's selection (`select.rs`, before
//! it moved into the host) gave: the 4 x 4 cases (no face, one clear face, several faces, a tiny
//! face x no diffusion, ControlNet only, InstantID + ControlNet, everything), for a style that
//! prefers InstantID and one that prefers PuLID. The expected rows were printed by the old
//! `select::select` before the move; the boundary tests are the old module's own tests.

use ControlKind::{Canny, Depth, FaceKeypoints};
use MethodKind::{Controlnet, InstantId, None as Plain, Pulid};
use likeness_contract::policy::{Preferences, Sampling, default_plan, dominant_face};
use likeness_contract::{
    Analysis, Capabilities, ControlKind, Face, Landmarks, Method, MethodKind, Plan, Point, Rect,
    SizeLimits,
};

/// (preferred, faces, capabilities, method, first fallback, reference face, control maps
/// (kind, weight, start, end), reason), as the old selection decided.
type Row = (
    MethodKind,
    &'static str,
    &'static str,
    MethodKind,
    MethodKind,
    Option<u32>,
    &'static [(ControlKind, f32, f32, f32)],
    &'static str,
);

const ORACLE: &[Row] = &[
    (
        InstantId,
        "zero",
        "none",
        Plain,
        Plain,
        None,
        &[],
        "This server has no diffusion models installed, so the anime look was rendered directly from the photo (no neural network).",
    ),
    (
        InstantId,
        "zero",
        "controlnet",
        Controlnet,
        Plain,
        None,
        &[(Canny, 0.5, 0.0, 0.9), (Depth, 0.4, 0.0, 0.8)],
        "No face was found in the photo, so only the photo's outlines and depth guide the anime picture.",
    ),
    (
        InstantId,
        "zero",
        "instantid+controlnet",
        Controlnet,
        Plain,
        None,
        &[(Canny, 0.5, 0.0, 0.9), (Depth, 0.4, 0.0, 0.8)],
        "No face was found in the photo, so only the photo's outlines and depth guide the anime picture.",
    ),
    (
        InstantId,
        "zero",
        "all",
        Controlnet,
        Plain,
        None,
        &[(Canny, 0.5, 0.0, 0.9), (Depth, 0.4, 0.0, 0.8)],
        "No face was found in the photo, so only the photo's outlines and depth guide the anime picture.",
    ),
    (
        InstantId,
        "one",
        "none",
        Plain,
        Plain,
        None,
        &[],
        "This server has no diffusion models installed, so the anime look was rendered directly from the photo (no neural network).",
    ),
    (
        InstantId,
        "one",
        "controlnet",
        Controlnet,
        Plain,
        None,
        &[(Canny, 0.5, 0.0, 0.9), (Depth, 0.4, 0.0, 0.8)],
        "No likeness model (InstantID or PuLID) is installed on this server, so only the photo's outlines and depth guide the anime picture.",
    ),
    (
        InstantId,
        "one",
        "instantid+controlnet",
        InstantId,
        Controlnet,
        Some(0),
        &[
            (FaceKeypoints, 0.8, 0.0, 1.0),
            (Canny, 0.4, 0.0, 0.8),
            (Depth, 0.4, 0.0, 0.8),
        ],
        "One clear face was found, so InstantID keeps the person's likeness in the anime picture.",
    ),
    (
        InstantId,
        "one",
        "all",
        InstantId,
        Controlnet,
        Some(0),
        &[
            (FaceKeypoints, 0.8, 0.0, 1.0),
            (Canny, 0.4, 0.0, 0.8),
            (Depth, 0.4, 0.0, 0.8),
        ],
        "One clear face was found, so InstantID keeps the person's likeness in the anime picture.",
    ),
    (
        InstantId,
        "several",
        "none",
        Plain,
        Plain,
        None,
        &[],
        "This server has no diffusion models installed, so the anime look was rendered directly from the photo (no neural network).",
    ),
    (
        InstantId,
        "several",
        "controlnet",
        Controlnet,
        Plain,
        None,
        &[(Canny, 0.5, 0.0, 0.9), (Depth, 0.4, 0.0, 0.8)],
        "The photo shows 3 people of similar size and the likeness methods keep only one person, so only the photo's outlines and depth guide the anime picture.",
    ),
    (
        InstantId,
        "several",
        "instantid+controlnet",
        Controlnet,
        Plain,
        None,
        &[(Canny, 0.5, 0.0, 0.9), (Depth, 0.4, 0.0, 0.8)],
        "The photo shows 3 people of similar size and the likeness methods keep only one person, so only the photo's outlines and depth guide the anime picture.",
    ),
    (
        InstantId,
        "several",
        "all",
        Controlnet,
        Plain,
        None,
        &[(Canny, 0.5, 0.0, 0.9), (Depth, 0.4, 0.0, 0.8)],
        "The photo shows 3 people of similar size and the likeness methods keep only one person, so only the photo's outlines and depth guide the anime picture.",
    ),
    (
        InstantId,
        "tiny",
        "none",
        Plain,
        Plain,
        None,
        &[],
        "This server has no diffusion models installed, so the anime look was rendered directly from the photo (no neural network).",
    ),
    (
        InstantId,
        "tiny",
        "controlnet",
        Controlnet,
        Plain,
        None,
        &[(Canny, 0.5, 0.0, 0.9), (Depth, 0.4, 0.0, 0.8)],
        "The face is too small to keep a likeness (40 x 40 pixels, 0.2% of the photo), so only the photo's outlines and depth guide the anime picture.",
    ),
    (
        InstantId,
        "tiny",
        "instantid+controlnet",
        Controlnet,
        Plain,
        None,
        &[(Canny, 0.5, 0.0, 0.9), (Depth, 0.4, 0.0, 0.8)],
        "The face is too small to keep a likeness (40 x 40 pixels, 0.2% of the photo), so only the photo's outlines and depth guide the anime picture.",
    ),
    (
        InstantId,
        "tiny",
        "all",
        Controlnet,
        Plain,
        None,
        &[(Canny, 0.5, 0.0, 0.9), (Depth, 0.4, 0.0, 0.8)],
        "The face is too small to keep a likeness (40 x 40 pixels, 0.2% of the photo), so only the photo's outlines and depth guide the anime picture.",
    ),
    (
        Pulid,
        "zero",
        "none",
        Plain,
        Plain,
        None,
        &[],
        "This server has no diffusion models installed, so the anime look was rendered directly from the photo (no neural network).",
    ),
    (
        Pulid,
        "zero",
        "controlnet",
        Controlnet,
        Plain,
        None,
        &[(Canny, 0.5, 0.0, 0.9), (Depth, 0.4, 0.0, 0.8)],
        "No face was found in the photo, so only the photo's outlines and depth guide the anime picture.",
    ),
    (
        Pulid,
        "zero",
        "instantid+controlnet",
        Controlnet,
        Plain,
        None,
        &[(Canny, 0.5, 0.0, 0.9), (Depth, 0.4, 0.0, 0.8)],
        "No face was found in the photo, so only the photo's outlines and depth guide the anime picture.",
    ),
    (
        Pulid,
        "zero",
        "all",
        Controlnet,
        Plain,
        None,
        &[(Canny, 0.5, 0.0, 0.9), (Depth, 0.4, 0.0, 0.8)],
        "No face was found in the photo, so only the photo's outlines and depth guide the anime picture.",
    ),
    (
        Pulid,
        "one",
        "none",
        Plain,
        Plain,
        None,
        &[],
        "This server has no diffusion models installed, so the anime look was rendered directly from the photo (no neural network).",
    ),
    (
        Pulid,
        "one",
        "controlnet",
        Controlnet,
        Plain,
        None,
        &[(Canny, 0.5, 0.0, 0.9), (Depth, 0.4, 0.0, 0.8)],
        "No likeness model (InstantID or PuLID) is installed on this server, so only the photo's outlines and depth guide the anime picture.",
    ),
    (
        Pulid,
        "one",
        "instantid+controlnet",
        InstantId,
        Controlnet,
        Some(0),
        &[
            (FaceKeypoints, 0.8, 0.0, 1.0),
            (Canny, 0.4, 0.0, 0.8),
            (Depth, 0.4, 0.0, 0.8),
        ],
        "PuLID is not installed on this server, so InstantID keeps the person's likeness in the anime picture instead.",
    ),
    (
        Pulid,
        "one",
        "all",
        Pulid,
        Controlnet,
        Some(0),
        &[],
        "One clear face was found, so PuLID keeps the person's likeness in the anime picture.",
    ),
    (
        Pulid,
        "several",
        "none",
        Plain,
        Plain,
        None,
        &[],
        "This server has no diffusion models installed, so the anime look was rendered directly from the photo (no neural network).",
    ),
    (
        Pulid,
        "several",
        "controlnet",
        Controlnet,
        Plain,
        None,
        &[(Canny, 0.5, 0.0, 0.9), (Depth, 0.4, 0.0, 0.8)],
        "The photo shows 3 people of similar size and the likeness methods keep only one person, so only the photo's outlines and depth guide the anime picture.",
    ),
    (
        Pulid,
        "several",
        "instantid+controlnet",
        Controlnet,
        Plain,
        None,
        &[(Canny, 0.5, 0.0, 0.9), (Depth, 0.4, 0.0, 0.8)],
        "The photo shows 3 people of similar size and the likeness methods keep only one person, so only the photo's outlines and depth guide the anime picture.",
    ),
    (
        Pulid,
        "several",
        "all",
        Controlnet,
        Plain,
        None,
        &[(Canny, 0.5, 0.0, 0.9), (Depth, 0.4, 0.0, 0.8)],
        "The photo shows 3 people of similar size and the likeness methods keep only one person, so only the photo's outlines and depth guide the anime picture.",
    ),
    (
        Pulid,
        "tiny",
        "none",
        Plain,
        Plain,
        None,
        &[],
        "This server has no diffusion models installed, so the anime look was rendered directly from the photo (no neural network).",
    ),
    (
        Pulid,
        "tiny",
        "controlnet",
        Controlnet,
        Plain,
        None,
        &[(Canny, 0.5, 0.0, 0.9), (Depth, 0.4, 0.0, 0.8)],
        "The face is too small to keep a likeness (40 x 40 pixels, 0.2% of the photo), so only the photo's outlines and depth guide the anime picture.",
    ),
    (
        Pulid,
        "tiny",
        "instantid+controlnet",
        Controlnet,
        Plain,
        None,
        &[(Canny, 0.5, 0.0, 0.9), (Depth, 0.4, 0.0, 0.8)],
        "The face is too small to keep a likeness (40 x 40 pixels, 0.2% of the photo), so only the photo's outlines and depth guide the anime picture.",
    ),
    (
        Pulid,
        "tiny",
        "all",
        Controlnet,
        Plain,
        None,
        &[(Canny, 0.5, 0.0, 0.9), (Depth, 0.4, 0.0, 0.8)],
        "The face is too small to keep a likeness (40 x 40 pixels, 0.2% of the photo), so only the photo's outlines and depth guide the anime picture.",
    ),
];

fn face(x: f32, y: f32, w: f32, h: f32, image: (u32, u32)) -> Face {
    let p = Point {
        x: x + w / 2.0,
        y: y + h / 2.0,
    };
    Face {
        bbox: Rect {
            x1: x,
            y1: y,
            x2: x + w,
            y2: y + h,
        },
        score: 0.99,
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

fn faces(case: &str) -> Analysis {
    let f = |x: f32, w: f32| face(x, 200.0, w, w, (1000, 1000));
    let mut faces = match case {
        "zero" => vec![],
        "one" => vec![f(300.0, 300.0)],
        "several" => vec![f(100.0, 250.0), f(500.0, 220.0), f(800.0, 150.0)],
        "tiny" => vec![f(400.0, 40.0)],
        other => panic!("no case {other}"),
    };
    if let Some(first) = faces.first_mut() {
        first.dominant = true;
    }
    Analysis {
        width: 1000,
        height: 1000,
        faces,
    }
}

fn caps(methods: &[MethodKind], maps: &[ControlKind]) -> Capabilities {
    let mut all = vec![Plain];
    all.extend_from_slice(methods);
    Capabilities {
        methods: all,
        control_maps: maps.to_vec(),
        diffusion_sizes: (!methods.is_empty()).then_some(SizeLimits {
            multiple: 64,
            min_side: 512,
            max_side: 1536,
            default_side: 1024,
        }),
        transfer: None,
    }
}

fn capability_set(name: &str) -> Capabilities {
    match name {
        "none" => caps(&[], &[]),
        "controlnet" => caps(&[Controlnet], &[Canny, Depth]),
        "instantid+controlnet" => caps(&[InstantId, Controlnet], &[Canny, Depth, FaceKeypoints]),
        "all" => caps(
            &[InstantId, Pulid, Controlnet],
            &[Canny, Depth, FaceKeypoints],
        ),
        other => panic!("no capability set {other}"),
    }
}

fn plan(
    look: &str,
    analysis: &Analysis,
    capabilities: &Capabilities,
    preferred: MethodKind,
) -> Plan {
    let prefs = Preferences {
        look: look.into(),
        preferred,
        prompt: "a portrait".into(),
        negative_prompt: "blurry".into(),
        seed: Some(7),
    };
    default_plan(analysis, capabilities, &prefs)
}

fn maps(plan: &Plan) -> Vec<(ControlKind, f32, f32, f32)> {
    plan.method
        .diffusion()
        .map(|d| {
            d.control_maps
                .iter()
                .map(|m| (m.kind, m.weight, m.start, m.end))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_policy_decides_as_the_old_selection_did() {
    assert_eq!(ORACLE.len(), 32);
    for &(preferred, case, set, method, fallback, reference, expected_maps, reason) in ORACLE {
        let at = format!("{preferred:?} / {case} faces / {set}");
        let p = plan("anime", &faces(case), &capability_set(set), preferred);
        assert_eq!(p.method.kind(), method, "{at}");
        // The old single fallback is the new list's head; its `none` meant "no further
        // fallback" (an empty list or `[none]` now).
        let head = p.fallbacks.first().map_or(Plain, Method::kind);
        assert_eq!(head, fallback, "{at}");
        assert_eq!(p.reference_faces.first().copied(), reference, "{at}");
        assert_eq!(maps(&p), expected_maps, "{at}");
        assert_eq!(p.reason, reason, "{at}");
        // What the old plan carried besides: the method's sampling, the prompts and the seed.
        if let Some(d) = p.method.diffusion() {
            let s = Sampling::for_method(method);
            assert_eq!(
                (d.steps, d.guidance, d.identity_weight),
                (s.steps, s.guidance, s.identity_weight),
                "{at}"
            );
            assert_eq!(
                (d.prompt.as_str(), d.negative_prompt.as_str(), d.seed),
                ("a portrait", "blurry", Some(7)),
                "{at}"
            );
            assert_eq!(
                d.size, None,
                "{at}: the host picks the size within the pack's limits"
            );
        }
        // Identity methods fall back to ControlNet (when offered) and then to none.
        if matches!(method, InstantId | Pulid) {
            assert_eq!(p.fallbacks.last().map(Method::kind), Some(Plain), "{at}");
        }
        assert!(p.identity_gate.is_none(), "{at}");
    }
}

#[test]
fn similar_sized_faces_mean_structure_only() {
    let all = capability_set("all");
    let two = |w2: f32| {
        let mut a = Analysis {
            width: 1000,
            height: 1000,
            faces: vec![
                face(0.0, 0.0, 200.0, 200.0, (1000, 1000)),
                face(300.0, 0.0, w2, 200.0, (1000, 1000)),
            ],
        };
        a.faces[0].dominant = true;
        a
    };
    // Exactly half the area: a group. Just under: the large face wins.
    assert_eq!(
        plan("anime", &two(100.0), &all, InstantId).method.kind(),
        Controlnet
    );
    let p = plan("anime", &two(99.0), &all, InstantId);
    assert_eq!(p.method.kind(), InstantId);
    assert_eq!(p.reference_faces, vec![0]);
}

#[test]
fn the_group_check_does_not_trust_the_order() {
    let a = Analysis {
        width: 1000,
        height: 1000,
        faces: vec![
            face(0.0, 0.0, 100.0, 100.0, (1000, 1000)),
            face(200.0, 0.0, 300.0, 300.0, (1000, 1000)),
        ],
    };
    let p = plan("anime", &a, &capability_set("all"), Pulid);
    assert_eq!(p.method.kind(), Pulid);
    assert_eq!(p.reference_faces, vec![1]);
    assert_eq!(dominant_face(&a), Some(1));
    assert_eq!(dominant_face(&faces("zero")), None);
}

#[test]
fn small_faces_mean_structure_only() {
    let all = capability_set("all");
    let one = |w: f32, h: f32, image: u32| {
        let mut f = face(0.0, 0.0, w, h, (image, image));
        f.dominant = true;
        Analysis {
            width: image,
            height: image,
            faces: vec![f],
        }
    };
    // Share boundary: 2% of 1000x1000 is 20000 px.
    assert_eq!(
        plan("anime", &one(200.0, 100.0, 1000), &all, InstantId)
            .method
            .kind(),
        InstantId
    );
    let p = plan("anime", &one(199.0, 100.0, 1000), &all, InstantId);
    assert_eq!(p.method.kind(), Controlnet);
    assert_eq!(
        p.reason,
        "The face is too small to keep a likeness (199 x 100 pixels, 2% of the photo), so only the photo's outlines and depth guide the anime picture."
    );
    // Side boundary: 48 px is enough, 47 is not, whatever the share.
    assert_eq!(
        plan("anime", &one(48.0, 60.0, 100), &all, InstantId)
            .method
            .kind(),
        InstantId
    );
    let p = plan("anime", &one(47.0, 60.0, 100), &all, InstantId);
    assert!(
        p.reason.contains("47 x 60 pixels, 28% of the photo"),
        "{}",
        p.reason
    );
}

#[test]
fn a_missing_method_or_map_is_left_out() {
    let p = plan(
        "claymation",
        &faces("one"),
        &caps(&[InstantId], &[Canny]),
        Pulid,
    );
    assert_eq!(p.method.kind(), InstantId);
    assert_eq!(p.fallbacks, vec![Method::None]);
    assert_eq!(
        maps(&p),
        vec![(FaceKeypoints, 0.8, 0.0, 1.0), (Canny, 0.4, 0.0, 0.8)]
    );
    let p = plan(
        "anime",
        &faces("zero"),
        &caps(&[InstantId, Controlnet], &[Canny]),
        InstantId,
    );
    assert_eq!(maps(&p), vec![(Canny, 0.5, 0.0, 0.9)]);
    assert!(p.reason.contains("only the photo's outlines guide"));
    let p = plan(
        "anime",
        &faces("zero"),
        &caps(&[InstantId], &[Canny]),
        InstantId,
    );
    assert_eq!(p.method, Method::None);
    assert!(p.fallbacks.is_empty());
    assert_eq!(
        p.reason,
        "No face was found in the photo and this server cannot generate from the photo's structure either, so the anime look was rendered directly from the photo (no neural network)."
    );
}

#[test]
fn reasons_are_single_sentences() {
    for &(preferred, case, set, ..) in ORACLE {
        let p = plan("anime", &faces(case), &capability_set(set), preferred);
        assert!(p.reason.ends_with('.'), "{}", p.reason);
        assert_eq!(p.reason.matches(". ").count(), 0, "{}", p.reason);
    }
}
