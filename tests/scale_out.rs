//! Scale-out on Redis Streams with separate processes of the real binary: an API node and
//! workers sharing a real redis-server (each test starts its own on a free loopback port,
//! without persistence unless it restarts Redis, and kills it at the end). Under `CI=true` a missing redis-server fails
//! the tests; elsewhere they are skipped with a note.
//!
//! The generations use the CPU tier on a small photo without a face: the first-party
//! `pixel-art` filter, and the `hostile` test style whose `sleep-ms` option makes its plan
//! last that long (a real plugin behaviour), so that jobs are reliably in flight when a worker
//! is killed or a job canceled. Every bound below only catches hangs.

mod common;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

/// How long anything may take before the test calls it a hang.
const HANG: Duration = Duration::from_secs(120);

/// The redis-server binary (`LIKENESS_REDIS_SERVER`, else found on PATH), or none: the test
/// is skipped outside CI.
fn redis_server() -> Option<PathBuf> {
    let path = std::env::var_os("LIKENESS_REDIS_SERVER")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|dir| dir.join("redis-server"))
                .find(|path| path.is_file())
        })
        .unwrap_or_else(|| PathBuf::from("redis-server"));
    if path.is_file() {
        return Some(path);
    }
    assert!(
        !common::in_ci(),
        "{} is missing: CI must install redis-server (see .ci/run)",
        path.display()
    );
    eprintln!(
        "note: skipping the scale-out test: install redis-server (apt-get install -y redis-server)"
    );
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A redis-server of one test, killed when dropped.
struct Redis {
    binary: PathBuf,
    port: u16,
    child: Option<Child>,
    /// Where it keeps its append-only file, when it persists its data.
    data: Option<tempfile::TempDir>,
}

impl Redis {
    /// A server without persistence: a restart loses everything.
    fn start(binary: PathBuf) -> Redis {
        Redis::started(binary, None)
    }

    /// A server that writes every change to its append-only file before it answers
    /// (`appendfsync always`), so that a restart keeps every acknowledged write.
    fn persistent(binary: PathBuf) -> Redis {
        Redis::started(binary, Some(tempfile::tempdir().unwrap()))
    }

    fn started(binary: PathBuf, data: Option<tempfile::TempDir>) -> Redis {
        let mut redis = Redis {
            binary,
            port: free_port(),
            child: None,
            data,
        };
        redis.up();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts the server (again, on the same port) and waits until it answers PING.
    fn up(&mut self) {
        let mut command = Command::new(&self.binary);
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""]);
        match &self.data {
            Some(dir) => command
                .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
                .arg(dir.path()),
            None => command.args(["--appendonly", "no"]),
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + HANG;
        loop {
            if self.ping() {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server does not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut answer = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut answer).is_ok()
            && &answer == b"+PONG\r\n"
    }

    /// Kills the server (SIGKILL: without persistence its data goes with it).
    fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.down();
    }
}

/// A `likeness serve` process, killed when dropped.
struct Node {
    child: Option<Child>,
    url: String,
}

impl Node {
    /// Starts `likeness serve` on `styles` with `args` (two generation slots unless they say)
    /// and waits until it listens.
    fn start(styles: &Path, args: &[&str]) -> Node {
        let (child, url) = common::serve::spawn_listening(
            Command::new(env!("CARGO_BIN_EXE_likeness"))
                .arg("serve")
                .args(["--addr", "127.0.0.1:0"])
                .arg("--styles")
                .arg(styles)
                .arg("--models")
                .arg(common::models_dir())
                .arg("--cache-dir")
                .arg(common::component_cache())
                .args(if args.contains(&"--generation-slots") {
                    &[][..]
                } else {
                    &["--generation-slots", "2"][..]
                })
                .args(args)
                .env_remove("LIKENESS_CONFIG")
                .env_remove("LIKENESS_API_KEYS")
                .env_remove("LIKENESS_QUEUE")
                .env_remove("LIKENESS_ROLE")
                .env("RUST_LOG", "warn")
                .stderr(Stdio::inherit()),
        );
        Node {
            child: Some(child),
            url,
        }
    }

    /// An API node of `redis`.
    fn api(styles: &Path, redis: &Redis, extra: &[&str]) -> Node {
        let url = redis.url();
        let mut args = vec!["--role", "api", "--queue", &url];
        args.extend_from_slice(extra);
        Node::start(styles, &args)
    }

