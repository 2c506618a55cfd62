//! Settings of `likeness serve`: built-in defaults, overridden by a TOML file (`--config FILE`),
//! overridden by environment variables (`LIKENESS_*`), overridden by command-line flags.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use serde::Deserialize;

use crate::wasm::{CallLimits, RuntimeConfig};

/// Everything `likeness serve` needs to know.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Address to listen on.
    pub addr: SocketAddr,
    /// The folder of style packages to serve and watch.
    pub styles: PathBuf,
    /// The folder of model packs (`likeness models fetch` fills it).
    pub models: PathBuf,
    /// Where compiled components are cached (writable by this host alone).
    pub cache_dir: PathBuf,
    /// A diffusion model pack (docs/model-packs.md); without one every style runs method
    /// `none`.
    pub diffusion_pack: Option<PathBuf>,
    /// Upload limits.
    pub limits: LimitsConfig,
    /// Queue and concurrency limits.
    pub admission: AdmissionConfig,
    /// Asynchronous jobs.
    pub jobs: JobsConfig,
    /// API keys, rate limits and CORS.
    pub access: AccessConfig,
    /// Graceful shutdown.
    pub shutdown: ShutdownConfig,
    /// How slow a client may be.
    pub http: HttpConfig,
    /// How log lines are written (to stderr).
    pub log_format: LogFormat,
    /// Hot reload and deploys.
    pub deploy: DeployConfig,
    /// What each style call may spend, and what a component may declare.
    pub sandbox: SandboxConfig,
    /// The identity gate's retries.
    pub identity: IdentityConfig,
    /// Which parts of the service this process runs.
    pub role: Role,
    /// The job queue: embedded, or Redis Streams shared by API nodes and workers.
    pub queue: QueueConfig,
}

/// Which parts of the service a process runs (`--role`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The HTTP API and the generations (the default; with the embedded queue, one process is
    /// the whole service).
    #[default]
    All,
    /// The HTTP API only: uploads are validated and enqueued on the Redis queue.
    Api,
    /// A worker only: runs the jobs of the Redis queue (HTTP serves health, readiness and
    /// metrics).
    Worker,
}

impl Role {
    /// Whether this process accepts generations over HTTP.
    pub fn serves_api(self) -> bool {
        self != Role::Worker
    }

    /// Whether this process runs the queue's jobs.
    pub fn runs_jobs(self) -> bool {
        self != Role::Api
    }
}

/// The job queue (`[queue]`): embedded in the process (no `url`) or Redis Streams.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// `redis://HOST:PORT/DB`: jobs go through Redis Streams; none: the embedded queue.
    pub url: Option<String>,
    /// Deliveries after which a job that keeps killing its workers fails (`poison_job`).
    pub max_deliveries: u32,
    /// Milliseconds a delivered job may go without its worker's heartbeat before another
    /// worker reclaims it.
    pub claim_idle_ms: u64,
    /// Jobs that may wait or run in the Redis queue before API nodes answer 429.
    pub max_length: usize,
    /// Jobs of one API key that may wait or run at once (per-key fairness); none: a quarter
    /// of `max_length`.
    pub max_per_key: Option<usize>,
    /// A benchmark aid: workers sleep this many milliseconds in place of the pipeline and
    /// answer a one-pixel image.
    pub simulate_work_ms: Option<u64>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            url: None,
            max_deliveries: 3,
            claim_idle_ms: 15_000,
            max_length: 1024,
            max_per_key: None,
            simulate_work_ms: None,
        }
    }
}

impl QueueConfig {
    /// Jobs one API key may have waiting or running.
    pub fn per_key(&self) -> usize {
        self.max_per_key.unwrap_or((self.max_length / 4).max(1))
    }

    fn validate(&self, role: Role) -> anyhow::Result<()> {
        match &self.url {
            Some(url) => ensure!(
                url.starts_with("redis://"),
                "queue.url must be a redis://HOST:PORT/DB URL, not '{url}'"
            ),
            None => ensure!(
                role == Role::All,
                "--role {} needs a shared queue: set --queue redis://HOST:PORT/DB",
                if role == Role::Api { "api" } else { "worker" }
            ),
        }
        ensure!(
            self.max_deliveries > 0,
            "queue.max_deliveries must be positive"
        );
        ensure!(
            self.claim_idle_ms >= 100,
            "queue.claim_idle_ms must be at least 100"
        );
        ensure!(self.max_length > 0, "queue.max_length must be positive");
        Ok(())
    }
}

