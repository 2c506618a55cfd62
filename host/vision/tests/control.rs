//! Control maps and face crops: the InstantID keypoint image and the recogniser's aligned face
//! against golden PNGs rendered by OpenCV and scikit-image (tools/vision-bench/golden.py), and
//! Canny on a real photo.

mod common;

use image::RgbImage;
use likeness_vision::control;

fn golden(name: &str) -> RgbImage {
    let path = format!("{}/tests/golden/{name}.png", env!("CARGO_MANIFEST_DIR"));
    image::open(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .to_rgb8()
}

fn case(name: &str) -> (u32, u32, [[f32; 2]; 5]) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/keypoints.json"
    ))
    .expect("read");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let c = &v[name];
    let mut kps = [[0f32; 2]; 5];
    for (i, k) in kps.iter_mut().enumerate() {
        *k = [
            c["kps"][i][0].as_f64().unwrap() as f32,
            c["kps"][i][1].as_f64().unwrap() as f32,
        ];
    }
    (
        c["width"].as_u64().unwrap() as u32,
        c["height"].as_u64().unwrap() as u32,
        kps,
    )
}

/// Tolerance: among the pixels drawn in either image, at most 1% may differ by more than 8
/// levels in any channel (sub-pixel rounding of `ellipse2Poly`'s float sine table could move an
/// outline pixel). In practice the match is exact.
#[test]
fn keypoint_images_match_the_opencv_goldens() {
    for name in [
        "keypoints_astronaut",
        "keypoints_tilted",
        "keypoints_border",
    ] {
        let (w, h, kps) = case(name);
        let ours = control::keypoint_image(w, h, &kps);
        let gold = golden(name);
        assert_eq!(ours.dimensions(), gold.dimensions(), "{name}");
        let (mut drawn, mut differ) = (0usize, 0usize);
        for (a, b) in ours.pixels().zip(gold.pixels()) {
            if a.0 != [0, 0, 0] || b.0 != [0, 0, 0] {
                drawn += 1;
                if a.0
                    .iter()
                    .zip(b.0)
                    .any(|(x, y)| (i16::from(*x) - i16::from(y)).abs() > 8)
                {
                    differ += 1;
                }
            }
        }
        println!("{name}: {differ} of {drawn} drawn pixels differ");
        assert!(drawn > 1000, "{name}: only {drawn} drawn pixels");
        assert!(
            differ * 100 <= drawn,
            "{name}: {differ} of {drawn} drawn pixels differ"
        );
    }
}

#[test]
fn canny_on_a_photo_is_plausible() {
    let img = common::photo("astronaut.png");
    let edges = control::canny(&img);
    assert_eq!(edges.dimensions(), img.dimensions());
    let on = edges.as_raw().iter().filter(|v| **v == 255).count();
    let share = on as f32 / (512.0 * 512.0);
    println!("astronaut canny: {:.1}% edge pixels", share * 100.0);
    assert!(share > 0.02 && share < 0.3, "{share}");
    assert!(edges.as_raw().iter().all(|v| *v == 0 || *v == 255));
}

/// Canny against OpenCV on a synthetic card (golden rendered by golden.py with the `auto_canny`
/// recipe). Tolerance: >= 99.5% of pixels identical (rounding in the blur can move a few edge
/// pixels); in practice the maps differ in a handful of pixels.
#[test]
fn canny_matches_opencv_on_the_test_card() {
    let input = golden("canny_input");
    let want = image::open(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/canny_opencv.png"
    ))
    .expect("golden")
    .to_luma8();
    let ours = control::canny(&input);
    assert_eq!(ours.dimensions(), want.dimensions());
    let total = want.as_raw().len();
    let same = ours
        .as_raw()
        .iter()
        .zip(want.as_raw())
        .filter(|(a, b)| a == b)
        .count();
    let edges_cv = want.as_raw().iter().filter(|v| **v > 0).count();
    let edges_ours = ours.as_raw().iter().filter(|v| **v > 0).count();
    println!(
        "canny card: {same}/{total} identical, edge pixels ours {edges_ours} OpenCV {edges_cv}"
    );
    assert!(same * 1000 >= total * 995, "{same}/{total}");
    assert!(edges_cv > 1000);
}

/// The face the identity methods' recogniser gets, cut as insightface's `norm_crop` cuts it
/// (skimage's similarity estimate + cv2.warpAffine): OpenCV interpolates with 5-bit fixed-point
/// weights, so pixels may differ by a few levels, never more.
#[test]
fn the_aligned_face_matches_insightfaces_norm_crop() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/keypoints.json"
    ))
    .unwrap();
    let cases: serde_json::Value = serde_json::from_str(&text).unwrap();
    for (name, source) in [
        ("align_astronaut", common::photo("astronaut.png")),
        ("align_card", golden("canny_input")),
    ] {
        let mut kps = [[0f32; 2]; 5];
        for (i, k) in kps.iter_mut().enumerate() {
            let p = &cases[name]["kps"][i];
            *k = [p[0].as_f64().unwrap() as f32, p[1].as_f64().unwrap() as f32];
        }
        let ours = likeness_vision::align::align_face(&source, &kps, 112);
        let reference = golden(name);
        assert_eq!(ours.dimensions(), reference.dimensions());
        let diffs: Vec<i32> = ours
            .as_raw()
            .iter()
            .zip(reference.as_raw())
            .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
            .collect();
        let max = *diffs.iter().max().unwrap();
        let mean = diffs.iter().sum::<i32>() as f64 / diffs.len() as f64;
        eprintln!("{name}: max {max}, mean {mean:.3} levels");
        assert!(max <= 4 && mean <= 0.5, "{name}: max {max}, mean {mean:.3}");
    }
}
