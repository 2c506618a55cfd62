//! The cheaper detection the host plans on (faces of at least
//! [`policy::SKIPPABLE_FACE_SHARE`] of the photo first, every size only when that leaves the plan
//! open) gives the default policy's plan of a full detection, on the test photos, a 6-face
//! collage, a group photo, a portrait with small faces behind, a face too small to keep and a
//! second face on either side of the group's bound; every face of at least that share has the
//! full detection's box.

mod common;
#[path = "../host/vision/tests/common/scenes.rs"]
mod scenes;

use std::time::Instant;

use image::RgbImage;
use likeness_contract::policy::{self, Preferences};
use likeness_contract::{Capabilities, MethodKind};
use likeness_host::pipeline::{analyze_image, to_style_analysis};
use likeness_vision::detect::iou;
use likeness_vision::{AnalyzeOptions, Cores, InOrder, ingest};

fn photo(name: &str) -> RgbImage {
    ingest::decode(&common::photo_bytes(name), &ingest::Limits::default())
        .expect("decode")
        .image
}

#[test]
fn the_cheaper_detection_plans_as_the_full_one() {
    let vision = common::vision();
    let mut cases = scenes::photos_and_scenes(photo);
    let faces = scenes::FACES.map(photo);
    cases.push((
        "portrait with small faces behind".into(),
        scenes::canvas(
            1920,
            1080,
            &[
                (&faces[1], 900, 500, 90),
                (&faces[2], 150, 40, 40),
                (&faces[3], 150, 1700, 40),
            ],
        ),
    ));
    cases.push((
        "face too small".into(),
        scenes::canvas(1920, 1080, &[(&faces[0], 160, 900, 500)]),
    ));
    cases.push(("1024 portrait".into(), scenes::fit(&faces[1], 1024)));
    // A second face around half the first's box (2.2% of the photo): a group from about 1.07%.
    for side in (900..=1040).step_by(20) {
        cases.push((
            format!("second face at {side} px"),
            scenes::canvas(
                1920,
                1080,
                &[(&faces[1], 860, 20, 100), (&faces[2], side, 900, 0)],
            ),
        ));
    }

    let capabilities = Capabilities::all();
    let prefs = Preferences {
        look: "test".into(),
        preferred: MethodKind::InstantId,
        prompt: "a portrait".into(),
        negative_prompt: String::new(),
        seed: Some(1),
    };
    let cheap = AnalyzeOptions {
        min_face_share: Some(policy::SKIPPABLE_FACE_SHARE),
        ..AnalyzeOptions::default()
    };
    let mut settled = 0;
    for (name, img) in &cases {
        let started = Instant::now();
        let full = vision
            .analyze(img, &AnalyzeOptions::default())
            .expect("full");
        let full_ms = started.elapsed().as_secs_f64() * 1000.0;
        let started = Instant::now();
        let fast = analyze_image(&vision, img, &cheap, &InOrder).expect("fast");
        let fast_ms = started.elapsed().as_secs_f64() * 1000.0;
        let first = vision.analyze(img, &cheap).expect("first pass");
        let was_settled = policy::settled_without_faces_under(
            &to_style_analysis(&first),
            cheap.min_face_share.unwrap(),
        );
        settled += usize::from(was_settled);
        let plan_full = policy::default_plan(&to_style_analysis(&full), &capabilities, &prefs);
        let plan_fast = policy::default_plan(&to_style_analysis(&fast), &capabilities, &prefs);
        let overlap = match (full.dominant(), fast.dominant()) {
            (Some(a), Some(b)) => iou(&a.bbox, &b.bbox),
            (None, None) => 1.0,
            _ => 0.0,
        };
        println!(
            "{name}: {} faces full, {} fast (first pass settled: {was_settled}), dominant IoU \
             {overlap:.4}, {full_ms:.0} ms full, {fast_ms:.0} ms fast; {}",
            full.faces.len(),
            fast.faces.len(),
            plan_full.reason
        );
        assert_eq!(plan_fast, plan_full, "{name}: the plans differ");
        assert!(overlap >= 0.99, "{name}: dominant face IoU {overlap}");
        // Every face that can change a plan is found with the full detection's box.
        for face in full
            .faces
            .iter()
            .filter(|f| f.share >= policy::SKIPPABLE_FACE_SHARE)
        {
            let best = fast
                .faces
                .iter()
                .map(|f| iou(&f.bbox, &face.bbox))
                .fold(0.0, f32::max);
            assert!(
                best >= 0.99,
                "{name}: a face of share {} has IoU {best}",
                face.share
            );
        }
    }
    // The cheaper pass alone decides for every photo with one usable face.
    assert!(
        settled >= 6,
        "only {settled} photos were settled by the first pass"
    );
}

/// A photo much larger than the working side is decoded by DCT scaling for a generation: the
/// plan and the faces (mapped back to the full photo, dominant box IoU >= 0.95: the detector
/// sees differently resampled pixels) are those of the full decode.
#[test]
fn the_dct_scaled_decode_plans_as_the_full_one() {
    let vision = common::vision();
    let faces = ["astronaut.png", "obama.jpg", "biden.jpg", "camera.png"].map(photo);
    let group: Vec<(&RgbImage, u32, i64, i64)> = (0..4)
        .map(|i| (&faces[i], 840, 120 + i as i64 * 920, 660))
        .collect();
    let cases = [
        ("portrait 2560x2560", scenes::fit(&faces[1], 2560)),
        ("group 3840x2160", scenes::canvas(3840, 2160, &group)),
    ];
    let capabilities = Capabilities::all();
    let prefs = Preferences {
        look: "test".into(),
        preferred: MethodKind::InstantId,
        prompt: "a portrait".into(),
        negative_prompt: String::new(),
        seed: Some(1),
    };
    let cheap = AnalyzeOptions {
        min_face_share: Some(policy::SKIPPABLE_FACE_SHARE),
        ..AnalyzeOptions::default()
    };
    for (name, img) in &cases {
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
            .encode_image(img)
            .expect("encode");
        let limits = ingest::Limits::default();
        let full = ingest::decode(&bytes, &limits).expect("full").image;
        let scaled = ingest::decode_at_least(&bytes, &limits, 1280)
            .expect("scaled")
            .image;
        assert_eq!(
            scaled.dimensions(),
            (full.width().div_ceil(2), full.height().div_ceil(2)),
            "{name}: decoded at 1/2 for 1280"
        );
        let a = analyze_image(&vision, &full, &cheap, &Cores).expect("full");
        let b = analyze_image(&vision, &scaled, &cheap, &InOrder).expect("scaled");
        let plan_full = policy::default_plan(&to_style_analysis(&a), &capabilities, &prefs);
        let plan_scaled = policy::default_plan(&to_style_analysis(&b), &capabilities, &prefs);
        assert_eq!(plan_scaled.method, plan_full.method, "{name}");
        assert_eq!(a.faces.len(), b.faces.len(), "{name}");
        // Reported in the photo's own pixels, as a generation reports them.
        let b = b.in_size(full.width(), full.height());
        assert_eq!((b.width, b.height), full.dimensions());
        let (fa, fb) = (a.dominant().expect("a face"), b.dominant().expect("a face"));
        let overlap = iou(&fa.bbox, &fb.bbox);
        println!(
            "{name}: {} faces either way, {:?}, dominant IoU {overlap:.4}",
            a.faces.len(),
            plan_full.method.kind()
        );
        assert!(overlap >= 0.95, "{name}: dominant face IoU {overlap}");
        assert!((fa.share - fb.share).abs() <= 0.01, "{name}: shares");
    }
}