/// The value of `--queue`: a `redis://` URL (the Redis queue), or, as before, a number (the
/// admission queue's length, `admission.queue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueArg {
    /// The admission queue's length.
    Length(usize),
    /// The Redis queue's URL.
    Url(String),
}

impl std::str::FromStr for QueueArg {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let value = value.trim();
        if value.starts_with("redis://") {
            return Ok(QueueArg::Url(value.to_string()));
        }
        value.parse().map(QueueArg::Length).map_err(|_| {
            format!("'{value}' is neither a redis://HOST:PORT/DB URL nor a queue length")
        })
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Plain text, coloured only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            styles: PathBuf::from("styles"),
            models: PathBuf::from("models"),
            cache_dir: PathBuf::from(".cache/components"),
            diffusion_pack: None,
            limits: LimitsConfig::default(),
            admission: AdmissionConfig::default(),
            jobs: JobsConfig::default(),
            access: AccessConfig::default(),
            shutdown: ShutdownConfig::default(),
            http: HttpConfig::default(),
            log_format: LogFormat::default(),
            deploy: DeployConfig::default(),
            sandbox: SandboxConfig::default(),
            identity: IdentityConfig::default(),
            role: Role::default(),
            queue: QueueConfig::default(),
        }
    }
}

/// Upload limits (`[limits]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest photo accepted, in bytes (default 20 MiB). Request bodies may be a little larger
    /// (multipart framing, base64 in JSON).
    pub max_upload_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_upload_bytes: likeness_vision::Limits::default().max_upload_bytes,
        }
    }
}

/// Queue and concurrency limits (`[admission]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdmissionConfig {
    /// Generations (and, separately, analyses) that may wait for a slot; beyond that requests
    /// are shed with 429.
    pub queue: usize,
    /// Generations that may run at once.
    pub generation_slots: usize,
    /// CPU stages (decode and analyse, post-process, encode) that may run at once.
    pub cpu_slots: usize,
    /// Request bodies (uploads) that may be read at once; beyond that requests are shed with
    /// 429 before their bodies are read. A generation takes its queue place only once its
    /// upload has been read, so slow uploads cannot fill the queue.
    pub uploads: usize,
    /// Uploads one client address may have in progress at once.
    pub uploads_per_client: usize,
    /// Generations of one style that may wait for a slot (default: three quarters of `queue`,
    /// so that one style always leaves room for the others).
    pub style_queue: Option<usize>,
    /// Generations of one style that may run at once (default: every generation slot but one,
    /// at least one).
    pub style_slots: Option<usize>,
    /// Per-style overrides of `style_queue` and `style_slots` (`[admission.styles.<id>]`).
    pub styles: BTreeMap<String, StyleAdmissionConfig>,
    /// The circuit breaker that stops sending work to a style that keeps failing.
    pub breaker: BreakerConfig,
}

impl AdmissionConfig {
    /// The bounds of style `id`: (generations waiting, generations running).
    pub fn style_bounds(&self, id: &str) -> (usize, usize) {
        let own = self.styles.get(id);
        let queue = own
            .and_then(|s| s.queue)
            .or(self.style_queue)
            .unwrap_or(self.queue - self.queue / 4);
        let slots = own
            .and_then(|s| s.slots)
            .or(self.style_slots)
            .unwrap_or(self.generation_slots.saturating_sub(1))
            .max(1);
        (queue, slots)
    }
}

/// One style's admission bounds (`[admission.styles.<id>]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StyleAdmissionConfig {
    /// Generations of this style that may wait for a slot.
    pub queue: Option<usize>,
    /// Generations of this style that may run at once.
    pub slots: Option<usize>,
}

