//! Engine behaviour on the tiny pack: determinism, cancellation between steps, progress, the
//! inputs actually steering the result, and refusals of bad input (errors, never panics).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use likeness_diffusion::noise::gaussian;
use likeness_diffusion::{
    CancelToken, ControlImage, ControlKind, ControlMap, DiffusionError, GenerationInput, Image,
    Method, PulidFeatures, Size,
};

fn canny(w: u32, h: u32) -> Image {
    let data = (0..w * h)
        .map(|i| {
            if (i % w / 3 + i / w / 3).is_multiple_of(2) {
                255
            } else {
                0
            }
        })
        .collect();
    Image::grey(w, h, data).unwrap()
}

fn keypoints(w: u32, h: u32) -> Image {
    let data = (0..w * h * 3).map(|i| ((i * 37) % 251) as u8).collect();
    Image::rgb(w, h, data).unwrap()
}

fn controlnet_input(seed: u64) -> GenerationInput {
    let mut input = GenerationInput::new(
        Method::Controlnet,
        "pixel art portrait of a child",
        4,
        5.0,
        seed,
    );
    input.settings.control_maps = vec![ControlMap {
        kind: ControlKind::Canny,
        weight: 1.0,
        start: 0.0,
        end: 1.0,
    }];
    // Any size: the engine resizes condition images to the output.
    input.control_images = vec![ControlImage {
        kind: ControlKind::Canny,
        image: canny(50, 70),
    }];
    input
}

fn instantid_input(weight: f32) -> GenerationInput {
    let mut input =
        GenerationInput::new(Method::InstantId, "claymation figure of a man", 3, 4.0, 9);
    input.settings.identity_weight = weight;
    input.control_images = vec![ControlImage {
        kind: ControlKind::FaceKeypoints,
        image: keypoints(64, 64),
    }];
    input.face_embedding = Some(gaussian(3, 3, 512));
    input
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(x.abs_diff(*y)))
        .sum::<f64>()
        / a.len() as f64
}

fn no_progress(_: u32, _: u32) {}

#[test]
fn same_seed_same_image_other_seed_other_image() {
    let engine = common::engine("fp32");
    let cancel = CancelToken::new();
    let a = engine
        .generate(&controlnet_input(5), &no_progress, &cancel)
        .unwrap();
    let b = engine
        .generate(&controlnet_input(5), &no_progress, &cancel)
        .unwrap();
    let c = engine
        .generate(&controlnet_input(6), &no_progress, &cancel)
        .unwrap();
    assert_eq!((a.width, a.height), (64, 64));
    assert_eq!(a, b, "the same seed must give the same image");
    let d = mean_abs_diff(&a.data, &c.data);
    assert!(
        d > 1.0,
        "another seed should change the image (mean diff {d})"
    );
}

#[test]
fn concurrent_generations_share_the_sessions() {
    let engine = common::engine("fp32");
    let expected = engine
        .generate(&controlnet_input(11), &no_progress, &CancelToken::new())
        .unwrap();
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let engine = Arc::clone(&engine);
            std::thread::spawn(move || {
                engine.generate(&controlnet_input(11), &no_progress, &CancelToken::new())
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap().unwrap(), expected);
    }
}

