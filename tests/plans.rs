//! Plan selection of the four first-party styles, through real components in real wasmtime:
//! zero faces, one face, several faces of similar size and one tiny face, with and without
//! diffusion capabilities. And their post-processes: the look drawn without diffusion, byte for
//! byte what the same style compiled natively draws (the components run likeness-imaging's
//! SIMD128 loops, the native build its scalar reference loops).

mod common;

use std::sync::Arc;

use likeness_contract::{
    Analysis, Capabilities, ControlKind, Diffusion, Method, MethodKind as IdentityMethod, Options,
    Plan,
};
use likeness_host::style::conformance::{face, situations};
use likeness_host::style::{LoadedStyle, package};
use likeness_host::wasm::Image;
use likeness_sdk::image::Rgba;

/// Each first-party style and the identity method it prefers for one clear face.
const STYLES: [(&str, IdentityMethod); 4] = [
    ("anime", IdentityMethod::InstantId),
    ("claymation", IdentityMethod::Pulid),
    ("pixel-art", IdentityMethod::Pulid),
    ("watercolor", IdentityMethod::InstantId),
];

async fn load(id: &str) -> Arc<LoadedStyle> {
    package::load(&common::runtime(), &common::first_party_styles().join(id))
        .await
        .unwrap()
}

/// The options a request that sets none gives the style: its defaults, checked by the host.
fn defaults(style: &LoadedStyle) -> Options {
    likeness_contract::options::check(&style.info.params, &[]).unwrap()
}

async fn plan_for(style: &LoadedStyle, analysis: &Analysis, capabilities: &Capabilities) -> Plan {
    style
        .component
        .plan(analysis, capabilities, &defaults(style))
        .await
        .unwrap()
}

/// The settings of a plan's diffusion method.
fn settings(plan: &Plan) -> &Diffusion {
    plan.method
        .diffusion()
        .unwrap_or_else(|| panic!("not a diffusion plan: {plan:?}"))
}

