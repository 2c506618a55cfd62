//! One generation, start to finish: decode and analyse the photo, let the style plan, run the
//! plan (the diffusion engine, the style-transfer networks, or the photo itself with method
//! `none`), post-process, score the identity kept, with progress events, stage timings and
//! cancellation. The plan runs image by image as `execute` decides: its fallbacks when a method
//! cannot run, the identity gate's retries.

use std::sync::Arc;
use std::time::Instant;

use image::RgbImage;
use likeness_vision::{AnalyzeOptions, IngestError, Spread, Vision, VisionError, ingest};
use tokio_util::sync::CancellationToken;

use likeness_contract::options::{OptionError, RawOptions};
use likeness_contract::policy;
use likeness_contract::{Analysis, Capabilities, Face, Landmarks, Method, MethodKind, Plan, Rect};

use crate::execute::{Executor, Made, Try};
use crate::identity::{self, Identity, IdentityReport, ReferenceFace};
use crate::lanes::{Lanes, OnLanes, Slot, StageSpan};
use crate::style::canary::Routing;
use crate::style::{Registry, StyleState};
use crate::transfer::StyleVectors;
use crate::wasm::{CallError, Image};

/// Longest side of the photo a style post-processes when no diffusion runs.
const MAX_FALLBACK_SIDE: u32 = 1280;

/// A stage of a generation, as reported to progress listeners (and SSE clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Decoding the photo and finding its faces.
    Analysing,
    /// The style choosing its plan.
    Planning,
    /// Denoising step `k` of `n` (1-based).
    Step {
        /// The step just finished.
        k: u32,
        /// Steps in all.
        n: u32,
    },
    /// The style post-processing the image.
    PostProcessing,
}

impl Stage {
    /// The stage's name in events and timings.
    pub fn name(&self) -> &'static str {
        match self {
            Stage::Analysing => "analysing",
            Stage::Planning => "planning",
            Stage::Step { .. } => "step",
            Stage::PostProcessing => "post-processing",
        }
    }
}

/// Why a generation failed.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// No style has this id.
    #[error("there is no style '{0}'")]
    UnknownStyle(String),
    /// The style exists but no version of it passed validation.
    #[error("style '{0}' is unavailable: {1}")]
    StyleUnavailable(String, String),
    /// A request option is unknown or malformed (checked by the host against the style's
    /// parameter specs, before the style sees it).
    #[error("{error}")]
    InvalidOption {
        /// The style whose specs refused it.
        style: String,
        /// The option and why.
        error: OptionError,
    },
    /// The upload is not a usable image.
    #[error(transparent)]
    Image(#[from] IngestError),
    /// Face analysis failed.
    #[error("face analysis failed: {0}")]
    Vision(VisionError),
    /// The style failed or refused.
    #[error(transparent)]
    Style(#[from] CallError),
    /// The diffusion engine failed.
    #[error("generation failed: {0}")]
    Diffusion(likeness_diffusion::DiffusionError),
    /// The style-transfer networks failed or cannot run the plan (no pack, an unusable style
    /// picture, no learned style named): why, as a sentence.
    #[error("{0}")]
    Transfer(String),
    /// The client or an operator canceled the generation.
    #[error("the generation was canceled")]
    Canceled,
    /// A worker thread failed (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

impl GenerateError {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            GenerateError::UnknownStyle(_) => "unknown_style",
            GenerateError::StyleUnavailable(..) => "style_unavailable",
            GenerateError::InvalidOption { .. } => "invalid_options",
            GenerateError::Image(error) => error.code(),
            GenerateError::Vision(_) => "analysis_failed",
            GenerateError::Diffusion(likeness_diffusion::DiffusionError::Invalid(_)) => {
                "unusable_input"
            }
            GenerateError::Diffusion(_) | GenerateError::Transfer(_) => "generation_failed",
            GenerateError::Style(error) => error.code(),
            GenerateError::Canceled => "canceled",
            GenerateError::Internal(_) => "internal_error",
        }
    }

    /// The style the error concerns, if any.
    pub fn style(&self) -> Option<&str> {
        match self {
            GenerateError::UnknownStyle(id)
            | GenerateError::StyleUnavailable(id, _)
            | GenerateError::InvalidOption { style: id, .. } => Some(id),
            GenerateError::Style(error) => Some(error.style()),
            _ => None,
        }
    }
}

