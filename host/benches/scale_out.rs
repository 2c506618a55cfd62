//! Scale-out on Redis Streams: one API node and W workers of the release `likeness serve`, each
//! its own process, around a redis-server started here (loopback, no persistence). Measures
//! jobs/s and request latency of synchronous generations, the queue's enqueue-to-start latency
//! (p50/p99, from each job's `created_at_ms` and `started_at_ms` in Redis) and the Redis
//! commands per job (`INFO stats`: every command Redis ran, those inside the Lua scripts
//! included). There are as many clients as consumers, so a job never waits for a busy worker
//! and the wait is the queue's own dispatch time. Two parts:
//!
//! - real: the CPU path (`pixel-art`, a 512x512 photo, method none) with 1, 2 and 4 worker
//!   processes of one generation slot each;
//! - simulated: workers with `--simulate-work 50` (a 50 ms sleep in place of the pipeline) and
//!   1..32 consumers in all (up to 4 processes, the rest as generation slots of each), to show
//!   how the queue scales when workers are not CPU-bound.
//!
//! `cargo bench -p likeness-host --bench scale_out` (needs redis-server on PATH; prints a note
//! and exits otherwise).

#[path = "../../tests/common/serve.rs"]
mod serve;

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The style of the real part.
const STYLE: &str = "pixel-art";
/// Milliseconds a simulated job sleeps.
const SIMULATED_MS: u64 = 50;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn redis_server() -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("redis-server"))
        .find(|path| path.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends one inline command to Redis and returns the raw reply.
fn redis_command(port: u16, command: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(format!("{command}\r\n").as_bytes())
        .unwrap();
    let mut reply = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let n = stream.read(&mut chunk).unwrap_or(0);
        reply.extend_from_slice(&chunk[..n]);
        if n == 0 || n < chunk.len() {
            break;
        }
    }
    String::from_utf8_lossy(&reply).into_owned()
}

/// Redis's commands processed so far.
fn commands_processed(port: u16) -> u64 {
    redis_command(port, "INFO stats")
        .lines()
        .find_map(|line| line.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Enqueue-to-start of job `id`, in milliseconds.
fn queue_wait_ms(port: u16, id: &str) -> Option<f64> {
    let reply = redis_command(
        port,
        &format!("HMGET likeness:job:{id} created_at_ms started_at_ms"),
    );
    let numbers: Vec<f64> = reply
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect();
    match numbers.as_slice() {
        [created, started] => Some(started - created),
        _ => None,
    }
}

struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        // Workers and the API node first, Redis last.
        for child in self.0.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn serve(styles: &Path, args: &[String]) -> (Child, String) {
    serve::spawn_listening(
        Command::new(env!("CARGO_BIN_EXE_likeness"))
            .args(["serve", "--addr", "127.0.0.1:0"])
            .arg("--styles")
            .arg(styles)
            .arg("--models")
            .arg(repo().join("models"))
            .arg("--cache-dir")
            .arg(repo().join("target").join("bench-component-cache"))
            .args(["--uploads", "256", "--uploads-per-client", "256"])
            .args(["--queue-max-length", "100000"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::inherit()),
    )
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

struct Run {
    jobs: usize,
    per_second: f64,
    latency: Vec<f64>,
    queue_wait: Vec<f64>,
    commands_per_job: f64,
}

/// `total` synchronous generations at `concurrency` against `api`.
async fn load(
    api: &str,
    photo: Arc<Vec<u8>>,
    concurrency: usize,
    total: usize,
) -> Vec<(String, f64)> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let url = format!("{api}/v1/styles/{STYLE}/generations");
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, photo, next) =
                (client.clone(), url.clone(), photo.clone(), next.clone());
            tokio::spawn(async move {
                let mut done = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    let part = reqwest::multipart::Part::bytes(photo.to_vec())
                        .file_name("photo.png")
                        .mime_str("image/png")
                        .unwrap();
                    let sent = Instant::now();
                    let response = client
                        .post(&url)
                        .header("accept", "image/png")
                        .multipart(reqwest::multipart::Form::new().part("image", part))
                        .send()
                        .await
                        .expect("the API node answers");
                    assert_eq!(response.status(), 200, "a generation failed");
                    let id = response.headers()["x-likeness-id"]
                        .to_str()
                        .unwrap()
                        .to_string();
                    let _ = response.bytes().await;
                    done.push((id, sent.elapsed().as_secs_f64() * 1e3));
                }
                done
            })
        })
        .collect();
    let mut done = Vec::new();
    for task in tasks {
        done.extend(task.await.unwrap());
    }
    done
}

/// A fleet and its load: `processes` workers of `slots` each (simulating work of `simulate`
/// ms when set), measured over `total` generations at `concurrency`.
struct Shape {
    processes: usize,
    slots: usize,
    simulate: Option<u64>,
    concurrency: usize,
    total: usize,
}

