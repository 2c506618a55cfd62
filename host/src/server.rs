//! The HTTP API (axum).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;

use crate::runtime::{ParamSpec, StyleInfo};
use crate::style::{LoadedStyle, Registry, StyleStatus};

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    /// The styles this host serves.
    pub registry: Arc<Registry>,
}

/// The service's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/v1/styles", get(list_styles))
        .route("/v1/styles/{id}", get(get_style))
        .with_state(state)
}

/// An API error: one JSON shape, `{error: {code, message, style?}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    style: Option<String>,
}

impl ApiError {
    /// An error with its HTTP status, machine-readable code and human sentence.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            style: None,
        }
    }

    /// Names the style the error concerns.
    pub fn with_style(mut self, style: &str) -> Self {
        self.style = Some(style.to_string());
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(style) = self.style {
            error["style"] = style.into();
        }
        (self.status, Json(json!({ "error": error }))).into_response()
    }
}

async fn ready(State(state): State<AppState>) -> Response {
    if state.registry.styles().is_empty() {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "no style is loaded yet",
        )
        .into_response()
    } else {
        (StatusCode::OK, "ready").into_response()
    }
}

/// A style as the API shows it.
#[derive(Serialize)]
struct StyleView {
    id: String,
    name: String,
    version: Option<String>,
    description: String,
    params: Vec<ParamView>,
    status: StyleStatus,
}

#[derive(Serialize)]
struct ParamView {
    name: String,
    description: String,
    kind: &'static str,
    default: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    choices: Vec<String>,
}

impl From<&ParamSpec> for ParamView {
    fn from(spec: &ParamSpec) -> Self {
        ParamView {
            name: spec.name.clone(),
            description: spec.description.clone(),
            kind: spec.kind.as_str(),
            default: spec.default_value.clone(),
            choices: spec.choices.clone(),
        }
    }
}

fn view(status: StyleStatus, style: Option<&LoadedStyle>) -> StyleView {
    let info: Option<&StyleInfo> = style.map(|s| &s.info);
    StyleView {
        id: status.id.clone(),
        name: info.map_or_else(|| status.id.clone(), |i| i.name.clone()),
        version: info.map(|i| i.version.clone()),
        description: info.map(|i| i.description.clone()).unwrap_or_default(),
        params: info
            .map(|i| i.params.iter().map(ParamView::from).collect())
            .unwrap_or_default(),
        status,
    }
}

async fn list_styles(State(state): State<AppState>) -> Json<serde_json::Value> {
    let styles: Vec<StyleView> = state
        .registry
        .statuses()
        .into_iter()
        .map(|status| {
            let style = state.registry.get(&status.id);
            view(status, style.as_deref())
        })
        .collect();
    Json(json!({ "styles": styles }))
}

async fn get_style(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<StyleView>, ApiError> {
    let status = state.registry.status(&id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_style",
            format!("there is no style '{id}'"),
        )
        .with_style(&id)
    })?;
    let style = state.registry.get(&id);
    Ok(Json(view(status, style.as_deref())))
}
