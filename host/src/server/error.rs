//! The API's one error shape, `{error: {code, message, style?}}`, the one place where the
//! library errors (a generation's, an upload's, the vision layer's, a style call's, the diffusion
//! engine's) become HTTP statuses, and the middleware that puts every other error response
//! (axum's rejections, unknown routes, wrong methods, oversized bodies) into the shape.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use likeness_contract::StyleError;
use likeness_diffusion::DiffusionError;
use likeness_vision::{IngestError, VisionError};

use crate::admission::{Overloaded, Shed};
use crate::jobs::Failure;
use crate::pipeline::GenerateError;
use crate::queue::{JobError, QueueError};
use crate::wasm::CallError;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code, e.g. `unknown_style` or `queue_full`.
    pub code: String,
    /// A sentence for people.
    pub message: String,
    /// The style the error concerns, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub style: Option<String>,
}

impl From<&Failure> for ErrorDetail {
    fn from(failure: &Failure) -> Self {
        ErrorDetail {
            code: failure.code.to_string(),
            message: failure.message.clone(),
            style: failure.style.clone(),
        }
    }
}

/// An API error: an HTTP status and the error body, plus `Retry-After` where it helps.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    detail: ErrorDetail,
    retry_after: Option<Duration>,
}

impl ApiError {
    /// An error with its HTTP status, machine-readable code and human sentence (the
    /// constructors below name the statuses the API answers with).
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            detail: ErrorDetail {
                code: code.to_string(),
                message: message.into(),
                style: None,
            },
            retry_after: None,
        }
    }

    /// 400 with `code`.
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404 with `code`: no such route, job or resource.
    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 401 `unauthorized`: a valid key is required.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 408 `request_timeout`: the body arrived too slowly.
    pub fn request_timeout(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", message)
    }

    /// 409 with `code`: the request conflicts with the state (e.g. a deploy that failed).
    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    /// 413 `body_too_large`.
    pub fn body_too_large(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", message)
    }

    /// 415 `unsupported_content_type`: a body the route does not read.
    pub fn unsupported_content_type(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_type",
            message,
        )
    }

    /// 429 `rate_limited`: the API key's rate limit is used up until `retry_after`.
    pub fn rate_limited(message: impl Into<String>, retry_after: Duration) -> Self {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
            .with_retry_after(retry_after)
    }

    /// 503 `not_ready`.
    pub fn not_ready(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", message)
    }

    /// An axum body rejection, keeping its status: `body_too_large` for 413, else
    /// `invalid_body`.
    pub fn body_rejection(status: StatusCode, text: String) -> Self {
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::body_too_large(text)
        } else {
            ApiError::new(status, "invalid_body", text)
        }
    }

    /// Names the style the error concerns.
    pub fn with_style(mut self, style: &str) -> Self {
        self.detail.style = Some(style.to_string());
        self
    }

    /// Asks the client to retry after `delay`.
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// 404 for a style whose package has no preview picture.
    pub fn no_preview(id: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_preview",
            format!("the style '{id}' has no preview picture"),
        )
        .with_style(id)
    }

    /// 404 for a style id nobody knows.
    pub fn unknown_style(id: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_style",
            format!("there is no style '{id}'"),
        )
        .with_style(id)
    }

    /// 503 while the service drains for shutdown.
    pub fn shutting_down() -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the service is shutting down; retry on another instance",
        )
        .with_retry_after(Duration::from_secs(5))
    }

    /// 421 on a worker (`--role worker`), which takes its jobs from the queue, not over HTTP.
    pub fn not_an_api_node() -> Self {
        ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "not_an_api_node",
            "this process is a worker: it runs queued jobs; send generations to an API node",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The machine-readable code.
    pub fn code(&self) -> &str {
        &self.detail.code
    }
}

impl From<Overloaded> for ApiError {
    fn from(overloaded: Overloaded) -> Self {
        let message = match overloaded.shed {
            Shed::QueueFull => "the service is busy: the queue is full; retry later",
            Shed::UploadsFull => {
                "the service is busy: too many uploads are in progress; retry later"
            }
            Shed::ClientUploadsFull => {
                "this client has too many uploads in progress; finish those first"
            }
            Shed::StyleQueueFull => {
                "this style has as much work waiting as its share of the queue allows; retry later"
            }
            Shed::CircuitOpen => {
                "this style failed repeatedly (timeouts or crashes), so it gets no work for a \
                 while; retry later"
            }
        };
        let status = match overloaded.shed {
            Shed::CircuitOpen => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::TOO_MANY_REQUESTS,
        };
        ApiError::new(status, overloaded.shed.code(), message)
            .with_retry_after(overloaded.retry_after)
    }
}

/// The status of a job failed for being delivered to workers too often (`poison_job`).
pub fn poison_status() -> StatusCode {
    StatusCode::INTERNAL_SERVER_ERROR
}

