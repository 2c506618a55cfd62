//! The browser playground at `/`: one self-contained page (no external resources).

use axum::response::Html;

/// The page.
const PAGE: &str = include_str!("playground.html");

/// `GET /`: the playground.
pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}
