//! Runs a style's plan on the diffusion engine: the host derives the control images and the
//! face embedding with its vision engine, maps the plan's fields onto the engine's input, and
//! bridges progress and cancellation.

use image::RgbImage;
use likeness_contract::{Capabilities, ControlKind, Diffusion, MethodKind, Size, SizeLimits};
use likeness_diffusion::{
    CancelToken, ControlImage, DiffusionEngine, DiffusionError, GenerationInput, PulidFeatures,
    pulid,
};
use likeness_vision::{Vision, align, control, ingest};

use crate::pipeline::GenerateError;
use crate::wasm::Image;

/// What this host can run with `engine`: method `none`, the pack's methods whose inputs the
/// host can make, the control maps the host can draw (canny and face keypoints always; depth
/// with a depth model; no pose estimator) and the pack's sizes. InstantID needs the vision
/// engine's face embedding, and so does PuLID, whose EVA02-CLIP features come from the pack
/// (offered by the engine only when the pack has its `pulid_eva_clip` graph).
pub fn capabilities(engine: &DiffusionEngine, vision: &Vision) -> Capabilities {
    let offered = engine.capabilities();
    let embeddings = vision.embedder().is_some();
    let mut methods: Vec<MethodKind> = offered
        .methods
        .iter()
        .copied()
        .filter(|m| match m {
            MethodKind::InstantId | MethodKind::Pulid => embeddings,
            MethodKind::Controlnet => true,
            _ => false,
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

/// Runs the diffusion method `method` with `settings` on `photo` (as analysed in `analysis`,
/// identity taken from `reference`, the face the plan keeps). Blocking: run it on a blocking
/// thread. Returns RGBA at `size` (see [`output_size`]).
#[allow(clippy::too_many_arguments)]
pub fn run(
    engine: &DiffusionEngine,
    vision: &Vision,
    photo: &RgbImage,
    reference: Option<&likeness_contract::Face>,
    method: MethodKind,
    settings: &Diffusion,
    size: Size,
    progress: &dyn Fn(u32, u32),
    cancel: &CancelToken,
) -> Result<Image, GenerateError> {
    if !method.is_diffusion() {
        return Err(GenerateError::Internal(format!(
            "method {} needs no diffusion",
            method.name()
        )));
    }
    let (width, height) = (size.width, size.height);
    let sized = ingest::resize(photo, width, height);
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
    let face_embedding = match (method, identity) {
        (MethodKind::InstantId, Some(face)) => {
            let mut embeddings = vision
                .embed_faces(photo, &[face.landmarks.to_array()])
                .map_err(GenerateError::Vision)?;
            Some(
                embeddings
                    .pop()
                    .ok_or_else(|| invalid("the face embedding came back empty"))?,
            )
        }
        _ => None,
    };
    let pulid = match (method, identity) {
        (MethodKind::Pulid, Some(face)) => Some(pulid_features(engine, vision, photo, face)?),
        _ => None,
    };

    let mut control_images: Vec<ControlImage> = Vec::new();
    for map in &settings.control_maps {
        if control_images.iter().any(|c| c.kind == map.kind) {
            continue;
        }
        let image = match map.kind {
            ControlKind::Canny => {
                let edges = control::canny(&sized);
                likeness_diffusion::Image::grey(width, height, edges.into_raw())
            }
            ControlKind::Depth => {
                let depth = vision.depth_map(&sized).map_err(GenerateError::Vision)?;
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
        let image = image
            .ok_or_else(|| GenerateError::Internal("a control image has the wrong size".into()))?;
        control_images.push(ControlImage {
            kind: map.kind,
            image,
        });
    }

    let input = GenerationInput {
        control_maps: settings.control_maps.clone(),
        negative_prompt: settings.negative_prompt.clone(),
        identity_weight: settings.identity_weight,
        width,
        height,
        control_images,
        face_embedding,
        pulid,
        ..GenerationInput::new(
            method,
            &settings.prompt,
            settings.steps,
            settings.guidance,
            settings.seed.unwrap_or_else(random_seed),
        )
    };
    let generated = engine
        .generate(&input, progress, cancel)
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

/// PuLID's features of `face` in `photo`, made as PuLID's pipeline makes them: the raw face
/// embedding, the face aligned to facexlib's 512 crop, and the pack's EVA02-CLIP (with its face
/// parsing, or the landmark ellipse) on it.
fn pulid_features(
    engine: &DiffusionEngine,
    vision: &Vision,
    photo: &RgbImage,
    face: &likeness_contract::Face,
) -> Result<PulidFeatures, GenerateError> {
    let landmarks = face.landmarks.to_array();
    let embedding = vision
        .embed_face_raw(photo, &landmarks)
        .map_err(GenerateError::Vision)?;
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
