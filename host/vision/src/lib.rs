//! Likeness vision: hostile-safe image ingestion, face analysis on real ONNX models, and the
//! control maps (Canny, InstantID keypoints, depth) the style pipeline needs.
//!
//! ```no_run
//! use likeness_vision::{AnalyzeOptions, Vision, ingest};
//! # fn main() -> Result<(), likeness_vision::VisionError> {
//! let models = std::path::Path::new("models");
//! likeness_vision::fetch::fetch_default_packs(models)?; // idempotent
//! let vision = Vision::load(models, &likeness_vision::fetch::runtime_library_path(models))?;
//! let bytes = std::fs::read("photo.jpg").map_err(|e| likeness_vision::VisionError::Fetch(e.to_string()))?;
//! let decoded = ingest::decode(&bytes, &ingest::Limits::default())?;
//! let analysis = vision.analyze(&decoded.image, &AnalyzeOptions { embedding: true, ..Default::default() })?;
//! println!("{} faces", analysis.faces.len());
//! # Ok(()) }
//! ```
//!
//! Modules: [`ingest`] (decode, orient, limits, resize), [`onnx`] (ONNX Runtime environment,
//! providers, session pools), [`packs`] (pack.toml, verification), [`fetch`] (registry
//! downloads), [`detect`] (MTCNN, BlazeFace, SCRFD), [`align`], [`embed`], [`similarity`],
//! [`identity`] (the identity score of an output), [`control`] (Canny, keypoint image, depth),
//! [`transfer`] (neural style transfer: learned styles and style pictures).

#![deny(missing_docs)]

pub mod align;
pub mod control;
pub mod detect;
pub mod embed;
pub mod error;
pub mod fetch;
pub mod identity;
pub mod ingest;
pub mod onnx;
pub mod packs;
mod resample;
mod simd;
pub mod similarity;
pub mod spread;
pub mod transfer;

use std::path::Path;
use std::sync::Arc;

use image::{GrayImage, RgbImage};
use serde::{Deserialize, Serialize};

pub use detect::{Detection, DetectorKind, FaceDetector};
pub use error::{Result, VisionError};
pub use fetch::{FetchReport, fetch_default_packs, fetch_test_photos, runtime_library_path};
pub use identity::{IdentityScore, MatchOptions, Reference};
pub use ingest::{Decoded, IngestError, Limits};
pub use onnx::{Provider, ProviderChoice, Runtime, RuntimeOptions};
pub use packs::{Pack, PackStatus, Role, check_packs};
pub use similarity::cosine;
pub use spread::{Cores, InOrder, Spread};
pub use transfer::StyleTransfer;

use control::DepthEstimator;
use detect::blazeface::{BlazeFace, BlazeFaceConfig};
use detect::mtcnn::{Mtcnn, MtcnnConfig};
use detect::scrfd::{Scrfd, ScrfdConfig};
use embed::Embedder;

/// Options for [`Vision::load_with`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VisionOptions {
    /// ONNX Runtime options (providers, threads, sessions per model).
    pub runtime: RuntimeOptions,
    /// Faces are detected on a copy whose long side is at most this (1024); coordinates are
    /// reported in the input image's pixels.
    pub max_analysis_side: u32,
    /// The detector used when [`AnalyzeOptions::detector`] is `None` (default: MTCNN when
    /// installed, else SCRFD, else BlazeFace).
    pub default_detector: Option<DetectorKind>,
    /// MTCNN settings.
    pub mtcnn: MtcnnConfig,
    /// BlazeFace settings.
    pub blazeface: BlazeFaceConfig,
    /// SCRFD settings.
    pub scrfd: ScrfdConfig,
}

impl Default for VisionOptions {
    fn default() -> Self {
        VisionOptions {
            runtime: RuntimeOptions::default(),
            max_analysis_side: 1024,
            default_detector: None,
            mtcnn: MtcnnConfig::default(),
            blazeface: BlazeFaceConfig::default(),
            scrfd: ScrfdConfig::default(),
        }
    }
}

