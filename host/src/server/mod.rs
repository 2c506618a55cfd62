//! The HTTP API (axum): routes, middleware, and serving with a graceful drain.
//!
//! Modules: [`connections`] (accepting and serving connections, the header read timeout),
//! [`styles`] (health, readiness, styles), [`analyze`], [`generations`], [`jobs`]
//! (job status, SSE, cancel), [`upload`] (request bodies), [`pace`] (body deadlines, early
//! 413), [`linger`] (discarding unread bodies after early answers), [`views`] (response bodies),
//! [`error`] (the one error shape), [`access`] (API keys, rate limits, CORS, draining),
//! [`telemetry`] (request spans, metrics), [`openapi`], [`playground`].

pub mod access;
pub mod admin;
pub mod analyze;
pub mod connections;
pub mod error;
pub mod generations;
pub mod jobs;
pub mod linger;
pub mod openapi;
pub mod pace;
pub mod playground;
pub mod styles;
pub mod telemetry;
pub mod upload;
pub mod views;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::HeaderName;
use axum::routing::get;
use axum::{Json, Router, middleware};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::ServeConfig;
use crate::service::Service;
use access::Access;
use pace::BodyPace;

/// How long connections may stay open after the drain before the server exits anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Multipart framing and JSON fields besides the photo.
const BODY_OVERHEAD: usize = 64 * 1024;

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    /// The generation service.
    pub service: Arc<Service>,
    /// API keys and rate limits.
    pub access: Arc<Access>,
    /// The largest request body accepted.
    pub body_limit: usize,
    /// Origins allowed by CORS.
    pub cors_origins: Arc<[String]>,
    /// How fast request bodies must arrive.
    pub body_pace: BodyPace,
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// The admin routes' key; none: they are off.
    pub admin: Option<Arc<admin::AdminKey>>,
    /// Whether generations are accepted (false on a worker: `--role worker`).
    pub accepts_generations: bool,
}

impl AppState {
    /// The state for `service` under `config`.
    pub fn new(service: Arc<Service>, config: &ServeConfig) -> AppState {
        // A photo at the upload limit must fit as base64 in JSON too.
        let max = config.limits.max_upload_bytes;
        AppState {
            service,
            access: Arc::new(Access::new(&config.access)),
            body_limit: max.saturating_add(max / 3).saturating_add(BODY_OVERHEAD),
            cors_origins: config.access.cors_origins.clone().into(),
            body_pace: BodyPace::new(&config.http),
            header_read_timeout: config.http.header_read_timeout(),
            admin: admin::AdminKey::new(config.deploy.admin_key.as_deref()).map(Arc::new),
            accepts_generations: true,
        }
    }
}

/// The service's routes and their OpenAPI document.
pub fn router(state: AppState) -> Router {
    let v1 = OpenApiRouter::new()
        .routes(routes!(styles::list_styles))
        .routes(routes!(styles::get_style))
        .routes(routes!(styles::get_style_preview))
        .routes(routes!(analyze::analyze))
        .routes(routes!(generations::create_generation))
        .routes(routes!(jobs::get_job, jobs::cancel_job))
        .routes(routes!(jobs::job_events))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            access::require_key,
        ));
    let (api, document) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(styles::healthz))
        .routes(routes!(styles::readyz))
        .routes(routes!(telemetry::metrics))
        .merge(v1)
        .split_for_parts();
    let mut document = document;
    openapi::binary_bodies(&mut document);
    let document = Arc::new(openapi::to_json(&document));

    let request_id = HeaderName::from_static("x-request-id");
    let mut app = api
        .route(
            "/openapi.json",
            get(move || {
                let document = document.clone();
                async move { Json(document.as_ref().clone()) }
            }),
        )
        .route("/", get(playground::page))
        .merge(admin::routes())
        .fallback(error::not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            access::refuse_when_draining,
        ))
        .layer(DefaultBodyLimit::max(state.body_limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            pace::refuse_oversized,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            linger::discard_unread_body,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            pace::pace_bodies,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            telemetry::count_requests,
        ))
        .layer(middleware::from_fn(error::json_errors));
    if let Some(cors) = access::cors(&state.cors_origins) {
        app = app.layer(cors);
    }
    app.layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(telemetry::request_span)
                .on_failure(DefaultOnFailure::new().level(tracing::Level::WARN)),
        )
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` resolves; then refuses new work (503), lets
/// in-flight generations finish within `drain` (canceling what is left after it), and closes
/// every connection. Returns whether everything in flight finished in time.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<bool> {
    let service = state.service.clone();
    let stop_reaper = CancellationToken::new();
    let _reaper = service.jobs().spawn_reaper(stop_reaper.clone());
    let header_read_timeout = state.header_read_timeout;
    let close = CancellationToken::new();
    let drained = close.clone();
    let finished = tokio::spawn(async move {
        shutdown.await;
        tracing::info!(
            deadline_s = drain.as_secs(),
            "shutting down: draining in-flight work"
        );
        let finished = service.drain(drain).await;
        drained.cancel();
        finished
    });
    let connections =
        connections::accept(listener, router(state), header_read_timeout, close).await;
    if tokio::time::timeout(CLOSE_GRACE, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain; closing them");
    }
    stop_reaper.cancel();
    finished.await.map_err(std::io::Error::other)
}
