//! Operators replace, break and delete packages under live traffic; no request is dropped.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use likeness_contract::{Analysis, Capabilities, Options, Value};
use likeness_host::style::{Registry, RegistrySettings, StyleState, watch};

const GEN_A: &str = "0.1.0-generation-a";
const GEN_B: &str = "0.1.0-generation-b";
/// A bound on waits that only catches a hang (the machine may be busy).
const HANG: Duration = Duration::from_secs(30);
/// Slow calls, so that requests are in flight while the package changes.
const LIMITS: &str = "[limits]\nplan_ms = 1000";

fn sleepy(ms: u32) -> Options {
    vec![("sleep-ms".to_string(), Value::Integer(ms.into()))]
}

fn analysis() -> Analysis {
    Analysis {
        width: 512,
        height: 512,
        faces: Vec::new(),
    }
}

/// The version that answers a plan of style `id` now.
async fn serving_version(registry: &Registry, id: &str) -> Option<String> {
    let style = registry.get(id)?;
    let plan = style
        .component
        .plan(&analysis(), &Capabilities::none(), &Vec::new())
        .await
        .ok()?;
    plan.reason.strip_prefix("behaving ").map(str::to_string)
}

/// Polls until style `id` answers as `version`, and returns how long that took.
async fn wait_for_version(
    registry: &Registry,
    id: &str,
    version: &str,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    while serving_version(registry, id).await.as_deref() != Some(version) {
        assert!(
            started.elapsed() < limit,
            "{id} still serves {:?} after {limit:?}",
            serving_version(registry, id).await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// Atomically replaces a package the way a deploy tool does: write aside, then rename over.
fn deploy(styles: &Path, id: &str, version: &str, wasm: &[u8], extra: &str) {
    let staging = tempfile::tempdir_in(styles).unwrap();
    let package = common::write_package(staging.path(), id, version, wasm, extra);
    let old = styles.join(format!(".{id}.old"));
    let target = styles.join(id);
    if target.exists() {
        std::fs::rename(&target, &old).unwrap();
    }
    std::fs::rename(&package, &target).unwrap();
    let _ = std::fs::remove_dir_all(&old);
}

async fn watched_registry(styles: &Path) -> (Arc<Registry>, watch::StyleWatcher) {
    let registry = Registry::new(common::runtime(), styles);
    registry.load_all().await.unwrap();
    let watcher = watch::watch(registry.clone()).unwrap();
    (registry, watcher)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replacing_a_package_under_load_drops_nothing() {
    let styles = tempfile::tempdir().unwrap();
    common::write_package(
        styles.path(),
        "hostile",
        GEN_A,
        common::hostile_wasm(),
        LIMITS,
    );
    let (registry, _watcher) = watched_registry(styles.path()).await;
    assert_eq!(
        serving_version(&registry, "hostile").await.as_deref(),
        Some(GEN_A)
    );

    // 20 requests in flight, each holding the version it started with.
    let in_flight: Vec<_> = (0..20)
        .map(|_| {
            let style = registry.get("hostile").unwrap();
            tokio::spawn(async move {
                style
                    .component
                    .plan(&analysis(), &Capabilities::none(), &sleepy(400))
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;

    deploy(
        styles.path(),
        "hostile",
        GEN_B,
        &common::hostile_wasm_generation_b(),
        LIMITS,
    );
    // A bound that only catches a hang; the reload latency is measured by `benches/reload.rs`.
    wait_for_version(&registry, "hostile", GEN_B, HANG).await;

    for request in in_flight {
        let plan = request
            .await
            .unwrap()
            .expect("a request in flight failed during the reload");
        assert_eq!(
            plan.reason,
            format!("behaving {GEN_A}"),
            "an in-flight request switched versions"
        );
    }
    let status = registry.status("hostile").unwrap();
    assert_eq!(status.version.as_deref(), Some(GEN_B));
    assert_eq!(status.last_error, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broken_packages_are_rejected_and_the_old_version_keeps_serving() {
    let styles = tempfile::tempdir().unwrap();
    common::write_package(
        styles.path(),
        "hostile",
        GEN_A,
        common::hostile_wasm(),
        LIMITS,
    );
    let (registry, _watcher) = watched_registry(styles.path()).await;

    let corrupt: Vec<u8> = common::hostile_wasm().iter().take(5000).copied().collect();
    let wrong_world = wat::parse_str("(component)").unwrap();
    let core_module = wat::parse_str("(module (func (export \"plan\")))").unwrap();
    type BreakIt = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, BreakIt, &str)> = vec![
        (
            "corrupt component",
            Box::new(move |dir| deploy(dir, "hostile", GEN_B, &corrupt, LIMITS)),
            "compiling hostile.wasm",
        ),
        (
            "wrong world",
            Box::new(move |dir| deploy(dir, "hostile", GEN_B, &wrong_world, LIMITS)),
            "world",
        ),
        (
            "core module",
            Box::new(move |dir| deploy(dir, "hostile", GEN_B, &core_module, LIMITS)),
            "compiling hostile.wasm",
        ),
        (
            "hash mismatch",
            Box::new(|dir| {
                deploy(
                    dir,
                    "hostile",
                    GEN_B,
                    &common::hostile_wasm_generation_b(),
                    LIMITS,
                );
                // Tamper with the component after the manifest was written.
                let mut wasm = common::hostile_wasm_generation_b();
                let last = wasm.len() - 1;
                wasm[last] ^= 1;
                std::fs::write(dir.join("hostile").join("hostile.wasm"), wasm).unwrap();
            }),
            "sha256",
        ),
        (
            "describe disagrees",
            Box::new(|dir| {
                deploy(
                    dir,
                    "hostile",
                    GEN_A,
                    &common::hostile_wasm_generation_b(),
                    LIMITS,
                )
            }),
            "describe() says version",
        ),
    ];

    for (case, break_it, complaint) in cases {
        let (_, rejections_before) = registry.reload_counts();
        break_it(styles.path());
        let started = Instant::now();
        while registry.reload_counts().1 == rejections_before {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{case}: never rejected"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let status = registry.status("hostile").unwrap();
        let error = status.last_error.clone().unwrap_or_default();
        assert!(
            error.contains(complaint),
            "{case}: the reason '{error}' should mention '{complaint}'"
        );
        assert_eq!(status.state, StyleState::Serving, "{case}");
        assert_eq!(status.version.as_deref(), Some(GEN_A), "{case}");
        assert_eq!(
            serving_version(&registry, "hostile").await.as_deref(),
            Some(GEN_A),
            "{case}: the old version stopped serving"
        );
    }

    // A good package afterwards is accepted and clears the error.
    deploy(
        styles.path(),
        "hostile",
        GEN_B,
        &common::hostile_wasm_generation_b(),
        LIMITS,
    );
    wait_for_version(&registry, "hostile", GEN_B, Duration::from_secs(2)).await;
    assert_eq!(registry.status("hostile").unwrap().last_error, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_package_retires_after_the_grace_period_and_its_requests_finish() {
    let styles = tempfile::tempdir().unwrap();
    common::write_package(
        styles.path(),
        "hostile",
        GEN_A,
        common::hostile_wasm(),
        LIMITS,
    );
    let grace = Duration::from_millis(600);
    let registry = Registry::with_settings(
        common::runtime(),
        styles.path(),
        RegistrySettings {
            retire_grace: grace,
            ..RegistrySettings::default()
        },
    );
    registry.load_all().await.unwrap();
    let _watcher = watch::watch(registry.clone()).unwrap();

    let style = registry.get("hostile").unwrap();
    let request = tokio::spawn(async move {
        style
            .component
            .plan(&analysis(), &Capabilities::none(), &sleepy(300))
            .await
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    let deleted = Instant::now();
    std::fs::remove_dir_all(styles.path().join("hostile")).unwrap();

    while registry.get("hostile").is_some() {
        assert!(deleted.elapsed() < HANG, "the deleted style still serves");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        deleted.elapsed() >= grace,
        "retired {:?} after the deletion, before the grace period",
        deleted.elapsed()
    );
    assert!(registry.status("hostile").is_none());
    let plan = request
        .await
        .unwrap()
        .expect("the request in flight failed when its package was deleted");
    assert_eq!(plan.reason, format!("behaving {GEN_A}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_package_back_within_the_grace_period_never_stops_serving() {
    let styles = tempfile::tempdir().unwrap();
    common::write_package(
        styles.path(),
        "hostile",
        GEN_A,
        common::hostile_wasm(),
        LIMITS,
    );
    let (registry, _watcher) = watched_registry(styles.path()).await;
    let away = styles.path().join(".away");
    std::fs::rename(styles.path().join("hostile"), &away).unwrap();
    // Well past the watcher's quiet time: the registry sees the folder missing.
    let missing = Instant::now();
    while missing.elapsed() < watch::QUIET * 5 {
        assert!(
            registry.get("hostile").is_some(),
            "retired within the grace period"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    std::fs::rename(&away, styles.path().join("hostile")).unwrap();
    // Past the grace period (2 s by default): the re-check finds the folder back.
    tokio::time::sleep(RegistrySettings::default().retire_grace + watch::QUIET * 5).await;
    assert_eq!(
        serving_version(&registry, "hostile").await.as_deref(),
        Some(GEN_A)
    );
    assert_eq!(registry.status("hostile").unwrap().last_error, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_package_that_never_validated_is_listed_as_failed() {
    let styles = tempfile::tempdir().unwrap();
    common::write_package(
        styles.path(),
        "hostile",
        GEN_B,
        common::hostile_wasm(),
        LIMITS,
    );
    let registry = Registry::new(common::runtime(), styles.path());
    registry.load_all().await.unwrap();
    assert!(registry.get("hostile").is_none());
    let status = registry.status("hostile").unwrap();
    assert_eq!(status.state, StyleState::Failed);
    assert!(
        status
            .last_error
            .unwrap()
            .contains("describe() says version '0.1.0-generation-a'")
    );
}

/// Log lines written while it is installed (on the thread that installed it).
#[derive(Clone, Default)]
struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLog {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Every file of the package folders in `styles`, read in full (as a backup tool, a deploy
/// script checking its work, or the registry itself would).
fn read_every_file(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            read_every_file(&path);
        } else {
            std::fs::read(&path).unwrap();
        }
    }
}

// A current-thread runtime, so that the captured log sees the registry's tasks.
#[test]
fn an_idle_registry_rests_and_a_changed_manifest_reloads_that_package_once() {
    let log = CapturedLog::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        // Debug, so that a reload that found nothing new shows as well.
        .with_env_filter("likeness_host::style=debug")
        .finish();
    let _log = tracing::subscriber::set_default(subscriber);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let styles = tempfile::tempdir().unwrap();
        common::write_package(
            styles.path(),
            "hostile",
            GEN_A,
            common::hostile_wasm(),
            LIMITS,
        );
        common::write_package(
            styles.path(),
            "replica",
            GEN_A,
            &common::replica_wasm(),
            LIMITS,
        );
        let (registry, _watcher) = watched_registry(styles.path()).await;
        assert_eq!(registry.reload_counts(), (2, 0));
        let log_after_loading = log.text();
        assert_eq!(log_after_loading.matches("style loaded").count(), 2);
        let replica_loaded = registry.status("replica").unwrap().last_reload_at_ms;

        // Ten idle seconds, with every file read over and over and both styles called.
        let idle_until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < idle_until {
            read_every_file(styles.path());
            for id in ["hostile", "replica"] {
                assert!(serving_version(&registry, id).await.is_some(), "{id}");
            }
            // Longer than the watcher's quiet time, so that reads could not hide in one window.
            tokio::time::sleep(watch::QUIET * 3).await;
        }
        tokio::time::sleep(watch::QUIET * 5).await;
        assert_eq!(
            registry.reload_counts(),
            (2, 0),
            "an idle registry reloaded"
        );
        let idle_log = log.text();
        let idle_lines: Vec<&str> = idle_log[log_after_loading.len()..].lines().collect();
        assert!(
            idle_lines.is_empty(),
            "an idle registry reloaded (or tried to) {} times: {:#?}",
            idle_lines.len(),
            &idle_lines[..idle_lines.len().min(4)]
        );

        // A real change to one manifest: that package reloads, once; the other does not.
        let manifest = styles.path().join("hostile").join("style.toml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        std::fs::write(&manifest, text.replace("plan_ms = 1000", "plan_ms = 900")).unwrap();
        let started = Instant::now();
        while registry.reload_counts() == (2, 0) {
            assert!(
                started.elapsed() < HANG,
                "the changed manifest never reloaded"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(watch::QUIET * 5).await;
        assert_eq!(registry.reload_counts(), (3, 0));
        assert_eq!(
            registry.get("hostile").unwrap().manifest.limits.plan_ms,
            Some(900)
        );
        assert_eq!(
            registry.status("replica").unwrap().last_reload_at_ms,
            replica_loaded,
            "the untouched package reloaded"
        );
        let text = log.text();
        let loaded: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("style loaded"))
            .collect();
        assert_eq!(loaded.len(), 3, "{text}");
        assert!(
            loaded[2].contains("style=\"hostile\"") || loaded[2].contains("style=hostile"),
            "{text}"
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_symlinked_package_is_served_and_its_target_watched() {
    let outside = tempfile::tempdir().unwrap();
    let target = common::write_package(
        outside.path(),
        "hostile",
        GEN_A,
        common::hostile_wasm(),
        LIMITS,
    );
    let styles = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&target, styles.path().join("hostile")).unwrap();
    let (registry, _watcher) = watched_registry(styles.path()).await;
    assert_eq!(
        serving_version(&registry, "hostile").await.as_deref(),
        Some(GEN_A)
    );

    // A change inside the target, outside the styles folder, reloads the style.
    let manifest = target.join("style.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace("plan_ms = 1000", "plan_ms = 900")).unwrap();
    let started = Instant::now();
    while registry.get("hostile").unwrap().manifest.limits.plan_ms != Some(900) {
        assert!(
            started.elapsed() < HANG,
            "a change in the link's target went unseen"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(registry.reload_counts(), (2, 0));
}