/// What [`Vision::analyze`] should do.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct AnalyzeOptions {
    /// Compute a 512-d identity embedding for every face.
    #[serde(default)]
    pub embedding: bool,
    /// Detector to use (`None`: the default detector).
    #[serde(default)]
    pub detector: Option<DetectorKind>,
    /// Minimum face score (`None`: the detector's recommendation, 0.95 for MTCNN).
    #[serde(default)]
    pub min_score: Option<f32>,
    /// Faces covering less than this share of the image may be left out, for a cheaper
    /// detection: MTCNN looks only for faces whose side is at least half that of a square of
    /// this share (`None`: every face down to the detector's smallest, MTCNN's 20 pixels).
    #[serde(default)]
    pub min_face_share: Option<f32>,
}

/// One face in an analysed image, in the (oriented) input image's pixels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Face {
    /// Box `[x1, y1, x2, y2]`.
    pub bbox: [f32; 4],
    /// Detector confidence, 0..1.
    pub score: f32,
    /// Left eye, right eye, nose, left mouth corner, right mouth corner (image left/right).
    pub landmarks: [[f32; 2]; 5],
    /// Box area divided by image area.
    pub share: f32,
    /// Whether this is the largest face (the one identity methods use).
    pub dominant: bool,
    /// L2-normalised identity embedding, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
}

/// The result of [`Vision::analyze`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    /// Image width analysed (input pixels).
    pub width: u32,
    /// Image height.
    pub height: u32,
    /// The detector used.
    pub detector: DetectorKind,
    /// The embedding model's file, when embeddings were computed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding_model: Option<String>,
    /// Faces, largest first; the first is the dominant one.
    pub faces: Vec<Face>,
}

impl Analysis {
    /// The largest face, if any.
    pub fn dominant(&self) -> Option<&Face> {
        self.faces.first()
    }

    /// The same analysis in the pixels of the image at `width` x `height` (boxes and landmarks
    /// scaled per axis; shares, scores and embeddings kept), e.g. to report faces found on a
    /// smaller decode in the photo's own pixels.
    pub fn in_size(mut self, width: u32, height: u32) -> Analysis {
        let fx = width as f32 / self.width.max(1) as f32;
        let fy = height as f32 / self.height.max(1) as f32;
        for face in &mut self.faces {
            face.bbox = [
                face.bbox[0] * fx,
                face.bbox[1] * fy,
                face.bbox[2] * fx,
                face.bbox[3] * fy,
            ];
            face.landmarks = face.landmarks.map(|[x, y]| [x * fx, y * fy]);
        }
        self.width = width;
        self.height = height;
        self
    }
}

/// What the loaded packs make possible (for the service's capabilities endpoint).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Capabilities {
    /// Detectors available.
    pub detectors: Vec<DetectorKind>,
    /// The default detector, if any is installed.
    pub default_detector: Option<DetectorKind>,
    /// The embedding model's file, if one is installed.
    pub embedding: Option<String>,
    /// Whether a depth model is installed.
    pub depth: bool,
    /// Execution providers in use (CPU last).
    pub providers: Vec<Provider>,
}

/// The face-analysis and control-map engine: the ONNX Runtime, the verified packs and one session
/// pool per model, built once and shared (`Vision` is `Send + Sync`; wrap it in an `Arc`).
pub struct Vision {
    runtime: Arc<Runtime>,
    packs: Vec<Pack>,
    mtcnn: Option<Mtcnn>,
    blazeface: Option<BlazeFace>,
    scrfd: Option<Scrfd>,
    embedder: Option<Embedder>,
    depth: Option<DepthEstimator>,
    transfer: Option<StyleTransfer>,
    default_detector: Option<DetectorKind>,
    max_analysis_side: u32,
}

impl std::fmt::Debug for Vision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vision")
            .field("runtime", &self.runtime)
            .field("capabilities", &self.capabilities())
            .finish()
    }
}