/// A finished generation.
#[derive(Debug, Clone)]
pub struct Generation {
    /// The style id.
    pub style_id: String,
    /// The version that ran (the version the request started with).
    pub style_version: String,
    /// The sha256 of the component that ran (two builds of one version differ here).
    pub style_digest: String,
    /// The plan the style made, with the size the host chose filled in; `plan.method` is the
    /// method that ran (a fallback, when the planned one could not run or did not pass the
    /// identity gate), `plan.reason` ends with what happened at run time.
    pub plan: Plan,
    /// The method the style planned.
    pub planned: likeness_contract::MethodKind,
    /// The options the style got: checked, defaults applied.
    pub options: likeness_contract::Options,
    /// What the host saw in the photo, in the photo's own (upright) pixels, also when it was
    /// decoded smaller.
    pub analysis: likeness_vision::Analysis,
    /// The result, RGBA.
    pub image: Image,
    /// How much of the reference face's identity the result kept.
    pub identity: Identity,
    /// Milliseconds spent per stage, in order.
    pub timings: Vec<(&'static str, f64)>,
    /// When each CPU stage ran and on which lane (the stages beside each other on free CPU
    /// slots, [`crate::lanes`]), in the order they started.
    pub spans: Vec<StageSpan>,
    /// The most CPU slots the generation held at once.
    pub peak_cpu_slots: usize,
}

/// The generation service: styles, eyes and (later) the diffusion engine.
pub struct Pipeline {
    registry: Arc<Registry>,
    vision: Arc<Vision>,
    limits: ingest::Limits,
    /// Bounds the CPU stages (decode + analyse, the plan, the reference embedding, the
    /// method's inputs, post-process, the identity score) across all requests (default: one
    /// per core). A generation runs its independent stages side by side on the slots free at
    /// the time ([`crate::lanes`]).
    cpu_slots: Arc<tokio::sync::Semaphore>,
    /// The diffusion engine over the installed model pack; `None`: only method `none` runs.
    diffusion: Option<Arc<likeness_diffusion::DiffusionEngine>>,
    /// What one generation may spend on the identity gate's retries and fallbacks.
    retry_budget: std::time::Duration,
    /// The style pictures' style vectors, computed once per picture.
    style_vectors: Arc<StyleVectors>,
}

impl Pipeline {
    /// A pipeline over these styles and this vision engine.
    pub fn new(registry: Arc<Registry>, vision: Arc<Vision>, limits: ingest::Limits) -> Self {
        Pipeline {
            registry,
            vision,
            limits,
            cpu_slots: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            )),
            diffusion: None,
            retry_budget: crate::config::IdentityConfig::default().retry_budget(),
            style_vectors: Arc::default(),
        }
    }

    /// Runs the identity methods the installed model pack offers on `engine`.
    pub fn with_diffusion(mut self, engine: Arc<likeness_diffusion::DiffusionEngine>) -> Self {
        self.diffusion = Some(engine);
        self
    }

    /// Runs the CPU stages (decode + analyse, the plan, the embeddings and control maps,
    /// post-process, the identity score) only while holding one of these permits, so that the
    /// server bounds them apart from the generation slots.
    pub fn with_cpu_slots(mut self, slots: Arc<tokio::sync::Semaphore>) -> Self {
        self.cpu_slots = slots;
        self
    }

    /// Bounds the time one generation spends on identity-gate retries and fallbacks.
    pub fn with_retry_budget(mut self, budget: std::time::Duration) -> Self {
        self.retry_budget = budget;
        self
    }

    /// The styles.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The vision engine.
    pub fn vision(&self) -> &Arc<Vision> {
        &self.vision
    }

    /// The upload limits.
    pub fn limits(&self) -> &ingest::Limits {
        &self.limits
    }

    /// The style vectors of the style pictures seen so far, and how many were computed.
    pub fn style_vectors(&self) -> &StyleVectors {
        &self.style_vectors
    }

    /// What this host can run now: the diffusion pack's methods when it has one, style
    /// transfer when the style-transfer pack is installed, and method `none` always.
    pub fn capabilities(&self) -> Capabilities {
        let mut capabilities = match &self.diffusion {
            Some(engine) => crate::diffuse::capabilities(engine, &self.vision),
            None => Capabilities::none(),
        };
        capabilities.transfer = crate::transfer::capabilities(&self.vision);
        if capabilities.transfer.is_some() {
            let at = capabilities.methods.len().saturating_sub(1);
            capabilities.methods.insert(at, MethodKind::StyleTransfer);
        }
        capabilities
    }

    /// Decodes and analyses a photo (off the async workers).
    pub async fn analyze(
        &self,
        photo: Vec<u8>,
        options: AnalyzeOptions,
    ) -> Result<(RgbImage, likeness_vision::Analysis), GenerateError> {
        let (image, analysis, _) = self
            .analyze_on(&Lanes::new(self.cpu_slots.clone()), photo, options, 0)
            .await?;
        Ok((image, analysis))
    }

    /// The long side a generation needs of the photo: what a style post-processes without
    /// diffusion ([`MAX_FALLBACK_SIDE`], also the style transfer's) or the largest side the
    /// diffusion pack makes, whichever is more. Larger JPEGs are decoded by DCT scaling to at
    /// least this ([`ingest::decode_at_least`]).
    pub fn working_side(&self) -> u32 {
        let diffusion = self.capabilities().diffusion_sizes.map(|s| s.max_side);
        diffusion.unwrap_or(0).max(MAX_FALLBACK_SIDE)
    }

    /// [`Pipeline::analyze`] on the request's own lane of `lanes`, the photo decoded to a long
    /// side of at least `long_side` (0: in full): coordinates in the decoded photo's pixels,
    /// and the photo's full upright size.
    async fn analyze_on(
        &self,
        lanes: &Lanes,
        photo: Vec<u8>,
        options: AnalyzeOptions,
        long_side: u32,
    ) -> Result<(RgbImage, likeness_vision::Analysis, (u32, u32)), GenerateError> {
        let (vision, limits, lanes) = (self.vision.clone(), self.limits, lanes.clone());
        let slot = lanes.own().await?;
        tokio::task::spawn_blocking(move || {
            lanes.timed("analysing", slot.lane, || {
                let decoded = ingest::decode_at_least(&photo, &limits, long_side)?;
                let spread = OnLanes {
                    lanes: &lanes,
                    lane: slot.lane,
                };
                let analysis = analyze_image(&vision, &decoded.image, &options, &spread)?;
                let size = decoded.upright_size();
                Ok((decoded.image, analysis, size))
            })
        })
        .await
        .map_err(|e| GenerateError::Internal(e.to_string()))?
    }

    /// Runs one generation of style `style_id` on `photo`. `progress` hears each stage;
    /// `cancel` stops the generation at the next stage boundary (dropping the future stops it
    /// at once).
    pub async fn generate(
        &self,
        style_id: &str,
        photo: Vec<u8>,
        options: &RawOptions,
        progress: &(dyn Fn(Stage) + Send + Sync),
        cancel: &CancellationToken,
    ) -> Result<Generation, GenerateError> {
        let routing = Routing::default();
        self.generate_routed(style_id, &routing, photo, options, progress, cancel)
            .await
    }

    /// [`Pipeline::generate`] with the style's version picked by `routing` when the style has
    /// a canary; the canary hears how the generation settled.
    pub async fn generate_routed(
        &self,
        style_id: &str,
        routing: &Routing,
        photo: Vec<u8>,
        options: &RawOptions,
        progress: &(dyn Fn(Stage) + Send + Sync),
        cancel: &CancellationToken,
    ) -> Result<Generation, GenerateError> {
        let routed = self.registry.route(style_id, routing).ok_or_else(|| {
            match self.registry.status(style_id) {
                Some(status) if status.state != StyleState::Serving => {
                    GenerateError::StyleUnavailable(
                        style_id.to_string(),
                        status.unavailable_reason(),
                    )
                }
                _ => GenerateError::UnknownStyle(style_id.to_string()),
            }
        })?;
        let style = routed.style.clone();
        // Checked once, here: the style gets complete, typed options.
        let options =
            likeness_contract::options::check(&style.info.params, options).map_err(|error| {
                GenerateError::InvalidOption {
                    style: style_id.to_string(),
                    error,
                }
            })?;
        let mut timings = Vec::new();
        let checkpoint = |stage: Stage| {
            if cancel.is_cancelled() {
                return Err(GenerateError::Canceled);
            }
            progress(stage);
            Ok(())
        };

        let lanes = Lanes::new(self.cpu_slots.clone());
        checkpoint(Stage::Analysing)?;
        let started = Instant::now();
        let for_plan = AnalyzeOptions {
            min_face_share: Some(policy::SKIPPABLE_FACE_SHARE),
            ..AnalyzeOptions::default()
        };
        let (photo, analysis, (full_width, full_height)) = self
            .analyze_on(&lanes, photo, for_plan, self.working_side())
            .await?;
        let photo = Arc::new(photo);
        timings.push(("analysing", ms(started)));

        checkpoint(Stage::Planning)?;
        let started = Instant::now();
        let capabilities = self.capabilities();
        let style_analysis = to_style_analysis(&analysis);
        let slot = lanes.own().await?;
        // The reference face's embedding needs no plan for the face most plans keep (face 0,
        // the dominant one): on a free CPU slot it runs beside the plan.
        let early = self.spare_reference(&lanes, &photo, &analysis, 0);
        let plan_start = lanes.now_ms();
        // The runtime checks the plan against this analysis and these capabilities (methods
        // offered, bounded prompts and reason, finite weights, a size the pack runs).
        let planned = style
            .component
            .plan(&style_analysis, &capabilities, &options)
            .await;
        lanes.record("planning", slot.lane, plan_start);
        drop(slot);
        let mut plan = routed.settle(planned)?;
        timings.push(("planning", ms(started)));

        // The plan runs image by image: the planned method, then its fallbacks when a method
        // cannot run for this request or the identity gate is not passed.
        let face = plan.reference_face(&style_analysis).copied();
        let kept = plan.reference_faces.first().copied().unwrap_or(0);
        // Started beside the plan for the face the plan keeps, the embedding goes on beside
        // the method and is awaited by the first score; else it runs now, in order on the
        // request's own lane.
        let mut reference = match early {
            Some(early) if early.face == kept => early,
            _ => self.reference_face(&lanes, &photo, &analysis, kept).await?,
        };
        let planned = plan.method.kind();
        let mut executor = Executor::new(&plan, self.retry_budget, Instant::now());
        let mut unrunnable = None;
        while let Some(tried) = executor.next(Instant::now()) {
            let started = Instant::now();
            let mut method = tried.method.clone();
            let input = self
                .input(
                    &lanes,
                    &mut method,
                    &photo,
                    face,
                    &style_analysis,
                    &style.dir,
                    progress,
                    cancel,
                )
                .await;
            let made = match input {
                Ok((input, took)) => {
                    if let Some(ms) = took {
                        add_timing(&mut timings, "generating", ms);
                    }
                    checkpoint(Stage::PostProcessing)?;
                    let post = Instant::now();
                    let slot = lanes.own().await?;
                    let post_start = lanes.now_ms();
                    let scale = (
                        input.width as f32 / analysis.width as f32,
                        input.height as f32 / analysis.height as f32,
                    );
                    let input_analysis = style_analysis.scaled(scale, input.width, input.height);
                    let ran = Plan {
                        method: method.clone(),
                        ..plan.clone()
                    };
                    let image = routed.settle(
                        style
                            .component
                            .post_process(&input, &input_analysis, &ran, &options)
                            .await,
                    )?;
                    lanes.record("post-processing", slot.lane, post_start);
                    drop(slot);
                    add_timing(&mut timings, "post-processing", ms(post));
                    let scoring = Instant::now();
                    let identity = self.score(&lanes, reference.get().await?, &image).await?;
                    add_timing(&mut timings, "identity", ms(scoring));
                    Made::Image { image, identity }
                }
                Err(error) if can_fall_back(&error) => {
                    let why = error.to_string();
                    unrunnable = Some(error);
                    Made::Unrunnable(why)
                }
                Err(error) => return Err(error),
            };
            executor.record(Try { method, ..tried }, made, started.elapsed());
            if cancel.is_cancelled() {
                return Err(GenerateError::Canceled);
            }
        }
        let executed = executor
            .finish(planned)
            .map_err(|story| unrunnable.unwrap_or(GenerateError::Internal(story)))?;
        plan.method = executed.method;
        if let Some(story) = executed.story {
            plan.reason = format!("{} {story}", plan.reason);
        }
        let (image, identity) = (executed.image, executed.identity);

        routed.succeeded();
        Ok(Generation {
            style_id: style.manifest.id.clone(),
            style_version: style.manifest.version.clone(),
            style_digest: style.digest.clone(),
            plan,
            planned,
            options,
            // The faces in the photo's own pixels, whatever size it was decoded at.
            analysis: analysis.in_size(full_width, full_height),
            image,
            identity,
            timings,
            spans: lanes.spans(),
            peak_cpu_slots: lanes.peak_slots(),
        })
    }
}

