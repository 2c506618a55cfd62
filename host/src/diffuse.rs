//! Runs a style's plan on the diffusion engine: the host derives the control images and the
//! aligned faces with its vision engine, maps the plan's fields onto the engine's input, and
//! bridges progress and cancellation. The engine's inputs (control maps, face features) are
//! made side by side when CPU slots are free ([`crate::lanes`]). The identity methods' face embedding comes from the
//! pack's own `face_recognizer` (antelopev2's, the one InstantID and PuLID were trained with),
//! raw as insightface's `embedding`, never from the host's identity-score embedder.

use std::sync::OnceLock;

use image::RgbImage;
use likeness_contract::{Capabilities, ControlKind, Diffusion, MethodKind, Size, SizeLimits};
use likeness_diffusion::{
    CancelToken, ControlImage, DiffusionEngine, DiffusionError, GenerationInput, PulidFeatures,
    pulid,
};
use likeness_vision::{Vision, align, control, ingest};

use crate::lanes::{Job, Lanes};
use crate::pipeline::GenerateError;
use crate::wasm::Image;

/// What this host can run with `engine`: method `none`, the pack's methods whose inputs the
/// host can make, the control maps the host can draw (canny and face keypoints always; depth
/// with a depth model; no pose estimator) and the pack's sizes. The engine offers InstantID
/// and PuLID only when the pack has every part they need, its face recogniser included.
pub fn capabilities(engine: &DiffusionEngine, vision: &Vision) -> Capabilities {
    let offered = engine.capabilities();
    let mut methods: Vec<MethodKind> = offered
        .methods
        .iter()
        .copied()
        .filter(|m| {
            matches!(
                m,
                MethodKind::InstantId | MethodKind::Pulid | MethodKind::Controlnet
            )
        })
        .collect();
    methods.push(MethodKind::None);
    let control_maps = offered
        .control_maps
        .iter()
        .copied()
        .filter(|kind| match kind {
            ControlKind::Canny | ControlKind::FaceKeypoints => true,
            ControlKind::Depth => vision.has_depth(),
            ControlKind::Pose => false,
        })
        .collect();
    Capabilities {
        methods,
        control_maps,
        diffusion_sizes: offered.diffusion_sizes,
        transfer: None,
    }
}

/// The size a diffusion method runs at for a `width` x `height` photo: the plan's, else the
/// pack's default for the photo's aspect ratio.
pub fn output_size(settings: &Diffusion, limits: &SizeLimits, width: u32, height: u32) -> Size {
    settings
        .size
        .unwrap_or_else(|| limits.default_for(width, height))
}

/// The engine's input for the diffusion method `method` with `settings` on `photo` (identity
/// taken from `reference`, the face the plan keeps), at `size` (see [`output_size`]): the
/// control images, InstantID's face embedding or PuLID's features. Blocking: run it on a
/// blocking thread holding a CPU slot for lane `lane` of `lanes`. The parts are independent and
/// run side by side on the CPU slots free now ([`Lanes::run_all`]), in order on this thread
/// when none is; a failure is the first in the sequential order (InstantID's embedding or
/// PuLID's features, then the control maps in the plan's order). `canceled` stops the parts
/// not started.
#[allow(clippy::too_many_arguments)]
pub fn prepare(
    engine: &DiffusionEngine,
    vision: &Vision,
    photo: &RgbImage,
    reference: Option<&likeness_contract::Face>,
    method: MethodKind,
    settings: &Diffusion,
    size: Size,
    lanes: &Lanes,
    lane: u32,
    canceled: &(dyn Fn() -> bool + Sync),
) -> Result<GenerationInput, GenerateError> {
    if !method.is_diffusion() {
        return Err(GenerateError::Internal(format!(
            "method {} needs no diffusion",
            method.name()
        )));
    }
    let (width, height) = (size.width, size.height);
    let (sx, sy) = (
        width as f32 / photo.width() as f32,
        height as f32 / photo.height() as f32,
    );
    let identity = match method {
        MethodKind::InstantId | MethodKind::Pulid => Some(
            reference.ok_or_else(|| invalid("the plan's reference face is not in the analysis"))?,
        ),
        _ => None,
    };
    let mut kinds: Vec<ControlKind> = Vec::new();
    for map in &settings.control_maps {
        if !kinds.contains(&map.kind) {
            kinds.push(map.kind);
        }
    }
    // Canny and depth read the photo at the output size: made once, by the first part that
    // needs it (beside the identity part), the other waiting for it.
    let sized: OnceLock<RgbImage> = OnceLock::new();
    let sized = &sized;

    // The identity part first: it is the longest, and each lane takes the next part when done.
    let mut jobs: Vec<Job<'_, Part>> = Vec::new();
    if let (MethodKind::InstantId, Some(face)) = (method, identity) {
        // The pack's recogniser on the aligned face: what the engine would do with the crop.
        jobs.push(Job::new("face-embedding", move || {
            let crop = recognizer_crop(photo, face)?;
            engine
                .embed_face(&crop)
                .map(Part::Embedding)
                .map_err(diffusion_error)
        }));
    }
    if let (MethodKind::Pulid, Some(face)) = (method, identity) {
        jobs.push(Job::new("pulid-features", move || {
            pulid_features(engine, photo, face).map(Part::Pulid)
        }));
    }
    for kind in kinds {
        jobs.push(Job::new(control_name(kind), move || {
            let resized = || sized.get_or_init(|| ingest::resize(photo, width, height));
            let image = match kind {
                ControlKind::Canny => {
                    let edges = control::canny(resized());
                    likeness_diffusion::Image::grey(width, height, edges.into_raw())
                }
                ControlKind::Depth => {
                    let depth = vision.depth_map(resized()).map_err(GenerateError::Vision)?;
                    let (w, h) = depth.dimensions();
                    likeness_diffusion::Image::grey(w, h, depth.into_raw())
                }
                ControlKind::FaceKeypoints => {
                    let face = reference.ok_or_else(|| {
                        invalid("a face-keypoints map needs the plan's reference face")
                    })?;
                    let points = face.landmarks.to_array().map(|[x, y]| [x * sx, y * sy]);
                    let drawn = control::keypoint_image(width, height, &points);
                    likeness_diffusion::Image::rgb(width, height, drawn.into_raw())
                }
                ControlKind::Pose => return Err(invalid("this host has no pose estimator")),
            };
            let image = image.ok_or_else(|| {
                GenerateError::Internal("a control image has the wrong size".into())
            })?;
            Ok(Part::Control(ControlImage { kind, image }))
        }));
    }

    let mut input = GenerationInput::with_settings(
        method,
        Diffusion {
            size: Some(size),
            seed: Some(settings.seed.unwrap_or_else(random_seed)),
            ..settings.clone()
        },
    );
    for part in lanes.run_all(lane, jobs, canceled)? {
        match part {
            Part::Control(image) => input.control_images.push(image),
            Part::Embedding(embedding) => input.face_embedding = Some(embedding),
            Part::Pulid(features) => input.pulid = Some(features),
        }
    }
    Ok(input)
}

