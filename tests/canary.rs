//! Canaries under live HTTP traffic: a candidate that traps on half of its requests, serving
//! 20% of traffic, is rolled back automatically with no request of the current version
//! failing; a healthy candidate is promoted through the admin route.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::send;
use likeness_host::style::{deploy, watch};

const GEN_A: &str = "0.1.0-generation-a";
const GEN_B: &str = "0.1.0-generation-b";
const ADMIN_KEY: &str = "admin-secret";
const CLIENTS: usize = 20;
/// A bound that only catches a hang.
const HANG: Duration = Duration::from_secs(60);

/// One generation as a client saw it.
struct Answer {
    sent: Instant,
    n: u64,
    status: u16,
    code: Option<String>,
    version: Option<String>,
}

async fn style_view(server: &common::TestServer) -> serde_json::Value {
    common::client()
        .get(server.at("/v1/styles/hostile"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn generate(
    client: &reqwest::Client,
    server: &common::TestServer,
    n: u64,
    request_id: &str,
    force: Option<&str>,
) -> (u16, serde_json::Value) {
    let part = reqwest::multipart::Part::bytes(common::small_png())
        .file_name("small.png")
        .mime_str("image/png")
        .unwrap();
    let form = reqwest::multipart::Form::new()
        .part("image", part)
        .text("options", format!("{{\"n\": {n}}}"));
    let mut request = client
        .post(server.at("/v1/styles/hostile/generations"))
        .header("x-request-id", request_id)
        .multipart(form);
    if let Some(side) = force {
        request = request.header("x-likeness-canary", side);
    }
    let response = send(request).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

async fn wait_canary_state(server: &common::TestServer, state: &str) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let view = style_view(server).await;
        if view["canary"]["state"] == state {
            return view;
        }
        assert!(
            started.elapsed() < HANG,
            "the canary never became {state}: {view}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_canary_is_rolled_back_and_a_healthy_one_promoted() {
    let work = tempfile::tempdir().unwrap();
    let styles = work.path().join("styles");
    std::fs::create_dir_all(&styles).unwrap();
    let runtime = common::runtime();
    let source = |name: &str, version: &str, wasm: &[u8]| {
        common::write_package(&work.path().join(name), "hostile", version, wasm, "")
    };
    let current = source("a", GEN_A, common::hostile_wasm());
    let trapping = common::patched(
        &common::hostile_wasm_generation_b(),
        b"trap-odd-n:off",
        b"trap-odd-n:on!",
    );
    let failing = source("failing", GEN_B, &trapping);
    let healthy = source("healthy", GEN_B, &common::hostile_wasm_generation_b());
    deploy::deploy(&runtime, &current, &styles, 3)
        .await
        .unwrap();

    let mut config = common::serve_config(&styles);
    config.deploy.admin_key = Some(ADMIN_KEY.to_string());
    let server = Arc::new(common::TestServer::start(config).await);
    let registry = server.service.pipeline().registry().clone();
    let _watcher = watch::watch(registry.clone()).unwrap();

    // The failing candidate at 20%, as `likeness styles deploy --canary 20%` starts it.
    deploy::deploy_canary(&runtime, &failing, &styles, 0.2)
        .await
        .unwrap();
    let view = wait_canary_state(&server, "active").await;
    let active_at = Instant::now();
    assert_eq!(view["canary"]["candidate"]["share"], 0.2);
    assert_eq!(view["canary"]["candidate"]["version"], GEN_B);
    assert_eq!(view["canary"]["current"]["version"], GEN_A);

    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let answers = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (server, stop, counter, answers) = (
                server.clone(),
                stop.clone(),
                counter.clone(),
                answers.clone(),
            );
            tokio::spawn(async move {
                let client = common::client();
                while !stop.load(Ordering::Relaxed) {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let sent = Instant::now();
                    let (status, body) =
                        generate(&client, &server, n, &format!("client-{c}-{n}"), None).await;
                    answers.lock().unwrap().push(Answer {
                        sent,
                        n,
                        status,
                        code: body["error"]["code"].as_str().map(str::to_string),
                        version: body["style"]["version"].as_str().map(str::to_string),
                    });
                }
            })
        })
        .collect();

    let view = wait_canary_state(&server, "rolled_back").await;
    let rolled_back_at = Instant::now();
    let rollback_took = rolled_back_at - active_at;
    // Traffic goes on a while after the rollback: all of it to the current version.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }

    let answers = std::mem::take(&mut *answers.lock().unwrap());
    let mut failed = 0;
    for answer in &answers {
        if answer.status != 200 {
            // Only the candidate fails, only where it traps (odd n), only before its rollback.
            failed += 1;
            assert_eq!(
                answer.code.as_deref(),
                Some("style_trap"),
                "status {}",
                answer.status
            );
            assert_eq!(answer.n % 2, 1, "a request with an even n failed");
            assert!(
                answer.sent < rolled_back_at,
                "a request failed after the rollback"
            );
        } else if answer.sent > rolled_back_at {
            assert_eq!(
                answer.version.as_deref(),
                Some(GEN_A),
                "served by the candidate after its rollback"
            );
        }
    }
    let after = answers.iter().filter(|a| a.sent > rolled_back_at).count();
    let canary = &view["canary"];
    println!(
        "rolled back {rollback_took:.2?} after the canary started serving: candidate {} requests, \
         {} errors; current {} requests, {} errors; {} client requests ({failed} failed, {after} \
         after the rollback)",
        canary["candidate"]["requests"],
        canary["candidate"]["errors"],
        canary["current"]["requests"],
        canary["current"]["errors"],
        answers.len()
    );
    assert!(failed > 0, "the candidate never failed a request");
    assert!(after > 0, "no traffic after the rollback");
    assert_eq!(canary["current"]["errors"], 0, "{canary}");
    assert!(
        canary["reason"].as_str().unwrap().contains("error rate"),
        "{canary}"
    );
    assert_eq!(server.metric("likeness_canary_rollbacks").await, 1.0);
    assert!(std::fs::symlink_metadata(styles.join(".canary/hostile")).is_err());
    assert!(styles.join(".canary/hostile.rollback").is_file());
    assert_eq!(registry.get("hostile").unwrap().manifest.version, GEN_A);

    // A healthy candidate: both sides answer when asked by header, then an admin promotes it.
    deploy::deploy_canary(&runtime, &healthy, &styles, 0.2)
        .await
        .unwrap();
    wait_canary_state(&server, "active").await;
    let client = common::client();
    for (side, version) in [("candidate", GEN_B), ("current", GEN_A)] {
        let (status, body) = generate(&client, &server, 1, "forced", Some(side)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["style"]["version"], version, "{side}");
    }
    let promote = server.at("/admin/styles/hostile/promote");
    let wrong = send(client.post(&promote).bearer_auth("not-the-key")).await;
    assert_eq!(wrong.status(), 401);
    let promoted = send(client.post(&promote).bearer_auth(ADMIN_KEY)).await;
    assert_eq!(promoted.status(), 200, "{}", promoted.text().await.unwrap());
    let view = style_view(&server).await;
    assert_eq!(view["canary"]["state"], "promoted", "{view}");
    assert_eq!(view["version"], GEN_B);
    let healthy_digest = registry.get("hostile").unwrap().digest.clone();
    assert_eq!(view["status"]["digest"], healthy_digest.as_str());
    // The filesystem says the same, so a restart serves the promoted version.
    let served = std::fs::read_to_string(styles.join("hostile").join("style.toml")).unwrap();
    assert!(served.contains(GEN_B));
    assert!(std::fs::symlink_metadata(styles.join(".canary/hostile")).is_err());
    tokio::time::sleep(watch::QUIET * 5).await;
    assert_eq!(registry.get("hostile").unwrap().manifest.version, GEN_B);
    assert_eq!(view["canary"]["current"]["version"], GEN_A);
    drop(_watcher);
    Arc::try_unwrap(server).ok().unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_admin_routes_are_off_unless_configured() {
    let styles = tempfile::tempdir().unwrap();
    common::write_package(styles.path(), "hostile", GEN_A, common::hostile_wasm(), "");
    let server = common::TestServer::start(common::serve_config(styles.path())).await;
    let response = send(
        common::client()
            .post(server.at("/admin/styles/hostile/promote"))
            .bearer_auth(ADMIN_KEY),
    )
    .await;
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    server.stop().await;
}