impl Pipeline {
    /// The image `method` makes for post-processing, and the milliseconds its network took:
    /// a diffusion method's output (its size filled in on `method`), a style transfer's
    /// rendition of the photo (faces of `analysis` kept, style pictures from the package
    /// folder `package`), else the photo itself.
    #[allow(clippy::too_many_arguments)]
    async fn input(
        &self,
        lanes: &Lanes,
        method: &mut Method,
        photo: &Arc<RgbImage>,
        reference: Option<Face>,
        analysis: &Analysis,
        package: &std::path::Path,
        progress: &(dyn Fn(Stage) + Send + Sync),
        cancel: &CancellationToken,
    ) -> Result<(Image, Option<f64>), GenerateError> {
        let diffusion = self
            .diffusion
            .as_ref()
            .zip(self.capabilities().diffusion_sizes);
        match (diffusion, &mut *method) {
            (
                Some((engine, limits)),
                Method::InstantId(settings)
                | Method::Pulid(settings)
                | Method::Controlnet(settings),
            ) => {
                let started = Instant::now();
                let size =
                    crate::diffuse::output_size(settings, &limits, photo.width(), photo.height());
                settings.size = Some(size);
                let image = self
                    .diffuse(
                        engine,
                        lanes,
                        photo.clone(),
                        reference,
                        method,
                        progress,
                        cancel,
                    )
                    .await?;
                Ok((image, Some(ms(started))))
            }
            (_, Method::StyleTransfer(settings)) => {
                let started = Instant::now();
                let slot = lanes.own().await?;
                let (vision, vectors, photo, lanes) = (
                    self.vision.clone(),
                    self.style_vectors.clone(),
                    photo.clone(),
                    lanes.clone(),
                );
                let (analysis, package, settings) =
                    (analysis.clone(), package.to_path_buf(), settings.clone());
                let image = tokio::task::spawn_blocking(move || {
                    let start = lanes.now_ms();
                    let sized = bounded_photo(&photo);
                    let (w, h) = sized.dimensions();
                    let scale = (
                        w as f32 / photo.width() as f32,
                        h as f32 / photo.height() as f32,
                    );
                    let faces = analysis.scaled(scale, w, h).faces;
                    let image = crate::transfer::run(
                        &vision, &vectors, &package, &sized, &faces, &settings,
                    );
                    lanes.record("style-transfer", slot.lane, start);
                    image
                })
                .await
                .map_err(|e| GenerateError::Internal(e.to_string()))??;
                Ok((image, Some(ms(started))))
            }
            // With method `none` the style draws from the photo itself.
            _ => {
                let slot = lanes.own().await?;
                let (photo, lanes) = (photo.clone(), lanes.clone());
                let input = tokio::task::spawn_blocking(move || {
                    lanes.timed("photo", slot.lane, || fallback_input(&photo))
                })
                .await
                .map_err(|e| GenerateError::Internal(e.to_string()))?;
                Ok((input, None))
            }
        }
    }