    /// A worker of `redis`, reclaiming after a second without a heartbeat.
    fn worker(styles: &Path, redis: &Redis, extra: &[&str]) -> Node {
        let url = redis.url();
        let mut args = vec![
            "--role",
            "worker",
            "--queue",
            &url,
            "--claim-idle-ms",
            "1000",
        ];
        args.extend_from_slice(extra);
        Node::start(styles, &args)
    }

    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Waits until every style in `styles` serves here and /readyz says ready.
    async fn ready(&self, styles: &[&str]) {
        let http = common::client();
        let deadline = Instant::now() + HANG;
        loop {
            let ready = http.get(self.at("/readyz")).send().await;
            let mut serving = ready.is_ok_and(|r| r.status() == StatusCode::OK);
            for style in styles {
                // The key `probe` is one of the API keys where a test sets any.
                let status = http
                    .get(self.at(&format!("/v1/styles/{style}")))
                    .bearer_auth("probe")
                    .send()
                    .await;
                serving &= match status {
                    Ok(response) if response.status() == StatusCode::OK => {
                        let body: Value = response.json().await.unwrap();
                        body["status"]["state"] == "serving"
                    }
                    _ => false,
                };
            }
            if serving {
                return;
            }
            assert!(Instant::now() < deadline, "{} never became ready", self.url);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The value of the metric line starting with `series` (0 when absent).
    async fn metric(&self, series: &str) -> f64 {
        let text = common::client()
            .get(self.at("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        common::metric_value(&text, series)
    }

    /// Jobs this worker has taken from the queue (each delivery counted).
    async fn deliveries(&self) -> f64 {
        self.metric("likeness_queue_deliveries_count").await
    }

    /// Waits until this worker runs a job.
    async fn wait_until_busy(&self) {
        let deadline = Instant::now() + HANG;
        while self.metric("likeness_worker_busy").await < 1.0 {
            assert!(Instant::now() < deadline, "{} never got a job", self.url);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and returns the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        child.wait().unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn styles() -> tempfile::TempDir {
    common::styles_with_hostile()
}

fn form(options: Option<&str>) -> reqwest::multipart::Form {
    let photo = reqwest::multipart::Part::bytes(common::small_png())
        .file_name("small.png")
        .mime_str("image/png")
        .unwrap();
    let form = reqwest::multipart::Form::new().part("image", photo);
    match options {
        Some(options) => form.text("options", options.to_string()),
        None => form,
    }
}

/// Posts a generation of `style` to `node`.
fn generation(node: &Node, style: &str, options: Option<&str>) -> reqwest::RequestBuilder {
    common::client()
        .post(node.at(&format!("/v1/styles/{style}/generations")))
        .multipart(form(options))
}

/// Posts an asynchronous generation; returns the job's id.
async fn submit(node: &Node, style: &str, options: Option<&str>) -> String {
    let response = generation(node, style, options)
        .header("prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let job: Value = response.json().await.unwrap();
    job["id"].as_str().unwrap().to_string()
}

/// Job `id` as `node` tells it now.
async fn job_now(node: &Node, id: &str) -> Value {
    common::send_json(common::client().get(node.at(&format!("/v1/jobs/{id}")))).await
}

/// Polls job `id` until it has finished.
async fn finished(node: &Node, id: &str) -> Value {
    let deadline = Instant::now() + HANG;
    loop {
        let job = job_now(node, id).await;
        if ["succeeded", "failed", "canceled"].contains(&job["status"].as_str().unwrap()) {
            return job;
        }
        assert!(Instant::now() < deadline, "job stuck: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The events of job `id` after `last_event_id`: (name, id, data).
async fn events(node: &Node, id: &str, last_event_id: Option<&str>) -> Vec<(String, u64, Value)> {
    let mut request = common::client().get(node.at(&format!("/v1/jobs/{id}/events")));
    if let Some(last) = last_event_id {
        request = request.header("last-event-id", last);
    }
    common::read_events(request.send().await.unwrap()).await
}

/// A generation's JSON without what differs between any two runs (its id, its timings).
fn comparable(mut view: Value) -> Value {
    view.as_object_mut().unwrap().remove("id");
    view.as_object_mut().unwrap().remove("timings");
    view
}

/// The `X-Likeness-*` headers that do not differ between runs.
fn facts(response: &reqwest::Response) -> BTreeMap<String, String> {
    response
        .headers()
        .iter()
        .filter(|(name, _)| {
            name.as_str().starts_with("x-likeness-")
                && !["x-likeness-id", "x-likeness-timings"].contains(&name.as_str())
        })
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_string()))
        .collect()
}

/// One generation of each kind (sync JSON, sync image, async, SSE) against `node`, as
/// comparable values.
async fn each_kind(node: &Node, style: &str, round: usize) -> Vec<Value> {
    let mut out = Vec::new();
    match round % 4 {
        0 => {
            let response = generation(node, style, None).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let facts = facts(&response);
            let body: Value = response.json().await.unwrap();
            out.push(serde_json::json!({"sync": comparable(body), "facts": facts}));
        }
        1 => {
            let response = generation(node, style, None)
                .header("accept", "image/png")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()["content-type"], "image/png");
            let facts = facts(&response);
            let bytes = response.bytes().await.unwrap();
            let digest = {
                use sha2::Digest as _;
                hex::encode(sha2::Sha256::digest(&bytes))
            };
            out.push(serde_json::json!({"image": digest, "facts": facts}));
        }
        2 => {
            let id = submit(node, style, None).await;
            let job = finished(node, &id).await;
            assert_eq!(job["status"], "succeeded", "{job}");
            out.push(serde_json::json!({"async": comparable(job["result"].clone())}));
        }
        _ => {
            let id = submit(node, style, None).await;
            let all = events(node, &id, None).await;
            let names: Vec<&str> = all.iter().map(|(name, _, _)| name.as_str()).collect();
            let seqs: Vec<u64> = all.iter().map(|(_, seq, _)| *seq).collect();
            assert_eq!(seqs, (1..=all.len() as u64).collect::<Vec<_>>());
            // Last-Event-ID resumes after that event, on any API node.
            let resumed = events(node, &id, Some("2")).await;
            assert_eq!(resumed.first().map(|(_, seq, _)| *seq), Some(3));
            assert_eq!(resumed.len(), all.len() - 2);
            let job = job_now(node, &id).await;
            out.push(
                serde_json::json!({"events": names, "result": comparable(job["result"].clone())}),
            );
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_api_node_and_two_workers_answer_as_one_process_does() {
    let Some(binary) = redis_server() else { return };
    let redis = Redis::start(binary);
    let styles = styles();
    let single = Node::start(styles.path(), &[]);
    let api = Node::api(styles.path(), &redis, &[]);
    let workers = [
        Node::worker(styles.path(), &redis, &[]),
        Node::worker(styles.path(), &redis, &[]),
    ];
    for node in [&single, &api, &workers[0], &workers[1]] {
        node.ready(&["pixel-art", "hostile"]).await;
    }
    // A worker takes jobs from the queue, not over HTTP.
    let refused = generation(&workers[0], "pixel-art", None)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::MISDIRECTED_REQUEST);

    // The reference answers of the single process, one per kind and style.
    let mut expected = BTreeMap::new();
    for style in ["pixel-art", "hostile"] {
        for kind in 0..4 {
            expected.insert((style, kind), each_kind(&single, style, kind).await);
        }
    }
    // 50 generations through the fleet, a few at a time.
    let rounds: Vec<(usize, &str)> = (0..50)
        .map(|i| (i, if i % 2 == 0 { "pixel-art" } else { "hostile" }))
        .collect();
    for chunk in rounds.chunks(10) {
        let answers = futures_util::future::join_all(
            chunk
                .iter()
                .map(|(i, style)| async { (*i, *style, each_kind(&api, style, *i / 2).await) }),
        )
        .await;
        for (i, style, answer) in answers {
            assert_eq!(
                answer,
                expected[&(style, (i / 2) % 4)],
                "generation {i} ({style}) differs from the single process's"
            );
        }
    }
    // Both workers took part, and nothing was reclaimed.
    let mut ran = 0.0;
    for worker in &workers {
        let mine = worker.deliveries().await;
        assert!(mine > 0.0, "a worker ran nothing");
        ran += mine;
        assert_eq!(worker.metric("likeness_queue_reclaims_total").await, 0.0);
    }
    assert_eq!(ran, 50.0);
    assert_eq!(api.metric("likeness_queue_length").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_of_a_killed_worker_are_reclaimed_and_each_succeeds_once() {
    let Some(binary) = redis_server() else { return };
    let redis = Redis::start(binary);
    let styles = styles();
    let api = Node::api(styles.path(), &redis, &[]);
    let mut doomed = Node::worker(styles.path(), &redis, &[]);
    let survivor = Node::worker(styles.path(), &redis, &[]);
    for node in [&api, &doomed, &survivor] {
        node.ready(&["hostile"]).await;
    }
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(submit(&api, "hostile", Some(r#"{"sleep-ms": 700}"#)).await);
    }
    // Kill the doomed worker while it holds jobs.
    doomed.wait_until_busy().await;
    doomed.kill();
    let mut results = Vec::new();
    for id in &ids {
        let job = finished(&api, id).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        // Read again: the one stored result, unchanged.
        let again = finished(&api, id).await;
        assert_eq!(job["result"], again["result"]);
        let all = events(&api, id, None).await;
        let ends = all
            .iter()
            .filter(|(name, _, _)| name == "succeeded")
            .count();
        assert_eq!(ends, 1, "job {id} was reported finished {ends} times");
        results.push(job);
    }
    assert_eq!(results.len(), 20);
    assert!(
        survivor.metric("likeness_queue_reclaims_total").await >= 1.0,
        "the survivor reclaimed nothing"
    );
    assert_eq!(api.metric("likeness_queue_pending").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_that_keeps_killing_workers_fails_as_poison_and_others_flow() {
    let Some(binary) = redis_server() else { return };
    let redis = Redis::start(binary);
    let styles = styles();
    let api = Node::api(styles.path(), &redis, &[]);
    api.ready(&["hostile"]).await;
    let poison = submit(&api, "hostile", Some(r#"{"sleep-ms": 8000}"#)).await;
    // Two deliveries, each to a worker killed while it runs the job.
    for _ in 0..2 {
        let mut worker = Node::worker(styles.path(), &redis, &["--max-deliveries", "2"]);
        worker.ready(&["hostile"]).await;
        worker.wait_until_busy().await;
        worker.kill();
    }
    let worker = Node::worker(styles.path(), &redis, &["--max-deliveries", "2"]);
    worker.ready(&["hostile"]).await;
    let job = finished(&api, &poison).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "poison_job", "{job}");
    assert!(
        job["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2 times"),
        "{job}"
    );
    assert_eq!(worker.metric("likeness_queue_poisoned_total").await, 1.0);
    // Other jobs keep flowing.
    let next = submit(&api, "pixel-art", None).await;
    assert_eq!(finished(&api, &next).await["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_or_a_keys_share_answers_429_with_retry_after() {
    let Some(binary) = redis_server() else { return };
    let redis = Redis::start(binary);
    let styles = styles();
    // No worker: jobs stay queued.
    let api = Node::api(
        styles.path(),
        &redis,
        &[
            "--queue-max-length",
            "3",
            "--queue-max-per-key",
            "2",
            "--api-keys",
            "alice,bob,probe",
        ],
    );
    api.ready(&["pixel-art"]).await;
    let post = |key: &str| {
        generation(&api, "pixel-art", None)
            .header("prefer", "respond-async")
            .bearer_auth(key)
    };
    for _ in 0..2 {
        let response = post("alice").send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::ACCEPTED,
            "{}",
            response.text().await.unwrap()
        );
    }
    let refused = post("alice").send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "key_queue_full", "{body}");
    // Another key still has its share, until the queue itself is full.
    assert_eq!(
        post("bob").send().await.unwrap().status(),
        StatusCode::ACCEPTED
    );
    let refused = post("bob").send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "queue_full", "{body}");
    assert_eq!(api.metric("likeness_queue_length").await, 3.0);
}

/// Redis restarted with its data persisted (AOF, `appendfsync always`): while it is down the
/// API answers 503 and the worker's /readyz says so; afterwards both recover by themselves, and
/// every job accepted before the outage (queued, running, or finished while Redis was away)
/// ends `succeeded` with one stored result. Once the queue has drained, every entry has been
/// acknowledged, so every job must have its result by then: a worker that acknowledged a job
/// whose outcome it had not stored would leave that job unfinished with nothing left to run it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn while_redis_is_down_the_api_answers_503_and_recovers_by_itself() {
    let Some(binary) = redis_server() else { return };
    let mut redis = Redis::persistent(binary);
    let styles = styles();
    let api = Node::api(styles.path(), &redis, &[]);
    let worker = Node::worker(styles.path(), &redis, &[]);
    api.ready(&["pixel-art", "hostile"]).await;
    worker.ready(&["pixel-art", "hostile"]).await;
    let before = submit(&api, "pixel-art", None).await;
    assert_eq!(finished(&api, &before).await["status"], "succeeded");

    // Jobs in flight when Redis goes: two running on the worker's two slots (each style call
    // sleeps 1.5 s), four queued behind them, and a synchronous request whose client waits
    // through the outage.
    let mut accepted = Vec::new();
    for _ in 0..6 {
        accepted.push(submit(&api, "hostile", Some(r#"{"sleep-ms": 1500}"#)).await);
    }
    let waiting = tokio::spawn(generation(&api, "hostile", Some(r#"{"sleep-ms": 100}"#)).send());
    worker.wait_until_busy().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.down();
    let refused = generation(&api, "pixel-art", None).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "queue_unavailable", "{body}");
    let status = common::client()
        .get(api.at(&format!("/v1/jobs/{before}")))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let ready = common::client()
        .get(worker.at("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    // The two running generations end while Redis is away: their outcomes must wait.
    let ended = r#"likeness_generations_total{method="none",status="200",style="hostile"}"#;
    let deadline = Instant::now() + HANG;
    while worker.metric(ended).await < 2.0 {
        assert!(Instant::now() < deadline, "the running jobs never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    redis.up();
    // Both recover by themselves: the next generations succeed, synchronous and queued.
    let deadline = Instant::now() + HANG;
    loop {
        let response = generation(&api, "pixel-art", None).send().await.unwrap();
        if response.status() == StatusCode::OK {
            break;
        }
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(Instant::now() < deadline, "the fleet never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = submit(&api, "pixel-art", None).await;
    assert_eq!(finished(&api, &after).await["status"], "succeeded");
    worker.ready(&["pixel-art"]).await;
    // The synchronous client waited through the outage and got its answer (or, had its
    // request come after Redis went, a 503 at once: never anything else, never a hang).
    let answer = waiting.await.unwrap().unwrap();
    let status = answer.status();
    let body = answer.text().await.unwrap();
    assert!(
        status == StatusCode::OK
            || (status == StatusCode::SERVICE_UNAVAILABLE && body.contains("queue_unavailable")),
        "the synchronous request: {status} {body}"
    );

    // The queue drains: every entry acknowledged, none left pending.
    let deadline = Instant::now() + HANG;
    while api.metric("likeness_queue_length").await > 0.0
        || api.metric("likeness_queue_pending").await > 0.0
    {
        assert!(Instant::now() < deadline, "the queue never drained");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // So every accepted job is done, each with one result, stored and unchanged on reading.
    for id in &accepted {
        let job = job_now(&api, id).await;
        assert_eq!(
            job["status"], "succeeded",
            "job {id} was acknowledged but is not done: {job}"
        );
        assert!(job["result"]["output"].is_object(), "{job}");
        assert_eq!(finished(&api, id).await["result"], job["result"]);
        let all = events(&api, id, None).await;
        let ends = all
            .iter()
            .filter(|(name, _, _)| ["succeeded", "failed", "canceled"].contains(&name.as_str()))
            .count();
        assert_eq!(ends, 1, "job {id} was reported finished {ends} times");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_through_the_api_node_stops_the_job_on_its_worker_and_sigterm_drains_it() {
    let Some(binary) = redis_server() else { return };
    let redis = Redis::start(binary);
    let styles = styles();
    let api = Node::api(styles.path(), &redis, &[]);
    let worker = Node::worker(styles.path(), &redis, &[]);
    api.ready(&["hostile"]).await;
    worker.ready(&["hostile"]).await;
    let id = submit(&api, "hostile", Some(r#"{"sleep-ms": 5000}"#)).await;
    worker.wait_until_busy().await;
    let canceled =
        common::send_json(common::client().delete(api.at(&format!("/v1/jobs/{id}")))).await;
    assert_eq!(canceled["status"], "canceled", "{canceled}");
    // The worker's generation ends as canceled (409), not as a success.
    let series = r#"likeness_generations_total{method="-",status="409",style="hostile"}"#;
    let deadline = Instant::now() + HANG;
    while worker.metric(series).await < 1.0 {
        assert!(Instant::now() < deadline, "the worker did not stop the job");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(worker.metric("likeness_worker_busy").await, 0.0);
    let all = events(&api, &id, None).await;
    assert_eq!(all.last().unwrap().0, "canceled");
    assert!(!all.iter().any(|(name, _, _)| name == "succeeded"));
    // SIGTERM: the worker finishes the job it runs, stops reading and exits 0; the job it
    // did not take waits for the next worker.
    let running = submit(&api, "hostile", Some(r#"{"sleep-ms": 1500}"#)).await;
    worker.wait_until_busy().await;
    let terminated = tokio::task::spawn_blocking(move || {
        let mut worker = worker;
        worker.terminate()
    });
    let job = finished(&api, &running).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(terminated.await.unwrap().success());
    let waiting = submit(&api, "pixel-art", None).await;
    let next = Node::worker(styles.path(), &redis, &[]);
    next.ready(&["pixel-art"]).await;
    assert_eq!(finished(&api, &waiting).await["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_serving_another_build_of_the_style_says_so() {
    let Some(binary) = redis_server() else { return };
    let redis = Redis::start(binary);
    let styles = styles();
    // The worker's folder has another build of `hostile` (mid-roll).
    let other = tempfile::tempdir().unwrap();
    common::copy_packages(common::first_party_styles(), other.path());
    common::write_package(
        other.path(),
        "hostile",
        "0.1.0-generation-b",
        &common::hostile_wasm_generation_b(),
        "[limits]\nplan_ms = 1000\npost_process_ms = 5000\n",
    );
    let api = Node::api(styles.path(), &redis, &[]);
    let worker = Node::worker(other.path(), &redis, &[]);
    api.ready(&["hostile", "pixel-art"]).await;
    worker.ready(&["hostile", "pixel-art"]).await;
    let refused = generation(&api, "hostile", None).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "style_version_mismatch", "{body}");
    assert_eq!(body["error"]["style"], "hostile", "{body}");
    // The styles both serve alike still run.
    let response = generation(&api, "pixel-art", None).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// `--role all` with a Redis queue is an API node and a worker in one process: beside a
/// worker process it answers every kind of generation, and both take jobs from the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_of_role_all_answers_and_shares_the_work_with_a_worker() {
    let Some(binary) = redis_server() else { return };
    let redis = Redis::start(binary);
    let styles = styles();
    let url = redis.url();
    let one_slot = ["--generation-slots", "1", "--claim-idle-ms", "1000"];
    let all = Node::start(
        styles.path(),
        &[&["--role", "all", "--queue", &url][..], &one_slot].concat(),
    );
    let worker = Node::worker(styles.path(), &redis, &one_slot[..2]);
    all.ready(&["pixel-art", "hostile"]).await;
    worker.ready(&["pixel-art", "hostile"]).await;
    // Sync JSON, sync image, async and SSE through the `all` node.
    for kind in 0..4 {
        each_kind(&all, "pixel-art", kind).await;
    }
    // One node's only slot held by a long job, the next job is the other node's.
    let long = submit(&all, "hostile", Some(r#"{"sleep-ms": 4000}"#)).await;
    let deadline = Instant::now() + HANG;
    while all.metric("likeness_worker_busy").await + worker.metric("likeness_worker_busy").await
        < 1.0
    {
        assert!(Instant::now() < deadline, "nobody took the long job");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let short = submit(&all, "hostile", None).await;
    for id in [&short, &long] {
        let job = finished(&all, id).await;
        assert_eq!(job["status"], "succeeded", "{job}");
    }
    let (here, there) = (all.deliveries().await, worker.deliveries().await);
    assert_eq!(here + there, 6.0, "every job was taken once");
    assert!(here >= 1.0 && there >= 1.0, "all: {here}, worker: {there}");
    assert_eq!(all.metric("likeness_queue_reclaims_total").await, 0.0);
    assert_eq!(all.metric("likeness_queue_length").await, 0.0);
}

/// A generation of `style` on the photo `name` (from tests/photos).
fn generation_on(node: &Node, style: &str, name: &str) -> reqwest::RequestBuilder {
    common::client()
        .post(node.at(&format!("/v1/styles/{style}/generations")))
        .multipart(common::photo_form(name, Some(r#"{"seed": 3}"#)))
}

/// An anime generation on a photo with one clear face, as JSON (which must be 200 OK).
async fn anime(node: &Node) -> Value {
    common::send_json(generation_on(node, "anime", "astronaut.png")).await
}

impl Node {
    /// The value of metric `name` for worker class `class`.
    async fn of_class(&self, name: &str, class: &str) -> f64 {
        self.metric(&format!(r#"{name}{{class="{class}"}}"#)).await
    }

    /// Waits until this API node sees `cpu` and `diffusion` live workers of each class.
    async fn sees_workers(&self, cpu: f64, diffusion: f64) {
        let deadline = Instant::now() + HANG;
        loop {
            let live = (
                self.of_class("likeness_queue_class_workers", "cpu").await,
                self.of_class("likeness_queue_class_workers", "diffusion")
                    .await,
            );
            if live == (cpu, diffusion) {
                return;
            }
            assert!(Instant::now() < deadline, "live workers stay {live:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Workers that differ, one with a diffusion pack (the tiny pack) and one without: the job of
/// a style whose plan picks diffusion (anime, on one clear face: InstantID) runs on the
/// diffusion worker, as its answer's method says (the CPU worker would answer a CPU method);
/// CPU jobs run on either. With its diffusion worker killed, such a job waits in the diffusion
/// stream for the next diffusion worker; once no diffusion worker is live, the CPU worker runs
/// the job as one process without a diffusion pack does.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_go_to_workers_that_can_run_what_their_style_plans() {
    let Some(binary) = redis_server() else { return };
    let redis = Redis::start(binary);
    let styles = styles();
    let pack = common::tiny_pack();
    let with_pack = ["--diffusion-pack", pack.to_str().unwrap()];
    let api = Node::api(styles.path(), &redis, &[]);
    let mut diffusion = Node::worker(styles.path(), &redis, &with_pack);
    let cpu = Node::worker(styles.path(), &redis, &[]);
    for node in [&api, &diffusion, &cpu] {
        node.ready(&["anime", "hostile"]).await;
    }
    api.sees_workers(1.0, 1.0).await;

    for _ in 0..2 {
        let body = anime(&api).await;
        assert_eq!(body["method"], "instant-id", "{}", body["reason"]);
    }
    // The hostile test style plans method `none` (a CPU style): its jobs run on either.
    let mut cpu_jobs = Vec::new();
    for _ in 0..4 {
        cpu_jobs.push(submit(&api, "hostile", None).await);
    }
    for id in &cpu_jobs {
        assert_eq!(finished(&api, id).await["status"], "succeeded");
    }
    let ran = r#"likeness_generations_total{method="instant-id",status="200",style="anime"}"#;
    assert_eq!(diffusion.metric(ran).await, 2.0);
    assert_eq!(
        diffusion.deliveries().await + cpu.deliveries().await,
        6.0,
        "every job was taken once"
    );

    // Killed, the diffusion worker still counts as live until its advertisement lapses: a
    // job for it waits in its stream (the CPU worker does not read it) for the next one.
    diffusion.kill();
    let response = generation_on(&api, "anime", "astronaut.png")
        .header("prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let waiting = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        api.of_class("likeness_queue_class_length", "diffusion")
            .await,
        1.0
    );
    assert_eq!(
        api.of_class("likeness_queue_class_length", "cpu").await,
        0.0
    );
    let mut next = Node::worker(styles.path(), &redis, &with_pack);
    let job = finished(&api, &waiting).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["result"]["method"], "instant-id", "{job}");

    // Stopped, the next one withdraws at once: anime runs on the CPU worker, which has no
    // diffusion method to offer its plan (it answers a CPU method, as one process would).
    assert!(next.terminate().success());
    api.sees_workers(1.0, 0.0).await;
    let body = anime(&api).await;
    let method = body["method"].as_str().unwrap();
    assert!(
        ["style-transfer", "none"].contains(&method),
        "{method}: {}",
        body["reason"]
    );
    assert_eq!(api.metric("likeness_queue_length").await, 0.0);
}