/// The per-style circuit breaker (`[admission.breaker]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive sandbox failures (timeouts, traps, memory or stack limits, bad output) of
    /// a style after which it gets no work for `open_secs`.
    pub failures: u32,
    /// Seconds a style gets no work once its breaker opened; then one trial generation decides
    /// whether it serves again.
    pub open_secs: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            open_secs: 30,
        }
    }
}

impl BreakerConfig {
    /// How long a style gets no work once its breaker opened.
    pub fn open_for(&self) -> Duration {
        Duration::from_secs(self.open_secs)
    }
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        AdmissionConfig {
            queue: 32,
            generation_slots: cores.clamp(1, 8),
            cpu_slots: cores,
            uploads: 32,
            uploads_per_client: 8,
            style_queue: None,
            style_slots: None,
            styles: BTreeMap::new(),
            breaker: BreakerConfig::default(),
        }
    }
}

/// Asynchronous jobs (`[jobs]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsConfig {
    /// Seconds a finished job (its result, or its error) is kept before it is deleted.
    pub ttl_secs: u64,
    /// Most jobs kept at once (raised to at least `admission.queue +
    /// admission.generation_slots`); when full, the oldest finished ones are deleted first.
    pub max_stored: usize,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            ttl_secs: 600,
            max_stored: 256,
        }
    }
}

impl JobsConfig {
    /// How long a finished job is kept.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_secs)
    }
}

/// API keys, rate limits and CORS (`[access]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    /// Keys accepted in `Authorization: Bearer KEY`; empty: the API is open.
    pub api_keys: Vec<String>,
    /// Requests per second each key may make on average.
    pub rate_per_second: f64,
    /// Requests a key may make in a burst.
    pub burst: u32,
    /// Origins allowed to call the API from a browser (`*` for any); empty: no CORS headers.
    pub cors_origins: Vec<String>,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            api_keys: Vec::new(),
            rate_per_second: 10.0,
            burst: 20,
            cors_origins: Vec::new(),
        }
    }
}

/// Graceful shutdown (`[shutdown]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// Seconds in-flight work may take to finish after SIGTERM or Ctrl-C; what is left then is
    /// canceled.
    pub drain_secs: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig { drain_secs: 30 }
    }
}

/// The identity gate (`[identity]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// Seconds a generation may spend on the gate's retries and fallbacks: another image is
    /// made only while one more (as long as the slowest so far) fits.
    pub retry_budget_secs: u64,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            retry_budget_secs: 120,
        }
    }
}

impl IdentityConfig {
    /// The retry budget.
    pub fn retry_budget(&self) -> Duration {
        Duration::from_secs(self.retry_budget_secs)
    }
}

/// What each style call may spend, and what a component may declare (`[sandbox]`). A package's
/// `style.toml` may raise its own call limits up to the host's ceilings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// CPU budget of `describe` and `plan`, in milliseconds.
    pub plan_ms: u64,
    /// CPU budget of `post-process`, in milliseconds.
    pub post_process_ms: u64,
    /// Linear memory of one instance, in MiB.
    pub memory_mib: u64,
    /// Each call's wall-clock ceiling as a multiple of its CPU budget (the backstop for a style
    /// that sleeps, blocks or is starved of CPU).
    pub wall_ceiling_factor: u32,
    /// Functions one core module of a component may define (checked before compiling).
    pub max_functions_per_module: u32,
    /// Largest component file, in MiB.
    pub max_component_mib: u64,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        let runtime = RuntimeConfig::default();
        SandboxConfig {
            plan_ms: runtime.defaults.plan.as_millis() as u64,
            post_process_ms: runtime.defaults.post_process.as_millis() as u64,
            memory_mib: (runtime.defaults.memory >> 20) as u64,
            wall_ceiling_factor: runtime.wall_ceiling_factor,
            max_functions_per_module: runtime.components.functions_per_module,
            max_component_mib: (runtime.components.bytes >> 20) as u64,
        }
    }
}