    /// Runs `method` on the diffusion engine off the async workers: first its inputs, made on
    /// the request's own CPU slot and any free ones beside it ([`crate::diffuse::prepare`]),
    /// then the engine, reporting each step and stopping between steps when `cancel` fires or
    /// this future is dropped.
    #[allow(clippy::too_many_arguments)]
    async fn diffuse(
        &self,
        engine: &Arc<likeness_diffusion::DiffusionEngine>,
        lanes: &Lanes,
        photo: Arc<RgbImage>,
        reference: Option<Face>,
        method: &Method,
        progress: &(dyn Fn(Stage) + Send + Sync),
        cancel: &CancellationToken,
    ) -> Result<Image, GenerateError> {
        let settings = method
            .diffusion()
            .cloned()
            .ok_or_else(|| GenerateError::Internal("a diffusion method without settings".into()))?;
        let method = method.kind();
        let size = settings
            .size
            .ok_or_else(|| GenerateError::Internal("a diffusion plan without a size".into()))?;
        let token = likeness_diffusion::CancelToken::new();
        let _cancel_on_drop = CancelOnDrop(token.clone());

        let slot = lanes.own().await?;
        let (engine, vision, lanes) = (engine.clone(), self.vision.clone(), lanes.clone());
        let (stop, canceled) = (token.clone(), cancel.clone());
        let input = tokio::task::spawn_blocking(move || {
            let input = crate::diffuse::prepare(
                &engine,
                &vision,
                &photo,
                reference.as_ref(),
                method,
                &settings,
                size,
                &lanes,
                slot.lane,
                &|| stop.is_canceled() || canceled.is_cancelled(),
            );
            drop(slot);
            input.map(|input| (engine, input))
        })
        .await
        .map_err(|e| GenerateError::Internal(e.to_string()))?;
        let (engine, input) = input?;
        if cancel.is_cancelled() {
            return Err(GenerateError::Canceled);
        }

        let (steps_tx, mut steps_rx) = tokio::sync::mpsc::unbounded_channel();
        let worker_token = token.clone();
        let mut work = tokio::task::spawn_blocking(move || {
            let report = |k: u32, n: u32| {
                let _ = steps_tx.send((k, n));
            };
            crate::diffuse::generate(&engine, &input, &report, &worker_token)
        });
        loop {
            tokio::select! {
                done = &mut work => return done.map_err(|e| GenerateError::Internal(e.to_string()))?,
                Some((k, n)) = steps_rx.recv() => progress(Stage::Step { k, n }),
                () = cancel.cancelled() => token.cancel(),
            }
        }
    }
}

