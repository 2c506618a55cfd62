//! Lingering reads: when a handler answers without reading the whole request body (an early
//! 401, 404, 429 or 503, decided before the upload is read), the rest of the body is read and
//! discarded before the answer goes out. A client still sending its photo then gets the answer
//! instead of a broken pipe; memory stays bounded (nothing is kept) and so does time.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::StreamExt as _;
use http_body::{Frame, SizeHint};

use super::AppState;

/// The longest time spent discarding the rest of a body.
const LINGER: Duration = Duration::from_secs(10);

/// A request body the handler reads, while the middleware keeps the rest of it.
struct Shared(Arc<Mutex<Option<Body>>>);

impl HttpBody for Shared {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        let slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref()
            .map_or_else(SizeHint::default, HttpBody::size_hint)
    }
}

/// Middleware: after the handler, discards what it left of the request body (at most the body
/// limit, for at most [`LINGER`]).
pub async fn discard_unread_body(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    if body.is_end_stream() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let slot = Arc::new(Mutex::new(Some(body)));
    let request = Request::from_parts(parts, Body::new(Shared(slot.clone())));
    let response = next.run(request).await;
    let rest = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(rest) = rest.filter(|rest| !rest.is_end_stream()) {
        let limit = state.body_limit;
        let _ = tokio::time::timeout(LINGER, async move {
            let mut stream = rest.into_data_stream();
            let mut seen = 0usize;
            while let Some(Ok(chunk)) = stream.next().await {
                seen += chunk.len();
                if seen > limit {
                    break;
                }
            }
        })
        .await;
    }
    response
}