impl SandboxConfig {
    /// The plugin runtime's settings, caching compiled components in `cache_dir`.
    pub fn runtime(&self, cache_dir: &Path) -> RuntimeConfig {
        let mut runtime = RuntimeConfig {
            cache_dir: Some(cache_dir.to_path_buf()),
            wall_ceiling_factor: self.wall_ceiling_factor,
            ..RuntimeConfig::default()
        };
        runtime.defaults = CallLimits {
            plan: Duration::from_millis(self.plan_ms),
            post_process: Duration::from_millis(self.post_process_ms),
            memory: (self.memory_mib as usize) << 20,
        };
        runtime.components.functions_per_module = self.max_functions_per_module;
        runtime.components.bytes = (self.max_component_mib as usize) << 20;
        runtime
    }

    fn validate(&self, ceilings: &CallLimits) -> anyhow::Result<()> {
        ensure!(
            self.plan_ms > 0 && self.post_process_ms > 0 && self.memory_mib > 0,
            "sandbox.plan_ms, post_process_ms and memory_mib must be positive"
        );
        ensure!(
            Duration::from_millis(self.plan_ms) <= ceilings.plan
                && Duration::from_millis(self.post_process_ms) <= ceilings.post_process
                && (self.memory_mib as usize) << 20 <= ceilings.memory,
            "sandbox limits may not exceed the host's ceilings ({} ms plan, {} ms post-process, {} MiB)",
            ceilings.plan.as_millis(),
            ceilings.post_process.as_millis(),
            ceilings.memory >> 20
        );
        ensure!(
            self.wall_ceiling_factor >= 1,
            "sandbox.wall_ceiling_factor must be at least 1"
        );
        Ok(())
    }
}

/// How slow a client may be (`[http]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Seconds a client may take to send a request's headers; a connection that sends nothing
    /// for this long between requests is closed too.
    pub header_read_timeout_secs: u64,
    /// Seconds a request body may take before the minimum rate applies.
    pub body_grace_secs: u64,
    /// The slowest a request body may arrive, in bytes per second after the grace: a body of
    /// N bytes must have arrived `body_grace_secs + N / body_min_bytes_per_sec` seconds after
    /// its request's headers, else the request is answered 408 and its connection closed.
    pub body_min_bytes_per_sec: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_read_timeout_secs: 10,
            body_grace_secs: 5,
            body_min_bytes_per_sec: 64 * 1024,
        }
    }
}

impl HttpConfig {
    /// How long a client may take to send a request's headers.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_secs)
    }

    /// How long a request body may take before the minimum rate applies.
    pub fn body_grace(&self) -> Duration {
        Duration::from_secs(self.body_grace_secs)
    }
}

/// Hot reload and deploys (`[deploy]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeployConfig {
    /// Milliseconds a package folder must stay missing before its style is retired (a deploy
    /// by two renames leaves it missing for a moment).
    pub retire_grace_ms: u64,
    /// Seconds one package's `describe` and dry runs may take before it is rejected; packages
    /// load in parallel, off the start-up path, and compile one at a time (not timed).
    pub load_timeout_secs: u64,
    /// A canary's error rate (style errors over settled requests, 0 to 1) above which it is
    /// rolled back automatically.
    pub canary_max_error_rate: f64,
    /// Requests a canary must have settled before its error rate counts.
    pub canary_min_requests: u64,
    /// The key of the admin routes (`/admin/styles/{id}/deploy|promote|rollback`, as
    /// `Authorization: Bearer KEY`); none: the admin routes are off. Never one of the API keys.
    pub admin_key: Option<String>,
}

impl Default for DeployConfig {
    fn default() -> Self {
        let registry = crate::style::RegistrySettings::default();
        DeployConfig {
            retire_grace_ms: registry.retire_grace.as_millis() as u64,
            load_timeout_secs: registry.load_timeout.as_secs(),
            canary_max_error_rate: registry.canary.max_error_rate,
            canary_min_requests: registry.canary.min_requests,
            admin_key: None,
        }
    }
}

impl DeployConfig {
    /// The registry's settings.
    pub fn registry(&self) -> crate::style::RegistrySettings {
        crate::style::RegistrySettings {
            retire_grace: Duration::from_millis(self.retire_grace_ms),
            load_timeout: Duration::from_secs(self.load_timeout_secs),
            canary: crate::style::canary::CanaryPolicy {
                max_error_rate: self.canary_max_error_rate,
                min_requests: self.canary_min_requests,
            },
        }
    }