impl Pipeline {
    /// Reference face `face` of the analysis ([`identity::reference_face`]), embedded from the
    /// photo on the request's own lane, off the async workers; `Err` inside says why there is
    /// none (no face, no embedding model, a failed embedding) and the generation goes on
    /// unscored.
    async fn reference_face(
        &self,
        lanes: &Lanes,
        photo: &Arc<RgbImage>,
        analysis: &likeness_vision::Analysis,
        face: u32,
    ) -> Result<Reference, GenerateError> {
        if let Some(known) = self.known_reference(analysis, face) {
            return Ok(known);
        }
        let slot = lanes.own().await?;
        let embedded = self
            .embed_reference(lanes, slot, photo, analysis, face)
            .await
            .map_err(|e| GenerateError::Internal(e.to_string()))?;
        Ok(Reference {
            face,
            embedding: Embedding::Done(embedded),
        })
    }

    /// [`Pipeline::reference_face`] on a spare lane, started now and awaited when the first
    /// score needs it, if a CPU slot is free (else `None`).
    fn spare_reference(
        &self,
        lanes: &Lanes,
        photo: &Arc<RgbImage>,
        analysis: &likeness_vision::Analysis,
        face: u32,
    ) -> Option<Reference> {
        if let Some(known) = self.known_reference(analysis, face) {
            return Some(known);
        }
        let slot = lanes.spare()?;
        Some(Reference {
            face,
            embedding: Embedding::Running(self.embed_reference(lanes, slot, photo, analysis, face)),
        })
    }