/// What the old single fallback was: the head of the fallbacks (`none` when there are none).
fn fallback(plan: &Plan) -> IdentityMethod {
    plan.fallbacks
        .first()
        .map_or(IdentityMethod::None, Method::kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_diffusion_every_style_plans_method_none() {
    for (id, _) in STYLES {
        let style = load(id).await;
        for (situation, analysis) in situations() {
            let plan = plan_for(&style, &analysis, &Capabilities::none()).await;
            assert_eq!(plan.method, Method::None, "{id}, {situation}");
            assert_eq!(fallback(&plan), IdentityMethod::None, "{id}, {situation}");
            assert!(
                plan.reason.to_lowercase().contains("diffusion"),
                "{id}, {situation}: {}",
                plan.reason
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_diffusion_one_clear_face_gets_the_preferred_identity_method() {
    for (id, preferred) in STYLES {
        let style = load(id).await;
        let (_, analysis) = &situations()[1];
        let plan = plan_for(&style, analysis, &Capabilities::all()).await;
        assert_eq!(plan.method.kind(), preferred, "{id}: {}", plan.reason);
        assert_eq!(fallback(&plan), IdentityMethod::Controlnet, "{id}");
        assert_eq!(plan.reference_faces, vec![0], "{id}");
        let d = settings(&plan);
        assert!(d.identity_weight > 0.0, "{id}");
        // A size, when the style sets one, is one the pack runs (the runtime checked it).
        let limits = Capabilities::all().diffusion_sizes.unwrap();
        assert!(
            d.steps > 0 && d.size.is_none_or(|size| limits.contains(size)),
            "{id}: {plan:?}"
        );
        assert!(!d.prompt.is_empty() && !plan.reason.is_empty(), "{id}");
        if preferred == IdentityMethod::InstantId {
            let keypoints = d
                .control_maps
                .iter()
                .any(|m| m.kind == ControlKind::FaceKeypoints);
            assert!(
                keypoints,
                "{id}: InstantID needs the keypoint image for IdentityNet"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_diffusion_no_face_several_faces_or_a_tiny_face_fall_back_to_controlnet() {
    for (id, _) in STYLES {
        let style = load(id).await;
        for (situation, analysis) in situations().into_iter().filter(|(s, _)| *s != "one face") {
            let plan = plan_for(&style, &analysis, &Capabilities::all()).await;
            assert_eq!(
                plan.method.kind(),
                IdentityMethod::Controlnet,
                "{id}, {situation}: {}",
                plan.reason
            );
            assert!(plan.reference_faces.is_empty(), "{id}, {situation}");
            let kinds: Vec<ControlKind> = settings(&plan)
                .control_maps
                .iter()
                .map(|m| m.kind)
                .collect();
            assert!(
                kinds.contains(&ControlKind::Canny),
                "{id}, {situation}: {kinds:?}"
            );
            assert!(
                !kinds.contains(&ControlKind::FaceKeypoints),
                "{id}, {situation}: {kinds:?}"
            );
            for map in &settings(&plan).control_maps {
                assert!(
                    map.weight > 0.0
                        && (0.0..=1.0).contains(&map.start)
                        && map.start <= map.end
                        && map.end <= 1.0
                );
            }
            let reason = plan.reason.to_lowercase();
            let explained = match situation {
                "no face" => reason.contains("no face"),
                "a group" => reason.contains('2') || reason.contains("two"),
                _ => reason.contains("small"),
            };
            assert!(
                explained,
                "{id}, {situation}: the reason does not say why: {}",
                plan.reason
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_follows_what_the_host_can_run() {
    let (_, one_face) = &situations()[1];
    let controlnet_canny_only = Capabilities {
        methods: vec![IdentityMethod::Controlnet, IdentityMethod::None],
        control_maps: vec![ControlKind::Canny],
        ..Capabilities::all()
    };
    for (id, preferred) in STYLES {
        let style = load(id).await;
        let plan = plan_for(&style, one_face, &controlnet_canny_only).await;
        assert_eq!(
            plan.method.kind(),
            IdentityMethod::Controlnet,
            "{id}: {}",
            plan.reason
        );
        assert!(
            settings(&plan)
                .control_maps
                .iter()
                .all(|m| m.kind == ControlKind::Canny),
            "{id}: {plan:?}"
        );

        let other = if preferred == IdentityMethod::InstantId {
            IdentityMethod::Pulid
        } else {
            IdentityMethod::InstantId
        };
        let only_other = Capabilities {
            methods: vec![other, IdentityMethod::Controlnet, IdentityMethod::None],
            control_maps: vec![ControlKind::Canny, ControlKind::FaceKeypoints],
            ..Capabilities::all()
        };
        let plan = plan_for(&style, one_face, &only_other).await;
        assert_eq!(plan.method.kind(), other, "{id}: {}", plan.reason);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_options_are_refused_by_the_host_naming_the_option() {
    for (id, _) in STYLES {
        let style = load(id).await;
        for (name, value) in [("no-such-option", "1"), ("seed", "not-a-number")] {
            let raw = vec![(name.to_string(), value.to_string())];
            let error = likeness_contract::options::check(&style.info.params, &raw).unwrap_err();
            assert_eq!(error.option, name, "{id}: {error}");
            assert!(error.message.contains(name), "{id}: {error}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_diffusion_post_process_renders_the_look_from_the_photo() {
    // A photo-like test card: a gradient with a disc, so filters have edges and tones to work on.
    let (width, height) = (320u32, 240u32);
    let mut rgba = Vec::with_capacity((width * height * 4) as usize);
    for y in 0..height {
        for x in 0..width {
            let inside = (x as i32 - 160).pow(2) + (y as i32 - 120).pow(2) < 70 * 70;
            let (r, g, b) = if inside {
                (220, 170, 140)
            } else {
                ((x * 255 / width) as u8, (y * 255 / height) as u8, 90)
            };
            rgba.extend_from_slice(&[r, g, b, 255]);
        }
    }
    let photo = Image {
        width,
        height,
        rgba,
    };
    let analysis = Analysis {
        width,
        height,
        faces: vec![face(110.0, 70.0, 100.0, (width, height), true)],
    };
    for (id, _) in STYLES {
        let style = load(id).await;
        let plan = plan_for(&style, &analysis, &Capabilities::none()).await;
        let styled = style
            .component
            .post_process(&photo, &analysis, &plan, &defaults(&style))
            .await
            .unwrap();
        assert_eq!((styled.width, styled.height), (width, height), "{id}");
        let changed = styled
            .rgba
            .iter()
            .zip(&photo.rgba)
            .filter(|(a, b)| a != b)
            .count();
        assert!(
            changed > photo.rgba.len() / 10,
            "{id} left the photo almost untouched ({changed} bytes changed)"
        );
    }
}

/// The components' post-process (method `none`, default options) gives exactly the native
/// twin's bytes, on test cards whose sides are not multiples of 4 (the SIMD loops' leftover
/// rows and columns take the scalar path) and one large enough for the filters' full radii.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_diffusion_post_process_gives_the_native_bytes() {
    let natives = common::native::NativeStyles::new(&common::repo());
    for (width, height) in [(259, 197), (643, 514)] {
        let photo = common::native::test_card(width, height);
        let analysis = common::native::card_analysis(width, height);
        let native_photo = Rgba::from_raw(width, height, photo.rgba.clone()).unwrap();
        for id in common::native::RUST_STYLES {
            let style = load(id).await;
            let plan = plan_for(&style, &analysis, &Capabilities::none()).await;
            assert_eq!(plan.method, Method::None, "{id}");
            let wasm = style
                .component
                .post_process(&photo, &analysis, &plan, &defaults(&style))
                .await
                .unwrap();
            let native = natives.post_process(id, &native_photo, &analysis);
            assert_eq!((wasm.width, wasm.height), (width, height), "{id}");
            let differing = wasm
                .rgba
                .iter()
                .zip(&native.data)
                .filter(|(a, b)| a != b)
                .count();
            assert_eq!(
                differing, 0,
                "{id} at {width}x{height}: {differing} bytes differ between wasm and native"
            );
        }
    }
}