    fn validate(&self, access: &AccessConfig) -> anyhow::Result<()> {
        ensure!(
            self.load_timeout_secs > 0,
            "deploy.load_timeout_secs must be positive"
        );
        ensure!(
            (0.0..1.0).contains(&self.canary_max_error_rate),
            "deploy.canary_max_error_rate must be at least 0 and below 1"
        );
        if let Some(key) = &self.admin_key {
            ensure!(
                !key.contains(char::is_whitespace),
                "the admin key must not contain whitespace"
            );
            ensure!(
                !access.api_keys.contains(key),
                "the admin key must not be one of the API keys"
            );
        }
        Ok(())
    }
}

/// The flags (and environment variables) of `likeness serve`; each overrides the config file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// A TOML config file (see the README); flags and LIKENESS_* variables override it.
    #[arg(long, env = "LIKENESS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "LIKENESS_ADDR")]
    pub addr: Option<SocketAddr>,
    /// The folder of style packages to serve and watch [default: styles].
    #[arg(long, env = "LIKENESS_STYLES")]
    pub styles: Option<PathBuf>,
    /// The folder of model packs [default: models].
    #[arg(long, env = "LIKENESS_MODELS")]
    pub models: Option<PathBuf>,
    /// Where compiled components are cached [default: .cache/components].
    #[arg(long, env = "LIKENESS_CACHE")]
    pub cache_dir: Option<PathBuf>,
    /// A diffusion model pack folder (holding pack.toml) [default: none: non-neural looks only].
    #[arg(long, env = "LIKENESS_DIFFUSION_PACK")]
    pub diffusion_pack: Option<PathBuf>,
    /// Largest photo accepted, in bytes [default: 20971520].
    #[arg(long, env = "LIKENESS_MAX_UPLOAD_BYTES")]
    pub max_upload_bytes: Option<usize>,
    /// The job queue: redis://HOST:PORT/DB for Redis Streams [default: embedded]; a number
    /// sets the generations that may wait for a slot before requests are shed instead
    /// [default: 32].
    #[arg(long, env = "LIKENESS_QUEUE")]
    pub queue: Option<QueueArg>,
    /// Which parts this process runs: all, api or worker [default: all].
    #[arg(long, env = "LIKENESS_ROLE", value_enum)]
    pub role: Option<Role>,
    /// Deliveries after which a job that keeps killing workers fails [default: 3].
    #[arg(long, env = "LIKENESS_MAX_DELIVERIES")]
    pub max_deliveries: Option<u32>,
    /// Milliseconds without a heartbeat after which a job is reclaimed [default: 15000].
    #[arg(long, env = "LIKENESS_CLAIM_IDLE_MS")]
    pub claim_idle_ms: Option<u64>,
    /// Jobs that may wait or run in the Redis queue before 429 [default: 1024].
    #[arg(long, env = "LIKENESS_QUEUE_MAX_LENGTH")]
    pub queue_max_length: Option<usize>,
    /// Jobs one API key may have in the Redis queue [default: a quarter of the maximum].
    #[arg(long, env = "LIKENESS_QUEUE_MAX_PER_KEY")]
    pub queue_max_per_key: Option<usize>,
    /// Benchmark aid: a worker sleeps MS in place of the pipeline.
    #[arg(long, env = "LIKENESS_SIMULATE_WORK", value_name = "MS")]
    pub simulate_work: Option<u64>,
    /// Generations that may run at once [default: cores, at most 8].
    #[arg(long, env = "LIKENESS_GENERATION_SLOTS")]
    pub generation_slots: Option<usize>,
    /// CPU stages that may run at once [default: cores].
    #[arg(long, env = "LIKENESS_CPU_SLOTS")]
    pub cpu_slots: Option<usize>,
    /// Request bodies that may be read at once [default: 32].
    #[arg(long, env = "LIKENESS_UPLOADS")]
    pub uploads: Option<usize>,
    /// Uploads one client address may have in progress at once [default: 8].
    #[arg(long, env = "LIKENESS_UPLOADS_PER_CLIENT")]
    pub uploads_per_client: Option<usize>,
    /// Generations of one style that may wait [default: three quarters of the queue].
    #[arg(long, env = "LIKENESS_STYLE_QUEUE")]
    pub style_queue: Option<usize>,
    /// Generations of one style that may run at once [default: all slots but one, at least 1].
    #[arg(long, env = "LIKENESS_STYLE_SLOTS")]
    pub style_slots: Option<usize>,
    /// Consecutive sandbox failures that open a style's circuit breaker [default: 5].
    #[arg(long, env = "LIKENESS_BREAKER_FAILURES")]
    pub breaker_failures: Option<u32>,
    /// Seconds an open circuit breaker keeps work from its style [default: 30].
    #[arg(long, env = "LIKENESS_BREAKER_OPEN_SECS")]
    pub breaker_open_secs: Option<u64>,
    /// Seconds a client may take to send a request's headers [default: 10].
    #[arg(long, env = "LIKENESS_HEADER_READ_TIMEOUT_SECS")]
    pub header_read_timeout_secs: Option<u64>,
    /// Seconds a request body may take before the minimum rate applies [default: 5].
    #[arg(long, env = "LIKENESS_BODY_GRACE_SECS")]
    pub body_grace_secs: Option<u64>,
    /// The slowest a request body may arrive after the grace, in bytes/s [default: 65536].
    #[arg(long, env = "LIKENESS_BODY_MIN_BYTES_PER_SEC")]
    pub body_min_bytes_per_sec: Option<u64>,
    /// Seconds a finished job is kept [default: 600].
    #[arg(long, env = "LIKENESS_JOB_TTL_SECS")]
    pub job_ttl_secs: Option<u64>,
    /// API keys, comma-separated; when set, requests to /v1 need `Authorization: Bearer KEY`.
    #[arg(
        long,
        env = "LIKENESS_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Option<Vec<String>>,
    /// Requests per second per API key [default: 10].
    #[arg(long, env = "LIKENESS_RATE_PER_SECOND")]
    pub rate_per_second: Option<f64>,
    /// Burst of requests per API key [default: 20].
    #[arg(long, env = "LIKENESS_BURST")]
    pub burst: Option<u32>,
    /// Origins allowed by CORS, comma-separated (`*` for any).
    #[arg(long, env = "LIKENESS_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Option<Vec<String>>,
    /// Seconds in-flight work may take to finish on shutdown [default: 30].
    #[arg(long, env = "LIKENESS_DRAIN_SECS")]
    pub drain_secs: Option<u64>,
    /// Seconds a generation may spend on identity-gate retries and fallbacks [default: 120].
    #[arg(long, env = "LIKENESS_IDENTITY_RETRY_BUDGET_SECS")]
    pub identity_retry_budget_secs: Option<u64>,
    /// How log lines are written: text or json [default: text].
    #[arg(long, env = "LIKENESS_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// The key of the admin routes (/admin/styles/...) [default: none: they are off].
    #[arg(long, env = "LIKENESS_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
}