    /// Why there is no reference face `face` (no such face, no embedding model), when that
    /// needs no CPU slot to say.
    fn known_reference(
        &self,
        analysis: &likeness_vision::Analysis,
        face: u32,
    ) -> Option<Reference> {
        let embeddable = self.vision.embedder().is_some() && analysis.faces.len() > face as usize;
        (!embeddable).then(|| Reference {
            face,
            embedding: Embedding::Done(identity::reference_face(
                &self.vision,
                &RgbImage::new(0, 0),
                analysis,
                Some(face),
            )),
        })
    }

    /// Embeds reference face `face` on a blocking thread holding `slot`.
    fn embed_reference(
        &self,
        lanes: &Lanes,
        slot: Slot,
        photo: &Arc<RgbImage>,
        analysis: &likeness_vision::Analysis,
        face: u32,
    ) -> tokio::task::JoinHandle<Result<ReferenceFace, String>> {
        let (vision, photo, analysis, lanes) = (
            self.vision.clone(),
            photo.clone(),
            analysis.clone(),
            lanes.clone(),
        );
        tokio::task::spawn_blocking(move || {
            lanes.timed("reference-face", slot.lane, || {
                identity::reference_face(&vision, &photo, &analysis, Some(face))
            })
        })
    }

    /// Scores how much of `reference` `image` kept, on the request's own lane, off the async
    /// workers. A failing model gives no score, with the reason, never a failed generation.
    async fn score(
        &self,
        lanes: &Lanes,
        reference: &Result<ReferenceFace, String>,
        image: &Image,
    ) -> Result<Identity, GenerateError> {
        let reference = match reference {
            Ok(reference) => reference.clone(),
            Err(reason) => return Ok(Identity::Unscored(reason.clone())),
        };
        let slot = lanes.own().await?;
        let (vision, image, lanes) = (self.vision.clone(), image.clone(), lanes.clone());
        tokio::task::spawn_blocking(move || {
            lanes.timed("identity", slot.lane, || {
                let spread = OnLanes {
                    lanes: &lanes,
                    lane: slot.lane,
                };
                match identity::score(&vision, &reference, &image, &spread) {
                    Ok(score) => Identity::Scored(IdentityReport::new(&score, &reference)),
                    Err(error) => {
                        tracing::warn!(%error, "scoring the output's identity failed");
                        Identity::Unscored(format!("scoring the output's identity failed: {error}"))
                    }
                }
            })
        })
        .await
        .map_err(|e| GenerateError::Internal(e.to_string()))
    }
}