impl Vision {
    /// Loads ONNX Runtime from `runtime_lib` and every pack under `models_dir` (verifying each
    /// file's SHA-256), and builds the sessions, with default options.
    pub fn load(models_dir: &Path, runtime_lib: &Path) -> Result<Vision> {
        Self::load_with(models_dir, runtime_lib, &VisionOptions::default())
    }

    /// [`Vision::load`] with explicit options.
    pub fn load_with(
        models_dir: &Path,
        runtime_lib: &Path,
        options: &VisionOptions,
    ) -> Result<Vision> {
        let runtime = Runtime::init(runtime_lib, options.runtime)?;
        let packs = packs::load_packs(models_dir)?;
        let pool = |role: Role| -> Result<Option<(onnx::SessionPool, packs::ModelEntry)>> {
            match packs::find_role(&packs, role) {
                Some((pack, entry)) => {
                    let (path, name) = (pack.path_of(entry), role.as_str());
                    // MTCNN's networks run small inputs, as parts spread over the cores.
                    let p = match role {
                        Role::MtcnnPnet | Role::MtcnnRnet | Role::MtcnnOnet => {
                            runtime.caller_pool(&path, name)?
                        }
                        _ => runtime.pool(&path, name)?,
                    };
                    Ok(Some((p, entry.clone())))
                }
                None => Ok(None),
            }
        };
        let mtcnn = match (
            pool(Role::MtcnnPnet)?,
            pool(Role::MtcnnRnet)?,
            pool(Role::MtcnnOnet)?,
        ) {
            (Some((p, _)), Some((r, _)), Some((o, _))) => Some(Mtcnn::new(p, r, o, options.mtcnn)?),
            _ => None,
        };
        let blazeface = match pool(Role::BlazefaceBack)? {
            Some((p, _)) => Some(BlazeFace::new(p, options.blazeface)?),
            None => match pool(Role::BlazefaceFront)? {
                Some((p, _)) => Some(BlazeFace::new(p, options.blazeface)?),
                None => None,
            },
        };
        let scrfd = match pool(Role::Scrfd)? {
            Some((p, e)) => Some(Scrfd::new(p, &e, options.scrfd)?),
            None => None,
        };
        let embedder = match pool(Role::Embedding)? {
            Some((p, e)) => Some(Embedder::new(p, &e)?),
            None => None,
        };
        let depth = match pool(Role::Depth)? {
            Some((p, e)) => Some(DepthEstimator::new(p, &e)?),
            None => None,
        };
        let available = |k: DetectorKind| match k {
            DetectorKind::Mtcnn => mtcnn.is_some(),
            DetectorKind::Blazeface => blazeface.is_some(),
            DetectorKind::Scrfd => scrfd.is_some(),
        };
        let default_detector = options
            .default_detector
            .filter(|k| available(*k))
            .or_else(|| {
                [
                    DetectorKind::Mtcnn,
                    DetectorKind::Scrfd,
                    DetectorKind::Blazeface,
                ]
                .into_iter()
                .find(|k| available(*k))
            });
        let transfer = StyleTransfer::new(runtime.clone(), &packs);
        Ok(Vision {
            transfer,
            runtime,
            packs,
            mtcnn,
            blazeface,
            scrfd,
            embedder,
            depth,
            default_detector,
            max_analysis_side: options.max_analysis_side.max(64),
        })
    }

    /// The runtime in use (the process's one ONNX Runtime; share it with other engines).
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The verified packs.
    pub fn packs(&self) -> &[Pack] {
        &self.packs
    }

