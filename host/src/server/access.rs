//! Who may call the API and how often: optional API keys (`Authorization: Bearer KEY`) with a
//! token-bucket rate limit per key, CORS, and refusing new work while the service drains.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use super::AppState;
use super::error::ApiError;
use crate::config::AccessConfig;

/// The API keys and their rate-limit buckets.
pub struct Access {
    /// Buckets by the SHA-256 of each key (keys are compared by digest, never stored as sent).
    buckets: HashMap<[u8; 32], Mutex<Bucket>>,
    rate_per_second: f64,
    burst: f64,
}

/// A token bucket: `burst` tokens, refilled at `rate_per_second`.
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Access {
    /// The keys and limits of `config`.
    pub fn new(config: &AccessConfig) -> Access {
        let burst = f64::from(config.burst.max(1));
        let buckets = config
            .api_keys
            .iter()
            .map(|key| {
                let bucket = Bucket {
                    tokens: burst,
                    last: Instant::now(),
                };
                (digest(key), Mutex::new(bucket))
            })
            .collect();
        Access {
            buckets,
            rate_per_second: config.rate_per_second,
            burst,
        }
    }

    /// Whether the API is open (no keys configured).
    pub fn is_open(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Checks the request's key and takes a token from its bucket.
    fn admit(&self, authorization: Option<&str>) -> Result<(), ApiError> {
        let key = authorization
            .and_then(|value| {
                let (scheme, key) = value.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
            })
            .ok_or_else(|| unauthorized("send an API key as `Authorization: Bearer KEY`"))?;
        let bucket = self
            .buckets
            .get(&digest(key))
            .ok_or_else(|| unauthorized("the API key is not valid"))?;
        let mut bucket = bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(bucket.last).as_secs_f64() * self.rate_per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.rate_per_second;
            Err(ApiError::rate_limited(
                format!(
                    "this API key is limited to {} requests per second (bursts of {}); retry later",
                    self.rate_per_second, self.burst
                ),
                Duration::from_secs_f64(wait.ceil().max(1.0)),
            ))
        }
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::unauthorized(message)
}

/// Middleware of the `/v1` routes: requires a valid API key when keys are configured, and
/// applies the key's rate limit.
pub async fn require_key(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() == Method::OPTIONS || state.access.is_open() {
        return next.run(request).await;
    }
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match state.access.admit(authorization) {
        Ok(()) => next.run(request).await,
        Err(error) => {
            if error.status() == StatusCode::TOO_MANY_REQUESTS {
                state
                    .service
                    .metrics()
                    .shed
                    .with_label_values(&["rate_limited"])
                    .inc();
            }
            let mut response = error.into_response();
            if response.status() == StatusCode::UNAUTHORIZED {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            response
        }
    }
}

/// Middleware: while the service drains for shutdown, new work (POST) is refused with 503;
/// reads and cancels still work so that clients can collect their in-flight jobs.
pub async fn refuse_when_draining(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if state.service.is_draining() && request.method() == Method::POST {
        state
            .service
            .metrics()
            .shed
            .with_label_values(&["shutting_down"])
            .inc();
        return ApiError::shutting_down().into_response();
    }
    next.run(request).await
}

/// The CORS layer for `origins` (`*`: any origin); `None` when no origin is allowed.
pub fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::from(Any)
    } else {
        let list: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        AllowOrigin::list(list)
    };
    let name = HeaderName::from_static;
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::ACCEPT,
                name("prefer"),
                name("last-event-id"),
            ])
            .expose_headers([
                name("x-request-id"),
                name("x-likeness-id"),
                name("x-likeness-style"),
                name("x-likeness-style-version"),
                name("x-likeness-style-digest"),
                name("x-likeness-method"),
                name("x-likeness-planned"),
                name("x-likeness-reason"),
                name("x-likeness-identity"),
                name("x-likeness-timings"),
                header::RETRY_AFTER,
                header::LOCATION,
            ])
            .max_age(Duration::from_secs(600)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_and_each_has_its_own_bucket() {
        let access = Access::new(&AccessConfig {
            api_keys: vec!["alpha".into(), "beta".into()],
            rate_per_second: 0.001,
            burst: 2,
            cors_origins: Vec::new(),
        });
        assert!(!access.is_open());
        assert_eq!(access.admit(None).unwrap_err().code(), "unauthorized");
        assert_eq!(
            access.admit(Some("Bearer gamma")).unwrap_err().code(),
            "unauthorized"
        );
        assert_eq!(
            access.admit(Some("Basic alpha")).unwrap_err().code(),
            "unauthorized"
        );
        access.admit(Some("Bearer alpha")).unwrap();
        access.admit(Some("bearer  alpha ")).unwrap();
        let limited = access.admit(Some("Bearer alpha")).unwrap_err();
        assert_eq!(limited.code(), "rate_limited");
        access.admit(Some("Bearer beta")).unwrap();
    }
}
