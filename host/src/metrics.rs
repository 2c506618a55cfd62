//! Prometheus metrics of the service (`GET /metrics`).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Error codes that mean the sandbox stopped a style (as opposed to the style refusing).
const SANDBOX_CODES: [&str; 5] = [
    "style_trap",
    "style_timeout",
    "style_memory_limit",
    "style_stack_overflow",
    "style_bad_output",
];

/// Every metric the service exports.
pub struct Metrics {
    registry: Registry,
    /// HTTP requests by route template, HTTP method and status.
    pub http_requests: IntCounterVec,
    /// HTTP request latency by route template.
    pub http_seconds: HistogramVec,
    /// Generations by style, identity method (`-` when it failed before planning) and status.
    pub generations: IntCounterVec,
    /// Time per generation stage (queued, analysing, planning, post-processing, encoding).
    pub stage_seconds: HistogramVec,
    /// Generations waiting for a slot.
    pub queue_depth: IntGauge,
    /// Generations running.
    pub running: IntGauge,
    /// Request bodies (uploads) being read.
    pub uploads_in_progress: IntGauge,
    /// Asynchronous jobs kept (queued, running or finished within their TTL).
    pub jobs_stored: IntGauge,
    /// Requests turned away, by reason (`queue_full`, `uploads_full`, `client_uploads_full`,
    /// `style_queue_full`, `circuit_open`, `rate_limited`, `shutting_down`, `slow_body`).
    pub shed: IntCounterVec,
    /// Style calls the sandbox stopped, by style and code (trap, timeout, memory, stack,
    /// bad output).
    pub plugin_traps: IntCounterVec,
    /// Style package (re)loads by result (`loaded`, `rejected`), since start.
    pub style_reloads: IntGaugeVec,
    /// Synchronous generations abandoned because the client went away.
    pub client_disconnects: IntCounter,
    /// Generations of each style waiting or running.
    pub style_in_flight: IntGaugeVec,
    /// Whether each style's circuit breaker keeps work away (1) or not (0).
    pub circuit_open: IntGaugeVec,
    /// Times each style's circuit breaker opened.
    pub circuit_opened: IntCounterVec,
    /// Canaries rolled back since start (automatically or by hand).
    pub canary_rollbacks: IntGauge,
    /// The identity score of answered images, by style and the method that ran.
    pub identity_score: HistogramVec,
    /// Style vectors of style pictures computed since start (cache misses).
    pub style_vectors_computed: IntGauge,
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "likeness_http_requests_total",
                "HTTP requests by route, method and status.",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let http_seconds = HistogramVec::new(
            HistogramOpts::new(
                "likeness_http_request_seconds",
                "HTTP request latency by route.",
            )
            .buckets(prometheus::exponential_buckets(0.001, 2.5, 14).expect("valid buckets")),
            &["route"],
        )
        .expect("valid metric");
        let generations = IntCounterVec::new(
            Opts::new(
                "likeness_generations_total",
                "Generations by style, identity method and HTTP status.",
            ),
            &["style", "method", "status"],
        )
        .expect("valid metric");
        let stage_seconds = HistogramVec::new(
            HistogramOpts::new("likeness_stage_seconds", "Time spent per generation stage.")
                .buckets(prometheus::exponential_buckets(0.0005, 2.5, 16).expect("valid buckets")),
            &["stage"],
        )
        .expect("valid metric");
        let queue_depth = IntGauge::new("likeness_queue_depth", "Generations waiting for a slot.")
            .expect("valid");
        let running =
            IntGauge::new("likeness_generations_running", "Generations running.").expect("valid");
        let uploads_in_progress = IntGauge::new(
            "likeness_uploads_in_progress",
            "Request bodies (uploads) being read.",
        )
        .expect("valid");
        let jobs_stored =
            IntGauge::new("likeness_jobs_stored", "Asynchronous jobs kept.").expect("valid");
        let shed = IntCounterVec::new(
            Opts::new("likeness_shed_total", "Requests turned away, by reason."),
            &["reason"],
        )
        .expect("valid metric");
        let plugin_traps = IntCounterVec::new(
            Opts::new(
                "likeness_plugin_traps_total",
                "Style calls stopped by the sandbox, by style and code.",
            ),
            &["style", "code"],
        )
        .expect("valid metric");
        let style_reloads = IntGaugeVec::new(
            Opts::new(
                "likeness_style_reloads",
                "Style package (re)loads since start, by result.",
            ),
            &["result"],
        )
        .expect("valid metric");
        let client_disconnects = IntCounter::new(
            "likeness_client_disconnects_total",
            "Synchronous generations abandoned because the client went away.",
        )
        .expect("valid metric");
        let style_in_flight = IntGaugeVec::new(
            Opts::new(
                "likeness_style_in_flight",
                "Generations of each style waiting or running.",
            ),
            &["style"],
        )
        .expect("valid metric");
        let circuit_open = IntGaugeVec::new(
            Opts::new(
                "likeness_circuit_open",
                "Whether each style's circuit breaker keeps work away (1) or not (0).",
            ),
            &["style"],
        )
        .expect("valid metric");
        let circuit_opened = IntCounterVec::new(
            Opts::new(
                "likeness_circuit_opened_total",
                "Times each style's circuit breaker opened.",
            ),
            &["style"],
        )
        .expect("valid metric");
        let canary_rollbacks = IntGauge::new(
            "likeness_canary_rollbacks",
            "Canaries rolled back since start (automatically or by hand).",
        )
        .expect("valid metric");
        let identity_score = HistogramVec::new(
            HistogramOpts::new(
                "likeness_identity_score",
                "Identity score (cosine of the reference face and the output's face) of answered \
                 images, by style and method.",
            )
            .buckets((1..=20).map(|i| f64::from(i) * 0.05).collect()),
            &["style", "method"],
        )
        .expect("valid metric");
        let style_vectors_computed = IntGauge::new(
            "likeness_style_vectors_computed",
            "Style vectors of style pictures computed since start (once per picture; cached).",
        )
        .expect("valid metric");
        for collector in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_seconds.clone()),
            Box::new(generations.clone()),
            Box::new(stage_seconds.clone()),
            Box::new(queue_depth.clone()),
            Box::new(running.clone()),
            Box::new(uploads_in_progress.clone()),
            Box::new(jobs_stored.clone()),
            Box::new(shed.clone()),
            Box::new(plugin_traps.clone()),
            Box::new(style_reloads.clone()),
            Box::new(client_disconnects.clone()),
            Box::new(style_in_flight.clone()),
            Box::new(circuit_open.clone()),
            Box::new(circuit_opened.clone()),
            Box::new(canary_rollbacks.clone()),
            Box::new(identity_score.clone()),
            Box::new(style_vectors_computed.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        Metrics {
            registry,
            http_requests,
            http_seconds,
            generations,
            stage_seconds,
            queue_depth,
            running,
            uploads_in_progress,
            jobs_stored,
            shed,
            plugin_traps,
            style_reloads,
            client_disconnects,
            style_in_flight,
            circuit_open,
            circuit_opened,
            canary_rollbacks,
            identity_score,
            style_vectors_computed,
        }
    }

    /// Counts a failed style call if the sandbox stopped it.
    pub fn record_style_failure(&self, style: Option<&str>, code: &str) {
        if SANDBOX_CODES.contains(&code) {
            self.plugin_traps
                .with_label_values(&[style.unwrap_or("-"), code])
                .inc();
        }
    }

    /// The metrics in Prometheus's text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