#[test]
fn cancellation_stops_between_steps() {
    let engine = common::engine("fp32");
    let cancel = CancelToken::new();
    let calls = AtomicU32::new(0);
    let progress = |k: u32, _n: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        if k == 2 {
            cancel.cancel();
        }
    };
    let err = engine
        .generate(&controlnet_input(1), &progress, &cancel)
        .unwrap_err();
    assert!(
        matches!(
            err,
            DiffusionError::Canceled {
                completed: 2,
                total: 4
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "no step may run after the cancel"
    );
    // Canceled before the start: no step at all.
    let err = engine
        .generate(&controlnet_input(1), &no_progress, &cancel)
        .unwrap_err();
    assert!(
        matches!(err, DiffusionError::Canceled { completed: 0, .. }),
        "{err:?}"
    );
}

#[test]
fn controls_and_identity_steer_the_result() {
    let engine = common::engine("fp32");
    let cancel = CancelToken::new();
    let with = engine
        .generate(&controlnet_input(3), &no_progress, &cancel)
        .unwrap();
    let mut off = controlnet_input(3);
    off.settings.control_maps[0].weight = 0.0;
    let without = engine.generate(&off, &no_progress, &cancel).unwrap();
    let d_control = mean_abs_diff(&with.data, &without.data);

    let strong = engine
        .generate(&instantid_input(1.0), &no_progress, &cancel)
        .unwrap();
    let weak = engine
        .generate(&instantid_input(0.0), &no_progress, &cancel)
        .unwrap();
    let d_identity = mean_abs_diff(&strong.data, &weak.data);

    let pulid = |w: f32| {
        let mut input = GenerationInput::new(Method::Pulid, "toy figure", 3, 1.2, 4);
        input.settings.identity_weight = w;
        input.pulid = Some(PulidFeatures {
            id_cond: gaussian(1, 1, 544),
            id_vit_hidden: gaussian(1, 2, 5 * 16 * 24),
        });
        engine.generate(&input, &no_progress, &cancel).unwrap()
    };
    let d_pulid = mean_abs_diff(&pulid(1.0).data, &pulid(0.0).data);
    println!(
        "mean |diff| in 8-bit levels: control {d_control:.2}, instant-id {d_identity:.2}, pulid {d_pulid:.2}"
    );
    assert!(d_control > 0.1 && d_identity > 0.1 && d_pulid > 0.1);
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let engine = common::engine("fp32");
    let cancel = CancelToken::new();
    let check = |input: GenerationInput, needle: &str| {
        let err = engine.generate(&input, &no_progress, &cancel).unwrap_err();
        let msg = err.to_string();
        println!("{msg}");
        assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
    };
    let mut i = controlnet_input(1);
    i.settings.size = Some(Size {
        width: 100,
        height: 64,
    });
    check(i, "multiple of 32");
    let mut i = controlnet_input(1);
    i.settings.steps = 0;
    check(i, "steps");
    let mut i = controlnet_input(1);
    i.control_images.clear();
    check(i, "no canny image");
    let mut i = controlnet_input(1);
    i.settings.control_maps[0].start = 0.9;
    i.settings.control_maps[0].end = 0.1;
    check(i, "start <= end");
    let mut i = controlnet_input(1);
    i.settings.control_maps.push(ControlMap {
        kind: ControlKind::FaceKeypoints,
        weight: 1.0,
        start: 0.0,
        end: 1.0,
    });
    check(i, "needs method instant-id");
    let mut i = controlnet_input(1);
    i.settings.control_maps[0].kind = ControlKind::Pose;
    check(i, "no ControlNet for pose");
    let mut i = instantid_input(0.8);
    i.face_embedding = Some(vec![0.0; 10]);
    check(i, "512");
    let mut i = instantid_input(0.8);
    i.face_embedding = None;
    check(i, "face embedding or an aligned face");
    let i = GenerationInput::new(Method::Pulid, "x", 2, 1.0, 1);
    check(i, "identity features");
    let mut i = controlnet_input(1);
    i.control_images[0].image.data.truncate(10);
    check(i, "holds 10 bytes");
    let mut i = controlnet_input(1);
    i.settings.guidance = f32::NAN;
    check(i, "guidance");
}

#[test]
fn aligned_face_goes_through_the_pack_recogniser() {
    let engine = common::engine("fp32");
    let mut input = instantid_input(0.8);
    input.face_embedding = None;
    input.aligned_face = Some(keypoints(112, 112));
    let img = engine
        .generate(&input, &no_progress, &CancelToken::new())
        .unwrap();
    assert_eq!(img.data.len(), 64 * 64 * 3);
}