impl ServeConfig {
    /// Reads a config file.
    pub fn from_file(path: &Path) -> anyhow::Result<ServeConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// The settings: defaults, then the config file named by `args`, then `args` (flags and
    /// environment, which clap has already merged).
    pub fn resolve(args: ServeArgs) -> anyhow::Result<ServeConfig> {
        let mut config = match &args.config {
            Some(path) => ServeConfig::from_file(path)?,
            None => ServeConfig::default(),
        };
        config.apply(args);
        config.validate()?;
        // Every admitted job must fit, so that only finished ones are ever evicted.
        let admitted = config.admission.queue + config.admission.generation_slots;
        config.jobs.max_stored = config.jobs.max_stored.max(admitted);
        Ok(config)
    }

    fn apply(&mut self, args: ServeArgs) {
        fn set<T>(slot: &mut T, value: Option<T>) {
            if let Some(value) = value {
                *slot = value;
            }
        }
        set(&mut self.addr, args.addr);
        set(&mut self.styles, args.styles);
        set(&mut self.models, args.models);
        set(&mut self.cache_dir, args.cache_dir);
        if args.diffusion_pack.is_some() {
            self.diffusion_pack = args.diffusion_pack;
        }
        set(&mut self.limits.max_upload_bytes, args.max_upload_bytes);
        match args.queue {
            Some(QueueArg::Length(length)) => self.admission.queue = length,
            Some(QueueArg::Url(url)) => self.queue.url = Some(url),
            None => {}
        }
        set(&mut self.role, args.role);
        set(&mut self.queue.max_deliveries, args.max_deliveries);
        set(&mut self.queue.claim_idle_ms, args.claim_idle_ms);
        set(&mut self.queue.max_length, args.queue_max_length);
        if args.queue_max_per_key.is_some() {
            self.queue.max_per_key = args.queue_max_per_key;
        }
        if args.simulate_work.is_some() {
            self.queue.simulate_work_ms = args.simulate_work;
        }
        set(&mut self.admission.generation_slots, args.generation_slots);
        set(&mut self.admission.cpu_slots, args.cpu_slots);
        set(&mut self.admission.uploads, args.uploads);
        set(
            &mut self.admission.uploads_per_client,
            args.uploads_per_client,
        );
        if args.style_queue.is_some() {
            self.admission.style_queue = args.style_queue;
        }
        if args.style_slots.is_some() {
            self.admission.style_slots = args.style_slots;
        }
        set(&mut self.admission.breaker.failures, args.breaker_failures);
        set(
            &mut self.admission.breaker.open_secs,
            args.breaker_open_secs,
        );
        set(
            &mut self.http.header_read_timeout_secs,
            args.header_read_timeout_secs,
        );
        set(&mut self.http.body_grace_secs, args.body_grace_secs);
        set(
            &mut self.http.body_min_bytes_per_sec,
            args.body_min_bytes_per_sec,
        );
        set(&mut self.jobs.ttl_secs, args.job_ttl_secs);
        set(&mut self.access.api_keys, args.api_keys.map(non_empty));
        set(&mut self.access.rate_per_second, args.rate_per_second);
        set(&mut self.access.burst, args.burst);
        set(
            &mut self.access.cors_origins,
            args.cors_origins.map(non_empty),
        );
        set(&mut self.shutdown.drain_secs, args.drain_secs);
        set(
            &mut self.identity.retry_budget_secs,
            args.identity_retry_budget_secs,
        );
        set(&mut self.log_format, args.log_format);
        if args.admin_key.is_some() {
            self.deploy.admin_key = args.admin_key.filter(|key| !key.trim().is_empty());
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            self.limits.max_upload_bytes > 0,
            "limits.max_upload_bytes must be positive"
        );
        ensure!(
            self.admission.generation_slots > 0 && self.admission.cpu_slots > 0,
            "admission.generation_slots and admission.cpu_slots must be positive"
        );
        ensure!(
            self.admission.uploads > 0 && self.admission.uploads_per_client > 0,
            "admission.uploads and admission.uploads_per_client must be positive"
        );
        ensure!(
            self.admission.breaker.failures > 0,
            "admission.breaker.failures must be positive"
        );
        ensure!(
            self.http.header_read_timeout_secs > 0 && self.http.body_min_bytes_per_sec > 0,
            "http.header_read_timeout_secs and http.body_min_bytes_per_sec must be positive"
        );
        ensure!(
            self.access.rate_per_second > 0.0 && self.access.rate_per_second.is_finite(),
            "access.rate_per_second must be a positive number"
        );
        ensure!(self.access.burst > 0, "access.burst must be positive");
        ensure!(
            self.access
                .api_keys
                .iter()
                .all(|key| !key.contains(char::is_whitespace)),
            "API keys must not contain whitespace"
        );
        self.sandbox.validate(&RuntimeConfig::default().ceilings)?;
        self.queue.validate(self.role)?;
        self.deploy.validate(&self.access)
    }
}

