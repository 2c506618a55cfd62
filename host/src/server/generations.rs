//! `POST /v1/styles/{id}/generations`: one generation, synchronous (200 with JSON, or the image
//! itself when the client accepts an image type) or asynchronous (`Prefer: respond-async`: 202
//! with a job to follow).

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::upload::{self, Fields, GenerationForm, GenerationJson};
use super::views::{Finished, GenerationView, JobView};
use crate::admission::Overloaded;
use crate::metrics::Metrics;
use crate::output::OutputFormat;
use crate::pipeline::GenerateError;
use crate::queue::JobError;
use crate::service::GenerationRequest;
use crate::style::StyleState;
use crate::style::canary::Routing;

/// Bytes percent-encoded in header values: controls, non-ASCII (always) and `%` itself.
const HEADER_ENCODE: &AsciiSet = &CONTROLS.add(b'%');
/// The longest fact (e.g. a style's reason) put into a header, in bytes before encoding (at
/// most three times as many after); the JSON body and the job carry it in full.
const MAX_HEADER_FACT: usize = 512;

/// How the client wants the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// JSON with the image as a data URL.
    Json,
    /// The image itself, facts in `X-Likeness-*` headers.
    Image(OutputFormat),
}

/// The answer the `Accept` header prefers (JSON when it names nothing this API serves).
fn negotiate(headers: &HeaderMap) -> Answer {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Answer::Json;
    };
    let mut best: Option<(f32, Answer)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let answer = match media.as_str() {
            "application/json" | "*/*" | "application/*" => Answer::Json,
            "image/*" => Answer::Image(OutputFormat::default()),
            other => match OutputFormat::from_mime(other) {
                Some(format) => Answer::Image(format),
                None => continue,
            },
        };
        if q > 0.0 && best.is_none_or(|(best_q, _)| q > best_q) {
            best = Some((q, answer));
        }
    }
    best.map_or(Answer::Json, |(_, answer)| answer)
}

/// Whether the client sent `Prefer: respond-async`.
fn prefers_async(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .any(|token| token.trim().eq_ignore_ascii_case("respond-async"))
}

/// Counts a synchronous generation whose client went away before it finished (its handler
/// future, and with it the pipeline's, was dropped).
struct DisconnectGuard<'a> {
    metrics: &'a Metrics,
    id: String,
    finished: bool,
}

impl Drop for DisconnectGuard<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.metrics.client_disconnects.inc();
            tracing::info!(id = %self.id, "the client went away; the generation was stopped");
        }
    }
}

/// Generates the style from a photo.
///
/// Synchronous by default: 200 with the result as JSON, or, with `Accept: image/png`
/// (`image/jpeg`, `image/webp`), the image itself with the facts in `X-Likeness-*` headers.
/// With `Prefer: respond-async`: 202 and a job to follow (`GET /v1/jobs/{id}`, its `events`).
#[utoipa::path(post, path = "/v1/styles/{id}/generations", operation_id = "createGeneration", tag = "generations",
    params(
        ("id" = String, Path, description = "The style's id."),
        ("prefer" = Option<String>, Header, description = "`respond-async` for a 202 and a job."),
    ),
    request_body(description = "The photo and the options.",
        content((GenerationForm = "multipart/form-data"), (GenerationJson = "application/json"))),
    responses(
        (status = 200, description = "The generation (JSON), or the image itself when an image type is accepted.",
            content(
                (GenerationView = "application/json"),
                (Vec<u8> = "image/png"),
                (Vec<u8> = "image/jpeg"),
                (Vec<u8> = "image/webp"),
            )),
        (status = 202, description = "Accepted as a job (`Prefer: respond-async`).", body = JobView,
            links(
                ("getJob" = (operation_id = "getJob", parameters(("id" = "$response.body#/id")),
                    description = "The job: status, stage, result or error.")),
                ("jobEvents" = (operation_id = "jobEvents", parameters(("id" = "$response.body#/id")),
                    description = "The job's progress as server-sent events.")),
                ("cancelJob" = (operation_id = "cancelJob", parameters(("id" = "$response.body#/id")),
                    description = "Cancels the job, or deletes it once finished.")),
            )),
        (status = 400, description = "Malformed body, options the style refuses, or an empty upload.", body = ErrorBody),
        (status = 401, description = "A valid API key is required.", body = ErrorBody),
        (status = 404, description = "No style has this id.", body = ErrorBody),
        (status = 413, description = "The upload or the image is too large.", body = ErrorBody),
        (status = 415, description = "Not a JPEG, PNG or WebP image, or an unsupported content type.", body = ErrorBody),
        (status = 422, description = "The image cannot be decoded, or the style cannot use it.", body = ErrorBody),
        (status = 408, description = "The request body arrived too slowly.", body = ErrorBody),
        (status = 421, description = "This process is a worker (`--role worker`): send generations to an API node.", body = ErrorBody),
        (status = 429, description = "The queue, the style's or the API key's share of it, or the upload places are full, or the API key's rate limit is exceeded (see Retry-After).", body = ErrorBody),
        (status = 503, description = "The style is unavailable or its circuit breaker is open (see Retry-After), the Redis queue is unreachable (`queue_unavailable`), or the service is shutting down.", body = ErrorBody),
    ),
    security((), ("api_key" = [])))]
