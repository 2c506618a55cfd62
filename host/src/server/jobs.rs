//! Asynchronous jobs: `GET /v1/jobs/{id}`, `GET /v1/jobs/{id}/events` (server-sent events; a
//! late subscriber first gets the events so far) and `DELETE /v1/jobs/{id}`.

use std::convert::Infallible;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::views::JobView;
use crate::jobs::Snapshot;

/// 404 for a job that is unknown or expired.
fn unknown(state: &AppState, id: &str) -> ApiError {
    ApiError::not_found(
        "unknown_job",
        format!(
            "there is no job '{id}' (finished jobs are deleted after {} s)",
            state.service.job_ttl().as_secs()
        ),
    )
}

fn view(state: &AppState, job: &Snapshot) -> JobView {
    JobView::of(job, state.service.job_ttl().as_millis() as u64)
}

/// A job: its status, stage, and result or error once finished.
#[utoipa::path(get, path = "/v1/jobs/{id}", operation_id = "getJob", tag = "jobs",
    params(("id" = String, Path, description = "The job's id.")),
    responses(
        (status = 200, description = "The job.", body = JobView),
        (status = 401, description = "A valid API key is required.", body = ErrorBody),
        (status = 404, description = "No such job (or it expired).", body = ErrorBody),
        (status = 429, description = "The API key's rate limit is exceeded.", body = ErrorBody),
        (status = 503, description = "The Redis queue is unreachable (`queue_unavailable`).", body = ErrorBody),
    ),
    security((), ("api_key" = [])))]
pub async fn get_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let job = state.service.job(&id).await?;
    let job = job.ok_or_else(|| unknown(&state, &id))?;
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
        (status = 503, description = "The Redis queue is unreachable (`queue_unavailable`).", body = ErrorBody),
    ),
    security((), ("api_key" = [])))]
pub async fn cancel_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let job = state.service.cancel_job(&id).await?;
    let job = job.ok_or_else(|| unknown(&state, &id))?;
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
        (status = 503, description = "The Redis queue is unreachable (`queue_unavailable`).", body = ErrorBody),
    ),
    security((), ("api_key" = [])))]
pub async fn job_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let events = state.service.events(&id, after).await?;
    let events = events.ok_or_else(|| unknown(&state, &id))?;
    let sse = events.map(|event| {
        Ok::<_, Infallible>(
            Event::default()
                .event(event.name)
                .id(event.seq.to_string())
                .data(event.data),
        )
    });
    Ok(Sse::new(sse)
        .keep_alive(KeepAlive::default())
        .into_response())
}