/// One fleet of `shape` with an API node, measured.
fn fleet(redis_bin: &Path, styles: &Path, photo: &Arc<Vec<u8>>, shape: Shape) -> Run {
    let Shape {
        processes,
        slots,
        simulate,
        concurrency,
        total,
    } = shape;
    let port = free_port();
    let redis = Command::new(redis_bin)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("starting redis-server");
    let mut children = Processes(vec![redis]);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let queue = format!("redis://127.0.0.1:{port}/0");
    let (api, url) = serve(
        styles,
        &[
            "--role".into(),
            "api".into(),
            "--queue".into(),
            queue.clone(),
        ],
    );
    children.0.push(api);
    let mut nodes = vec![url.clone()];
    for _ in 0..processes {
        let mut args: Vec<String> = ["--role", "worker", "--queue", &queue, "--generation-slots"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(slots.to_string());
        args.extend(["--style-slots".to_string(), slots.to_string()]);
        if let Some(ms) = simulate {
            args.extend(["--simulate-work".to_string(), ms.to_string()]);
        }
        let (worker, worker_url) = serve(styles, &args);
        children.0.push(worker);
        nodes.push(worker_url);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    // Wait until the style serves on every node.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(120);
        for node in &nodes {
            loop {
                let style = client.get(format!("{node}/v1/styles/{STYLE}")).send().await;
                if let Ok(response) = style
                    && response.status() == 200
                    && response
                        .text()
                        .await
                        .unwrap_or_default()
                        .contains("\"serving\"")
                {
                    break;
                }
                assert!(Instant::now() < deadline, "{node} never served {STYLE}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    // Warm up (component instances, connections), then measure.
    runtime.block_on(load(&url, photo.clone(), concurrency, concurrency * 2));
    let commands = commands_processed(port);
    let started = Instant::now();
    let done = runtime.block_on(load(&url, photo.clone(), concurrency, total));
    let elapsed = started.elapsed().as_secs_f64();
    let commands = commands_processed(port) - commands;
    let mut latency: Vec<f64> = done.iter().map(|(_, ms)| *ms).collect();
    latency.sort_by(f64::total_cmp);
    let mut queue_wait: Vec<f64> = done
        .iter()
        .filter_map(|(id, _)| queue_wait_ms(port, id))
        .collect();
    queue_wait.sort_by(f64::total_cmp);
    Run {
        jobs: done.len(),
        per_second: done.len() as f64 / elapsed,
        latency,
        queue_wait,
        commands_per_job: commands as f64 / done.len() as f64,
    }
}

fn print_header() {
    println!(
        "{:>8} {:>10} {:>6} {:>6} {:>8} {:>9} {:>9} {:>10} {:>10} {:>10}",
        "workers",
        "processes",
        "conc",
        "jobs",
        "jobs/s",
        "p50 ms",
        "p99 ms",
        "wait p50",
        "wait p99",
        "cmds/job"
    );
}

fn print_run(workers: usize, processes: usize, concurrency: usize, run: &Run) {
    println!(
        "{:>8} {:>10} {:>6} {:>6} {:>8.1} {:>9.1} {:>9.1} {:>10.1} {:>10.1} {:>10.1}",
        workers,
        processes,
        concurrency,
        run.jobs,
        run.per_second,
        percentile(&run.latency, 0.5),
        percentile(&run.latency, 0.99),
        percentile(&run.queue_wait, 0.5),
        percentile(&run.queue_wait, 0.99),
        run.commands_per_job,
    );
}

fn main() {
    let Some(redis) = redis_server() else {
        eprintln!(
            "note: the scale-out bench needs redis-server on PATH (apt-get install redis-server)"
        );
        return;
    };
    let repo = repo();
    let styles = tempfile::tempdir().unwrap();
    likeness_host::style::build::build_styles(
        &repo.join("plugins"),
        styles.path(),
        &[STYLE.to_string()],
        Some(&repo.join("target").join("test-plugins")),
    )
    .expect("building the style");
    let photo = {
        let image = image::RgbImage::from_fn(512, 512, |x, y| {
            image::Rgb([(x / 2) as u8, (y / 2) as u8, ((x + y) / 4) as u8])
        });
        let mut png = std::io::Cursor::new(Vec::new());
        image.write_to(&mut png, image::ImageFormat::Png).unwrap();
        Arc::new(png.into_inner())
    };
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let quick = std::env::var("LIKENESS_BENCH_QUICK").is_ok();

    println!(
        "\nScale-out, real CPU path: style {STYLE}, 512x512 photo without a face, method none, \
         sync Accept: image/png; one API node, W worker processes of 1 slot, W clients ({cores} \
         cores, everything on one host)\n"
    );
    print_header();
    for workers in [1, 2, 4] {
        let concurrency = workers;
        let total = if quick { 12 } else { 40 };
        let shape = Shape {
            processes: workers,
            slots: 1,
            simulate: None,
            concurrency,
            total,
        };
        let run = fleet(&redis, styles.path(), &photo, shape);
        print_run(workers, workers, concurrency, &run);
    }

    println!(
        "\nScale-out, simulated work: workers sleep {SIMULATED_MS} ms per job (--simulate-work); \
         W consumers = processes x generation slots; W clients\n"
    );
    print_header();
    for workers in [1, 2, 4, 8, 16, 32] {
        let processes = workers.min(4);
        let slots = workers / processes;
        let concurrency = workers;
        let total = if quick {
            10 * workers
        } else {
            (20 * workers).max(100)
        };
        let shape = Shape {
            processes,
            slots,
            simulate: Some(SIMULATED_MS),
            concurrency,
            total,
        };
        let run = fleet(&redis, styles.path(), &photo, shape);
        print_run(workers, processes, concurrency, &run);
    }
}
