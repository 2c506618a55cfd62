//! Asynchronous generations: a job per request, its progress events (kept, so a late subscriber
//! replays them), its outcome, and deletion of finished jobs after a TTL. This is the embedded
//! (in-process) store: its jobs live in this process's memory only, and the photo is owned by
//! the task running the job. With a Redis queue (`crate::queue`) the same states, events and
//! outcomes live in Redis instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::JobsConfig;
use crate::pipeline::{GenerateError, Stage};
use crate::server::views::Finished;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Waiting for a generation slot.
    Queued,
    /// Generating.
    Running,
    /// Finished with a result.
    Succeeded,
    /// Finished with an error.
    Failed,
    /// Canceled by the client or by shutdown.
    Canceled,
}

impl JobStatus {
    /// The status's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Canceled => "canceled",
        }
    }

    /// Whether the job has finished.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled
        )
    }
}

/// Why a generation failed, as clients see it (the HTTP status, where one is answered, is the
/// server's business: `server::error`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Failure {
    /// A stable, machine-readable code.
    pub code: String,
    /// A sentence for people.
    pub message: String,
    /// The style concerned, if any.
    pub style: Option<String>,
    /// The HTTP status a synchronous request answers with (decided by `server::error`, kept
    /// so that an API node answers a worker's failure exactly as the worker's process would).
    pub status: u16,
}

impl From<&GenerateError> for Failure {
    fn from(error: &GenerateError) -> Self {
        Failure {
            code: error.code().to_string(),
            message: error.to_string(),
            style: error.style().map(str::to_string),
            status: crate::server::error::generation_status(error).as_u16(),
        }
    }
}

/// One progress event of a job.
#[derive(Debug, Clone)]
pub struct JobEvent {
    /// 1-based position in the job's events (the SSE event id).
    pub seq: usize,
    /// What happened.
    pub kind: EventKind,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

impl JobEvent {
    /// The event as relayed to clients of job `job_id` (SSE name, id and JSON data).
    pub fn relayed(&self, job_id: &str) -> WireEvent {
        use crate::server::error::ErrorDetail;
        let mut data = serde_json::json!({ "job": job_id, "at_ms": self.at_ms });
        match &self.kind {
            EventKind::Queued => data["status"] = "queued".into(),
            EventKind::Stage(stage) => {
                data["status"] = "running".into();
                data["stage"] = stage.name().into();
                if let Stage::Step { k, n } = stage {
                    data["k"] = (*k).into();
                    data["n"] = (*n).into();
                }
            }
            EventKind::Succeeded { method, reason } => {
                data["status"] = "succeeded".into();
                data["method"] = method.clone().into();
                data["reason"] = reason.clone().into();
            }
            EventKind::Failed(failure) => {
                data["status"] = "failed".into();
                data["error"] = serde_json::json!(ErrorDetail::from(failure));
            }
            EventKind::Canceled => data["status"] = "canceled".into(),
        }
        WireEvent {
            seq: self.seq,
            name: self.kind.name().to_string(),
            data: data.to_string(),
        }
    }
}

/// A job's event as clients get it, whichever queue holds the job: the same from an embedded
/// job and from one relayed out of Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireEvent {
    /// 1-based position in the job's events (the SSE id).
    pub seq: usize,
    /// The SSE event name.
    pub name: String,
    /// The JSON data.
    pub data: String,
}

impl WireEvent {
    /// Whether this event ends the job (`succeeded`, `failed` or `canceled`).
    pub fn is_last(&self) -> bool {
        matches!(self.name.as_str(), "succeeded" | "failed" | "canceled")
    }
}

/// What a [`JobEvent`] reports.
#[derive(Debug, Clone)]
pub enum EventKind {
    /// The job was accepted and waits for a slot.
    Queued,
    /// The generation entered a stage.
    Stage(Stage),
    /// The job finished with a result.
    Succeeded {
        /// The identity method that ran.
        method: String,
        /// Why the style chose it.
        reason: String,
    },
    /// The job finished with an error.
    Failed(Failure),
    /// The job was canceled.
    Canceled,
}

impl EventKind {
    /// The SSE event name: `queued`, `analysing`, `planning`, `step`, `post-processing`,
    /// `succeeded`, `failed` or `canceled`.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Queued => "queued",
            EventKind::Stage(stage) => stage.name(),
            EventKind::Succeeded { .. } => "succeeded",
            EventKind::Failed(_) => "failed",
            EventKind::Canceled => "canceled",
        }
    }
}

/// How a job ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// With a result.
    Succeeded(Arc<Finished>),
    /// With an error.
    Failed(Failure),
    /// Canceled.
    Canceled,
}

