//! The API's one error shape, `{error: {code, message, style?}}`, and the middleware that puts
//! every other error response (axum's rejections, unknown routes, wrong methods, oversized
//! bodies) into it.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::admission::{Overloaded, Shed};
use crate::jobs::Failure;
use crate::pipeline::GenerateError;

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
    /// An error with its HTTP status, machine-readable code and human sentence.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
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

impl From<&Failure> for ApiError {
    fn from(failure: &Failure) -> Self {
        ApiError {
            status: StatusCode::from_u16(failure.status)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            detail: ErrorDetail::from(failure),
            retry_after: None,
        }
    }
}

impl From<GenerateError> for ApiError {
    fn from(error: GenerateError) -> Self {
        if matches!(error, GenerateError::Internal(_) | GenerateError::Vision(_)) {
            tracing::error!(%error, "generation failed");
        }
        let failure = Failure::from(&error);
        let error = ApiError::from(&failure);
        if error.status == StatusCode::SERVICE_UNAVAILABLE {
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
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {} {}", request.method(), request.uri().path()),
    )
}
