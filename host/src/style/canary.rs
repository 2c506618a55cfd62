//! Canaries: a candidate version of a style served beside the current one to a share of
//! traffic, watched, and rolled back automatically when its error rate passes a bound.
//!
//! The filesystem holds the deploy state, so a restart keeps it: `DIR/.canary/<id>` is a
//! symlink to the candidate's release and `DIR/.canary/<id>.share` its share of traffic
//! (a fraction, e.g. `0.1`). `style::deploy` writes them; the registry loads the candidate like
//! any package and routes requests; a rollback removes the link and leaves the reason in
//! `DIR/.canary/<id>.rollback`.

use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use serde::Serialize;
use utoipa::ToSchema;

use super::package::LoadedStyle;
use crate::wasm::CallError;

/// The folder of `DIR` holding the canaries (hidden: never a package itself).
pub const CANARIES: &str = ".canary";
/// The request header that picks a side, for testing: `candidate` or `current`.
pub const HEADER: &str = "x-likeness-canary";

/// When a candidate is rolled back automatically.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CanaryPolicy {
    /// The error rate (style errors over settled requests) above which the candidate is rolled
    /// back.
    pub max_error_rate: f64,
    /// Requests the candidate must have settled before its error rate counts.
    pub min_requests: u64,
}

impl Default for CanaryPolicy {
    fn default() -> Self {
        CanaryPolicy {
            max_error_rate: 0.05,
            min_requests: 20,
        }
    }
}

/// Which version serves a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Arm {
    /// The version serving all other traffic.
    Current,
    /// The canary.
    Candidate,
}

/// How a request is assigned to a side: sticky by request id, or forced by the
/// `X-Likeness-Canary` header.
#[derive(Debug, Clone, Default)]
pub struct Routing {
    /// The request id (assignment is a hash of it, so a retried request lands alike).
    pub key: Option<String>,
    /// The side the client asked for.
    pub force: Option<Arm>,
}

impl Routing {
    /// The routing of an HTTP request: its `X-Request-Id` and `X-Likeness-Canary` headers.
    pub fn from_headers(headers: &HeaderMap) -> Routing {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        Routing {
            key: text("x-request-id").map(str::to_string),
            force: match text(HEADER).map(str::trim) {
                Some("candidate") => Some(Arm::Candidate),
                Some("current") => Some(Arm::Current),
                _ => None,
            },
        }
    }

    /// Whether this request goes to a candidate serving `share` of traffic.
    fn picks_candidate(&self, share: f64, fallback: u64) -> bool {
        if let Some(arm) = self.force {
            return arm == Arm::Candidate;
        }
        let mut hasher = DefaultHasher::new();
        match &self.key {
            Some(key) => key.hash(&mut hasher),
            None => fallback.hash(&mut hasher),
        }
        (hasher.finish() % 10_000) as f64 / 10_000.0 < share
    }
}

/// Settled requests of one side.
#[derive(Debug, Default)]
struct Tally {
    requests: AtomicU64,
    errors: AtomicU64,
    micros: AtomicU64,
}

/// A candidate serving beside the current version.
#[derive(Debug)]
pub struct Canary {
    /// The candidate version.
    pub style: Arc<LoadedStyle>,
    /// Its share of traffic, 0 to 1.
    pub share: f64,
    current: Tally,
    candidate: Tally,
    ended: AtomicBool,
    unkeyed: AtomicU64,
}

impl Canary {
    /// A fresh canary of `style` serving `share` of traffic.
    pub fn new(style: Arc<LoadedStyle>, share: f64) -> Canary {
        Canary {
            style,
            share,
            current: Tally::default(),
            candidate: Tally::default(),
            ended: AtomicBool::new(false),
            unkeyed: AtomicU64::new(0),
        }
    }

    /// The side request `routing` goes to.
    pub fn assign(&self, routing: &Routing) -> Arm {
        let fallback = self.unkeyed.fetch_add(1, Ordering::Relaxed);
        if routing.picks_candidate(self.share, fallback) {
            Arm::Candidate
        } else {
            Arm::Current
        }
    }

    fn tally(&self, arm: Arm) -> &Tally {
        match arm {
            Arm::Current => &self.current,
            Arm::Candidate => &self.candidate,
        }
    }

