//! A hostile style cannot hurt the host: each misbehaviour yields its typed error within its
//! budget, and the next request to a good style succeeds.
//!
//! Timing bounds here only catch hangs (a busy 2-core machine must pass every time); the budgets
//! themselves are CPU time, so contention does not make valid work fail.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use likeness_contract::options::RawOptions;
use likeness_contract::{Analysis, Capabilities, Options, StyleError};
use likeness_host::server::error::generation_status;
use likeness_host::style::{LoadedStyle, package};
use likeness_host::wasm::{Call, CallError, Image, Limit, RuntimeConfig};

/// The request options `pairs`, as a client sends them.
fn raw(pairs: &[(&str, &str)]) -> RawOptions {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The options `pairs` as the hostile style gets them: checked by the host against its specs.
fn options(pairs: &[(&str, &str)]) -> Options {
    let info = hostile_params();
    likeness_contract::options::check(&info, &raw(pairs)).expect("the hostile style's options")
}

/// The hostile style's parameter specs.
fn hostile_params() -> Vec<likeness_contract::ParamSpec> {
    use likeness_contract::{ParamKind, ParamSpec};
    let spec = |name: &str, kind: ParamKind| ParamSpec {
        name: name.into(),
        description: String::new(),
        kind,
        default_value: None,
    };
    vec![
        spec("attack", ParamKind::Text(1024)),
        spec("secret", ParamKind::Text(1024)),
        spec(
            "sleep-ms",
            ParamKind::Integer {
                min: 0,
                max: 600_000,
            },
        ),
        spec(
            "burn",
            ParamKind::Integer {
                min: 0,
                max: 1_000_000,
            },
        ),
        spec(
            "n",
            ParamKind::Integer {
                min: 0,
                max: i64::MAX,
            },
        ),
    ]
}

fn analysis() -> Analysis {
    Analysis {
        width: 640,
        height: 480,
        faces: Vec::new(),
    }
}

/// A temporary folder holding the package `hostile` of `wasm` with `extra` manifest lines.
fn hostile_package(wasm: &[u8], extra: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let package = common::write_package(dir.path(), "hostile", "0.1.0-generation-a", wasm, extra);
    (dir, package)
}

async fn hostile(extra: &str) -> Arc<LoadedStyle> {
    // Kept for the whole process: the assets test below needs the folder while the style lives.
    let dir = common::kept_dir("hostile");
    let package = common::write_package(
        &dir,
        "hostile",
        "0.1.0-generation-a",
        common::hostile_wasm(),
        extra,
    );
    package::load(&common::runtime(), &package)
        .await
        .expect("the hostile style behaves by default")
}

/// The style's plan for a photo without faces on a host without diffusion.
async fn fallback_plan(style: &LoadedStyle) -> likeness_contract::Plan {
    style
        .component
        .plan(&analysis(), &Capabilities::none(), &Vec::new())
        .await
        .unwrap()
}

/// A `width` x `height` photo of one grey.
fn photo(width: u32, height: u32) -> Image {
    Image {
        width,
        height,
        rgba: vec![7; (width * height * 4) as usize],
    }
}

async fn plan(style: &LoadedStyle, pairs: &[(&str, &str)]) -> Result<String, CallError> {
    plan_on(style, pairs, &Capabilities::none()).await
}

/// [`plan`] on a host that can run `capabilities`.
async fn plan_on(
    style: &LoadedStyle,
    pairs: &[(&str, &str)],
    capabilities: &Capabilities,
) -> Result<String, CallError> {
    style
        .component
        .plan(&analysis(), capabilities, &options(pairs))
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
    let defaults = likeness_contract::options::check(&anime.info.params, &[]).unwrap();
    let plan = anime
        .component
        .plan(&analysis(), &Capabilities::none(), &defaults)
        .await
        .unwrap();
    assert_eq!(plan.method.kind().name(), "none");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_is_stopped_at_its_cpu_budget() {
    let style = hostile("").await;
    let started = Instant::now();
    let error = plan(&style, &[("attack", "loop")]).await.unwrap_err();
    let elapsed = started.elapsed();
    let CallError::Timeout {
        call: Call::Plan,
        limit: Limit::Cpu,
        limit_ms: 50,
        cpu_ms,
        ..
    } = error
    else {
        panic!("{error:?}")
    };
    assert_eq!(error.code(), "style_timeout");
    let message = error.to_string();
    assert!(
        message.contains("hostile") && message.contains("50 ms CPU budget in plan"),
        "the error names the style and the limit: {message}"
    );
    assert!(
        cpu_ms >= 50,
        "stopped before its budget: {cpu_ms} ms of CPU"
    );
    assert!(
        elapsed >= Duration::from_millis(50),
        "stopped early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "stopped late: {elapsed:?}"
    );
    eprintln!("loop stopped after {cpu_ms} ms of CPU, {elapsed:?} of wall time");
    assert_host_still_serves(&style).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_budget_follows_the_manifest_override() {
    let style = hostile("[limits]\nplan_ms = 300").await;
    let started = Instant::now();
    let error = plan(&style, &[("attack", "loop")]).await.unwrap_err();
    assert!(
        matches!(
            error,
            CallError::Timeout {
                limit: Limit::Cpu,
                limit_ms: 300,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
}

/// Millions of rounds of the hostile style's `burn`, about 300 ms of CPU on this machine.
const BURN_300_MS: &str = "200";

/// CPU time of this whole process so far (user + system).
fn process_cpu() -> Duration {
    // SAFETY: `usage` is a valid, writable rusage.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Busy threads, more than the machine has cores, until dropped.
struct CpuHog {
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl CpuHog {
    fn start() -> CpuHog {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (0..cores * 2)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_add(1));
                    }
                })
            })
            .collect();
        CpuHog { stop, threads }
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_cpu_hog_valid_work_keeps_its_budget_and_a_loop_still_stops() {
    let style = hostile("").await;
    let photo = photo(64, 48);
    let fallback = fallback_plan(&style).await;
    let burn = options(&[("burn", BURN_300_MS)]);
    let (started, cpu) = (Instant::now(), process_cpu());
    style
        .component
        .post_process(&photo, &analysis(), &fallback, &burn)
        .await
        .expect("the work runs alone");
    let (alone, alone_cpu) = (started.elapsed(), process_cpu() - cpu);
    eprintln!("the work alone: {alone_cpu:?} of CPU in {alone:?}");

    let hog = CpuHog::start();
    for round in 0..3 {
        let started = Instant::now();
        style
            .component
            .post_process(&photo, &analysis(), &fallback, &burn)
            .await
            .unwrap_or_else(|e| panic!("round {round}: valid work failed under the hog: {e}"));
        eprintln!(
            "~300 ms of CPU: {alone:?} alone, {:?} under the hog",
            started.elapsed()
        );
    }
    let started = Instant::now();
    let error = plan(&style, &[("attack", "loop")]).await.unwrap_err();
    let elapsed = started.elapsed();
    drop(hog);
    let CallError::Timeout { limit, cpu_ms, .. } = error else {
        panic!("{error:?}")
    };
    eprintln!(
        "under the hog the loop hit its {limit:?} limit after {cpu_ms} ms of CPU, {elapsed:?}"
    );
    // Its 50 ms of CPU normally; the 500 ms wall-clock ceiling only if the machine gave it
    // under a tenth of a core.
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_sleeping_in_plan_or_post_process_is_stopped_at_the_wall_clock_ceiling() {
    let style = hostile("[limits]\npost_process_ms = 100").await;
    let sleep = options(&[("sleep-ms", "30000")]);
    let started = Instant::now();
    let error = plan(&style, &[("sleep-ms", "30000")]).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(
            error,
            CallError::Timeout {
                call: Call::Plan,
                limit: Limit::WallClock,
                limit_ms: 500,
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("500 ms wall-clock ceiling in plan"),
        "{message}"
    );
    assert!(elapsed < Duration::from_secs(5), "slept on: {elapsed:?}");

    let plan_ok = fallback_plan(&style).await;
    let started = Instant::now();
    let error = style
        .component
        .post_process(&photo(8, 8), &analysis(), &plan_ok, &sleep)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            CallError::Timeout {
                call: Call::PostProcess,
                limit: Limit::WallClock,
                limit_ms: 1000,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_host_still_serves(&style).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleepers_neither_hold_good_requests_nor_leak_pool_slots() {
    // A pool of two instances: a sleeper whose slot were not freed would starve the rest.
    let runtime = common::runtime_with(RuntimeConfig {
        max_instances: 2,
        ..RuntimeConfig::default()
    });
    let (_dir, package) = hostile_package(common::hostile_wasm(), "");
    let style = Arc::new(package::load(&runtime, &package).await.unwrap());
    for _ in 0..4 {
        let sleeper = {
            let style = style.clone();
            tokio::spawn(async move { plan(&style, &[("sleep-ms", "30000")]).await })
        };
        // While the sleeper holds one slot, a good request is answered.
        assert_eq!(
            plan(&style, &[]).await.unwrap(),
            "behaving 0.1.0-generation-a"
        );
        let error = sleeper.await.unwrap().unwrap_err();
        assert!(
            matches!(
                error,
                CallError::Timeout {
                    limit: Limit::WallClock,
                    ..
                }
            ),
            "{error:?}"
        );
    }
    assert_eq!(
        plan(&style, &[]).await.unwrap(),
        "behaving 0.1.0-generation-a"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_describe_that_sleeps_fails_the_load_at_its_ceiling() {
    let (_dir, package) = hostile_package(
        &common::hostile_wasm_describing("describe:sleeps:0000030000"),
        "",
    );
    let started = Instant::now();
    let error = package::load(&common::runtime(), &package)
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    let message = format!("{error:#}");
    assert!(
        message.contains("500 ms wall-clock ceiling in describe"),
        "{message}"
    );
    assert!(elapsed < Duration::from_secs(10), "slept on: {elapsed:?}");
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
    let plan = fallback_plan(&style).await;
    let photo = photo(32, 16);
    let post_process = |attack: &'static str| {
        let (style, plan, photo) = (style.clone(), plan.clone(), photo.clone());
        async move {
            style
                .component
                .post_process(&photo, &analysis(), &plan, &options(&[("attack", attack)]))
                .await
                .unwrap_err()
        }
    };
    let error = post_process("wrong-size").await;
    assert!(
        matches!(
            error,
            CallError::BadOutput {
                call: Call::PostProcess,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.code(), "style_bad_output");
    // A buffer that does not fit its size never becomes an image: the host's canvas refuses
    // it (a trap in the guest).
    let error = post_process("short-buffer").await;
    match &error {
        CallError::Trap {
            call: Call::PostProcess,
            message,
            ..
        } => assert!(message.contains("do not make a 32x16"), "{message}"),
        other => panic!("{other:?}"),
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
            } => assert_eq!(message.as_deref(), Some(denial)),
            other => panic!("{attack}: the style got through: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_assets_are_read_only_and_do_not_leak_the_package() {
    let (_dir, package) = hostile_package(common::hostile_wasm(), "[grants]\nassets = true");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compile_bomb_is_refused_before_compiling_and_never_compiled_again() {
    let functions = "(func)".repeat(100_000);
    let bomb = wat::parse_str(format!("(component (core module {functions}))")).unwrap();
    let (_dir, package) = hostile_package(&bomb, "");
    let runtime = common::runtime();
    for attempt in 0..3 {
        let started = Instant::now();
        let error = package::load(&runtime, &package).await.unwrap_err();
        let elapsed = started.elapsed();
        let message = format!("{error:#}");
        assert!(
            message.contains("100000 functions in core module 1 (functions per module)"),
            "{message}"
        );
        if attempt > 0 {
            assert!(message.contains("not compiled again"), "{message}");
        }
        eprintln!("attempt {attempt}: refused in {elapsed:?}");
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    }
    assert_eq!(runtime.compilations(), 0, "the bomb reached the compiler");
    // A good component still compiles (or loads from the cache) on the same runtime.
    let (_good_dir, good) = hostile_package(common::hostile_wasm(), "");
    package::load(&runtime, &good).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_plans_are_refused_naming_the_field() {
    let style = hostile("[limits]\nplan_ms = 1000").await;
    // The diffusion lies are told on a host that runs diffusion (else the method itself is
    // refused first), in the settings of a ControlNet method.
    let capabilities = Capabilities::all();
    for (attack, field) in [
        ("huge-prompt", "plan.method.prompt"),
        ("huge-negative", "plan.method.negative-prompt"),
        ("huge-reason", "plan.reason"),
        ("empty-reason", "plan.reason"),
        ("many-controls", "plan.method.control-maps"),
        ("bad-control", "plan.method.control-maps[0].end"),
        ("nan-weight", "plan.method.identity-weight"),
        ("inf-guidance", "plan.method.guidance"),
        ("bad-fallback", "plan.fallbacks[0]"),
        ("zero-size", "plan.method.size"),
        ("huge-size", "plan.method.size"),
        ("bad-face", "plan.reference-faces[0]"),
        ("bad-gate", "plan.identity-gate.threshold"),
    ] {
        let capabilities = if attack == "bad-fallback" {
            Capabilities::none()
        } else {
            capabilities.clone()
        };
        let error = plan_on(&style, &[("attack", attack)], &capabilities)
            .await
            .unwrap_err();
        match &error {
            CallError::BadOutput {
                call: Call::Plan,
                field: named,
                message,
                ..
            } => {
                assert_eq!(named, field, "{attack}: {message}");
                assert!(message.starts_with(field), "{attack}: {message}");
                assert!(
                    message.len() < 200,
                    "{attack}: the message echoes the value"
                );
            }
            other => panic!("{attack}: {other:?}"),
        }
        assert_eq!(error.code(), "style_bad_output");
    }
    assert_host_still_serves(&style).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_style_info_fails_the_load_naming_the_field() {
    for (marker, field) in [
        ("describe:bigtxt:0000000000", "style-info.description"),
        ("describe:params:0000000000", "style-info.params"),
    ] {
        let (_dir, package) = hostile_package(
            &common::hostile_wasm_describing(marker),
            "[limits]\nplan_ms = 1000",
        );
        let error = package::load(&common::runtime(), &package)
            .await
            .unwrap_err();
        let call = error.downcast_ref::<CallError>();
        assert!(
            matches!(call, Some(CallError::BadOutput { call: Call::Describe, field: f, .. }) if f == field),
            "{marker}: {error:#}"
        );
    }
}

/// A photo without faces, as PNG bytes.
fn gray_png() -> Vec<u8> {
    let mut png = Vec::new();
    image::RgbImage::from_pixel(96, 64, image::Rgb([120, 130, 140]))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    png
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_refuses_lying_plans_without_a_diffusion_pack() {
    use likeness_host::pipeline::{GenerateError, Pipeline};
    let dir = tempfile::tempdir().unwrap();
    common::write_package(
        dir.path(),
        "hostile",
        "0.1.0-generation-a",
        common::hostile_wasm(),
        "[limits]\nplan_ms = 1000",
    );
    let registry = likeness_host::style::Registry::new(common::runtime(), dir.path());
    registry.load_all().await.unwrap();
    let pipeline = Pipeline::new(registry, common::vision(), Default::default());
    let cancel = tokio_util::sync::CancellationToken::new();
    // Without a diffusion pack, a diffusion method is itself the lie.
    for (attack, field) in [
        ("nan-weight", "plan.method"),
        ("bad-fallback", "plan.fallbacks[0]"),
        ("bad-face", "plan.reference-faces[0]"),
        ("empty-reason", "plan.reason"),
        ("huge-prompt", "plan.method"),
    ] {
        let error = pipeline
            .generate(
                "hostile",
                gray_png(),
                &raw(&[("attack", attack)]),
                &|_| {},
                &cancel,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&error, GenerateError::Style(CallError::BadOutput { field: f, .. }) if f == field),
            "{attack}: {error:?}"
        );
        assert_eq!(error.code(), "style_bad_output");
        assert_eq!(generation_status(&error), StatusCode::SERVICE_UNAVAILABLE);
    }
    let good = pipeline
        .generate("hostile", gray_png(), &Vec::new(), &|_| {}, &cancel)
        .await
        .unwrap();
    assert_eq!(good.plan.reason, "behaving 0.1.0-generation-a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_see_clocks_in_whole_milliseconds() {
    let style = hostile("[limits]\nplan_ms = 1000").await;
    let report = plan(&style, &[("attack", "clock")]).await.unwrap();
    eprintln!("the guest saw: {report}");
    let numbers: Vec<u128> = report
        .split(' ')
        .filter_map(|word| word.parse().ok())
        .collect();
    let [
        monotonic_step,
        monotonic_resolution,
        wall_step,
        wall_resolution,
    ] = numbers[..]
    else {
        panic!("{report}")
    };
    for (what, nanos) in [
        ("monotonic resolution", monotonic_resolution),
        ("wall resolution", wall_resolution),
    ] {
        assert_eq!(nanos, 1_000_000, "{what}: {report}");
    }
    // 200k readings may all fall in one millisecond (then no step is seen at all), but no step
    // is ever finer than one.
    for (what, nanos) in [("monotonic step", monotonic_step), ("wall step", wall_step)] {
        assert!(nanos == 0 || nanos >= 1_000_000, "{what}: {report}");
    }
}