/// The failure of a job a worker could not admit: what this process would answer for
/// `overloaded`.
pub fn overloaded_failure(overloaded: Overloaded, style: &str) -> Failure {
    let error = ApiError::from(overloaded);
    Failure {
        code: error.detail.code,
        message: error.detail.message,
        style: Some(style.to_string()),
        status: error.status.as_u16(),
    }
}

/// The failure of a job planned against another build of its style than the worker serves
/// (the fleet is mid-roll: the operator deploys the style to every worker first).
pub fn style_mismatch_failure(style: &str, wanted: &str, here: &str) -> Failure {
    let short = |digest: &str| digest.chars().take(12).collect::<String>();
    Failure {
        code: "style_version_mismatch".into(),
        message: format!(
            "the job was accepted for the build {} of style '{style}', but this worker serves              {}; retry once every worker serves the same build",
            short(wanted),
            short(here)
        ),
        style: Some(style.to_string()),
        status: StatusCode::SERVICE_UNAVAILABLE.as_u16(),
    }
}

impl From<QueueError> for ApiError {
    fn from(error: QueueError) -> Self {
        let message = error.to_string();
        match error {
            QueueError::Unavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "queue_unavailable",
                message,
            )
            .with_retry_after(Duration::from_secs(1)),
            QueueError::Full { retry_after } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "queue_full", message)
                    .with_retry_after(retry_after)
            }
            QueueError::KeyFull { retry_after } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "key_queue_full", message)
                    .with_retry_after(retry_after)
            }
        }
    }
}

impl From<JobError> for ApiError {
    fn from(error: JobError) -> Self {
        match error {
            JobError::Generate(error) => ApiError::from(error),
            JobError::Queue(error) => ApiError::from(error),
            JobError::Failed(failure) => {
                let status = StatusCode::from_u16(failure.status)
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let error = ApiError {
                    status,
                    detail: ErrorDetail::from(&failure),
                    retry_after: None,
                };
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    error.with_retry_after(Duration::from_secs(5))
                } else {
                    error
                }
            }
        }
    }
}

