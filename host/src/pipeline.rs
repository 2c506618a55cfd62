//! One generation, start to finish: decode and analyse the photo, let the style plan, run the
//! plan (the diffusion engine, or the photo itself with method `none`), post-process, score the
//! identity kept, with progress events, stage timings and cancellation.

use std::sync::Arc;
use std::time::Instant;

use image::RgbImage;
use likeness_vision::{AnalyzeOptions, IngestError, Vision, VisionError, ingest};
use tokio_util::sync::CancellationToken;

use crate::identity::{self, Identity, IdentityReport};
use crate::runtime::{self, CallError, Capabilities, IdentityMethod, Image, Options, Plan};
use crate::style::canary::Routing;
use crate::style::{Registry, StyleState};

/// Longest side of the photo a style post-processes when no diffusion runs.
const MAX_FALLBACK_SIDE: u32 = 1280;

/// A stage of a generation, as reported to progress listeners (and SSE clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Analysing,
    Planning,
    /// Denoising step `k` of `n` (1-based).
    Step {
        k: u32,
        n: u32,
    },
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
            GenerateError::Image(error) => error.code(),
            GenerateError::Vision(_) => "analysis_failed",
            GenerateError::Diffusion(likeness_diffusion::DiffusionError::Invalid(_)) => {
                "unusable_input"
            }
            GenerateError::Diffusion(_) => "generation_failed",
            GenerateError::Style(error) => error.code(),
            GenerateError::Canceled => "canceled",
            GenerateError::Internal(_) => "internal_error",
        }
    }

    /// The HTTP status that fits.
    pub fn http_status(&self) -> u16 {
        match self {
            GenerateError::UnknownStyle(_) => 404,
            GenerateError::StyleUnavailable(..) => 503,
            GenerateError::Image(error) => error.http_status(),
            GenerateError::Style(CallError::Style { error, .. }) => match error {
                runtime::StyleError::InvalidOptions(_) => 400,
                runtime::StyleError::UnusableInput(_) => 422,
                runtime::StyleError::Internal(_) => 503,
            },
            GenerateError::Style(_) => 503,
            GenerateError::Canceled => 409,
            GenerateError::Diffusion(likeness_diffusion::DiffusionError::Invalid(_)) => 422,
            GenerateError::Diffusion(likeness_diffusion::DiffusionError::Unsupported(_)) => 503,
            GenerateError::Diffusion(_) => 500,
            // 503 when a model is missing, 500 when inference itself failed.
            GenerateError::Vision(error) => error.http_status(),
            GenerateError::Internal(_) => 500,
        }
    }

    /// The style the error concerns, if any.
    pub fn style(&self) -> Option<&str> {
        match self {
            GenerateError::UnknownStyle(id) | GenerateError::StyleUnavailable(id, _) => Some(id),
            GenerateError::Style(error) => Some(error.style()),
            _ => None,
        }
    }
}

/// A finished generation.
#[derive(Debug, Clone)]
pub struct Generation {
    /// The style id and the version that ran (the version the request started with).
    pub style_id: String,
    pub style_version: String,
    /// The sha256 of the component that ran (two builds of one version differ here).
    pub style_digest: String,
    /// The plan the style made; `plan.method` is the method that ran.
    pub plan: Plan,
    /// What the host saw in the photo.
    pub analysis: likeness_vision::Analysis,
    /// The result, RGBA.
    pub image: Image,
    /// How much of the reference face's identity the result kept.
    pub identity: Identity,
    /// Milliseconds spent per stage, in order.
    pub timings: Vec<(&'static str, f64)>,
}

/// The generation service: styles, eyes and (later) the diffusion engine.
pub struct Pipeline {
    registry: Arc<Registry>,
    vision: Arc<Vision>,
    limits: ingest::Limits,
    /// Bounds the CPU stages (decode + analyse, post-process) across all requests; `None`:
    /// unbounded.
    cpu_slots: Option<Arc<tokio::sync::Semaphore>>,
    /// The diffusion engine over the installed model pack; `None`: only method `none` runs.
    diffusion: Option<Arc<likeness_diffusion::DiffusionEngine>>,
    /// What one generation may spend on the identity gate's retries and fallbacks.
    retry_budget: std::time::Duration,
}

impl Pipeline {
    /// A pipeline over these styles and this vision engine.
    pub fn new(registry: Arc<Registry>, vision: Arc<Vision>, limits: ingest::Limits) -> Self {
        Pipeline {
            registry,
            vision,
            limits,
            cpu_slots: None,
            diffusion: None,
            retry_budget: crate::config::IdentityConfig::default().retry_budget(),
        }
    }

    /// Runs the identity methods the installed model pack offers on `engine`.
    pub fn with_diffusion(mut self, engine: Arc<likeness_diffusion::DiffusionEngine>) -> Self {
        self.diffusion = Some(engine);
        self
    }

