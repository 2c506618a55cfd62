//! Observability: a tracing span per request carrying its id (`X-Request-Id`), request counts
//! and latencies, and `GET /metrics` (Prometheus).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;

/// The span of one request, named after its `X-Request-Id` (set by the request-id layer).
pub fn request_span(request: &Request) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        id = %id,
        method = %request.method(),
        path = %request.uri().path(),
    )
}

/// Middleware: counts each request by route template, method and status, and times it.
pub async fn count_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    // Extension methods are lumped together, so that clients cannot grow the label set.
    let method = match *request.method() {
        Method::GET
        | Method::HEAD
        | Method::POST
        | Method::PUT
        | Method::DELETE
        | Method::OPTIONS
        | Method::PATCH => request.method().as_str().to_string(),
        _ => "OTHER".to_string(),
    };
    let started = Instant::now();
    let response = next.run(request).await;
    let metrics = state.service.metrics();
    metrics
        .http_requests
        .with_label_values(&[route.as_str(), &method, response.status().as_str()])
        .inc();
    metrics
        .http_seconds
        .with_label_values(&[route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// The service's metrics in Prometheus's text format.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "operations",
    responses((status = 200, description = "Prometheus metrics.", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    state.service.refresh_queue_metrics().await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.service.render_metrics(),
    )
        .into_response()
}
