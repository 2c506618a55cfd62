//! Where jobs wait and how their results come back: the embedded queue (in this process,
//! `crate::jobs`; the default) or Redis Streams shared by API nodes and workers
//! ([`redis`], [`worker`], what crosses Redis in [`wire`], which stream a job goes to and
//! which streams a worker reads in [`class`]). The HTTP layer sees one interface
//! over both: the job methods of `crate::service::Service` (`submit`, `answer`, `job`,
//! `cancel_job`, `events`), answering [`JobError`]s.

pub mod class;
pub mod redis;
pub mod wire;
pub mod worker;

use std::time::Duration;

use crate::jobs::Failure;
use crate::pipeline::GenerateError;

/// Why the shared queue cannot take or tell about a job.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    /// Redis does not answer (or answered nonsense).
    #[error("the job queue is unavailable ({0}); retry shortly")]
    Unavailable(String),
    /// The queue holds as many jobs as it may.
    #[error("the service is busy: the queue is full; retry later")]
    Full {
        /// When to retry, from the observed drain rate.
        retry_after: Duration,
    },
    /// The API key has its share of the queue.
    #[error("this API key has as many jobs queued as its share allows; retry later")]
    KeyFull {
        /// When to retry, from the observed drain rate.
        retry_after: Duration,
    },
}

/// Why a job was not answered with a result.
#[derive(Debug)]
pub enum JobError {
    /// The generation failed in this process.
    Generate(GenerateError),
    /// The generation failed on a worker (as that worker's process would have answered).
    Failed(Failure),
    /// The queue refused or is unreachable.
    Queue(QueueError),
}

impl From<GenerateError> for JobError {
    fn from(error: GenerateError) -> Self {
        JobError::Generate(error)
    }
}

impl From<QueueError> for JobError {
    fn from(error: QueueError) -> Self {
        JobError::Queue(error)
    }
}

/// The failure a worker reports for a job whose deliveries ran out.
pub fn poison(style: &str, deliveries: usize) -> Failure {
    Failure {
        code: "poison_job".into(),
        message: format!(
            "the job was delivered to workers {deliveries} times and none finished it (each \
             stopped or crashed while running it), so it is not retried again"
        ),
        style: Some(style.to_string()),
        status: crate::server::error::poison_status().as_u16(),
    }
}
