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
    /// Jobs in the Redis queue (waiting or running), as last seen (API nodes).
    pub queue_length: IntGauge,
    /// Jobs delivered to a worker and not yet acknowledged, as last seen (API nodes).
    pub queue_pending: IntGauge,
    /// Jobs in each worker class's stream, as last seen (API nodes; label `class`).
    pub queue_class_length: IntGaugeVec,
    /// Live workers of each class, as last seen (API nodes; label `class`).
    pub queue_class_workers: IntGaugeVec,
    /// Whether this process's last Redis operation succeeded (1) or not (0).
    pub queue_connected: IntGauge,
    /// Jobs this worker took over from a worker that died or hung (XAUTOCLAIM).
    pub queue_reclaims: IntCounter,
    /// Jobs this worker failed as `poison_job` (delivered too often).
    pub queue_poisoned: IntCounter,
    /// Deliveries per job, at each delivery to this worker (1: first try).
    pub queue_deliveries: prometheus::Histogram,
    /// Seconds from enqueue to a worker taking the job.
    pub queue_wait_seconds: prometheus::Histogram,
    /// Jobs this worker is running now.
    pub worker_busy: IntGauge,
    /// Seconds this worker spent running jobs (busy ratio: its rate over `slots`).
    pub worker_busy_seconds: prometheus::Counter,
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
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric");
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric");
        let queue_length = gauge(
            "likeness_queue_length",
            "Jobs in the Redis queue (waiting or running), as last seen.",
        );
        let queue_pending = gauge(
            "likeness_queue_pending",
            "Jobs delivered to a worker and not yet acknowledged, as last seen.",
        );
        let class_gauge = |name: &str, help: &str| {
            IntGaugeVec::new(Opts::new(name, help), &["class"]).expect("valid metric")
        };
        let queue_class_length = class_gauge(
            "likeness_queue_class_length",
            "Jobs in the stream of a worker class (waiting or running), as last seen.",
        );
        let queue_class_workers = class_gauge(
            "likeness_queue_class_workers",
            "Live workers of a class (advertised, not lapsed), as last seen.",
        );
        let queue_connected = gauge(
            "likeness_queue_connected",
            "Whether the last Redis operation succeeded (1) or not (0).",
        );
        let queue_reclaims = counter(
            "likeness_queue_reclaims_total",
            "Jobs this worker took over from a worker that died or hung.",
        );
        let queue_poisoned = counter(
            "likeness_queue_poisoned_total",
            "Jobs this worker failed as poison_job (delivered too often).",
        );
        let queue_deliveries = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "likeness_queue_deliveries",
                "Deliveries per job, at each delivery to this worker (1: first try).",
            )
            .buckets(vec![1.0, 2.0, 3.0, 4.0, 5.0, 8.0]),
        )
        .expect("valid metric");
        let queue_wait_seconds = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "likeness_queue_wait_seconds",
                "Seconds from enqueue to a worker taking the job.",
            )
            .buckets(prometheus::exponential_buckets(0.0005, 2.5, 16).expect("valid buckets")),
        )
        .expect("valid metric");
        let worker_busy = gauge("likeness_worker_busy", "Jobs this worker is running now.");
        let worker_busy_seconds = prometheus::Counter::new(
            "likeness_worker_busy_seconds_total",
            "Seconds this worker spent running jobs (busy ratio: its rate over the slots).",
        )
        .expect("valid metric");
        for collector in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(queue_length.clone()),
            Box::new(queue_pending.clone()),
            Box::new(queue_class_length.clone()),
            Box::new(queue_class_workers.clone()),
            Box::new(queue_connected.clone()),
            Box::new(queue_reclaims.clone()),
            Box::new(queue_poisoned.clone()),
            Box::new(queue_deliveries.clone()),
            Box::new(queue_wait_seconds.clone()),
            Box::new(worker_busy.clone()),
            Box::new(worker_busy_seconds.clone()),
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
            queue_length,
            queue_pending,
            queue_class_length,
            queue_class_workers,
            queue_connected,
            queue_reclaims,
            queue_poisoned,
            queue_deliveries,
            queue_wait_seconds,
            worker_busy,
            worker_busy_seconds,
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
