//! Health, readiness and the styles: `GET /healthz`, `/readyz`, `/v1/styles`, `/v1/styles/{id}`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use crate::style::canary::CanaryReport;
use crate::style::{LoadedStyle, StyleState, StyleStatus};
use likeness_contract::{ParamKind, ParamSpec, StyleInfo};

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "operations",
    responses((status = 200, description = "The process is alive.", body = String, content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: styles and models are loaded, the service is not draining, and (with a Redis
/// queue) Redis answers.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready to serve.", body = String, content_type = "text/plain"),
        (status = 503, description = "Not ready (no style loaded, no face detector, the Redis queue unreachable, or shutting down).", body = ErrorBody),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let service = &state.service;
    if service.is_draining() {
        return ApiError::shutting_down().into_response();
    }
    if service.pipeline().registry().styles().is_empty() {
        return ApiError::not_ready("no style is loaded yet").into_response();
    }
    if service.pipeline().vision().detector(None).is_err() {
        return ApiError::not_ready("no face detector is installed: run `likeness models fetch`")
            .into_response();
    }
    if let Some(redis) = service.redis()
        && !redis.ping().await
    {
        return ApiError::not_ready("the Redis queue does not answer").into_response();
    }
    (StatusCode::OK, "ready").into_response()
}

/// A style as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct StyleView {
    /// The style's id.
    id: String,
    /// Its human-readable name.
    name: String,
    /// The version serving now (none if no version validated).
    version: Option<String>,
    /// One sentence for clients.
    description: String,
    /// The contract version the serving component implements: `0.2.0`, or `0.1.0` for a
    /// package built before 0.2 (served through the host's adapter until 0.3.0).
    #[serde(skip_serializing_if = "Option::is_none")]
    contract: Option<&'static str>,
    /// The options it takes.
    params: Vec<ParamView>,
    /// Where its preview picture is (`/v1/styles/{id}/preview`), when the package has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    preview: Option<String>,
    /// Its life: serving or failed, and the last reload error.
    status: StatusView,
    /// Its canary, when one serves or has ended since start: both versions with digests,
    /// shares and counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    canary: Option<CanaryReport>,
}

/// A style option.
#[derive(Serialize, ToSchema)]
pub struct ParamView {
    /// The option's name.
    name: String,
    /// What it does.
    description: String,
    /// `text`, `integer`, `number`, `boolean` or `choice`.
    kind: &'static str,
    /// The value used when none is set (absent: the option is optional).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = super::upload::option_value_schema, required = false)]
    default: Option<serde_json::Value>,
    /// The allowed values, for `choice`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    choices: Vec<String>,
    /// The smallest value, for `integer` and `number`.
    #[serde(skip_serializing_if = "Option::is_none")]
    min: Option<f64>,
    /// The largest value, for `integer` and `number`.
    #[serde(skip_serializing_if = "Option::is_none")]
    max: Option<f64>,
    /// The most characters, for `text`.
    #[serde(skip_serializing_if = "Option::is_none")]
    max_length: Option<u32>,
}

/// Whether a style serves, and what happened at its last reload.
#[derive(Serialize, ToSchema)]
pub struct StatusView {
    /// The style id (the package folder's name).
    id: String,
    /// `serving`, `loading` (its first load has not finished) or `failed`.
    state: &'static str,
    /// The version serving now.
    version: Option<String>,
    /// SHA-256 of the component serving now.
    digest: Option<String>,
    /// When the serving version was loaded (ms since the Unix epoch).
    loaded_at_ms: Option<u64>,
    /// Why the last (re)load was rejected; cleared by the next successful one.
    last_error: Option<String>,
    /// When the package was last (re)loaded or rejected (ms since the Unix epoch).
    last_reload_at_ms: u64,
}

impl From<StyleStatus> for StatusView {
    fn from(status: StyleStatus) -> Self {
        StatusView {
            id: status.id,
            state: match status.state {
                StyleState::Serving => "serving",
                StyleState::Loading => "loading",
                StyleState::Failed => "failed",
            },
            version: status.version,
            digest: status.digest,
            loaded_at_ms: status.loaded_at_ms,
            last_error: status.last_error,
            last_reload_at_ms: status.last_reload_at_ms,
        }
    }
}

/// Every style.
#[derive(Serialize, ToSchema)]
pub struct StyleList {
    /// The styles, by id.
    styles: Vec<StyleView>,
}

impl From<&ParamSpec> for ParamView {
    fn from(spec: &ParamSpec) -> Self {
        let (mut choices, mut min, mut max, mut max_length) = (Vec::new(), None, None, None);
        match &spec.kind {
            ParamKind::Text(most) => max_length = Some(*most),
            ParamKind::Integer { min: lo, max: hi } => {
                (min, max) = (Some(*lo as f64), Some(*hi as f64));
            }
            ParamKind::Number { min: lo, max: hi } => (min, max) = (Some(*lo), Some(*hi)),
            ParamKind::Boolean => {}
            ParamKind::Choice(values) => choices = values.clone(),
        }
        let default = spec.default_value.as_ref().map(|value| {
            let options = vec![(spec.name.clone(), value.clone())];
            super::views::options_view(&options)
                .into_values()
                .next()
                .unwrap_or_default()
        });
        ParamView {
            name: spec.name.clone(),
            description: spec.description.clone(),
            kind: spec.kind.name(),
            default,
            choices,
            min,
            max,
            max_length,
        }
    }
}

fn view(mut status: StyleStatus, style: Option<&LoadedStyle>) -> StyleView {
    let info: Option<&StyleInfo> = style.map(|s| &s.info);
    let canary = status.canary.take();
    StyleView {
        id: status.id.clone(),
        name: info.map_or_else(|| status.id.clone(), |i| i.name.clone()),
        version: info.map(|i| i.version.clone()),
        description: info.map(|i| i.description.clone()).unwrap_or_default(),
        contract: style.map(|s| s.component.contract()),
        params: info
            .map(|i| i.params.iter().map(ParamView::from).collect())
            .unwrap_or_default(),
        preview: style
            .filter(|s| s.preview.is_some())
            .map(|_| format!("/v1/styles/{}/preview", status.id)),
        status: StatusView::from(status),
        canary,
    }
}

/// Lists every style: serving ones and failed ones (with their last error).
#[utoipa::path(get, path = "/v1/styles", operation_id = "listStyles", tag = "styles",
    responses(
        (status = 200, description = "Every style.", body = StyleList),
        (status = 401, description = "A valid API key is required.", body = ErrorBody),
        (status = 429, description = "The API key's rate limit is exceeded.", body = ErrorBody),
    ),
    security((), ("api_key" = [])))]