/// The reference face of a generation, for face `face` of the analysis.
struct Reference {
    face: u32,
    embedding: Embedding,
}

/// A reference face's embedding: running on a spare lane, or done.
enum Embedding {
    Running(tokio::task::JoinHandle<Result<ReferenceFace, String>>),
    Done(Result<ReferenceFace, String>),
}

impl Reference {
    /// The embedded reference face, waiting for a spare lane's embedding to finish.
    async fn get(&mut self) -> Result<&Result<ReferenceFace, String>, GenerateError> {
        if let Embedding::Running(task) = &mut self.embedding {
            let done = task
                .await
                .map_err(|e| GenerateError::Internal(e.to_string()))?;
            self.embedding = Embedding::Done(done);
        }
        match &self.embedding {
            Embedding::Done(done) => Ok(done),
            Embedding::Running(_) => Err(GenerateError::Internal(
                "the reference face is still being embedded".into(),
            )),
        }
    }
}

/// Whether `error` means the method cannot run for this request, so that the plan's next
/// fallback should: the diffusion engine or a vision model failing (a pack part that does not
/// load or run, no usable embedding, a control map the host cannot draw) or the style-transfer
/// networks failing or refusing the plan's settings. Cancellation, the
/// style's own failures and bugs end the generation.
fn can_fall_back(error: &GenerateError) -> bool {
    matches!(
        error,
        GenerateError::Diffusion(_) | GenerateError::Vision(_) | GenerateError::Transfer(_)
    )
}