    /// What the installed packs allow.
    pub fn capabilities(&self) -> Capabilities {
        let mut detectors = Vec::new();
        if self.mtcnn.is_some() {
            detectors.push(DetectorKind::Mtcnn);
        }
        if self.scrfd.is_some() {
            detectors.push(DetectorKind::Scrfd);
        }
        if self.blazeface.is_some() {
            detectors.push(DetectorKind::Blazeface);
        }
        Capabilities {
            detectors,
            default_detector: self.default_detector,
            embedding: self.embedder.as_ref().map(|e| e.name().to_string()),
            depth: self.has_depth(),
            providers: self.runtime.providers().to_vec(),
        }
    }

    /// The style-transfer networks, when a pack provides them (sessions built on first use).
    pub fn transfer(&self) -> Option<&StyleTransfer> {
        self.transfer.as_ref()
    }

    /// Whether a depth model is installed (a pack with role `depth`).
    pub fn has_depth(&self) -> bool {
        self.depth.is_some()
    }

    /// The detector of a kind (`None`: the default one).
    pub fn detector(&self, kind: Option<DetectorKind>) -> Result<&dyn FaceDetector> {
        let kind = kind
            .or(self.default_detector)
            .ok_or_else(|| VisionError::MissingModel("face detector".into()))?;
        let d: Option<&dyn FaceDetector> = match kind {
            DetectorKind::Mtcnn => self.mtcnn.as_ref().map(|d| d as &dyn FaceDetector),
            DetectorKind::Blazeface => self.blazeface.as_ref().map(|d| d as &dyn FaceDetector),
            DetectorKind::Scrfd => self.scrfd.as_ref().map(|d| d as &dyn FaceDetector),
        };
        d.ok_or_else(|| VisionError::MissingModel(format!("{kind:?} detector").to_lowercase()))
    }

    /// The MTCNN detector, if installed (e.g. for [`Mtcnn::detect_timed`]).
    pub fn mtcnn(&self) -> Option<&Mtcnn> {
        self.mtcnn.as_ref()
    }

    /// The embedding model, if installed.
    pub fn embedder(&self) -> Option<&Embedder> {
        self.embedder.as_ref()
    }

    /// Detects faces on `img` as given (no bounding copy), filtered by `min_score` (default: the
    /// detector's), sorted largest first.
    pub fn detect(
        &self,
        img: &RgbImage,
        kind: Option<DetectorKind>,
        min_score: Option<f32>,
    ) -> Result<Vec<Detection>> {
        let detector = self.detector(kind)?;
        let min = min_score.unwrap_or(detector.min_score());
        let mut dets: Vec<Detection> = detector
            .detect(img, &Cores)?
            .into_iter()
            .filter(|d| d.score >= min)
            .collect();
        dets.sort_by(|a, b| b.area().total_cmp(&a.area()));
        Ok(dets)
    }

    /// Finds the faces of `img`: detection on a copy bounded to `max_analysis_side`, coordinates in
    /// `img`'s pixels, faces sorted largest first with their share of the image, the first marked
    /// dominant, and (if asked) an identity embedding per face from crops aligned on `img` itself.
    /// The detection's parts run over every core ([`Cores`]).
    pub fn analyze(&self, img: &RgbImage, options: &AnalyzeOptions) -> Result<Analysis> {
        self.analyze_until(img, options, &|_| true, &Cores)
    }

