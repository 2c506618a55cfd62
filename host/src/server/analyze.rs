//! `POST /v1/analyze`: what the host sees in a photo (size after orientation, faces).

use axum::Json;
use axum::extract::{Query, Request, State};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::upload::{self, Fields, ImageForm, ImageJson};
use super::views::AnalysisView;
use likeness_vision::AnalyzeOptions;

/// The query of `POST /v1/analyze`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AnalyzeQuery {
    /// Also compute each face's 512-d identity embedding.
    #[serde(default)]
    embedding: Option<bool>,
}

/// Decodes a photo (EXIF orientation applied) and finds its faces.
#[utoipa::path(post, path = "/v1/analyze", operation_id = "analyzePhoto", tag = "analysis",
    params(AnalyzeQuery),
    request_body(description = "The photo: multipart (`image`), JSON (`image` as a data URL) or the raw image.",
        content(
            (ImageForm = "multipart/form-data"),
            (ImageJson = "application/json"),
            (Vec<u8> = "application/octet-stream"),
            (Vec<u8> = "image/jpeg"),
            (Vec<u8> = "image/png"),
            (Vec<u8> = "image/webp"),
        )),
    responses(
        (status = 200, description = "The analysis.", body = AnalysisView),
        (status = 400, description = "Malformed request or empty upload.", body = ErrorBody),
        (status = 401, description = "A valid API key is required.", body = ErrorBody),
        (status = 408, description = "The request body arrived too slowly.", body = ErrorBody),
        (status = 413, description = "The upload or the image is too large.", body = ErrorBody),
        (status = 415, description = "Not a JPEG, PNG or WebP image, or an unsupported content type.", body = ErrorBody),
        (status = 422, description = "The image cannot be decoded.", body = ErrorBody),
        (status = 429, description = "Too many requests are waiting or uploading, or the API key's rate limit is exceeded.", body = ErrorBody),
        (status = 503, description = "Shutting down, or the face models are unavailable.", body = ErrorBody),
    ),
    security((), ("api_key" = [])))]
pub async fn analyze(
    State(state): State<AppState>,
    Query(query): Query<AnalyzeQuery>,
    request: Request,
) -> Result<Json<AnalysisView>, ApiError> {
    let service = &state.service;
    let (upload, upload_place) = upload::read_admitted(service, request, Fields::ImageOnly).await?;
    let _place = service
        .admission()
        .admit_analysis()
        .map_err(|overloaded| service.shed(overloaded))?;
    drop(upload_place);
    let options = AnalyzeOptions {
        embedding: query.embedding.unwrap_or(false),
        ..AnalyzeOptions::default()
    };
    let (_, analysis) = service.pipeline().analyze(upload.image, options).await?;
    Ok(Json(AnalysisView::from(&analysis)))
}