/// The name of the stage drawing a `kind` control map.
fn control_name(kind: ControlKind) -> &'static str {
    match kind {
        ControlKind::Canny => "canny",
        ControlKind::Depth => "depth",
        ControlKind::FaceKeypoints => "face-keypoints",
        ControlKind::Pose => "pose",
    }
}

/// A part of the engine's input made by [`prepare`].
enum Part {
    Control(ControlImage),
    Embedding(Vec<f32>),
    Pulid(PulidFeatures),
}

/// Runs the engine on `input` (made by [`prepare`]), reporting each step and stopping between
/// steps when `cancel` fires. Blocking: run it on a blocking thread. Returns RGBA at the input's
/// size.
pub fn generate(
    engine: &DiffusionEngine,
    input: &GenerationInput,
    progress: &dyn Fn(u32, u32),
    cancel: &CancelToken,
) -> Result<Image, GenerateError> {
    let generated = engine
        .generate(input, progress, cancel)
        .map_err(diffusion_error)?;
    let mut rgba = Vec::with_capacity(generated.data.len() / 3 * 4);
    for pixel in generated.data.chunks_exact(3) {
        rgba.extend_from_slice(&[pixel[0], pixel[1], pixel[2], 255]);
    }
    Ok(Image {
        width: generated.width,
        height: generated.height,
        rgba,
    })
}

/// `face` cut from `photo` as insightface's `norm_crop` cuts it for the recogniser: its five
/// landmarks mapped onto ArcFace's 112 x 112 template by a similarity transform.
fn recognizer_crop(
    photo: &RgbImage,
    face: &likeness_contract::Face,
) -> Result<likeness_diffusion::Image, GenerateError> {
    let size = likeness_diffusion::instantid::RECOGNIZER_SIZE;
    let crop = align::align_face(photo, &face.landmarks.to_array(), size);
    likeness_diffusion::Image::rgb(size, size, crop.into_raw())
        .ok_or_else(|| GenerateError::Internal("the aligned face has the wrong size".into()))
}

/// PuLID's features of `face` in `photo`, made as PuLID's pipeline makes them: the face's raw
/// embedding by the pack's recogniser, the face aligned to facexlib's 512 crop, and the pack's
/// EVA02-CLIP (with its face parsing, or the landmark ellipse) on it.
fn pulid_features(
    engine: &DiffusionEngine,
    photo: &RgbImage,
    face: &likeness_contract::Face,
) -> Result<PulidFeatures, GenerateError> {
    let landmarks = face.landmarks.to_array();
    let embedding = engine
        .embed_face(&recognizer_crop(photo, face)?)
        .map_err(diffusion_error)?;
    let (crop, moved) = align::align_face_ffhq(photo, &landmarks, pulid::FACE_SIZE);
    let crop = likeness_diffusion::Image::rgb(crop.width(), crop.height(), crop.into_raw())
        .ok_or_else(|| GenerateError::Internal("the aligned face has the wrong size".into()))?;
    engine
        .pulid_features(&crop, &moved, &embedding)
        .map_err(diffusion_error)
}

/// The engine's error as the host's: a cancellation is [`GenerateError::Canceled`].
fn diffusion_error(error: DiffusionError) -> GenerateError {
    match error {
        DiffusionError::Canceled { .. } => GenerateError::Canceled,
        other => GenerateError::Diffusion(other),
    }
}

fn invalid(message: &str) -> GenerateError {
    GenerateError::Diffusion(DiffusionError::Invalid(message.to_string()))
}

/// A seed for a plan that leaves it to the host.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}
