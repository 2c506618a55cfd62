//! The generation service behind the HTTP API: the pipeline with admission control, stage
//! spans and metrics, result encoding, jobs (the one interface the HTTP layer uses, over the
//! embedded queue or Redis: `submit`, `answer`, `job`, `cancel_job`, `events`), and the drain
//! on shutdown.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::admission::{Admission, Overloaded, Ticket};
use crate::breaker::Verdict;
use crate::config::{QueueConfig, ServeConfig};
use crate::jobs::{Failure, Jobs, Outcome, Snapshot, WireEvent};
use crate::metrics::Metrics;
use crate::output::{OutputFormat, Rendered};
use crate::pipeline::{GenerateError, Pipeline, Stage};
use crate::queue::class::WorkerClass;
use crate::queue::redis::RedisQueue;
use crate::queue::wire::RequestRecord;
use crate::queue::{JobError, QueueError};
use crate::server::views::Finished;
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
    /// The embedded queue's jobs (empty with a Redis queue).
    jobs: Arc<Jobs>,
    /// The shared queue, when jobs go through Redis.
    redis: Option<Arc<RedisQueue>>,
    queue_config: QueueConfig,
    metrics: Metrics,
    draining: AtomicBool,
    /// Canceled when the drain deadline passes: whatever still runs is stopped.
    abort: CancellationToken,
    /// Every generation in flight, sync or async, for the drain.
    tasks: TaskTracker,
}

impl Service {
    /// The service over `pipeline` with the limits of `config`, its jobs in the embedded queue.
    pub fn new(pipeline: Pipeline, config: &ServeConfig) -> Arc<Service> {
        Service::build(pipeline, config, None)
    }

    /// The service over `pipeline`, its jobs in the Redis queue `redis`.
    pub fn with_redis(
        pipeline: Pipeline,
        config: &ServeConfig,
        redis: Arc<RedisQueue>,
    ) -> Arc<Service> {
        Service::build(pipeline, config, Some(redis))
    }