    /// [`analyze`](Vision::analyze) with `options.min_face_share`'s cheaper detection first,
    /// then, when `settled` says no of its analysis, every face (what `min_face_share: None`
    /// finds): MTCNN goes on with the same run, scanning only the pyramid levels and judging
    /// only the boxes the cheaper detection did not. Without `min_face_share`, one detection.
    /// The detection's independent parts run through `spread`.
    pub fn analyze_until(
        &self,
        img: &RgbImage,
        options: &AnalyzeOptions,
        settled: &dyn Fn(&Analysis) -> bool,
        spread: &dyn Spread,
    ) -> Result<Analysis> {
        let detector = self.detector(options.detector)?;
        let (small, scale) = ingest::bounded(img, self.max_analysis_side);
        let min = options.min_score.unwrap_or(detector.min_score());
        let analysis_of = |found: &[Detection]| Analysis {
            width: img.width(),
            height: img.height(),
            detector: detector.kind(),
            embedding_model: None,
            faces: faces_of(found, min, scale, img.dimensions()),
        };
        let found = match options.min_face_share {
            Some(share) => {
                let side = (share.max(0.0) * small.width() as f32 * small.height() as f32).sqrt();
                let mut again = |found: &[Detection]| !settled(&analysis_of(found));
                detector.detect_from_or_all(&small, side / 2.0, &mut again, spread)?
            }
            None => detector.detect(&small, spread)?,
        };
        let mut analysis = analysis_of(&found);
        if options.embedding && !analysis.faces.is_empty() {
            let lms: Vec<[[f32; 2]; 5]> = analysis.faces.iter().map(|f| f.landmarks).collect();
            let embeddings = self.embed_faces(img, &lms)?;
            for (f, e) in analysis.faces.iter_mut().zip(embeddings) {
                f.embedding = Some(e);
            }
            analysis.embedding_model = self.embedder.as_ref().map(|e| e.name().to_string());
        }
        Ok(analysis)
    }

    /// Aligns each face (five landmarks in `img`'s pixels) and embeds the crops in one batch.
    pub fn embed_faces(
        &self,
        img: &RgbImage,
        landmarks: &[[[f32; 2]; 5]],
    ) -> Result<Vec<Vec<f32>>> {
        let embedder = self
            .embedder
            .as_ref()
            .ok_or_else(|| VisionError::MissingModel("face embedding".into()))?;
        let crops: Vec<RgbImage> = landmarks.iter().map(|l| embedder.align(img, l)).collect();
        embedder.embed(&crops)
    }

    /// Cosine similarity between the dominant (largest) faces of two images.
    /// Errors with [`VisionError::NoFace`] when either image has none.
    pub fn compare_dominant(&self, a: &RgbImage, b: &RgbImage) -> Result<f32> {
        let emb = |img: &RgbImage, which: &str| -> Result<Vec<f32>> {
            let analysis = self.analyze(img, &AnalyzeOptions::default())?;
            let face = analysis
                .dominant()
                .ok_or_else(|| VisionError::NoFace(which.to_string()))?;
            let mut e = self.embed_faces(img, &[face.landmarks])?;
            e.pop()
                .ok_or_else(|| VisionError::inference("embedding", "no output"))
        };
        let ea = emb(a, "the first image")?;
        let eb = emb(b, "the second image")?;
        Ok(cosine(&ea, &eb))
    }

    /// The depth control map (255 = nearest) from the installed depth model.
    pub fn depth_map(&self, img: &RgbImage) -> Result<GrayImage> {
        self.depth
            .as_ref()
            .ok_or_else(|| VisionError::MissingModel("depth".into()))?
            .estimate(img)
    }
}

/// The detections over `min` score of a copy scaled by `[fx, fy]` from an image of `size`, as
/// faces in that image's pixels, largest first, the first dominant, with their shares.
fn faces_of(found: &[Detection], min: f32, [fx, fy]: [f32; 2], size: (u32, u32)) -> Vec<Face> {
    let mut dets: Vec<Detection> = found
        .iter()
        .filter(|d| d.score >= min)
        .map(|d| Detection {
            bbox: [
                d.bbox[0] * fx,
                d.bbox[1] * fy,
                d.bbox[2] * fx,
                d.bbox[3] * fy,
            ],
            score: d.score,
            landmarks: d.landmarks.map(|p| [p[0] * fx, p[1] * fy]),
        })
        .collect();
    dets.sort_by(|a, b| b.area().total_cmp(&a.area()));
    let area = (size.0 as f32 * size.1 as f32).max(1.0);
    dets.iter()
        .enumerate()
        .map(|(i, d)| Face {
            bbox: d.bbox,
            score: d.score,
            landmarks: d.landmarks,
            share: d.area() / area,
            dominant: i == 0,
            embedding: None,
        })
        .collect()
}
