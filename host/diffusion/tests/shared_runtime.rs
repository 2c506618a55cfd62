//! Vision and diffusion in one process on one ONNX Runtime: the runtime is initialised once, the
//! vision engine (real packs from `models/`) and a diffusion engine (the tiny pack) are built on
//! the same `Arc<Runtime>`, then a face analysis feeds an InstantID generation.

mod common;

use std::sync::Arc;

use likeness_diffusion::{
    CancelToken, ControlImage, ControlKind, DiffusionEngine, EngineOptions, GenerationInput, Image,
    Method, Runtime, RuntimeOptions,
};
use likeness_vision::{AnalyzeOptions, Vision, VisionOptions, control, fetch, ingest};

#[test]
fn vision_and_diffusion_share_one_runtime() {
    let root = common::repo_root();
    let models = std::env::var_os("LIKENESS_MODELS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("models"));
    fetch::fetch_default_packs(&models).unwrap_or_else(|e| {
        panic!(
            "could not fetch the default model packs into {} ({e})",
            models.display()
        )
    });
    let photos = std::env::var_os("LIKENESS_TESTDATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join(".cache/testdata"));
    fetch::fetch_test_photos(&photos).expect("the test photos are fetched");

    // One runtime for the process.
    let lib = fetch::runtime_library_path(&models);
    let options = RuntimeOptions {
        intra_threads: 1,
        ..Default::default()
    };
    let runtime = Runtime::init(&lib, options).expect("ONNX Runtime loads");

    // Vision on it: `Runtime::init` hands back the same runtime for the same library.
    let vision = Vision::load_with(
        &models,
        &lib,
        &VisionOptions {
            runtime: options,
            ..Default::default()
        },
    )
    .expect("the vision engine loads next to the shared runtime");
    assert!(Arc::ptr_eq(vision.runtime(), &runtime));

    // Diffusion on the same Arc.
    let engine = DiffusionEngine::load(
        &common::tiny_pack("fp32"),
        Arc::clone(&runtime),
        EngineOptions { slots: 1 },
    )
    .expect("the tiny pack loads on the shared runtime");
    engine.preload().expect("the diffusion sessions build");
    assert!(Arc::ptr_eq(
        &Runtime::current().expect("a runtime is loaded"),
        &runtime
    ));

    // Analysis, then a generation from its result, interleaved on the one environment.
    let bytes = std::fs::read(photos.join("astronaut.png")).expect("astronaut.png");
    let photo = ingest::decode(&bytes, &ingest::Limits::default())
        .expect("decodes")
        .image;
    let analysis = vision
        .analyze(
            &photo,
            &AnalyzeOptions {
                embedding: true,
                ..Default::default()
            },
        )
        .expect("analysis runs");
    let face = analysis.faces.first().expect("the astronaut has a face");
    let embedding = face.embedding.clone().expect("an embedding was asked for");
    assert_eq!(embedding.len(), 512);

    let kps = control::keypoint_image(analysis.width, analysis.height, &face.landmarks);
    let (w, h) = (kps.width(), kps.height());
    let mut input =
        GenerationInput::new(Method::InstantId, "an astronaut, oil painting", 3, 4.0, 7);
    input.control_images = vec![ControlImage {
        kind: ControlKind::FaceKeypoints,
        image: Image::rgb(w, h, kps.into_raw()).expect("an RGB image"),
    }];
    input.face_embedding = Some(embedding);
    let image = engine
        .generate(&input, &|_, _| {}, &CancelToken::new())
        .expect("the generation runs");
    assert_eq!((image.width, image.height), (64, 64));

    // Vision still runs after diffusion on the same runtime.
    let again = vision
        .analyze(&photo, &AnalyzeOptions::default())
        .expect("analysis runs after a generation");
    assert_eq!(again.faces.len(), analysis.faces.len());
}
