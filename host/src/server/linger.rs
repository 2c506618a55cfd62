//! Lingering reads: when a handler answers without reading the whole request body (an early
//! 401, 404, 429 or 503, decided before the upload is read), the rest of the body is read and
//! discarded before the answer goes out. A client still sending its photo then gets the answer
//! instead of a broken pipe; memory stays bounded (nothing is kept) and so does time. A client
//! that sent `Expect: 100-continue` and whose body nobody read is not invited to send it: its
//! connection is closed after the answer instead.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::StreamExt as _;
use http_body::{Frame, SizeHint};

use super::AppState;

/// The longest time spent discarding the rest of a body.
const LINGER: Duration = Duration::from_secs(10);

/// A request body the handler reads, while the middleware keeps the rest of it (and whether
/// anyone asked for any of it).
struct Shared {
    body: Arc<Mutex<Option<Body>>>,
    polled: Arc<AtomicBool>,
}

impl HttpBody for Shared {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.polled.store(true, Ordering::Relaxed);
        let mut slot = self.body.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        let slot = self.body.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let slot = self.body.lock().unwrap_or_else(|e| e.into_inner());
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
    let expects_continue = parts
        .headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let slot = Arc::new(Mutex::new(Some(body)));
    let polled = Arc::new(AtomicBool::new(false));
    let shared = Shared {
        body: slot.clone(),
        polled: polled.clone(),
    };
    let mut response = next
        .run(Request::from_parts(parts, Body::new(shared)))
        .await;
    let rest = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    if expects_continue && !polled.load(Ordering::Relaxed) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
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