/// The HTTP status of a failed generation (also the `status` label of the generation metrics):
/// 404 unknown style; 400 bad options; the upload's status; 422 input the style or the engine
/// cannot use, or a needed face that is absent; 409 canceled; 503 when a style, a model or the
/// pack cannot serve it now; 500 for bugs and failed inference (a style transfer that failed
/// included).
pub fn generation_status(error: &GenerateError) -> StatusCode {
    match error {
        GenerateError::UnknownStyle(_) => StatusCode::NOT_FOUND,
        GenerateError::StyleUnavailable(..) => StatusCode::SERVICE_UNAVAILABLE,
        GenerateError::InvalidOption { .. } => StatusCode::BAD_REQUEST,
        GenerateError::Image(error) => ingest_status(error),
        GenerateError::Vision(error) => vision_status(error),
        GenerateError::Style(error) => call_status(error),
        GenerateError::Diffusion(error) => diffusion_status(error),
        GenerateError::Canceled => StatusCode::CONFLICT,
        GenerateError::Transfer(_) | GenerateError::Internal(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

/// An upload that is not a usable image: 400 empty, 413 too large, 415 not a supported
/// format, 422 corrupt.
fn ingest_status(error: &IngestError) -> StatusCode {
    match error {
        IngestError::Empty => StatusCode::BAD_REQUEST,
        IngestError::UploadTooLarge { .. } | IngestError::DimensionsTooLarge { .. } => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        IngestError::Unsupported { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        IngestError::Corrupt { .. } => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

/// The vision layer: the upload's status, 422 when a needed face is absent, 503 when models or
/// the runtime are missing, 500 when inference itself failed.
fn vision_status(error: &VisionError) -> StatusCode {
    match error {
        VisionError::Ingest(error) => ingest_status(error),
        VisionError::NoFace(_) => StatusCode::UNPROCESSABLE_ENTITY,
        VisionError::Runtime(_) | VisionError::MissingModel(_) | VisionError::Pack { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A style call: the style's own refusal (400 invalid options, 422 unusable input), else 503 (the
/// style cannot serve this now: it failed, crashed or ran out of budget).
fn call_status(error: &CallError) -> StatusCode {
    match error {
        CallError::Style {
            error: StyleError::InvalidOptions(_),
            ..
        } => StatusCode::BAD_REQUEST,
        CallError::Style {
            error: StyleError::UnusableInput(_),
            ..
        } => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The diffusion engine: 422 a request it cannot use, 503 one the pack cannot run, else 500.
fn diffusion_status(error: &DiffusionError) -> StatusCode {
    match error {
        DiffusionError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        DiffusionError::Unsupported(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<GenerateError> for ApiError {
    fn from(error: GenerateError) -> Self {
        if matches!(error, GenerateError::Internal(_) | GenerateError::Vision(_)) {
            tracing::error!(%error, "generation failed");
        }
        let status = generation_status(&error);
        let error = ApiError {
            status,
            detail: ErrorDetail::from(&Failure::from(&error)),
            retry_after: None,
        };
        if status == StatusCode::SERVICE_UNAVAILABLE {
            error.with_retry_after(Duration::from_secs(5))
        } else {
            error
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, axum::Json(ErrorBody { error: self.detail })).into_response();
        if let Some(delay) = self.retry_after {
            let seconds = delay.as_secs().max(1).to_string();
            if let Ok(value) = HeaderValue::from_str(&seconds) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

/// The code for an error response that carries none of its own.
fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::NOT_ACCEPTABLE => "not_acceptable",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_content_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_request",
        StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        status if status.is_client_error() => "bad_request",
        _ => "internal_error",
    }
}

/// Rewrites any error response that is not already JSON into the API's error shape, keeping its
/// status and headers (e.g. `Allow` on 405) and its text as the message.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string()
    } else {
        text
    };
    let body = ErrorBody {
        error: ErrorDetail {
            code: code_for(status).to_string(),
            message,
            style: None,
        },
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(bytes))
}

/// The fallback for unknown routes.
pub async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(
        "not_found",
        format!("no route for {} {}", request.method(), request.uri().path()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wasm::Call;
    use likeness_contract::options::OptionError;

    fn style_call(error: StyleError) -> GenerateError {
        GenerateError::Style(CallError::Style {
            style: "anime".into(),
            error,
        })
    }

    #[test]
    fn every_kind_of_generation_error_has_its_status_and_code() {
        let corrupt = IngestError::Corrupt {
            format: "PNG",
            reason: "truncated".into(),
        };
        let cases = [
            (
                GenerateError::UnknownStyle("x".into()),
                404,
                "unknown_style",
            ),
            (
                GenerateError::StyleUnavailable("x".into(), "no version passed".into()),
                503,
                "style_unavailable",
            ),
            (
                GenerateError::InvalidOption {
                    style: "anime".into(),
                    error: OptionError {
                        option: "strength".into(),
                        message: "option `strength` must be a number".into(),
                    },
                },
                400,
                "invalid_options",
            ),
            (
                GenerateError::Image(IngestError::Empty),
                400,
                "empty_upload",
            ),
            (
                GenerateError::Image(IngestError::UploadTooLarge { size: 2, limit: 1 }),
                413,
                "image_too_large",
            ),
            (
                GenerateError::Image(IngestError::DimensionsTooLarge {
                    width: 9,
                    height: 9,
                    max_side: 1,
                    max_pixels: 1,
                }),
                413,
                "image_too_large",
            ),
            (
                GenerateError::Image(IngestError::Unsupported {
                    detected: "gif".into(),
                }),
                415,
                "unsupported_image",
            ),
            (GenerateError::Image(corrupt.clone()), 422, "corrupt_image"),
            (
                GenerateError::Vision(VisionError::Ingest(corrupt)),
                422,
                "analysis_failed",
            ),
            (
                GenerateError::Vision(VisionError::NoFace("the photo".into())),
                422,
                "analysis_failed",
            ),
            (
                GenerateError::Vision(VisionError::MissingModel("detector".into())),
                503,
                "analysis_failed",
            ),
            (
                GenerateError::Vision(VisionError::Inference {
                    model: "detector".into(),
                    reason: "NaN".into(),
                }),
                500,
                "analysis_failed",
            ),
            (
                style_call(StyleError::InvalidOptions("x".into())),
                400,
                "invalid_options",
            ),
            (
                style_call(StyleError::UnusableInput("x".into())),
                422,
                "unusable_input",
            ),
            (
                style_call(StyleError::Internal(None)),
                503,
                "style_internal_error",
            ),
            (
                GenerateError::Style(CallError::Trap {
                    style: "anime".into(),
                    call: Call::Plan,
                    message: "unreachable".into(),
                }),
                503,
                "style_trap",
            ),
            (
                GenerateError::Diffusion(DiffusionError::Invalid("steps".into())),
                422,
                "unusable_input",
            ),
            (
                GenerateError::Diffusion(DiffusionError::Unsupported("pulid".into())),
                503,
                "generation_failed",
            ),
            (GenerateError::Canceled, 409, "canceled"),
            (
                GenerateError::Transfer("the style-transfer network failed".into()),
                500,
                "generation_failed",
            ),
            (
                GenerateError::Internal("panic".into()),
                500,
                "internal_error",
            ),
        ];
        for (error, status, code) in cases {
            let what = format!("{error:?}");
            assert_eq!(generation_status(&error).as_u16(), status, "{what}");
            let api = ApiError::from(error);
            assert_eq!(
                (api.status().as_u16(), api.code()),
                (status, code),
                "{what}"
            );
            assert!(!api.detail.message.is_empty(), "{what}");
            // Only "not now" errors ask the client to come back.
            assert_eq!(api.retry_after.is_some(), status == 503, "{what}");
        }
    }
}