/// Drops empty entries (`LIKENESS_API_KEYS=` means no keys; `a,,b` means a and b).
fn non_empty(values: Vec<String>) -> Vec<String> {
    values
        .into_iter()
        .map(|value| value.trim().to_string())
        .filter(|value| !value.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("likeness.toml");
        std::fs::write(
            &file,
            "addr = \"127.0.0.1:9000\"\nstyles = \"from-file\"\n[admission]\nqueue = 3\n[access]\napi_keys = [\"k1\"]\n[identity]\nretry_budget_secs = 30\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file),
            styles: Some("from-flag".into()),
            api_keys: Some(vec!["a".into(), " ".into(), "b".into()]),
            ..ServeArgs::default()
        };
        let config = ServeConfig::resolve(args).unwrap();
        assert_eq!(config.addr.port(), 9000);
        assert_eq!(config.styles, PathBuf::from("from-flag"));
        assert_eq!(config.admission.queue, 3);
        assert_eq!(config.access.api_keys, ["a", "b"]);
        assert_eq!(config.models, PathBuf::from("models"));
        assert_eq!(config.identity.retry_budget(), Duration::from_secs(30));
        assert_eq!(
            ServeConfig::default().identity.retry_budget(),
            Duration::from_secs(120)
        );
    }

    #[test]
    fn each_style_leaves_room_for_the_others_unless_configured() {
        let config: ServeConfig = toml::from_str(
            "[admission]\nqueue = 32\ngeneration_slots = 4\n\
             [admission.styles.anime]\nslots = 4\n",
        )
        .unwrap();
        let mut admission = config.admission;
        assert_eq!(admission.style_bounds("hostile"), (24, 3));
        assert_eq!(admission.style_bounds("anime"), (24, 4));
        admission.style_queue = Some(2);
        assert_eq!(admission.style_bounds("anime"), (2, 4));
        admission.generation_slots = 1;
        assert_eq!(admission.style_bounds("hostile"), (2, 1));
    }

    #[test]
    fn sandbox_settings_reach_the_runtime_within_the_ceilings() {
        let config: ServeConfig =
            toml::from_str("[sandbox]\nplan_ms = 80\nwall_ceiling_factor = 4\n").unwrap();
        config.validate().unwrap();
        let runtime = config.sandbox.runtime(Path::new("cache"));
        assert_eq!(runtime.defaults.plan, Duration::from_millis(80));
        assert_eq!(runtime.defaults.post_process, Duration::from_secs(2));
        assert_eq!(runtime.wall_ceiling_factor, 4);
        assert_eq!(runtime.cache_dir.as_deref(), Some(Path::new("cache")));

        let over: ServeConfig = toml::from_str("[sandbox]\nplan_ms = 5000\n").unwrap();
        let error = over.validate().unwrap_err();
        assert!(format!("{error:#}").contains("ceilings"), "{error:#}");
    }

    #[test]
    fn queue_takes_a_redis_url_or_as_before_a_length_and_roles_need_redis() {
        use std::str::FromStr as _;
        assert_eq!(QueueArg::from_str("7"), Ok(QueueArg::Length(7)));
        let url = "redis://127.0.0.1:6379/0";
        assert_eq!(QueueArg::from_str(url), Ok(QueueArg::Url(url.into())));
        assert!(QueueArg::from_str("amqp://x").is_err());
        let config = ServeConfig::resolve(ServeArgs {
            queue: Some(QueueArg::Length(7)),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!((config.admission.queue, config.queue.url), (7, None));
        let config = ServeConfig::resolve(ServeArgs {
            queue: Some(QueueArg::Url(url.into())),
            role: Some(Role::Worker),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(config.queue.url.as_deref(), Some(url));
        assert_eq!(config.queue.per_key(), 256);
        let error = ServeConfig::resolve(ServeArgs {
            role: Some(Role::Api),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(error.to_string().contains("--queue redis://"), "{error}");
        let file: ServeConfig = toml::from_str(
            "role = \"worker\"\n[queue]\nurl = \"redis://h:1/2\"\nmax_deliveries = 5\n",
        )
        .unwrap();
        assert_eq!((file.role, file.queue.max_deliveries), (Role::Worker, 5));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "adress = \"127.0.0.1:1\"\n").unwrap();
        let error = ServeConfig::resolve(ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(format!("{error:#}").contains("adress"), "{error:#}");

        let error = ServeConfig::resolve(ServeArgs {
            generation_slots: Some(0),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(error.to_string().contains("generation_slots"), "{error}");
    }
}