pub async fn list_styles(State(state): State<AppState>) -> Json<StyleList> {
    let registry = state.service.pipeline().registry();
    let styles = registry
        .statuses()
        .into_iter()
        .map(|status| {
            let style = registry.get(&status.id);
            view(status, style.as_deref())
        })
        .collect();
    Json(StyleList { styles })
}

/// One style: version, description, options and status.
#[utoipa::path(get, path = "/v1/styles/{id}", operation_id = "getStyle", tag = "styles",
    params(("id" = String, Path, description = "The style's id.")),
    responses(
        (status = 200, description = "The style.", body = StyleView),
        (status = 401, description = "A valid API key is required.", body = ErrorBody),
        (status = 404, description = "No style has this id.", body = ErrorBody),
        (status = 429, description = "The API key's rate limit is exceeded.", body = ErrorBody),
    ),
    security((), ("api_key" = [])))]
pub async fn get_style(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<StyleView>, ApiError> {
    let registry = state.service.pipeline().registry();
    let status = registry
        .status(&id)
        .ok_or_else(|| ApiError::unknown_style(&id))?;
    let style = registry.get(&id);
    Ok(Json(view(status, style.as_deref())))
}

/// The style's preview picture (a PNG, JPEG or WebP from its package), for clients that show
/// styles as cards. Revalidate with `If-None-Match`: the tag changes with the picture.
#[utoipa::path(get, path = "/v1/styles/{id}/preview", operation_id = "getStylePreview", tag = "styles",
    params(("id" = String, Path, description = "The style's id.")),
    responses(
        (status = 200, description = "The picture.", content(
            (Vec<u8> = "image/png"),
            (Vec<u8> = "image/jpeg"),
            (Vec<u8> = "image/webp"),
        )),
        (status = 304, description = "The picture has not changed since the tag sent in `If-None-Match`."),
        (status = 401, description = "A valid API key is required.", body = ErrorBody),
        (status = 404, description = "No style has this id, or it has no preview (`no_preview`).", body = ErrorBody),
        (status = 429, description = "The API key's rate limit is exceeded.", body = ErrorBody),
    ),
    security((), ("api_key" = [])))]
pub async fn get_style_preview(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let registry = state.service.pipeline().registry();
    let style = registry
        .get(&id)
        .ok_or_else(|| ApiError::unknown_style(&id))?;
    let preview = style
        .preview
        .as_ref()
        .ok_or_else(|| ApiError::no_preview(&id))?;
    let cache = [
        (header::ETAG, preview.etag.clone()),
        (header::CACHE_CONTROL, "no-cache".to_string()),
    ];
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|tag| tag.trim() == preview.etag || tag.trim() == "*")
        });
    if unchanged {
        return Ok((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    Ok((
        cache,
        [
            (header::CONTENT_TYPE, preview.mime.to_string()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        preview.bytes.clone(),
    )
        .into_response())
}