    /// Runs the CPU stages (decode + analyse, post-process) only while holding one of these
    /// permits, so that the server bounds them apart from the generation slots.
    pub fn with_cpu_slots(mut self, slots: Arc<tokio::sync::Semaphore>) -> Self {
        self.cpu_slots = Some(slots);
        self
    }

    /// Bounds the time one generation spends on identity-gate retries and fallbacks.
    pub fn with_retry_budget(mut self, budget: std::time::Duration) -> Self {
        self.retry_budget = budget;
        self
    }

    /// Waits for a CPU slot (none needed when unbounded).
    async fn cpu_slot(&self) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, GenerateError> {
        match &self.cpu_slots {
            Some(slots) => slots
                .clone()
                .acquire_owned()
                .await
                .map(Some)
                .map_err(|_| GenerateError::Internal("the CPU slots are closed".into())),
            None => Ok(None),
        }
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

    /// What this host can run now: nothing but method `none` without a diffusion model pack.
    pub fn capabilities(&self) -> Capabilities {
        match &self.diffusion {
            Some(engine) => crate::diffuse::capabilities(engine, &self.vision),
            None => Capabilities::none(),
        }
    }

    /// Decodes and analyses a photo (off the async workers).
    pub async fn analyze(
        &self,
        photo: Vec<u8>,
        options: AnalyzeOptions,
    ) -> Result<(RgbImage, likeness_vision::Analysis), GenerateError> {
        let vision = self.vision.clone();
        let limits = self.limits;
        let slot = self.cpu_slot().await?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let decoded = ingest::decode(&photo, &limits)?;
            let analysis =
                vision
                    .analyze(&decoded.image, &options)
                    .map_err(|error| match error {
                        VisionError::Ingest(error) => GenerateError::Image(error),
                        other => GenerateError::Vision(other),
                    })?;
            Ok((decoded.image, analysis))
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
        options: &Options,
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
        options: &Options,
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
        let mut timings = Vec::new();
        let checkpoint = |stage: Stage| {
            if cancel.is_cancelled() {
                return Err(GenerateError::Canceled);
            }
            progress(stage);
            Ok(())
        };

        checkpoint(Stage::Analysing)?;
        let started = Instant::now();
        let (photo, analysis) = self.analyze(photo, AnalyzeOptions::default()).await?;
        let photo = Arc::new(photo);
        timings.push(("analysing", ms(started)));

        checkpoint(Stage::Planning)?;
        let started = Instant::now();
        let capabilities = self.capabilities();
        let style_analysis = to_style_analysis(&analysis);
        // The runtime checks the plan against this analysis and these capabilities (method and
        // fallback offered, bounded prompts and reason, finite weights, a sane size).
        let plan = routed.settle(
            style
                .component
                .plan(&style_analysis, &capabilities, options)
                .await,
        )?;
        timings.push(("planning", ms(started)));

        // With method `none` the style draws from the photo itself.
        let (input, scale) = match (&self.diffusion, plan.method) {
            (Some(engine), method) if method != IdentityMethod::None => {
                let started = Instant::now();
                let image = self
                    .diffuse(engine, photo.clone(), &analysis, &plan, progress, cancel)
                    .await?;
                timings.push(("generating", ms(started)));
                let scale = (
                    image.width as f32 / analysis.width as f32,
                    image.height as f32 / analysis.height as f32,
                );
                (image, scale)
            }
            _ => {
                let _slot = self.cpu_slot().await?;
                let photo = photo.clone();
                let (input, scale) = tokio::task::spawn_blocking(move || fallback_input(&photo))
                    .await
                    .map_err(|e| GenerateError::Internal(e.to_string()))?;
                (input, (scale, scale))
            }
        };
        checkpoint(Stage::PostProcessing)?;
        let started = Instant::now();
        let slot = self.cpu_slot().await?;
        let input_analysis = scale_analysis(&style_analysis, scale, input.width, input.height);
        let image = routed.settle(
            style
                .component
                .post_process(&input, &input_analysis, &plan, options)
                .await,
        )?;
        timings.push(("post-processing", ms(started)));
        drop(slot);
        if cancel.is_cancelled() {
            return Err(GenerateError::Canceled);
        }

        let started = Instant::now();
        let identity = self
            .check_identity(photo, &analysis, plan.reference_face, &image)
            .await?;
        timings.push(("identity", ms(started)));

        routed.succeeded();
        Ok(Generation {
            style_id: style.manifest.id.clone(),
            style_version: style.manifest.version.clone(),
            style_digest: style.digest.clone(),
            plan,
            analysis,
            image,
            identity,
            timings,
        })
    }

    /// Scores how much of the reference face (`planned`, else the dominant one) `image` kept,
    /// off the async workers. A photo without a face, a host without an embedding model or a
    /// failing model give no score, with the reason, never a failed generation.
    async fn check_identity(
        &self,
        photo: Arc<RgbImage>,
        analysis: &likeness_vision::Analysis,
        planned: Option<u32>,
        image: &Image,
    ) -> Result<Identity, GenerateError> {
        let _slot = self.cpu_slot().await?;
        let (vision, analysis, image) = (self.vision.clone(), analysis.clone(), image.clone());
        tokio::task::spawn_blocking(move || {
            let reference = match identity::reference_face(&vision, &photo, &analysis, planned) {
                Ok(reference) => reference,
                Err(reason) => return Identity::Unscored(reason),
            };
            match identity::score(&vision, &reference, &image) {
                Ok(score) => Identity::Scored(IdentityReport::new(&score, &reference)),
                Err(error) => {
                    tracing::warn!(%error, "scoring the output's identity failed");
                    Identity::Unscored(format!("scoring the output's identity failed: {error}"))
                }
            }
        })
        .await
        .map_err(|e| GenerateError::Internal(e.to_string()))
    }
}

impl Pipeline {
    /// Runs the plan on the diffusion engine off the async workers, reporting each step and
    /// stopping between steps when `cancel` fires or this future is dropped.
    async fn diffuse(
        &self,
        engine: &Arc<likeness_diffusion::DiffusionEngine>,
        photo: Arc<RgbImage>,
        analysis: &likeness_vision::Analysis,
        plan: &Plan,
        progress: &(dyn Fn(Stage) + Send + Sync),
        cancel: &CancellationToken,
    ) -> Result<Image, GenerateError> {
        let token = likeness_diffusion::CancelToken::new();
        let _cancel_on_drop = CancelOnDrop(token.clone());
        let (steps_tx, mut steps_rx) = tokio::sync::mpsc::unbounded_channel();
        let (engine, vision, analysis, plan_copy, worker_token) = (
            engine.clone(),
            self.vision.clone(),
            analysis.clone(),
            plan.clone(),
            token.clone(),
        );
        let mut work = tokio::task::spawn_blocking(move || {
            let report = |k: u32, n: u32| {
                let _ = steps_tx.send((k, n));
            };
            crate::diffuse::run(
                &engine,
                &vision,
                &photo,
                &analysis,
                &plan_copy,
                &report,
                &worker_token,
            )
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

/// The photo a style post-processes without diffusion: RGBA, long side at most
/// [`MAX_FALLBACK_SIDE`]; and the scale from the analysed photo to it.
fn fallback_input(photo: &RgbImage) -> (Image, f32) {
    let (w, h) = photo.dimensions();
    let long = w.max(h);
    let (photo, scale) = if long > MAX_FALLBACK_SIDE {
        let scale = MAX_FALLBACK_SIDE as f32 / long as f32;
        let (nw, nh) = (
            ((w as f32 * scale).round() as u32).max(1),
            ((h as f32 * scale).round() as u32).max(1),
        );
        (
            std::borrow::Cow::Owned(ingest::resize(photo, nw, nh)),
            scale,
        )
    } else {
        (std::borrow::Cow::Borrowed(photo), 1.0)
    };
    let (width, height) = photo.dimensions();
    let mut rgba = Vec::with_capacity(width as usize * height as usize * 4);
    for pixel in photo.pixels() {
        rgba.extend_from_slice(&[pixel[0], pixel[1], pixel[2], 255]);
    }
    (
        Image {
            width,
            height,
            rgba,
        },
        scale,
    )
}

/// The analysis as the style contract carries it.
pub fn to_style_analysis(analysis: &likeness_vision::Analysis) -> runtime::Analysis {
    let point = |p: [f32; 2]| runtime::Point { x: p[0], y: p[1] };
    runtime::Analysis {
        width: analysis.width,
        height: analysis.height,
        faces: analysis
            .faces
            .iter()
            .map(|face| runtime::Face {
                bbox: runtime::Rect {
                    x1: face.bbox[0],
                    y1: face.bbox[1],
                    x2: face.bbox[2],
                    y2: face.bbox[3],
                },
                score: face.score,
                landmarks: runtime::Landmarks {
                    left_eye: point(face.landmarks[0]),
                    right_eye: point(face.landmarks[1]),
                    nose: point(face.landmarks[2]),
                    mouth_left: point(face.landmarks[3]),
                    mouth_right: point(face.landmarks[4]),
                },
                share: face.share,
                dominant: face.dominant,
            })
            .collect(),
    }
}

/// The analysis in the coordinates of an image scaled by `scale` (x, y) to `width` x `height`.
fn scale_analysis(
    analysis: &runtime::Analysis,
    (sx, sy): (f32, f32),
    width: u32,
    height: u32,
) -> runtime::Analysis {
    let mut scaled = analysis.clone();
    scaled.width = width;
    scaled.height = height;
    for face in &mut scaled.faces {
        let r = &mut face.bbox;
        (r.x1, r.y1, r.x2, r.y2) = (r.x1 * sx, r.y1 * sy, r.x2 * sx, r.y2 * sy);
        let l = &mut face.landmarks;
        for p in [
            &mut l.left_eye,
            &mut l.right_eye,
            &mut l.nose,
            &mut l.mouth_left,
            &mut l.mouth_right,
        ] {
            (p.x, p.y) = (p.x * sx, p.y * sy);
        }
    }
    scaled
}
