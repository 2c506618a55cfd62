//! Per-style admission over real HTTP: a style that loops until its deadline, flooded with 50
//! concurrent requests, is held to its share of the queue and slots and then cut off by its
//! circuit breaker, while a good style keeps answering 200. Real components in real wasmtime,
//! real models and photos.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{TestServer, client, photo_form, send, serve_config, styles_with_hostile};
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_looping_style_under_a_flood_does_not_shed_a_good_style() {
    let styles = styles_with_hostile();
    // The looping style burns a core: give the good style's calls room on a busy machine (the
    // test is about admission, not deadlines).
    let anime = styles.path().join("anime").join("style.toml");
    let mut manifest = std::fs::read_to_string(&anime).unwrap();
    manifest.push_str("\n[limits]\nplan_ms = 1000\npost_process_ms = 30000\n");
    std::fs::write(&anime, manifest).unwrap();
    let mut config = serve_config(styles.path());
    config.admission.queue = 32;
    config.admission.generation_slots = 2;
    // All 50 uploads may be read at once.
    config.admission.uploads = 64;
    config.admission.uploads_per_client = 64;
    let server = TestServer::start(config).await;

    // 50 requests that loop in `plan` until its 1 s deadline (tests/common: the hostile
    // style's limits), all at once.
    let flood: Vec<_> = (0..50)
        .map(|_| {
            let url = server.at("/v1/styles/hostile/generations");
            tokio::spawn(async move {
                let response = send(
                    client()
                        .post(url)
                        .multipart(photo_form("astronaut.png", Some(r#"{"attack": "loop"}"#))),
                )
                .await;
                let status = response.status();
                let retry_after = response.headers().contains_key("retry-after");
                let body: Value = response.json().await.unwrap();
                (status, retry_after, body)
            })
        })
        .collect();

    // Meanwhile the good style answers, one request after another, until the flood is over.
    let flooding = Arc::new(AtomicBool::new(true));
    let good = {
        let url = server.at("/v1/styles/anime/generations");
        let flooding = flooding.clone();
        tokio::spawn(async move {
            let mut answered = Vec::new();
            while flooding.load(Ordering::Relaxed) || answered.len() < 5 {
                let response = send(
                    client()
                        .post(&url)
                        .multipart(photo_form("astronaut.png", None)),
                )
                .await;
                let status = response.status();
                let body = response.text().await.unwrap();
                answered.push((status, body));
            }
            answered
        })
    };

    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    for task in flood {
        let (status, retry_after, body) = task.await.unwrap();
        let code = body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match (status, code.as_str()) {
            (StatusCode::SERVICE_UNAVAILABLE, "style_timeout")
            | (StatusCode::TOO_MANY_REQUESTS, "style_queue_full")
            | (StatusCode::SERVICE_UNAVAILABLE, "circuit_open" | "style_unavailable") => {
                assert!(retry_after, "{status} {body} has no Retry-After");
                assert_eq!(body["error"]["style"], "hostile", "{body}");
            }
            _ => panic!("unexpected answer to the looping style: {status} {body}"),
        }
        *codes.entry(code).or_default() += 1;
    }
    flooding.store(false, Ordering::Relaxed);
    let answered = good.await.unwrap();
    eprintln!(
        "hostile answers: {codes:?}; the good style answered {} requests meanwhile",
        answered.len()
    );
    for (status, body) in &answered {
        assert_eq!(
            *status,
            StatusCode::OK,
            "the good style answered {status}: {body}"
        );
    }
    // The style's share of the queue (24 waiting, 1 running) shed the rest of the flood, and
    // its breaker opened after 5 timeouts in a row.
    assert!(
        codes.get("style_queue_full").copied().unwrap_or(0) >= 25,
        "{codes:?}"
    );
    assert!(
        codes.get("style_timeout").copied().unwrap_or(0) >= 5,
        "{codes:?}"
    );
    assert_eq!(
        server
            .metric(r#"likeness_circuit_opened_total{style="hostile"}"#)
            .await,
        1.0
    );
    assert_eq!(
        server
            .metric(r#"likeness_circuit_open{style="hostile"}"#)
            .await,
        1.0
    );
    assert_eq!(
        server
            .metric(r#"likeness_circuit_open{style="anime"}"#)
            .await,
        0.0
    );
    assert!(
        server
            .metric(r#"likeness_shed_total{reason="style_queue_full"}"#)
            .await
            >= 25.0
    );

    // The open breaker answers at once, before the upload is read, with when to retry.
    let refused = send(
        client()
            .post(server.at("/v1/styles/hostile/generations"))
            .multipart(photo_form("astronaut.png", None)),
    )
    .await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "circuit_open");
    assert_eq!(server.metric("likeness_queue_depth").await, 0.0);
}
