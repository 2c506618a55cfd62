//! Asynchronous jobs: `GET /v1/jobs/{id}`, `GET /v1/jobs/{id}/events` (server-sent events; a
//! late subscriber first gets the events so far) and `DELETE /v1/jobs/{id}`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use futures_util::stream;
use serde_json::json;

use super::AppState;
use super::error::{ApiError, ErrorBody, ErrorDetail};
use super::views::JobView;
use crate::jobs::{EventKind, Job, JobEvent};
use crate::pipeline::Stage;

fn find(state: &AppState, id: &str) -> Result<Arc<Job>, ApiError> {
    state.service.jobs().get(id).ok_or_else(|| {
        ApiError::not_found(
            "unknown_job",
            format!(
                "there is no job '{id}' (finished jobs are deleted after {} s)",
                state.service.jobs().ttl().as_secs()
            ),
        )
    })
}

fn view(state: &AppState, job: &Job) -> JobView {
    JobView::of(
        job,
        &job.snapshot(),
        state.service.jobs().ttl().as_millis() as u64,
    )
}

/// A job: its status, stage, and result or error once finished.
#[utoipa::path(get, path = "/v1/jobs/{id}", operation_id = "getJob", tag = "jobs",
    params(("id" = String, Path, description = "The job's id.")),
    responses(
        (status = 200, description = "The job.", body = JobView),
        (status = 401, description = "A valid API key is required.", body = ErrorBody),
        (status = 404, description = "No such job (or it expired).", body = ErrorBody),
        (status = 429, description = "The API key's rate limit is exceeded.", body = ErrorBody),
    ),
    security((), ("api_key" = [])))]
pub async fn get_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let job = find(&state, &id)?;
    Ok(Json(view(&state, &job)))
}

/// Cancels a queued or running job; deletes a finished one (its result with it).
#[utoipa::path(delete, path = "/v1/jobs/{id}", operation_id = "cancelJob", tag = "jobs",
    params(("id" = String, Path, description = "The job's id.")),
    responses(
        (status = 200, description = "The job after the cancel (status `canceled`), or as it was when deleted.", body = JobView),
        (status = 401, description = "A valid API key is required.", body = ErrorBody),
        (status = 404, description = "No such job (or it expired).", body = ErrorBody),
        (status = 429, description = "The API key's rate limit is exceeded.", body = ErrorBody),
    ),
    security((), ("api_key" = [])))]
pub async fn cancel_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let job = find(&state, &id)?;
    if job.snapshot().status.is_finished() {
        state.service.jobs().remove(&id);
    } else {
        job.cancel();
    }
    Ok(Json(view(&state, &job)))
}

/// A job's progress as server-sent events: `queued`, `analysing`, `planning`, `step` (k of n),
/// `post-processing`, then `succeeded`, `failed` or `canceled`; the stream ends after that.
/// Each event's id is its position; `Last-Event-ID` resumes after it.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", operation_id = "jobEvents", tag = "jobs",
    params(
        ("id" = String, Path, description = "The job's id."),
        ("last-event-id" = Option<String>, Header, description = "Resume after this event id."),
    ),
    responses(
        (status = 200, description = "The event stream.", body = String, content_type = "text/event-stream"),
        (status = 401, description = "A valid API key is required.", body = ErrorBody),
        (status = 404, description = "No such job (or it expired).", body = ErrorBody),
        (status = 429, description = "The API key's rate limit is exceeded.", body = ErrorBody),
    ),
    security((), ("api_key" = [])))]
pub async fn job_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let job = find(&state, &id)?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let changes = job.subscribe();
    let batches = stream::unfold(
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
                    let sse: Vec<Result<Event, Infallible>> = events
                        .iter()
                        .map(|event| Ok(sse_event(&job, event)))
                        .collect();
                    return Some((stream::iter(sse), (job, next, changes, ended)));
                }
                if finished || changes.changed().await.is_err() {
                    return None;
                }
            }
        },
    );
    Ok(Sse::new(batches.flatten())
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// One event as SSE: its name, its position as id, and JSON data.
fn sse_event(job: &Job, event: &JobEvent) -> Event {
    let mut data = json!({ "job": job.id, "at_ms": event.at_ms });
    match &event.kind {
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
            data["method"] = (*method).into();
            data["reason"] = reason.clone().into();
        }
        EventKind::Failed(failure) => {
            data["status"] = "failed".into();
            data["error"] = json!(ErrorDetail::from(failure));
        }
        EventKind::Canceled => data["status"] = "canceled".into(),
    }
    Event::default()
        .event(event.kind.name())
        .id(event.seq.to_string())
        .data(data.to_string())
}