/// A point-in-time view of a job.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The job's id.
    pub id: String,
    /// The style it runs.
    pub style_id: String,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// The job's status.
    pub status: JobStatus,
    /// The stage it is in (or ended in).
    pub stage: Option<Stage>,
    /// Its outcome, once finished.
    pub outcome: Option<Outcome>,
    /// When it finished, in milliseconds since the Unix epoch.
    pub finished_at_ms: Option<u64>,
}

struct JobState {
    status: JobStatus,
    stage: Option<Stage>,
    events: Vec<JobEvent>,
    outcome: Option<Outcome>,
    finished_at: Option<(Instant, u64)>,
}

/// One asynchronous generation.
pub struct Job {
    /// The job's id.
    pub id: String,
    /// The style it runs.
    pub style_id: String,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    cancel: CancellationToken,
    state: Mutex<JobState>,
    changed: watch::Sender<usize>,
}

impl Job {
    fn state(&self) -> MutexGuard<'_, JobState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The job's state now.
    pub fn snapshot(&self) -> Snapshot {
        let state = self.state();
        Snapshot {
            id: self.id.clone(),
            style_id: self.style_id.clone(),
            created_at_ms: self.created_at_ms,
            status: state.status,
            stage: state.stage,
            outcome: state.outcome.clone(),
            finished_at_ms: state.finished_at.map(|(_, ms)| ms),
        }
    }

    /// The events after the first `from`, and whether the job has finished.
    pub fn events_since(&self, from: usize) -> (Vec<JobEvent>, bool) {
        let state = self.state();
        let events = state.events.get(from..).unwrap_or_default().to_vec();
        (events, state.status.is_finished())
    }

    /// A receiver that changes whenever an event is added.
    pub fn subscribe(&self) -> watch::Receiver<usize> {
        self.changed.subscribe()
    }

    /// Marks the job running.
    pub fn start(&self) {
        let mut state = self.state();
        if state.status == JobStatus::Queued {
            state.status = JobStatus::Running;
        }
    }

    /// Records that the generation entered `stage` (ignored once finished).
    pub fn progress(&self, stage: Stage) {
        let mut state = self.state();
        if state.status.is_finished() {
            return;
        }
        state.status = JobStatus::Running;
        state.stage = Some(stage);
        self.push(&mut state, EventKind::Stage(stage));
    }

    /// Ends the job; the first outcome wins (a cancel racing a success stays a cancel).
    pub fn finish(&self, outcome: Outcome) {
        let mut state = self.state();
        if state.status.is_finished() {
            return;
        }
        let (status, event) = match &outcome {
            Outcome::Succeeded(finished) => (
                JobStatus::Succeeded,
                EventKind::Succeeded {
                    method: finished.view.method.clone(),
                    reason: finished.view.reason.clone(),
                },
            ),
            Outcome::Failed(failure) => (JobStatus::Failed, EventKind::Failed(failure.clone())),
            Outcome::Canceled => (JobStatus::Canceled, EventKind::Canceled),
        };
        state.status = status;
        state.outcome = Some(outcome);
        state.finished_at = Some((Instant::now(), unix_ms()));
        self.push(&mut state, event);
    }

    /// Cancels the job: stops its generation and records the outcome at once.
    pub fn cancel(&self) {
        self.cancel.cancel();
        self.finish(Outcome::Canceled);
    }

    fn push(&self, state: &mut JobState, kind: EventKind) {
        let seq = state.events.len() + 1;
        state.events.push(JobEvent {
            seq,
            kind,
            at_ms: unix_ms(),
        });
        self.changed.send_replace(seq);
    }

    fn expired(&self, ttl: Duration, now: Instant) -> bool {
        self.state()
            .finished_at
            .is_some_and(|(at, _)| now.duration_since(at) >= ttl)
    }

    fn finished_at(&self) -> Option<Instant> {
        self.state().finished_at.map(|(at, _)| at)
    }
}

/// The jobs this host keeps.
pub struct Jobs {
    jobs: Mutex<HashMap<String, Arc<Job>>>,
    config: JobsConfig,
}

impl Jobs {
    /// An empty store.
    pub fn new(config: JobsConfig) -> Arc<Jobs> {
        Arc::new(Jobs {
            jobs: Mutex::default(),
            config,
        })
    }

    fn jobs(&self) -> MutexGuard<'_, HashMap<String, Arc<Job>>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long a finished job is kept.
    pub fn ttl(&self) -> Duration {
        self.config.ttl()
    }