    fn build(
        pipeline: Pipeline,
        config: &ServeConfig,
        redis: Option<Arc<RedisQueue>>,
    ) -> Arc<Service> {
        let admission = Admission::new(&config.admission);
        let pipeline = pipeline
            .with_cpu_slots(admission.cpu_slots().clone())
            .with_retry_budget(config.identity.retry_budget());
        Arc::new(Service {
            pipeline,
            admission,
            jobs: Jobs::new(config.jobs.clone()),
            redis,
            queue_config: config.queue.clone(),
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

    /// The embedded queue's jobs (empty when jobs go through Redis).
    pub fn jobs(&self) -> &Arc<Jobs> {
        &self.jobs
    }

    /// The Redis queue, when jobs go through Redis.
    pub fn redis(&self) -> Option<&Arc<RedisQueue>> {
        self.redis.as_ref()
    }

    /// How long finished jobs are kept.
    pub fn job_ttl(&self) -> Duration {
        self.jobs.ttl()
    }

    /// Counts `f` as work in flight for the drain.
    pub fn spawn_tracked<F>(&self, f: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(f);
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

    /// Brings the Redis queue's gauges (length, pending entries and live workers, in all and
    /// per class; connected) up to date.
    pub async fn refresh_queue_metrics(&self) {
        let Some(redis) = &self.redis else { return };
        let m = &self.metrics;
        match redis.stats().await {
            Ok(classes) => {
                let (mut length, mut pending) = (0, 0);
                for (class, stats) in classes {
                    length += stats.length;
                    pending += stats.pending;
                    let name = [class.name()];
                    m.queue_class_length
                        .with_label_values(&name)
                        .set(stats.length as i64);
                    m.queue_class_workers
                        .with_label_values(&name)
                        .set(stats.workers as i64);
                }
                m.queue_length.set(length as i64);
                m.queue_pending.set(pending as i64);
                m.queue_connected.set(1);
            }
            Err(_) => m.queue_connected.set(0),
        }
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

    /// Starts an asynchronous job for `request` (whose HTTP request had `headers`); returns it
    /// at once (status `queued`).
    pub async fn submit(
        self: &Arc<Self>,
        request: GenerationRequest,
        ticket: Ticket,
        headers: &HeaderMap,
    ) -> Result<Snapshot, JobError> {
        if let Some(redis) = &self.redis {
            drop(ticket);
            return Ok(self.enqueue(redis, &request, headers).await?);
        }
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
                let outcome = service
                    .generate(request, ticket, &progress, &cancel)
                    .await
                    .into();
                job.finish(outcome);
            }
            .instrument(span),
        );
        Ok(job.snapshot())
    }

    /// Runs `request` (whose HTTP request had `headers`) and waits for its result; dropping
    /// the future, or `cancel`, cancels it.
    pub async fn answer(
        &self,
        request: GenerationRequest,
        ticket: Ticket,
        headers: &HeaderMap,
        cancel: &CancellationToken,
    ) -> Result<Arc<Finished>, JobError> {
        let Some(redis) = &self.redis else {
            let rendered = self.generate(request, ticket, &|_| {}, cancel).await?;
            return Ok(Arc::new(Finished::from(rendered)));
        };
        drop(ticket);
        let _tracked = self.tasks.token();
        let id = request.id.clone();
        self.enqueue(redis, &request, headers).await?;
        let mut guard = CancelOnDrop {
            redis: Some(redis.clone()),
            id: id.clone(),
        };
        let mut events = redis.follow(&id, 0);
        let ended = tokio::select! {
            _ = async { while let Some(event) = events.next().await {
                if event.is_last() { break; }
            } } => true,
            _ = cancel.cancelled() => false,
        };
        if !ended {
            return Err(GenerateError::Canceled.into());
        }
        guard.redis = None;
        let outcome = redis.snapshot(&id).await?.and_then(|job| job.outcome);
        match outcome {
            Some(Outcome::Succeeded(finished)) => Ok(finished),
            Some(Outcome::Failed(failure)) => Err(JobError::Failed(failure)),
            Some(Outcome::Canceled) => Err(GenerateError::Canceled.into()),
            None => {
                Err(QueueError::Unavailable(format!("job {id} ended without an outcome")).into())
            }
        }
    }

    async fn enqueue(
        &self,
        redis: &RedisQueue,
        request: &GenerationRequest,
        headers: &HeaderMap,
    ) -> Result<Snapshot, QueueError> {
        let record = RequestRecord::of(request, headers, self.serving_digest(&request.style));
        let (owner, per_key) = owner(headers, &self.queue_config);
        let plans_diffusion = self
            .pipeline
            .registry()
            .get(&request.style)
            .is_some_and(|style| style.plans_diffusion);
        let wanted = WorkerClass::wanted(plans_diffusion);
        redis
            .enqueue(
                &request.id,
                &record,
                &request.photo,
                &owner,
                per_key,
                wanted,
            )
            .await
    }

    /// The digest of the component serving `style` here now.
    fn serving_digest(&self, style: &str) -> Option<String> {
        self.pipeline
            .registry()
            .status(style)
            .and_then(|status| status.digest)
    }

    /// The job `id`, unless it is unknown or expired.
    pub async fn job(&self, id: &str) -> Result<Option<Snapshot>, JobError> {
        match &self.redis {
            Some(redis) => Ok(redis.snapshot(id).await?),
            None => Ok(self.jobs.get(id).map(|job| job.snapshot())),
        }
    }

    /// Cancels job `id` when it is queued or running, deletes it when it has finished;
    /// returns the job after the cancel, or as it was when deleted.
    pub async fn cancel_job(&self, id: &str) -> Result<Option<Snapshot>, JobError> {
        match &self.redis {
            Some(redis) => {
                let Some(before) = redis.snapshot(id).await? else {
                    return Ok(None);
                };
                if before.status.is_finished() {
                    redis.remove(id).await?;
                    return Ok(Some(before));
                }
                redis.cancel(id).await?;
                Ok(redis.snapshot(id).await?.or(Some(before)))
            }
            None => {
                let Some(job) = self.jobs.get(id) else {
                    return Ok(None);
                };
                if job.snapshot().status.is_finished() {
                    self.jobs.remove(id);
                } else {
                    job.cancel();
                }
                Ok(Some(job.snapshot()))
            }
        }
    }

    /// Job `id`'s events after the first `after`, as they come, ending after the last one;
    /// none when there is no such job.
    pub async fn events(
        &self,
        id: &str,
        after: usize,
    ) -> Result<Option<BoxStream<'static, WireEvent>>, JobError> {
        if let Some(redis) = &self.redis {
            if redis.snapshot(id).await?.is_none() {
                return Ok(None);
            }
            return Ok(Some(redis.follow(id, after)));
        }
        let Some(job) = self.jobs.get(id) else {
            return Ok(None);
        };
        let changes = job.subscribe();
        let batches = futures_util::stream::unfold(
            (job, after, changes, false),
            |(job, next, mut changes, done)| async move {
                if done {
                    return None;
                }
                loop {
                    let (events, finished) = job.events_since(next);
                    if !events.is_empty() {
                        let next = next + events.len();
                        let ended = finished && job.events_since(next).0.is_empty();
                        let relayed: Vec<WireEvent> =
                            events.iter().map(|event| event.relayed(&job.id)).collect();
                        return Some((
                            futures_util::stream::iter(relayed),
                            (job, next, changes, ended),
                        ));
                    }
                    if finished || changes.changed().await.is_err() {
                        return None;
                    }
                }
            },
        );
        Ok(Some(batches.flatten().boxed()))
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

impl From<Result<Rendered, GenerateError>> for Outcome {
    fn from(result: Result<Rendered, GenerateError>) -> Self {
        match result {
            Ok(rendered) => Outcome::Succeeded(Arc::new(Finished::from(rendered))),
            Err(GenerateError::Canceled) => Outcome::Canceled,
            Err(error) => Outcome::Failed(Failure::from(&error)),
        }
    }
}

/// Cancels a synchronous Redis job whose client went away before it finished.
struct CancelOnDrop {
    /// None once the job has finished.
    redis: Option<Arc<RedisQueue>>,
    id: String,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(redis) = self.redis.take() {
            let id = std::mem::take(&mut self.id);
            tokio::spawn(async move {
                if let Err(error) = redis.cancel(&id).await {
                    tracing::warn!(%id, %error, "could not cancel an abandoned job");
                }
            });
        }
    }
}

/// Who a job counts against for per-key fairness, and that owner's share of the queue: the
/// API key (hashed), or everyone alike when requests carry none.
fn owner(headers: &HeaderMap, config: &QueueConfig) -> (String, usize) {
    use sha2::Digest as _;
    let key = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|key| !key.is_empty());
    match key {
        Some(key) => {
            let digest = sha2::Sha256::digest(key.as_bytes());
            (hex::encode(&digest[..8]), config.per_key())
        }
        None => ("anonymous".into(), config.max_length),
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
