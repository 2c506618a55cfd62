//! Start-up off the critical path: packages load in parallel after the server starts, so a
//! package whose `describe` is slow delays neither readiness nor any other style.

mod common;

use std::time::{Duration, Instant};

use likeness_host::style::{Registry, StyleState, package};

/// A bound that only catches a hang.
const HANG: Duration = Duration::from_secs(60);
/// How long the slow package's `describe` sleeps (well past what the other package and the
/// server need to start on a busy machine).
const SLOW_DESCRIBE: &str = "describe:sleeps:0000008000";

async fn state_of(client: &reqwest::Client, server: &common::TestServer, id: &str) -> String {
    let view: serde_json::Value = client
        .get(server.at(&format!("/v1/styles/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    view["status"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn generate(
    client: &reqwest::Client,
    server: &common::TestServer,
    id: &str,
) -> reqwest::Response {
    let part = reqwest::multipart::Part::bytes(common::small_png())
        .file_name("small.png")
        .mime_str("image/png")
        .unwrap();
    client
        .post(server.at(&format!("/v1/styles/{id}/generations")))
        .multipart(reqwest::multipart::Form::new().part("image", part))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_package_delays_neither_readiness_nor_other_styles() {
    let styles = tempfile::tempdir().unwrap();
    let slow = common::hostile_wasm_describing(SLOW_DESCRIBE);
    let limits = "[limits]\nplan_ms = 1000";
    common::write_package(
        styles.path(),
        "hostile",
        "0.1.0-generation-a",
        &slow,
        limits,
    );
    let replica = common::write_package(
        styles.path(),
        "replica",
        "0.1.0-generation-a",
        &common::replica_wasm(),
        "",
    );
    // Warm what a real host has warm at its second start: the component cache and the models.
    let runtime = common::runtime();
    package::load(&runtime, &replica).await.unwrap();
    common::vision();

    let started = Instant::now();
    let registry = Registry::new(runtime, styles.path());
    let loads = registry.start_loading().unwrap();
    let server =
        common::TestServer::serve(common::serve_config(styles.path()), registry.clone()).await;
    let client = common::client();
    while client
        .get(server.at("/readyz"))
        .send()
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(started.elapsed() < HANG, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ready_after = started.elapsed();

    // Ready while the slow package still loads: it is listed as loading and answers 503.
    assert_eq!(state_of(&client, &server, "hostile").await, "loading");
    assert_eq!(state_of(&client, &server, "replica").await, "serving");
    let refused = generate(&client, &server, "hostile").await;
    assert_eq!(refused.status(), 503);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "style_unavailable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("still loading"),
        "{body}"
    );
    assert_eq!(generate(&client, &server, "replica").await.status(), 200);

    for load in loads {
        load.await.unwrap();
    }
    let settled_after = started.elapsed();
    let status = registry.status("hostile").unwrap();
    assert_ne!(status.state, StyleState::Loading);
    println!(
        "ready and serving the other style after {ready_after:.2?}; the slow package settled \
         ({:?}) after {settled_after:.2?}",
        status.state
    );
    server.stop().await;
}

/// Compilations take turns (each uses every core) and are not timed: a package that waits
/// longer than the load timeout while another compiles still loads. (A cold start on a busy
/// machine once rejected every style this way.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_load_waiting_for_its_turn_to_compile_is_not_timed_out() {
    /// More than the replica's `describe` and dry runs take.
    const LIMIT: Duration = Duration::from_secs(5);
    let styles = tempfile::tempdir().unwrap();
    common::write_package(
        styles.path(),
        "replica",
        "0.1.0-generation-a",
        &common::replica_wasm(),
        "",
    );
    let cold = tempfile::tempdir().unwrap();
    let runtime = likeness_host::wasm::StyleRuntime::new(likeness_host::wasm::RuntimeConfig {
        cache_dir: Some(cold.path().to_path_buf()),
        ..Default::default()
    })
    .unwrap();
    let settings = likeness_host::style::RegistrySettings {
        load_timeout: LIMIT,
        ..Default::default()
    };
    let registry = Registry::with_settings(runtime.clone(), styles.path(), settings);

    // Another package compiling for longer than the load timeout.
    let other = runtime
        .compile_turn("another-package")
        .await
        .expect("a cold cache: compiling needs a turn");
    let loads = registry.start_loading().unwrap();
    tokio::time::sleep(LIMIT + Duration::from_secs(1)).await;
    let waiting = registry.status("replica").unwrap();
    assert_eq!(waiting.state, StyleState::Loading, "{waiting:?}");
    assert_eq!(runtime.compilations(), 0, "compiled without its turn");

    drop(other);
    for load in loads {
        tokio::time::timeout(HANG, load).await.unwrap().unwrap();
    }
    let loaded = registry.status("replica").unwrap();
    assert_eq!(loaded.state, StyleState::Serving, "{loaded:?}");
    assert_eq!(runtime.compilations(), 1);
    // Cached now: the next runtime needs no turn.
    assert!(
        runtime
            .compile_turn(&loaded.digest.unwrap())
            .await
            .is_none()
    );
}

/// The guest's part of a load (`describe`, dry runs) is what the load timeout bounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_guest_slower_than_the_load_timeout_is_rejected() {
    let styles = tempfile::tempdir().unwrap();
    let slow = common::hostile_wasm_describing(SLOW_DESCRIBE);
    common::write_package(
        styles.path(),
        "hostile",
        "0.1.0-generation-a",
        &slow,
        "[limits]\nplan_ms = 1000",
    );
    let settings = likeness_host::style::RegistrySettings {
        load_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let registry = Registry::with_settings(common::runtime(), styles.path(), settings);
    for load in registry.start_loading().unwrap() {
        tokio::time::timeout(HANG, load).await.unwrap().unwrap();
    }
    let status = registry.status("hostile").unwrap();
    assert_eq!(status.state, StyleState::Failed, "{status:?}");
    let reason = status.last_error.unwrap_or_default();
    assert!(
        reason.contains("describe and the dry runs took longer than 2 s"),
        "{reason}"
    );
}