    /// Creates a queued job of style `style_id` (its first event is `queued`). When the store is
    /// full, the oldest finished job is deleted to make room.
    pub fn create(&self, id: String, style_id: &str, cancel: CancellationToken) -> Arc<Job> {
        let (changed, _) = watch::channel(0);
        let job = Arc::new(Job {
            id: id.clone(),
            style_id: style_id.to_string(),
            created_at_ms: unix_ms(),
            cancel,
            state: Mutex::new(JobState {
                status: JobStatus::Queued,
                stage: None,
                events: Vec::new(),
                outcome: None,
                finished_at: None,
            }),
            changed,
        });
        {
            let mut state = job.state();
            job.push(&mut state, EventKind::Queued);
        }
        let mut jobs = self.jobs();
        if jobs.len() >= self.config.max_stored {
            let oldest = jobs
                .values()
                .filter_map(|job| job.finished_at().map(|at| (at, job.id.clone())))
                .min();
            if let Some((_, id)) = oldest {
                jobs.remove(&id);
            }
        }
        jobs.insert(id, job.clone());
        job
    }

    /// The job `id`, unless it is unknown or expired.
    pub fn get(&self, id: &str) -> Option<Arc<Job>> {
        let job = self.jobs().get(id).cloned()?;
        if job.expired(self.ttl(), Instant::now()) {
            self.jobs().remove(id);
            return None;
        }
        Some(job)
    }

    /// Deletes job `id` (its result with it).
    pub fn remove(&self, id: &str) -> Option<Arc<Job>> {
        self.jobs().remove(id)
    }

    /// Jobs kept now.
    pub fn len(&self) -> usize {
        self.jobs().len()
    }

    /// Whether no job is kept.
    pub fn is_empty(&self) -> bool {
        self.jobs().is_empty()
    }

    /// Cancels every unfinished job (shutdown past its deadline).
    pub fn cancel_all(&self) {
        let jobs: Vec<Arc<Job>> = self.jobs().values().cloned().collect();
        for job in jobs {
            job.cancel();
        }
    }

    /// Deletes the finished jobs older than the TTL; returns how many.
    pub fn reap(&self) -> usize {
        let now = Instant::now();
        let ttl = self.ttl();
        let mut jobs = self.jobs();
        let before = jobs.len();
        jobs.retain(|_, job| !job.expired(ttl, now));
        before - jobs.len()
    }

    /// Reaps expired jobs periodically until `stop` is canceled.
    pub fn spawn_reaper(self: &Arc<Self>, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let jobs = Arc::downgrade(self);
        let period = (self.ttl() / 10).clamp(Duration::from_millis(100), Duration::from_secs(10));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => return,
                }
                let Some(jobs) = jobs.upgrade() else { return };
                let reaped = jobs.reap();
                if reaped > 0 {
                    tracing::debug!(reaped, "deleted expired jobs");
                }
            }
        })
    }
}

/// Now, in milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(ttl_secs: u64, max_stored: usize) -> Arc<Jobs> {
        Jobs::new(JobsConfig {
            ttl_secs,
            max_stored,
        })
    }

    #[test]
    fn events_are_kept_in_order_and_the_first_outcome_wins() {
        let jobs = store(60, 8);
        let job = jobs.create("j1".into(), "anime", CancellationToken::new());
        job.progress(Stage::Analysing);
        job.progress(Stage::Planning);
        job.cancel();
        job.finish(Outcome::Failed(Failure {
            code: "internal_error".into(),
            message: "late".into(),
            style: None,
            status: 500,
        }));
        job.progress(Stage::PostProcessing);
        let (events, finished) = job.events_since(0);
        let names: Vec<_> = events.iter().map(|e| e.kind.name()).collect();
        assert_eq!(names, ["queued", "analysing", "planning", "canceled"]);
        assert!(finished);
        assert_eq!(
            events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        assert!(job.cancel.is_cancelled());
        assert_eq!(job.snapshot().status, JobStatus::Canceled);
        assert_eq!(job.events_since(3).0.len(), 1);
        assert!(job.events_since(99).0.is_empty());
    }

    #[test]
    fn finished_jobs_expire_and_a_full_store_drops_the_oldest_finished() {
        let jobs = store(0, 2);
        let a = jobs.create("a".into(), "s", CancellationToken::new());
        let _b = jobs.create("b".into(), "s", CancellationToken::new());
        assert!(jobs.get("a").is_some(), "unfinished jobs never expire");
        a.cancel();
        let _c = jobs.create("c".into(), "s", CancellationToken::new());
        assert!(jobs.get("a").is_none());
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs.reap(), 0);

        let jobs = store(0, 8);
        let d = jobs.create("d".into(), "s", CancellationToken::new());
        d.cancel();
        assert_eq!(jobs.reap(), 1);
        assert!(jobs.is_empty());
    }
}
