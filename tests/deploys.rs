//! Deploys under live HTTP traffic: 200 by two shell renames (`mv old away; mv new in`), then
//! 200 by `likeness styles deploy` (the library function the command runs; the first one
//! migrates the plain folder to a symlink), each under 20 concurrent clients. No request may
//! fail, and each response must name a version that served while it ran.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::send;
use likeness_host::style::{Registry, deploy, watch};

const VERSIONS: [&str; 2] = ["0.1.0-generation-a", "0.1.0-generation-b"];
const DEPLOYS: usize = 200;
const CLIENTS: usize = 20;
/// A bound that only catches a hang.
const HANG: Duration = Duration::from_secs(30);

/// One deploy as the clients saw it: when it began, when its version was first seen serving.
#[derive(Clone, Copy)]
struct Deploy {
    version: usize,
    started: Instant,
    serving: Instant,
}

/// One generation: when it was sent and answered, its status and the version it names.
struct Answer {
    sent: Instant,
    done: Instant,
    status: u16,
    version: Option<String>,
}

/// The versions that served at some moment while a request sent at `sent` and answered at
/// `done` ran: the one serving when it was sent, and every one deployed before its answer.
fn allowed(timeline: &[Deploy], sent: Instant, done: Instant) -> Vec<usize> {
    let current = timeline
        .iter()
        .rposition(|d| d.serving <= sent)
        .unwrap_or(0);
    timeline[current..]
        .iter()
        .enumerate()
        .filter(|(i, d)| *i == 0 || d.started <= done)
        .map(|(_, d)| d.version)
        .collect()
}

/// Waits until the registry serves `version` of the hostile style.
async fn wait_serving(registry: &Registry, version: &str) -> Instant {
    let started = Instant::now();
    while registry
        .get("hostile")
        .is_none_or(|style| style.manifest.version != version)
    {
        assert!(started.elapsed() < HANG, "{version} never served");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Instant::now()
}

/// Checks every answer against the timeline; returns the count of failed requests.
fn check(kind: &str, timeline: &[Deploy], answers: &[Answer]) -> usize {
    let mut failed = 0;
    for answer in answers {
        if !(200..300).contains(&answer.status) {
            failed += 1;
            continue;
        }
        let version = answer.version.as_deref().unwrap_or("none");
        let allowed: Vec<&str> = allowed(timeline, answer.sent, answer.done)
            .into_iter()
            .map(|v| VERSIONS[v])
            .collect();
        assert!(
            allowed.contains(&version),
            "{kind}: a response named {version}, but only {allowed:?} served while it ran"
        );
    }
    failed
}

/// 20 clients generating with the hostile style until `stop`.
fn clients(
    url: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<Answer>>> {
    let png = common::small_png();
    (0..CLIENTS)
        .map(|_| {
            let (url, stop, png) = (url.clone(), stop.clone(), png.clone());
            tokio::spawn(async move {
                let client = common::client();
                let mut answers = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let part = reqwest::multipart::Part::bytes(png.clone())
                        .file_name("small.png")
                        .mime_str("image/png")
                        .unwrap();
                    let form = reqwest::multipart::Form::new().part("image", part);
                    let sent = Instant::now();
                    let response = send(client.post(&url).multipart(form)).await;
                    let status = response.status().as_u16();
                    let body: serde_json::Value = response.json().await.unwrap_or_default();
                    answers.push(Answer {
                        sent,
                        done: Instant::now(),
                        status,
                        version: body["style"]["version"].as_str().map(str::to_string),
                    });
                }
                answers
            })
        })
        .collect()
}

/// Two copies of the hostile package, one per version, in `dir/<version>/hostile`.
fn packages(dir: &Path) -> [PathBuf; 2] {
    let wasms = [
        common::hostile_wasm().to_vec(),
        common::hostile_wasm_generation_b(),
    ];
    [0, 1].map(|v| {
        common::write_package(
            &dir.join(VERSIONS[v]),
            "hostile",
            VERSIONS[v],
            &wasms[v],
            "",
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_hundred_deploys_under_load_drop_no_request() {
    let work = tempfile::tempdir().unwrap();
    let styles = work.path().join("styles");
    std::fs::create_dir_all(&styles).unwrap();
    let sources = packages(&work.path().join("sources"));
    common::copy_packages(sources[0].parent().unwrap(), &styles);
    // The renames take version b's folder away from `sources`; `styles deploy` needs a copy.
    let moved = packages(&work.path().join("renamed"));
    let server = common::TestServer::start(common::serve_config(&styles)).await;
    let registry = server.service.pipeline().registry().clone();
    let _watcher = watch::watch(registry.clone()).unwrap();
    let url = server.at("/v1/styles/hostile/generations");
    let runtime = common::runtime();

    // Two renames per deploy. Folders for both versions wait in hidden places; every tenth
    // deploy leaves the package missing longer than the watcher's quiet time, so that the
    // registry does see it gone (and must keep serving it through the grace period).
    let away = |v: usize| styles.join(format!(".away-{v}"));
    std::fs::rename(&moved[1], away(1)).unwrap();

    for kind in ["two renames", "styles deploy"] {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let serving_now =
            (registry.get("hostile").unwrap().manifest.version == VERSIONS[1]) as usize;
        let timeline = Mutex::new(vec![Deploy {
            version: serving_now,
            started: Instant::now(),
            serving: Instant::now(),
        }]);
        let clients = clients(url.clone(), stop.clone());
        let mut current = serving_now;
        let started_all = Instant::now();
        for n in 0..DEPLOYS {
            let next = 1 - current;
            let started = Instant::now();
            if kind == "two renames" {
                std::fs::rename(styles.join("hostile"), away(current)).unwrap();
                if n % 10 == 9 {
                    tokio::time::sleep(watch::QUIET * 3).await;
                }
                std::fs::rename(away(next), styles.join("hostile")).unwrap();
            } else {
                deploy::deploy(&runtime, &sources[next], &styles, 3)
                    .await
                    .unwrap();
            }
            let serving = wait_serving(&registry, VERSIONS[next]).await;
            timeline.lock().unwrap().push(Deploy {
                version: next,
                started,
                serving,
            });
            current = next;
        }
        let took = started_all.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut answers = Vec::new();
        for client in clients {
            answers.extend(client.await.unwrap());
        }
        let timeline = timeline.into_inner().unwrap();
        let failed = check(kind, &timeline, &answers);
        println!(
            "{kind}: {DEPLOYS} deploys in {took:.1?}, {} requests, {failed} failed",
            answers.len()
        );
        assert_eq!(failed, 0, "{kind}: requests failed during the deploys");
        assert!(
            answers.len() >= DEPLOYS,
            "{kind}: too few requests ({}) to mean anything",
            answers.len()
        );
    }

    // The deploys left a symlink, the previous release for a rollback, and no more than
    // `keep` releases; the style's status shows no error.
    let link = std::fs::symlink_metadata(styles.join("hostile")).unwrap();
    assert!(link.file_type().is_symlink());
    let releases = std::fs::read_dir(styles.join(deploy::RELEASES))
        .unwrap()
        .count();
    assert!((2..=3).contains(&releases), "{releases} releases kept");
    assert_eq!(registry.status("hostile").unwrap().last_error, None);
    server.stop().await;
}
