//! The admin routes: `POST /admin/styles/{id}/deploy`, `/promote` and `/rollback`, behind
//! their own key (`[deploy] admin_key`, never one of the API keys) and absent (404) unless it
//! is configured. Not in the OpenAPI document: they are for operators, not clients.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::ApiError;
use crate::style::{StyleStatus, deploy};

/// The admin key, kept as its SHA-256.
pub struct AdminKey([u8; 32]);

impl AdminKey {
    /// The admin key `key`, if one is configured.
    pub fn new(key: Option<&str>) -> Option<AdminKey> {
        key.map(|key| AdminKey(Sha256::digest(key.as_bytes()).into()))
    }
}

/// What `POST /admin/styles/{id}/deploy` takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// A package folder on the host's filesystem, named after the style id.
    package: std::path::PathBuf,
    /// Serve it as a canary to this share of traffic (`10%` or `0.1`) instead of at once.
    canary: Option<String>,
    /// Releases of the style kept for a rollback.
    keep: Option<usize>,
}

/// The admin routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/styles/{id}/deploy", post(deploy_style))
        .route("/admin/styles/{id}/promote", post(promote))
        .route("/admin/styles/{id}/rollback", post(rollback))
}

/// Refuses the request unless the admin routes are on and it carries the admin key.
fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(AdminKey(expected)) = state.admin.as_deref() else {
        return Err(ApiError::not_found(
            "not_found",
            "no such route (the admin routes are off: set [deploy] admin_key)",
        ));
    };
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("Bearer "))
        .map(|key| <[u8; 32]>::from(Sha256::digest(key.trim().as_bytes())));
    if sent.as_ref() == Some(expected) {
        Ok(())
    } else {
        Err(ApiError::unauthorized(
            "the admin routes need `Authorization: Bearer ADMIN_KEY`",
        ))
    }
}

fn conflict(id: &str, error: anyhow::Error) -> ApiError {
    ApiError::conflict("deploy_failed", format!("{error:#}")).with_style(id)
}

fn status_of(state: &AppState, id: &str) -> Result<Json<StyleStatus>, ApiError> {
    let status = state.service.pipeline().registry().status(id);
    status.map(Json).ok_or_else(|| ApiError::unknown_style(id))
}

/// Deploys a package (at once, or as a canary) and reloads the style; answers its status.
async fn deploy_style(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(request): Json<DeployRequest>,
) -> Result<Json<StyleStatus>, ApiError> {
    authorize(&state, &headers)?;
    let folder = request.package.file_name().and_then(|n| n.to_str());
    if folder != Some(id.as_str()) {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("the package folder must be named '{id}', after the style"),
        ));
    }
    let registry = state.service.pipeline().registry();
    let (runtime, styles) = (registry.runtime(), registry.dir());
    let deployed = match &request.canary {
        Some(share) => {
            let share = deploy::parse_share(share)
                .map_err(|e| ApiError::bad_request("invalid_body", format!("{e:#}")))?;
            deploy::deploy_canary(runtime, &request.package, styles, share).await
        }
        None => {
            let keep = request.keep.unwrap_or(deploy::KEEP);
            deploy::deploy(runtime, &request.package, styles, keep).await
        }
    };
    deployed.map_err(|e| conflict(&id, e))?;
    registry.reload(&id).await;
    status_of(&state, &id)
}

/// Promotes the style's canary to its current version.
async fn promote(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<StyleStatus>, ApiError> {
    authorize(&state, &headers)?;
    let registry = state.service.pipeline().registry();
    registry.promote(&id).await.map_err(|e| conflict(&id, e))?;
    status_of(&state, &id)
}

/// Rolls the style's canary back (or, without one, the style to its previous release).
async fn rollback(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<StyleStatus>, ApiError> {
    authorize(&state, &headers)?;
    let registry = state.service.pipeline().registry();
    let has_canary = registry
        .status(&id)
        .and_then(|s| s.canary)
        .is_some_and(|c| c.state == crate::style::canary::CanaryState::Active);
    if has_canary {
        registry
            .roll_back(&id)
            .await
            .map_err(|e| conflict(&id, e))?;
    } else {
        deploy::rollback(registry.dir(), &id).map_err(|e| conflict(&id, e))?;
        registry.reload(&id).await;
    }
    status_of(&state, &id)
}
