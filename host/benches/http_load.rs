//! HTTP load: requests/s and p50/p99 latency of synchronous generations with the non-neural
//! fallback (method `none`) at concurrency 1, 8 and 64, and the server's peak RSS (VmHWM). The
//! server is the release `likeness serve` binary in its own process; this bench is the client
//! (loopback only). Prints a table.
//!
//! `cargo bench -p likeness-host --bench http_load`

#[path = "../../tests/common/serve.rs"]
mod serve;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use likeness_vision::fetch;

/// Concurrency levels and the requests sent at each (bounded in count and time).
const LEVELS: [(usize, usize); 3] = [(1, 40), (8, 160), (64, 384)];
/// The longest a level may take.
const LEVEL_TIME: Duration = Duration::from_secs(90);
/// The style measured.
const STYLE: &str = "pixel-art";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The server's peak resident set so far, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

struct Level {
    concurrency: usize,
    sent: usize,
    ok: usize,
    shed: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

async fn load(url: &str, photo: Arc<Vec<u8>>, concurrency: usize, total: usize) -> Level {
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, photo, next) =
                (client.clone(), url.to_string(), photo.clone(), next.clone());
            tokio::spawn(async move {
                let mut results = Vec::new();
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total
                    && started.elapsed() < LEVEL_TIME
                {
                    let part = reqwest::multipart::Part::bytes(photo.to_vec())
                        .file_name("astronaut.png")
                        .mime_str("image/png")
                        .unwrap();
                    let form = reqwest::multipart::Form::new().part("image", part);
                    let sent = Instant::now();
                    let response = client
                        .post(&url)
                        .header("accept", "image/png")
                        .multipart(form)
                        .send()
                        .await;
                    let status = match response {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            let _ = response.bytes().await;
                            status
                        }
                        Err(_) => 0,
                    };
                    results.push((status, sent.elapsed()));
                }
                results
            })
        })
        .collect();
    let mut level = Level {
        concurrency,
        sent: 0,
        ok: 0,
        shed: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for worker in workers {
        for (status, latency) in worker.await.unwrap() {
            level.sent += 1;
            match status {
                200 => {
                    level.ok += 1;
                    level.latencies.push(latency);
                }
                429 => level.shed += 1,
                other => eprintln!("unexpected status {other}"),
            }
        }
    }
    level.elapsed = started.elapsed();
    level.latencies.sort();
    level
}

fn start_server(styles: &Path, models: &Path) -> (Child, String) {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    serve::spawn_listening(
        Command::new(env!("CARGO_BIN_EXE_likeness"))
            .args(["serve", "--addr", "127.0.0.1:0", "--queue", "256"])
            .args(["--generation-slots", &cores.to_string()])
            .args(["--cpu-slots", &cores.to_string()])
            // One client and one style: let them use everything.
            .args(["--uploads", "256", "--uploads-per-client", "256"])
            .args(["--style-queue", "256", "--style-slots", &cores.to_string()])
            .arg("--styles")
            .arg(styles)
            .arg("--models")
            .arg(models)
            .arg("--cache-dir")
            .arg(repo().join("target").join("bench-component-cache"))
            .env("RUST_LOG", "warn")
            .stderr(Stdio::inherit()),
    )
}

fn main() {
    let repo = repo();
    let models = repo.join("models");
    fetch::fetch_default_packs(&models).expect("fetching the model packs");
    let photos = repo.join(".cache").join("testdata");
    fetch::fetch_test_photos(&photos).expect("fetching the test photos");
    let photo = Arc::new(std::fs::read(photos.join("astronaut.png")).unwrap());
    let styles = tempfile::tempdir().unwrap();
    likeness_host::style::build::build_styles(
        &repo.join("plugins"),
        styles.path(),
        &[STYLE.to_string()],
        Some(&repo.join("target").join("test-plugins")),
    )
    .expect("building the style");

    let (mut server, base) = start_server(styles.path(), &models);
    let pid = server.id();
    let url = format!("{base}/v1/styles/{STYLE}/generations");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    // Warm up: component instances, ONNX sessions, allocator.
    runtime.block_on(load(&url, photo.clone(), 2, 8));
    let idle_rss = peak_rss_mib(pid);

    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!(
        "\nHTTP generations, style {STYLE}, 512x512 photo, method none, Accept: image/png \
         ({cores} cores, server and client on one host, loopback)\n"
    );
    println!(
        "{:>11} {:>9} {:>6} {:>6} {:>9} {:>9} {:>9} {:>14}",
        "concurrency", "requests", "ok", "429", "req/s", "p50 ms", "p99 ms", "peak RSS MiB"
    );
    for (concurrency, total) in LEVELS {
        let level = runtime.block_on(load(&url, photo.clone(), concurrency, total));
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "{:>11} {:>9} {:>6} {:>6} {:>9.1} {:>9.1} {:>9.1} {:>14.0}",
            level.concurrency,
            level.sent,
            level.ok,
            level.shed,
            level.ok as f64 / level.elapsed.as_secs_f64(),
            ms(percentile(&level.latencies, 0.5)),
            ms(percentile(&level.latencies, 0.99)),
            peak_rss_mib(pid),
        );
    }
    println!("\npeak RSS after warm-up: {idle_rss:.0} MiB (VmHWM of the server process)");

    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let status = server.wait().unwrap();
    assert!(status.success(), "the server exited with {status}");
}