/// Adds `ms` to `stage`'s time (each attempt of a generation adds to its stages).
fn add_timing(timings: &mut Vec<(&'static str, f64)>, stage: &'static str, ms: f64) {
    match timings.iter_mut().find(|(name, _)| *name == stage) {
        Some((_, total)) => *total += ms,
        None => timings.push((stage, ms)),
    }
}

/// Cancels the diffusion loop when the generation's future is dropped (a client gone).
struct CancelOnDrop(likeness_diffusion::CancelToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

fn ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1e3
}

/// The photo at the size a style post-processes without diffusion: long side at most
/// [`MAX_FALLBACK_SIDE`].
fn bounded_photo(photo: &RgbImage) -> std::borrow::Cow<'_, RgbImage> {
    ingest::bounded(photo, MAX_FALLBACK_SIDE).0
}

/// The photo a style post-processes without diffusion: RGBA, at [`bounded_photo`]'s size.
fn fallback_input(photo: &RgbImage) -> Image {
    let photo = bounded_photo(photo);
    let (width, height) = photo.dimensions();
    let mut rgba = Vec::with_capacity(width as usize * height as usize * 4);
    for pixel in photo.pixels() {
        rgba.extend_from_slice(&[pixel[0], pixel[1], pixel[2], 255]);
    }
    Image {
        width,
        height,
        rgba,
    }
}

/// Analyses `image`; with [`AnalyzeOptions::min_face_share`] set, looks again at every face
/// size when the faces found leave the default plan open
/// ([`policy::settled_without_faces_under`]), so the plan is the one a full detection gives.
/// Looking again goes on with the same detection ([`Vision::analyze_until`]): one MTCNN pass
/// over the pyramid either way, each level and box done once, its parts through `spread`.
pub fn analyze_image(
    vision: &Vision,
    image: &RgbImage,
    options: &AnalyzeOptions,
    spread: &dyn Spread,
) -> Result<likeness_vision::Analysis, GenerateError> {
    let settled = |analysis: &likeness_vision::Analysis| {
        options.min_face_share.is_none_or(|share| {
            policy::settled_without_faces_under(&to_style_analysis(analysis), share)
        })
    };
    vision
        .analyze_until(image, options, &settled, spread)
        .map_err(|error| match error {
            VisionError::Ingest(error) => GenerateError::Image(error),
            other => GenerateError::Vision(other),
        })
}

/// The analysis as the style contract carries it.
pub fn to_style_analysis(analysis: &likeness_vision::Analysis) -> Analysis {
    Analysis {
        width: analysis.width,
        height: analysis.height,
        faces: analysis
            .faces
            .iter()
            .map(|face| Face {
                bbox: Rect {
                    x1: face.bbox[0],
                    y1: face.bbox[1],
                    x2: face.bbox[2],
                    y2: face.bbox[3],
                },
                score: face.score,
                landmarks: Landmarks::from_array(face.landmarks),
                share: face.share,
                dominant: face.dominant,
            })
            .collect(),
    }
}
