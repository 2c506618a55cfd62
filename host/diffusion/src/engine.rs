//! The engine the host holds: a verified pack, its graphs (sessions built at first use, shared
//! by every style), the tokenizers, and generation slots bounding concurrent generations.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::control::ControlKind;
use crate::error::{DiffusionError, PackError};
use crate::image::{Image, RgbImage};
use crate::pack::{Pack, Role};
use crate::pulid::PulidFeatures;
use likeness_vision::Runtime;

use crate::graph::{Graph, HostTensor};
use crate::scheduler::{SamplerKind, Spacing};
use crate::tokenizer::ClipTokenizer;

/// The diffusion methods (`instant-id`, `pulid`, `controlnet`) are the contract's method kinds;
/// the others need no diffusion and are refused by [`DiffusionEngine::generate`].
pub use likeness_contract::MethodKind as Method;

/// One control map of a generation: the contract's.
pub use likeness_contract::ControlMap;

/// A plan's diffusion settings (prompts, control maps, identity weight, steps, guidance, size,
/// seed): the contract's, taken as they are by [`GenerationInput`].
pub use likeness_contract::Diffusion;

/// An output size: the contract's.
pub use likeness_contract::Size;

/// What a pack can run: its diffusion methods (in the order instant-id, pulid, controlnet),
/// its control kinds (canny, depth, face-keypoints, pose) and its sizes; in the contract's
/// terms, with no style transfer.
pub use likeness_contract::Capabilities;

/// A condition image the host derived from the photo (any size: it is resized to the output).
#[derive(Debug, Clone, PartialEq)]
pub struct ControlImage {
    /// Which condition it is.
    pub kind: ControlKind,
    /// Grey or RGB pixels (Canny edges white on black, depth near = bright, keypoints as drawn by
    /// InstantID's `draw_kps`).
    pub image: Image,
}

/// img2img: start from the photo's latents instead of pure noise.
#[derive(Debug, Clone, PartialEq)]
pub struct Img2Img {
    /// The photo (resized to the output size).
    pub photo: Image,
    /// Share of the schedule that is run, (0, 1]: 1 is pure noise, lower keeps more of the photo.
    pub strength: f32,
}

/// Everything one generation needs: the plan's method and its settings as the contract holds
/// them, and what the host derived from the photo (see the crate docs).
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationInput {
    /// The plan's method kind (a diffusion one).
    pub method: Method,
    /// The method's settings. `identity_weight` is InstantID's adapter scale (`ip_scale`; also
    /// IdentityNet's scale when the plan has no face-keypoints map) and PuLID's `id_scale`;
    /// `guidance <= 1` disables classifier-free guidance; `size: None` runs at the pack's
    /// default size; `seed: None` is seed 0 (the host draws one when the plan has none).
    pub settings: Diffusion,
    /// Condition images for the control maps, one per kind used.
    pub control_images: Vec<ControlImage>,
    /// InstantID's face embedding, raw (insightface's `embedding`), from the same recogniser as
    /// the pack's `face_recognizer`.
    pub face_embedding: Option<Vec<f32>>,
    /// Or the aligned 112x112 face, embedded here with the pack's `face_recognizer` (what the
    /// host does).
    pub aligned_face: Option<Image>,
    /// PuLID's identity features.
    pub pulid: Option<PulidFeatures>,
    /// Optional img2img start.
    pub img2img: Option<Img2Img>,
    /// Overrides the sampler (else `[methods.NAME]`, else `[scheduler]`).
    pub scheduler: Option<SamplerKind>,
    /// Overrides the timestep spacing.
    pub timestep_spacing: Option<Spacing>,
}

impl GenerationInput {
    /// A text-to-image input with no control maps and no identity, for `method`.
    pub fn new(
        method: Method,
        prompt: &str,
        steps: u32,
        guidance: f32,
        seed: u64,
    ) -> GenerationInput {
        let settings = Diffusion {
            prompt: prompt.to_string(),
            negative_prompt: String::new(),
            control_maps: Vec::new(),
            identity_weight: 0.8,
            steps,
            guidance,
            size: None,
            seed: Some(seed),
        };
        GenerationInput::with_settings(method, settings)
    }

    /// An input for `method` with a plan's `settings`, with no condition images and no
    /// identity inputs yet.
    pub fn with_settings(method: Method, settings: Diffusion) -> GenerationInput {
        GenerationInput {
            method,
            settings,
            control_images: Vec::new(),
            face_embedding: None,
            aligned_face: None,
            pulid: None,
            img2img: None,
            scheduler: None,
            timestep_spacing: None,
        }
    }
}

