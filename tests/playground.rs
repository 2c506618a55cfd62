//! The browser playground end to end in headless Chromium, driven over WebDriver (a minimal
//! client on reqwest): upload the astronaut photo, see its face box drawn, pick a style,
//! generate (an async job followed over SSE), and see the result and the method.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them). Missing, the test
//! fails under `CI=true` and is skipped with a note otherwise.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestServer, serve_config};
use serde_json::{Value, json};

/// The W3C WebDriver element key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn tool(env: &str, default: &str) -> PathBuf {
    std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

/// chromedriver on a loopback port, stopped on drop.
struct Driver {
    process: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// One WebDriver session.
struct Session {
    http: reqwest::Client,
    base: String,
}

impl Session {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response: Value = request.send().await.unwrap().json().await.unwrap();
        if let Some(error) = response["value"].get("error") {
            panic!(
                "WebDriver {path}: {error}: {}",
                response["value"]["message"]
            );
        }
        response["value"].clone()
    }

    async fn find(&self, css: &str) -> String {
        let found = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        found[ELEMENT].as_str().unwrap().to_string()
    }

    async fn script(&self, source: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": source, "args": [] })),
        )
        .await
    }

    /// Polls `source` (a script returning a value) until `done` accepts it.
    async fn wait_for(&self, what: &str, source: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let value = self.script(source).await;
            if done(&value) {
                return value;
            }
            if Instant::now() > deadline {
                let error = self
                    .script("return document.getElementById('error').textContent")
                    .await;
                panic!("timed out waiting for {what}: last {value}, page error {error}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn start_driver(chromedriver: &Path) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let process = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", chromedriver.display()));
    Driver {
        process,
        url: format!("http://127.0.0.1:{port}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_playground_styles_a_photo_in_headless_chromium() {
    let chromium = tool("LIKENESS_CHROMIUM", "/usr/bin/chromium");
    let chromedriver = tool("LIKENESS_CHROMEDRIVER", "/usr/bin/chromedriver");
    if !chromium.is_file() || !chromedriver.is_file() {
        assert!(
            !common::in_ci(),
            "{} or {} is missing: CI must install chromium and chromium-driver (see .ci/run)",
            chromium.display(),
            chromedriver.display()
        );
        eprintln!(
            "note: skipping the playground test: install chromium and chromium-driver \
             (apt-get install -y chromium chromium-driver)"
        );
        return;
    }
    let server = TestServer::start(serve_config(common::first_party_styles())).await;
    let driver = start_driver(&chromedriver);
    let http = common::client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = http.get(format!("{}/status", driver.url)).send().await;
        if let Ok(response) = ready
            && let Ok(status) = response.json::<Value>().await
            && status["value"]["ready"] == true
        {
            break;
        }
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let profile = tempfile::tempdir().unwrap();
    let created: Value = http
        .post(format!("{}/session", driver.url))
        .json(&json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["value"]["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no WebDriver session: {created}"));
    let session = Session {
        http: http.clone(),
        base: format!("{}/session/{id}", driver.url),
    };

    session
        .call(
            reqwest::Method::POST,
            "/url",
            Some(json!({ "url": server.at("/") })),
        )
        .await;
    // The styles come from /v1/styles.
    session
        .wait_for(
            "the style list",
            "return document.querySelectorAll('#style option').length",
            |n| n.as_u64() == Some(6), // the six first-party styles
        )
        .await;

    // Upload the photo through the file input: it is shown, analysed, its face boxed.
    let input = session.find("#photo").await;
    let photo = common::photo_path("astronaut.png");
    session
        .call(
            reqwest::Method::POST,
            &format!("/element/{input}/value"),
            Some(json!({ "text": photo.display().to_string() })),
        )
        .await;
    session
        .wait_for(
            "the face analysis",
            "return document.getElementById('faces').textContent",
            |text| text == "1 face",
        )
        .await;
    let canvas = session
        .script(
            "const c = document.getElementById('boxes');
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
             let drawn = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) drawn++;
             return [c.width, c.height, drawn];",
        )
        .await;
    assert_eq!(canvas[0], 512, "{canvas}");
    assert!(
        canvas[2].as_u64().unwrap() > 100,
        "a face box was drawn: {canvas}"
    );

    // Pick a style and generate.
    let option = session.find("#style option[value='pixel-art']").await;
    session
        .call(
            reqwest::Method::POST,
            &format!("/element/{option}/click"),
            Some(json!({})),
        )
        .await;
    let button = session.find("#generate").await;
    session
        .wait_for(
            "the generate button",
            "return !document.getElementById('generate').disabled",
            |enabled| enabled == true,
        )
        .await;
    session
        .call(
            reqwest::Method::POST,
            &format!("/element/{button}/click"),
            Some(json!({})),
        )
        .await;
    let size = session
        .wait_for(
            "the result image",
            "const r = document.getElementById('result');
             return r.hidden ? null : [r.naturalWidth, r.naturalHeight];",
            |size| size.is_array() && size[0].as_u64().unwrap_or(0) > 0,
        )
        .await;
    assert_eq!(size, json!([512, 512]));
    let method = session.find("#method").await;
    let text = session
        .call(
            reqwest::Method::GET,
            &format!("/element/{method}/text"),
            None,
        )
        .await;
    assert_eq!(text, "none");
    let reason = session
        .script("return document.getElementById('reason').textContent")
        .await;
    assert!(
        reason.as_str().unwrap().contains("no diffusion"),
        "{reason}"
    );
    // The live progress came from the job's event stream.
    let events = session
        .script("return [...document.querySelectorAll('#progress li')].map(li => li.dataset.event)")
        .await;
    assert_eq!(
        events,
        json!([
            "queued",
            "analysing",
            "planning",
            "post-processing",
            "succeeded"
        ])
    );
    let original = session
        .script("return document.getElementById('original').naturalWidth")
        .await;
    assert_eq!(original, 512, "the original is shown beside the result");

    session.call(reqwest::Method::DELETE, "", None).await;
    drop(driver);
}
