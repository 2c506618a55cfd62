//! A hostile style cannot hurt the host: each misbehaviour yields its typed error within its
//! deadline, and the next request to a good style succeeds.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use likeness_host::runtime::{Analysis, Call, CallError, Capabilities, Image, Options, StyleError};
use likeness_host::style::{LoadedStyle, package};

fn options(pairs: &[(&str, &str)]) -> Options {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn analysis() -> Analysis {
    Analysis {
        width: 640,
        height: 480,
        faces: Vec::new(),
    }
}

async fn hostile(extra: &str) -> Arc<LoadedStyle> {
    let dir = tempfile::tempdir().unwrap();
    let package = common::write_package(
        dir.path(),
        "hostile",
        "0.1.0-generation-a",
        common::hostile_wasm(),
        extra,
    );
    let style = package::load(&common::runtime(), &package)
        .await
        .expect("the hostile style behaves by default");
    std::mem::forget(dir); // the assets test below needs the folder while the style lives
    style
}

async fn plan(style: &LoadedStyle, pairs: &[(&str, &str)]) -> Result<String, CallError> {
    style
        .component
        .plan(&analysis(), &Capabilities::none(), &options(pairs))
        .await
        .map(|plan| plan.reason)
}

/// After every failure the same host still serves: the hostile style's good path and a
/// first-party style both answer.
async fn assert_host_still_serves(style: &LoadedStyle) {
    assert_eq!(
        plan(style, &[]).await.unwrap(),
        "behaving 0.1.0-generation-a"
    );
    let anime = package::load(
        &common::runtime(),
        &common::first_party_styles().join("anime"),
    )
    .await
    .unwrap();
    let plan = anime
        .component
        .plan(&analysis(), &Capabilities::none(), &Vec::new())
        .await
        .unwrap();
    assert_eq!(plan.method.as_str(), "none");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_is_stopped_at_its_deadline() {
    let style = hostile("").await;
    let started = Instant::now();
    let error = plan(&style, &[("attack", "loop")]).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(
            error,
            CallError::Timeout {
                call: Call::Plan,
                limit_ms: 50,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.code(), "style_timeout");
    assert!(
        error.to_string().contains("hostile"),
        "the error names the style: {error}"
    );
    assert!(
        elapsed >= Duration::from_millis(50),
        "stopped early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(1000),
        "stopped late: {elapsed:?}"
    );
    assert_host_still_serves(&style).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_deadline_follows_the_manifest_override() {
    let style = hostile("[limits]\nplan_ms = 300").await;
    let started = Instant::now();
    let error = plan(&style, &[("attack", "loop")]).await.unwrap_err();
    assert!(
        matches!(error, CallError::Timeout { limit_ms: 300, .. }),
        "{error:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_allocation_hits_the_memory_cap() {
    let style = hostile("[limits]\nmemory_mib = 64\nplan_ms = 1000").await;
    let error = plan(&style, &[("attack", "alloc")]).await.unwrap_err();
    assert!(
        matches!(error, CallError::MemoryLimit { limit_mib: 64, .. }),
        "{error:?}"
    );
    assert_eq!(error.code(), "style_memory_limit");
    assert_host_still_serves(&style).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_recursion_overflows_the_guest_stack_only() {
    let style = hostile("[limits]\nplan_ms = 1000").await;
    let error = plan(&style, &[("attack", "recurse")]).await.unwrap_err();
    assert!(
        matches!(
            error,
            CallError::StackOverflow {
                call: Call::Plan,
                ..
            }
        ),
        "{error:?}"
    );
    assert_host_still_serves(&style).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_a_trap() {
    let style = hostile("").await;
    let error = plan(&style, &[("attack", "trap")]).await.unwrap_err();
    assert!(
        matches!(
            error,
            CallError::Trap {
                call: Call::Plan,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.style(), "hostile");
    assert_host_still_serves(&style).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_of_the_wrong_size_is_refused() {
    let style = hostile("").await;
    let plan = style
        .component
        .plan(&analysis(), &Capabilities::none(), &Vec::new())
        .await
        .unwrap();
    let photo = Image {
        width: 32,
        height: 16,
        rgba: vec![7; 32 * 16 * 4],
    };
    for attack in ["wrong-size", "short-buffer"] {
        let error = style
            .component
            .post_process(&photo, &analysis(), &plan, &options(&[("attack", attack)]))
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                CallError::BadOutput {
                    call: Call::PostProcess,
                    ..
                }
            ),
            "{attack}: {error:?}"
        );
        assert_eq!(error.code(), "style_bad_output");
    }
    assert_host_still_serves(&style).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_environment_and_arguments_are_out_of_reach() {
    let style = hostile("").await;
    for (attack, denial) in [
        ("read-file", "file access denied"),
        ("read-env", "environment denied"),
    ] {
        let error = plan(&style, &[("attack", attack)]).await.unwrap_err();
        match error {
            CallError::Style {
                error: StyleError::Internal(message),
                ..
            } => assert_eq!(message, denial),
            other => panic!("{attack}: the style got through: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_assets_are_read_only_and_do_not_leak_the_package() {
    let dir = tempfile::tempdir().unwrap();
    let package = common::write_package(
        dir.path(),
        "hostile",
        "0.1.0-generation-a",
        common::hostile_wasm(),
        "[grants]\nassets = true",
    );
    std::fs::create_dir(package.join("assets")).unwrap();
    std::fs::write(package.join("assets").join("paper.pgm"), b"P5 1 1 255 x").unwrap();
    let style = package::load(&common::runtime(), &package).await.unwrap();
    let error = plan(&style, &[("attack", "read-file")]).await.unwrap_err();
    assert!(
        matches!(
            error,
            CallError::Style {
                error: StyleError::Internal(_),
                ..
            }
        ),
        "escaped /assets: {error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chatty_output_and_log_spam_are_capped_not_fatal() {
    let style = hostile("[limits]\nplan_ms = 1000").await;
    assert_eq!(
        plan(&style, &[("attack", "print")]).await.unwrap(),
        "printed"
    );
    assert_eq!(
        plan(&style, &[("attack", "log-spam")]).await.unwrap(),
        "logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_of_one_request_is_gone_in_the_next() {
    let style = hostile("").await;
    let first = plan(
        &style,
        &[("attack", "remember"), ("secret", "photo-of-alice")],
    )
    .await
    .unwrap();
    assert_eq!(first, "remembered before: ''");
    let second = plan(
        &style,
        &[("attack", "remember"), ("secret", "photo-of-bob")],
    )
    .await
    .unwrap();
    assert_eq!(
        second, "remembered before: ''",
        "request 2 saw request 1's data"
    );
}
