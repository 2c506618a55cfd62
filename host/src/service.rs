//! The generation service behind the HTTP API: the pipeline with admission control, stage
//! spans and metrics, result encoding, asynchronous jobs, and the drain on shutdown.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::admission::{Admission, Overloaded, Ticket};
use crate::breaker::Verdict;
use crate::config::ServeConfig;
use crate::jobs::{Failure, Job, Jobs, Outcome};
use crate::metrics::Metrics;
use crate::output::{OutputFormat, Rendered};
use crate::pipeline::{GenerateError, Pipeline, Stage};
use crate::style::canary::Routing;
use crate::wasm::CallError;
use likeness_contract::options::RawOptions as Options;

/// One generation to run.
#[derive(Debug)]
pub struct GenerationRequest {
    /// The generation's id.
    pub id: String,
    /// The style to run.
    pub style: String,
    /// The uploaded photo.
    pub photo: Vec<u8>,
    /// The client's options, in the order sent.
    pub options: Options,
    /// The format of the result.
    pub format: OutputFormat,
    /// Which version serves it when the style has a canary.
    pub canary: Routing,
}

/// The service: one per process, shared by every request.
pub struct Service {
    pipeline: Pipeline,
    admission: Admission,
    jobs: Arc<Jobs>,
    metrics: Metrics,
    draining: AtomicBool,
    /// Canceled when the drain deadline passes: whatever still runs is stopped.
    abort: CancellationToken,
    /// Every generation in flight, sync or async, for the drain.
    tasks: TaskTracker,
}

