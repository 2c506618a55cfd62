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
