//! Runs a style's plan on the diffusion engine: the host derives the control images and the
//! face embedding with its vision engine, maps the plan's fields onto the engine's input, and
//! bridges progress and cancellation.

use image::RgbImage;
use likeness_diffusion::{
    CancelToken, ControlImage, DiffusionEngine, DiffusionError, GenerationInput, Method,
};
use likeness_vision::{Vision, control, ingest};

use crate::pipeline::GenerateError;
use crate::runtime::{Capabilities, ControlKind, IdentityMethod, Image, Plan};

/// What this host can run with `engine`: the pack's methods whose inputs the host can make
/// and the control maps the host can draw (canny and face keypoints always; depth with a depth
/// model; no pose estimator). InstantID needs the vision engine's face embedding. PuLID also
/// needs EVA02-CLIP features of the face, which no model of the host computes yet, so it is
/// never offered: styles that prefer it fall back to InstantID or ControlNet.
pub fn capabilities(engine: &DiffusionEngine, vision: &Vision) -> Capabilities {
    let offered = engine.capabilities();
    let embeddings = vision.embedder().is_some();
    let identity_methods = offered
        .methods
        .iter()
        .filter(|m| match m {
            Method::Controlnet => true,
            Method::InstantId => embeddings,
            Method::Pulid => false,
        })
        .map(|m| match m {
            Method::InstantId => IdentityMethod::InstantId,
            Method::Pulid => IdentityMethod::Pulid,
            Method::Controlnet => IdentityMethod::Controlnet,
        })
        .collect();
    let control_maps = offered
        .control_kinds
        .iter()
        .filter_map(|kind| match kind {
            likeness_diffusion::ControlKind::Canny => Some(ControlKind::Canny),
            likeness_diffusion::ControlKind::FaceKeypoints => Some(ControlKind::FaceKeypoints),
            likeness_diffusion::ControlKind::Depth if vision.has_depth() => {
                Some(ControlKind::Depth)
            }
            _ => None,
        })
        .collect();
    Capabilities {
        identity_methods,
        control_maps,
    }
}

/// Generates the plan's image from `photo` (as analysed in `analysis`). Blocking: run it on a
/// blocking thread. Returns RGBA at the plan's size.
pub fn run(
    engine: &DiffusionEngine,
    vision: &Vision,
    photo: &RgbImage,
    analysis: &likeness_vision::Analysis,
    plan: &Plan,
    progress: &dyn Fn(u32, u32),
    cancel: &CancelToken,
) -> Result<Image, GenerateError> {
    let method = match plan.method {
        IdentityMethod::InstantId => Method::InstantId,
        IdentityMethod::Pulid => Method::Pulid,
        IdentityMethod::Controlnet => Method::Controlnet,
        IdentityMethod::None => {
            return Err(GenerateError::Internal(
                "method none needs no diffusion".into(),
            ));
        }
    };
    let (width, height) = fit_to_pack(engine, plan.size.width, plan.size.height);
    let sized = ingest::resize(photo, width, height);
    let (sx, sy) = (
        width as f32 / photo.width() as f32,
        height as f32 / photo.height() as f32,
    );

    let reference = plan
        .reference_face
        .and_then(|i| analysis.faces.get(i as usize));
    let face_embedding = match method {
        Method::InstantId | Method::Pulid => {
            let face = reference
                .ok_or_else(|| invalid("the plan's reference face is not in the analysis"))?;
            let mut embeddings = vision
                .embed_faces(photo, &[face.landmarks])
                .map_err(GenerateError::Vision)?;
            Some(
                embeddings
                    .pop()
                    .ok_or_else(|| invalid("the face embedding came back empty"))?,
            )
        }
        Method::Controlnet => None,
    };

    let mut control_images = Vec::new();
    for map in &plan.control_maps {
        if control_images
            .iter()
            .any(|c: &ControlImage| c.kind.name() == map.kind.as_str())
        {
            continue;
        }
        let (kind, image) = match map.kind {
            ControlKind::Canny => {
                let edges = control::canny(&sized);
                (
                    likeness_diffusion::ControlKind::Canny,
                    likeness_diffusion::Image::grey(width, height, edges.into_raw()),
                )
            }
            ControlKind::Depth => {
                let depth = vision.depth_map(&sized).map_err(GenerateError::Vision)?;
                let (w, h) = depth.dimensions();
                (
                    likeness_diffusion::ControlKind::Depth,
                    likeness_diffusion::Image::grey(w, h, depth.into_raw()),
                )
            }
            ControlKind::FaceKeypoints => {
                let face = reference.ok_or_else(|| {
                    invalid("a face-keypoints map needs the plan's reference face")
                })?;
                let points = face.landmarks.map(|[x, y]| [x * sx, y * sy]);
                let drawn = control::keypoint_image(width, height, &points);
                (
                    likeness_diffusion::ControlKind::FaceKeypoints,
                    likeness_diffusion::Image::rgb(width, height, drawn.into_raw()),
                )
            }
            ControlKind::Pose => return Err(invalid("this host has no pose estimator")),
        };
        let image = image
            .ok_or_else(|| GenerateError::Internal("a control image has the wrong size".into()))?;
        control_images.push(ControlImage { kind, image });
    }

    let input = GenerationInput {
        control_maps: plan
            .control_maps
            .iter()
            .filter_map(|m| {
                let kind = control_images
                    .iter()
                    .find(|c| c.kind.name() == m.kind.as_str())?
                    .kind;
                Some(likeness_diffusion::ControlMap {
                    kind,
                    weight: m.weight,
                    start: m.start,
                    end: m.end,
                })
            })
            .collect(),
        negative_prompt: plan.negative_prompt.clone(),
        identity_weight: plan.identity_weight,
        width,
        height,
        control_images,
        face_embedding,
        ..GenerationInput::new(
            method,
            &plan.prompt,
            plan.steps,
            plan.guidance,
            plan.seed.unwrap_or_else(random_seed),
        )
    };
    let generated = engine
        .generate(&input, progress, cancel)
        .map_err(|error| match error {
            DiffusionError::Canceled { .. } => GenerateError::Canceled,
            other => GenerateError::Diffusion(other),
        })?;
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

/// The plan's size, scaled down (aspect kept) to the pack's largest side and rounded down to
/// its size multiple: a pack made for smaller images still runs every style's plan.
fn fit_to_pack(engine: &DiffusionEngine, width: u32, height: u32) -> (u32, u32) {
    let latent = &engine.pack().manifest.latent;
    let (multiple, max_side) = (latent.size_multiple.max(1), latent.max_side.max(1));
    let scale = (max_side as f32 / width.max(height).max(1) as f32).min(1.0);
    let fit = |side: u32| (((side as f32 * scale) as u32) / multiple * multiple).max(multiple);
    (fit(width), fit(height))
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