/// A generation's result with the tensors behind the image (for tests and diagnostics).
#[derive(Debug, Clone)]
pub struct Generated {
    /// The picture.
    pub image: RgbImage,
    /// The final latents `[1, C, h, w]`.
    pub latents: HostTensor,
    /// The decoded image `[1, 3, H, W]` in -1..1, before the conversion to 8 bits.
    pub decoded: HostTensor,
    /// Steps run.
    pub steps: u32,
}

/// A token to stop a generation between two steps.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token not yet canceled.
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Asks the generation to stop before its next step.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`CancelToken::cancel`] was called.
    pub fn is_canceled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Options of [`DiffusionEngine::load`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineOptions {
    /// Generations that may run at once (at least 1); more wait for a free slot.
    pub slots: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { slots: 1 }
    }
}

/// Counting semaphore for generation slots.
#[derive(Debug)]
struct Slots {
    free: Mutex<usize>,
    cv: Condvar,
}

struct SlotGuard<'a>(&'a Slots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let mut free = self.0.free.lock().unwrap_or_else(|p| p.into_inner());
        *free += 1;
        self.0.cv.notify_one();
    }
}

impl Slots {
    fn acquire(&self, cancel: &CancelToken, total: u32) -> Result<SlotGuard<'_>, DiffusionError> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if cancel.is_canceled() {
                return Err(DiffusionError::Canceled {
                    completed: 0,
                    total,
                });
            }
            if *free > 0 {
                *free -= 1;
                return Ok(SlotGuard(self));
            }
            free = self
                .cv
                .wait_timeout(free, Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// The diffusion engine for one pack.
pub struct DiffusionEngine {
    pub(crate) pack: Pack,
    pub(crate) graphs: BTreeMap<Role, Graph>,
    pub(crate) tokenizer: ClipTokenizer,
    pub(crate) tokenizer_2: ClipTokenizer,
    slots: Slots,
    options: EngineOptions,
}

impl std::fmt::Debug for DiffusionEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiffusionEngine")
            .field("pack", &self.pack.manifest.name)
            .field("roles", &self.graphs.keys().collect::<Vec<_>>())
            .field("options", &self.options)
            .finish()
    }
}

impl DiffusionEngine {
    /// Loads and verifies the pack in `pack_dir` (manifest, checksums, graph signatures,
    /// tokenizers). Sessions are built at first use ([`DiffusionEngine::preload`] builds them now)
    /// on `runtime`, the process's ONNX Runtime that the vision layer shares
    /// ([`Runtime::init`] returns the same one to every caller).
    pub fn load(
        pack_dir: &Path,
        runtime: Arc<Runtime>,
        options: EngineOptions,
    ) -> Result<Arc<Self>, PackError> {
        let pack = Pack::load(pack_dir)?;
        let tok = |t: &crate::manifest::TokenizerEntry| {
            ClipTokenizer::load(
                &pack.dir.join(&t.vocab),
                &pack.dir.join(&t.merges),
                t.max_length,
                &t.pad_token,
            )
        };
        let tokenizer = tok(&pack.manifest.tokenizer)?;
        let tokenizer_2 = tok(&pack.manifest.tokenizer_2)?;
        let graphs = pack
            .graphs
            .iter()
            .map(|(role, info)| (*role, Graph::new(info.clone(), runtime.clone())))
            .collect();
        let slots = options.slots.max(1);
        Ok(Arc::new(DiffusionEngine {
            pack,
            graphs,
            tokenizer,
            tokenizer_2,
            slots: Slots {
                free: Mutex::new(slots),
                cv: Condvar::new(),
            },
            options: EngineOptions { slots },
        }))
    }

    /// The verified pack.
    pub fn pack(&self) -> &Pack {
        &self.pack
    }

    /// Total time spent inside ONNX Runtime runs by this engine's graphs (all generations so far);
    /// the rest of a generation's time is the engine's own overhead.
    pub fn ort_time(&self) -> Duration {
        self.graphs.values().map(Graph::ort_time).sum()
    }

    /// [`DiffusionEngine::ort_time`] per graph, in role order.
    pub fn ort_times(&self) -> Vec<(Role, Duration)> {
        self.graphs
            .iter()
            .map(|(r, g)| (*r, g.ort_time()))
            .collect()
    }

    /// Builds every session now instead of at first use.
    pub fn preload(&self) -> Result<(), DiffusionError> {
        self.graphs.values().try_for_each(Graph::ensure_loaded)
    }