impl Service {
    /// The service over `pipeline` with the limits of `config`.
    pub fn new(pipeline: Pipeline, config: &ServeConfig) -> Arc<Service> {
        let admission = Admission::new(&config.admission);
        let pipeline = pipeline
            .with_cpu_slots(admission.cpu_slots().clone())
            .with_retry_budget(config.identity.retry_budget());
        Arc::new(Service {
            pipeline,
            admission,
            jobs: Jobs::new(config.jobs.clone()),
            metrics: Metrics::new(),
            draining: AtomicBool::new(false),
            abort: CancellationToken::new(),
            tasks: TaskTracker::new(),
        })
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// The queue and slots.
    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// The asynchronous jobs.
    pub fn jobs(&self) -> &Arc<Jobs> {
        &self.jobs
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The metrics in Prometheus's text format, with the gauges brought up to date.
    pub fn render_metrics(&self) -> String {
        let m = &self.metrics;
        m.queue_depth.set(self.admission.queue_depth() as i64);
        m.running.set(self.admission.running() as i64);
        m.uploads_in_progress
            .set(self.admission.uploads_in_progress() as i64);
        m.jobs_stored.set(self.jobs.len() as i64);
        m.style_vectors_computed
            .set(self.pipeline.style_vectors().computed() as i64);
        for load in self.admission.style_loads() {
            m.style_in_flight
                .with_label_values(&[&load.style])
                .set(load.in_flight as i64);
            m.circuit_open
                .with_label_values(&[&load.style])
                .set(i64::from(load.circuit_open));
        }
        let registry = self.pipeline.registry();
        m.canary_rollbacks.set(registry.canary_rollbacks() as i64);
        let (loaded, rejected) = registry.reload_counts();
        m.style_reloads
            .with_label_values(&["loaded"])
            .set(loaded as i64);
        m.style_reloads
            .with_label_values(&["rejected"])
            .set(rejected as i64);
        m.render()
    }

    /// Counts a request turned away by admission (metric `likeness_shed_total{reason}`).
    pub fn shed(&self, overloaded: Overloaded) -> Overloaded {
        self.metrics
            .shed
            .with_label_values(&[overloaded.shed.code()])
            .inc();
        overloaded
    }

    /// Whether the service is draining for shutdown (new work is refused).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// A token canceled when the service stops what still runs at the drain deadline.
    pub fn abort_token(&self) -> &CancellationToken {
        &self.abort
    }

    /// Runs one admitted generation: waits for a slot, runs the pipeline (each stage in its own
    /// span, `progress` told of each), and encodes the result. `cancel` stops it at once.
    pub async fn generate(
        &self,
        request: GenerationRequest,
        ticket: Ticket,
        progress: &(dyn Fn(Stage) + Send + Sync),
        cancel: &CancellationToken,
    ) -> Result<Rendered, GenerateError> {
        let _tracked = self.tasks.token();
        let style = request.style.clone();
        let result = self.run(request, ticket, progress, cancel).await;
        self.record(&style, &result);
        result
    }

    async fn run(
        &self,
        request: GenerationRequest,
        ticket: Ticket,
        progress: &(dyn Fn(Stage) + Send + Sync),
        cancel: &CancellationToken,
    ) -> Result<Rendered, GenerateError> {
        let queued = Instant::now();
        let mut slot = tokio::select! {
            slot = ticket.start() => slot.map_err(|_| GenerateError::StyleUnavailable(
                request.style.clone(),
                "it failed repeatedly (timeouts or crashes), so its circuit breaker keeps work \
                 from it for now"
                    .into(),
            ))?,
            _ = cancel.cancelled() => return Err(GenerateError::Canceled),
        };
        let queued_ms = queued.elapsed().as_secs_f64() * 1e3;

        let spans = StageSpans::default();
        let on_stage = |stage: Stage| {
            spans.enter(stage);
            progress(stage);
        };
        let generation = tokio::select! {
            generation = self.pipeline.generate_routed(
                &request.style,
                &request.canary,
                request.photo,
                &request.options,
                &on_stage,
                cancel,
            ) => generation,
            _ = cancel.cancelled() => Err(GenerateError::Canceled),
        };
        spans.close();
        if slot.report(verdict(&generation)) {
            self.metrics
                .circuit_opened
                .with_label_values(&[&request.style])
                .inc();
            tracing::warn!(
                style = %request.style,
                "the style failed repeatedly; its circuit breaker is open and it gets no work for now"
            );
        }
        let generation = generation?;
        let _slot = slot;

        let cpu_slot = self
            .admission
            .cpu_slots()
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| GenerateError::Internal("the CPU slots are closed".into()))?;
        let (id, format) = (request.id, request.format);
        let encode = tracing::info_span!("stage", name = "encoding");
        tokio::task::spawn_blocking(move || {
            let _slot = cpu_slot;
            let _span = encode.entered();
            Rendered::encode(id, generation, format, vec![("queued", queued_ms)])
        })
        .await
        .map_err(|e| GenerateError::Internal(e.to_string()))?
        .map_err(|e| GenerateError::Internal(format!("encoding the result: {e}")))
    }

    fn record(&self, style: &str, result: &Result<Rendered, GenerateError>) {
        let m = &self.metrics;
        match result {
            Ok(rendered) => {
                let method = rendered.plan.method.kind().name();
                m.generations
                    .with_label_values(&[style, method, "200"])
                    .inc();
                if let Some(report) = rendered.identity.report() {
                    m.identity_score
                        .with_label_values(&[style, method])
                        .observe(f64::from(report.score));
                }
                for (stage, ms) in &rendered.timings {
                    m.stage_seconds
                        .with_label_values(&[stage])
                        .observe(ms / 1e3);
                }
            }
            Err(error) => {
                let status = crate::server::error::generation_status(error);
                m.generations
                    .with_label_values(&[style, "-", status.as_str()])
                    .inc();
                m.record_style_failure(error.style(), error.code());
            }
        }
    }

    /// Starts an asynchronous job for `request`; returns it at once (status `queued`).
    pub fn spawn_job(self: &Arc<Self>, request: GenerationRequest, ticket: Ticket) -> Arc<Job> {
        let cancel = self.abort.child_token();
        let job = self
            .jobs
            .create(request.id.clone(), &request.style, cancel.clone());
        let service = self.clone();
        let task_job = job.clone();
        let span = tracing::info_span!("job", id = %job.id, style = %job.style_id);
        self.tasks.spawn(
            async move {
                let job = task_job;
                let progress = |stage: Stage| job.progress(stage);
                job.start();
                let outcome = match service.generate(request, ticket, &progress, &cancel).await {
                    Ok(rendered) => Outcome::Succeeded(Arc::new(rendered)),
                    Err(GenerateError::Canceled) => Outcome::Canceled,
                    Err(error) => Outcome::Failed(Failure::from(&error)),
                };
                job.finish(outcome);
            }
            .instrument(span),
        );
        job
    }

    /// Starts draining: new work is refused from now on.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Waits until every generation in flight has finished, or `deadline` has passed; then
    /// cancels what is left (and waits a moment for it to unwind). Returns whether everything
    /// finished in time.
    pub async fn drain(&self, deadline: Duration) -> bool {
        self.begin_drain();
        self.tasks.close();
        let finished = tokio::time::timeout(deadline, self.tasks.wait())
            .await
            .is_ok();
        if !finished {
            tracing::warn!(
                left = self.tasks.len(),
                "the drain deadline passed; canceling what is left"
            );
            self.abort.cancel();
            self.jobs.cancel_all();
            let _ = tokio::time::timeout(Duration::from_secs(5), self.tasks.wait()).await;
        }
        finished
    }
}

/// What a generation's outcome says about its style, for the style's circuit breaker: only
/// stops by the sandbox (timeouts, traps, memory or stack limits, bad output) count against it.
fn verdict<T>(outcome: &Result<T, GenerateError>) -> Verdict {
    match outcome {
        Ok(_) => Verdict::Healthy,
        Err(GenerateError::Style(error)) => match error {
            CallError::Timeout { .. }
            | CallError::MemoryLimit { .. }
            | CallError::StackOverflow { .. }
            | CallError::Trap { .. }
            | CallError::BadOutput { .. } => Verdict::Faulty,
            CallError::Style { .. } | CallError::Instantiate { .. } => Verdict::Neutral,
        },
        Err(_) => Verdict::Neutral,
    }
}

/// The span of the stage a generation is in: entering a stage closes the previous one, so each
/// stage's span lasts as long as the stage (child of the request's span).
#[derive(Default)]
struct StageSpans {
    current: Mutex<Option<tracing::Span>>,
}

impl StageSpans {
    fn enter(&self, stage: Stage) {
        let span = match stage {
            Stage::Step { k, n } => tracing::info_span!("stage", name = stage.name(), k, n),
            _ => tracing::info_span!("stage", name = stage.name()),
        };
        span.in_scope(|| tracing::debug!("stage started"));
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(span);
    }

    fn close(&self) {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}