    /// Records a settled request of `arm`: `Ok(latency)` or a style error. Returns why the
    /// candidate must be rolled back, once, when this record takes it past the policy.
    pub fn record(
        &self,
        arm: Arm,
        outcome: Result<Duration, ()>,
        policy: &CanaryPolicy,
    ) -> Option<String> {
        let tally = self.tally(arm);
        tally.requests.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok(latency) => {
                tally
                    .micros
                    .fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
            }
            Err(()) => {
                tally.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        let (requests, errors) = (
            self.candidate.requests.load(Ordering::Relaxed),
            self.candidate.errors.load(Ordering::Relaxed),
        );
        let rate = errors as f64 / requests.max(1) as f64;
        let over = arm == Arm::Candidate
            && requests >= policy.min_requests
            && rate > policy.max_error_rate;
        (over && self.end()).then(|| {
            format!(
                "the candidate's error rate {:.0}% ({errors} of {requests} requests) passed the \
                 bound of {:.0}%",
                rate * 100.0,
                policy.max_error_rate * 100.0
            )
        })
    }

    /// Marks the canary ended; true for the first caller only.
    pub fn end(&self) -> bool {
        !self.ended.swap(true, Ordering::AcqRel)
    }

    /// What `GET /v1/styles/{id}` shows of the canary, beside the `current` version.
    pub fn report(&self, current: Option<&LoadedStyle>, state: CanaryState) -> CanaryReport {
        let side = |style: Option<&LoadedStyle>, tally: &Tally, share: f64| {
            let requests = tally.requests.load(Ordering::Relaxed);
            let errors = tally.errors.load(Ordering::Relaxed);
            let ok = requests - errors.min(requests);
            SideReport {
                version: style.map(|s| s.manifest.version.clone()),
                digest: style.map(|s| s.digest.clone()),
                share,
                requests,
                errors,
                mean_ms: (ok > 0)
                    .then(|| tally.micros.load(Ordering::Relaxed) as f64 / ok as f64 / 1e3),
            }
        };
        CanaryReport {
            state,
            reason: None,
            current: side(current, &self.current, 1.0 - self.share),
            candidate: side(Some(&self.style), &self.candidate, self.share),
            since_ms: None,
        }
    }
}

/// Where a canary stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CanaryState {
    /// Serving its share of traffic.
    Active,
    /// Rolled back (automatically or by hand); `reason` says why.
    RolledBack,
    /// Promoted: the candidate is the current version now.
    Promoted,
    /// The candidate's package did not validate; it never served.
    Rejected,
}

/// One side of a canary, as `GET /v1/styles/{id}` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SideReport {
    /// Its version.
    pub version: Option<String>,
    /// SHA-256 of its component.
    pub digest: Option<String>,
    /// Its share of traffic, 0 to 1.
    pub share: f64,
    /// Requests settled (succeeded, or failed by a style error) since the canary started.
    pub requests: u64,
    /// Of those, style errors (traps, timeouts, bad output, internal errors).
    pub errors: u64,
    /// Mean latency of its successful generations, in milliseconds.
    pub mean_ms: Option<f64>,
}

/// A style's canary: both versions with digests, shares and counts, and how it ended.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CanaryReport {
    /// Active, rolled back, promoted or rejected.
    pub state: CanaryState,
    /// Why it was rolled back or rejected.
    pub reason: Option<String>,
    /// The current version.
    pub current: SideReport,
    /// The candidate.
    pub candidate: SideReport,
    /// When it ended (ms since the Unix epoch).
    pub since_ms: Option<u64>,
}

/// Whether a failed style call counts against the version that made it: traps, timeouts,
/// memory and stack limits, bad output and internal errors do; a refusal of the client's
/// options or photo does not, nor does a full instance pool (the host's capacity).
pub fn is_style_fault(error: &CallError) -> bool {
    !matches!(
        error.code(),
        "invalid_options" | "unusable_input" | "style_unavailable"
    )
}

/// A request routed to one version of a style, recording how it settles.
pub struct Routed {
    /// The version that serves it.
    pub style: Arc<LoadedStyle>,
    canary: Option<(Arc<Canary>, Arm)>,
    started: Instant,
    registry: Arc<super::Registry>,
}

impl Routed {
    pub(crate) fn new(
        style: Arc<LoadedStyle>,
        canary: Option<(Arc<Canary>, Arm)>,
        registry: Arc<super::Registry>,
    ) -> Routed {
        Routed {
            style,
            canary,
            started: Instant::now(),
            registry,
        }
    }

    /// The side serving it, when the style has a canary.
    pub fn arm(&self) -> Option<Arm> {
        self.canary.as_ref().map(|(_, arm)| *arm)
    }

    /// Passes a style call's result through, counting a style fault against this side.
    pub fn settle<T>(&self, result: Result<T, CallError>) -> Result<T, CallError> {
        if let Err(error) = &result
            && is_style_fault(error)
        {
            self.fault();
        }
        result
    }

    /// Counts a style fault (a failed call, or a result the host cannot use) against this
    /// side.
    pub fn fault(&self) {
        if let Some((canary, arm)) = &self.canary {
            self.registry.record_canary(canary, *arm, Err(()));
        }
    }

    /// Counts the request as a success of this side.
    pub fn succeeded(&self) {
        if let Some((canary, arm)) = &self.canary {
            self.registry
                .record_canary(canary, *arm, Ok(self.started.elapsed()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_is_sticky_by_request_id_and_near_the_share() {
        let routing = |key: String| Routing {
            key: Some(key),
            force: None,
        };
        let picked = (0..10_000)
            .filter(|i| routing(format!("req-{i}")).picks_candidate(0.2, 0))
            .count();
        assert!((1_700..2_300).contains(&picked), "{picked} of 10000");
        for i in 0..100 {
            let key = format!("req-{i}");
            assert_eq!(
                routing(key.clone()).picks_candidate(0.2, 0),
                routing(key).picks_candidate(0.2, 7)
            );
        }
        let forced = Routing {
            key: None,
            force: Some(Arm::Candidate),
        };
        assert!(forced.picks_candidate(0.0, 0));
    }
}