    pub(crate) fn graph(&self, role: Role) -> Result<&Graph, DiffusionError> {
        self.graphs.get(&role).ok_or_else(|| {
            DiffusionError::Unsupported(format!("the pack has no {} graph", role.key()))
        })
    }

    /// What the pack can run. instant-id needs IdentityNet, the image projection, a UNet with
    /// `ip_scale` and the face recogniser; pulid needs the ID encoder, the EVA02-CLIP tower
    /// (`pulid_eva_clip`; `face_parsing` is optional), a UNet with `id_embedding` and the face
    /// recogniser; controlnet needs at least one structural
    /// ControlNet (canny, depth or pose).
    pub fn capabilities(&self) -> Capabilities {
        let has = |r: Role| self.graphs.contains_key(&r);
        let mut methods = Vec::new();
        if has(Role::Identitynet)
            && has(Role::InstantidImageProj)
            && has(Role::FaceRecognizer)
            && self.pack.unet_has_ip()
        {
            methods.push(Method::InstantId);
        }
        if has(Role::PulidIdEncoder)
            && has(Role::PulidEvaClip)
            && has(Role::FaceRecognizer)
            && self.pack.unet_has_id()
        {
            methods.push(Method::Pulid);
        }
        let structural = [
            (Role::ControlnetCanny, ControlKind::Canny),
            (Role::ControlnetDepth, ControlKind::Depth),
            (Role::ControlnetPose, ControlKind::Pose),
        ];
        if structural.iter().any(|(r, _)| has(*r)) {
            methods.push(Method::Controlnet);
        }
        let mut control_kinds = Vec::new();
        for (role, kind) in [
            (Role::ControlnetCanny, ControlKind::Canny),
            (Role::ControlnetDepth, ControlKind::Depth),
            (Role::Identitynet, ControlKind::FaceKeypoints),
            (Role::ControlnetPose, ControlKind::Pose),
        ] {
            if has(role)
                && (kind != ControlKind::FaceKeypoints || methods.contains(&Method::InstantId))
            {
                control_kinds.push(kind);
            }
        }
        let latent = &self.pack.manifest.latent;
        let multiple = latent.size_multiple.max(1);
        Capabilities {
            methods,
            control_maps: control_kinds,
            diffusion_sizes: Some(likeness_contract::SizeLimits {
                multiple,
                min_side: multiple,
                max_side: latent.max_side,
                default_side: latent.default_size[0].max(latent.default_size[1]),
            }),
            transfer: None,
        }
    }

    /// The raw embedding (insightface's `embedding`, not normalised) of an aligned
    /// [`crate::instantid::RECOGNIZER_SIZE`]² face by the pack's `face_recognizer`.
    pub fn embed_face(&self, aligned: &Image) -> Result<Vec<f32>, DiffusionError> {
        aligned
            .validate("the aligned face")
            .map_err(DiffusionError::Invalid)?;
        crate::instantid::embed_face(self.graph(Role::FaceRecognizer)?, aligned)
    }

    /// PuLID's identity features of `face`, the aligned [`crate::pulid::FACE_SIZE`]² crop (see
    /// `likeness_vision::align::align_face_ffhq`) with its five `landmarks` in the crop's pixels
    /// and the face's raw `embedding`: see [`crate::pulid::features`]. Whitens with the pack's
    /// `face_parsing` graph when it has one, else with [`crate::pulid::landmark_mask`].
    pub fn pulid_features(
        &self,
        face: &Image,
        landmarks: &[[f32; 2]; 5],
        embedding: &[f32],
    ) -> Result<PulidFeatures, DiffusionError> {
        crate::pulid::features(
            self.graph(Role::PulidEvaClip)?,
            self.graphs.get(&Role::FaceParsing),
            face,
            landmarks,
            embedding,
        )
    }

    /// Generates the picture. `progress(k, n)` is called after each step; `cancel` is checked
    /// before each step (and before decoding), giving [`DiffusionError::Canceled`].
    pub fn generate(
        &self,
        input: &GenerationInput,
        progress: &dyn Fn(u32, u32),
        cancel: &CancelToken,
    ) -> Result<RgbImage, DiffusionError> {
        self.generate_detailed(input, progress, cancel)
            .map(|g| g.image)
    }

    /// [`DiffusionEngine::generate`], also returning the final latents and the decoded tensor.
    pub fn generate_detailed(
        &self,
        input: &GenerationInput,
        progress: &dyn Fn(u32, u32),
        cancel: &CancelToken,
    ) -> Result<Generated, DiffusionError> {
        let _slot = self.slots.acquire(cancel, input.settings.steps)?;
        crate::pipeline::run(self, input, progress, cancel)
    }
}