pub async fn create_generation(
    State(state): State<AppState>,
    Path(style_id): Path<String>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let service = &state.service;
    if !state.accepts_generations {
        return Err(ApiError::not_an_api_node());
    }
    match service.pipeline().registry().status(&style_id) {
        None => return Err(ApiError::unknown_style(&style_id)),
        Some(status) if status.state != StyleState::Serving => {
            return Err(ApiError::from(GenerateError::StyleUnavailable(
                style_id,
                status.unavailable_reason(),
            )));
        }
        Some(_) => {}
    }
    let answer = negotiate(&headers);
    let shed = |overloaded: Overloaded| {
        let error = ApiError::from(service.shed(overloaded));
        if overloaded.shed.is_style_specific() {
            error.with_style(&style_id)
        } else {
            error
        }
    };
    // Shed at once when the queue (or the style's share) is already full or the style's
    // circuit breaker is open; the place itself is taken only once the upload has been read,
    // so that slow uploads cannot hold queue places.
    service
        .admission()
        .check_generation(&style_id)
        .map_err(shed)?;
    let (upload, upload_place) =
        upload::read_admitted(service, request, Fields::WithOptions).await?;
    let ticket = service
        .admission()
        .admit_generation(&style_id)
        .map_err(shed)?;
    drop(upload_place);
    let format = match answer {
        Answer::Image(format) => format,
        Answer::Json => upload.output_format.unwrap_or_default(),
    };
    let generation = GenerationRequest {
        id: format!("gen_{}", uuid::Uuid::new_v4().simple()),
        style: style_id,
        photo: upload.image,
        options: upload.options,
        format,
        canary: Routing::from_headers(&headers),
    };

    if prefers_async(&headers) {
        let job = service.submit(generation, ticket, &headers).await?;
        let view = JobView::of(&job, service.job_ttl().as_millis() as u64);
        let mut response = (StatusCode::ACCEPTED, Json(view)).into_response();
        let headers = response.headers_mut();
        if let Ok(location) = HeaderValue::from_str(&format!("/v1/jobs/{}", job.id)) {
            headers.insert(header::LOCATION, location);
        }
        headers.insert(
            HeaderName::from_static("preference-applied"),
            HeaderValue::from_static("respond-async"),
        );
        return Ok(response);
    }

    let cancel = service.abort_token().child_token();
    let mut guard = DisconnectGuard {
        metrics: service.metrics(),
        id: generation.id.clone(),
        finished: false,
    };
    let result = service.answer(generation, ticket, &headers, &cancel).await;
    guard.finished = true;
    let finished = result.map_err(|error| match error {
        JobError::Generate(GenerateError::Canceled) => ApiError::shutting_down(),
        error => ApiError::from(error),
    })?;
    let mut facts = HeaderMap::new();
    fact_headers(&mut facts, &finished);
    let mut response = match answer {
        Answer::Json => Json(finished.view()).into_response(),
        Answer::Image(format) => (
            [(header::CONTENT_TYPE, format.mime())],
            finished.bytes.clone(),
        )
            .into_response(),
    };
    response.headers_mut().extend(facts);
    Ok(response)
}

/// `text` cut to at most `limit` bytes on a character boundary, ending in `…` when cut.
fn truncated(text: &str, limit: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= limit {
        return text.into();
    }
    const ELLIPSIS: char = '…';
    let mut end = limit - ELLIPSIS.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ELLIPSIS}", &text[..end]).into()
}

/// The facts of a generation as `X-Likeness-*` headers (each cut to [`MAX_HEADER_FACT`] bytes,
/// then percent-encoded).
fn fact_headers(headers: &mut HeaderMap, finished: &Finished) {
    for (name, value) in &finished.facts {
        let value = truncated(value, MAX_HEADER_FACT);
        let encoded = utf8_percent_encode(&value, HEADER_ENCODE).to_string();
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&encoded),
        ) {
            headers.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn accept_picks_the_preferred_served_type() {
        assert_eq!(negotiate(&headers(&[])), Answer::Json);
        assert_eq!(
            negotiate(&headers(&[("accept", "image/webp")])),
            Answer::Image(OutputFormat::Webp)
        );
        assert_eq!(
            negotiate(&headers(&[(
                "accept",
                "application/json;q=0.5, image/jpeg"
            )])),
            Answer::Image(OutputFormat::Jpeg)
        );
        assert_eq!(
            negotiate(&headers(&[("accept", "image/png;q=0.2, application/json")])),
            Answer::Json
        );
        assert_eq!(
            negotiate(&headers(&[("accept", "text/html")])),
            Answer::Json
        );
    }

    #[test]
    fn prefer_respond_async_is_found_among_other_preferences() {
        assert!(prefers_async(&headers(&[(
            "prefer",
            "wait=5, respond-async"
        )])));
        assert!(prefers_async(&headers(&[("prefer", "Respond-Async")])));
        assert!(!prefers_async(&headers(&[("prefer", "return=minimal")])));
    }

    #[test]
    fn long_facts_are_cut_on_a_character_boundary() {
        assert_eq!(truncated("short", 1024), "short");
        let long = "é".repeat(400);
        let cut = truncated(&long, MAX_HEADER_FACT);
        assert!(cut.len() <= MAX_HEADER_FACT, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert!(cut.trim_end_matches('…').chars().all(|c| c == 'é'));
        assert_eq!(truncated(&"a".repeat(1025), 1024).len(), 1024);
    }

    #[test]
    fn reasons_are_percent_encoded_in_headers() {
        let encoded = utf8_percent_encode("naïve 100% sûr\n", HEADER_ENCODE).to_string();
        assert_eq!(encoded, "na%C3%AFve 100%25 s%C3%BBr%0A");
        assert!(HeaderValue::from_str(&encoded).is_ok());
    }
}
