//! Slow and oversized request bodies. A body must arrive within a deadline that grows with its
//! size: a grace period after the request's headers, then a minimum rate (`[http]`
//! `body_grace_secs`, `body_min_bytes_per_sec`). A body announced with `Content-Length` must be
//! complete by `grace + length / rate`; a chunked one must keep ahead of the rate. Past its
//! deadline the request is answered 408 `request_timeout` and its connection closed, whatever
//! the handler was doing with it. A body announced larger than the limit is refused with 413
//! before any of it is read, so a client that sent `Expect: 100-continue` never gets
//! `100 Continue`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::AppState;
use super::error::ApiError;
use crate::config::HttpConfig;

/// How fast a request body must arrive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BodyPace {
    /// Time allowed before the minimum rate applies.
    pub grace: Duration,
    /// The minimum rate after the grace, in bytes per second.
    pub min_bytes_per_sec: u64,
}

impl BodyPace {
    /// The pace of `config`.
    pub fn new(config: &HttpConfig) -> BodyPace {
        BodyPace {
            grace: config.body_grace(),
            min_bytes_per_sec: config.body_min_bytes_per_sec.max(1),
        }
    }

    /// When a body of `bytes` bytes whose headers arrived at `start` must have arrived.
    fn deadline(&self, start: Instant, bytes: u64) -> Instant {
        start + self.grace + Duration::from_secs_f64(bytes as f64 / self.min_bytes_per_sec as f64)
    }
}

/// The error a body past its deadline yields to whoever reads it.
#[derive(Debug, thiserror::Error)]
#[error("the request body arrived too slowly")]
struct TooSlow;

/// A request body that fails once it is late.
struct Paced {
    inner: Body,
    start: Instant,
    declared: u64,
    received: u64,
    pace: BodyPace,
    deadline: Pin<Box<Sleep>>,
    late: Arc<AtomicBool>,
}

impl HttpBody for Paced {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if this.late.load(Ordering::Relaxed) {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    if this.received > this.declared {
                        // A chunked body (or one longer than announced) keeps ahead of the rate.
                        let deadline = this.pace.deadline(this.start, this.received);
                        this.deadline.as_mut().reset(deadline);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                ready!(this.deadline.as_mut().poll(cx));
                this.late.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(axum::Error::new(TooSlow))))
            }
            done => done,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The `Content-Length` a request announces, if any.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Asks hyper to close the connection once `response` is written.
fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Middleware: puts the request body on its deadline and answers 408 (closing the connection)
/// when it is missed.
pub async fn pace_bodies(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    if body.is_end_stream() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let start = Instant::now();
    let declared = declared_length(&parts.headers).unwrap_or(0);
    let pace = state.body_pace;
    let late = Arc::new(AtomicBool::new(false));
    let paced = Paced {
        inner: body,
        start,
        declared,
        received: 0,
        pace,
        deadline: Box::pin(tokio::time::sleep_until(pace.deadline(start, declared))),
        late: late.clone(),
    };
    let response = next.run(Request::from_parts(parts, Body::new(paced))).await;
    if !late.load(Ordering::Relaxed) {
        return response;
    }
    state
        .service
        .metrics()
        .shed
        .with_label_values(&["slow_body"])
        .inc();
    let error = ApiError::request_timeout(format!(
        "the request body arrived too slowly: after {} s it must arrive at {} bytes per second \
             or faster",
        pace.grace.as_secs(),
        pace.min_bytes_per_sec
    ));
    closing(error.into_response())
}

/// Middleware: refuses a body announced larger than the limit with 413 before reading any of
/// it (and closes the connection, whose unread body cannot be reused).
pub async fn refuse_oversized(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match declared_length(request.headers()) {
        Some(length) if length > state.body_limit as u64 => closing(
            ApiError::body_too_large(format!(
                "the request body ({length} bytes) is larger than the limit of {} bytes",
                state.body_limit
            ))
            .into_response(),
        ),
        _ => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_grows_with_the_size_after_the_grace() {
        let pace = BodyPace {
            grace: Duration::from_secs(5),
            min_bytes_per_sec: 64 * 1024,
        };
        let start = Instant::now();
        assert_eq!(pace.deadline(start, 0), start + Duration::from_secs(5));
        assert_eq!(
            pace.deadline(start, 20 * 64 * 1024),
            start + Duration::from_secs(25)
        );
    }
}
