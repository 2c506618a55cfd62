//! The browser playground end to end in headless Chromium, driven over WebDriver (a minimal
//! client on reqwest): the style cards with their previews, upload the astronaut photo, see its
//! face box drawn, pick a style, set two of its options through the controls generated from its
//! parameters, generate (an async job followed over SSE), and see the result with the method,
//! the reason, the identity score, the stage timings and the before/after slider.
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
    // The styles come from /v1/styles, one card each, with its preview or a placeholder.
    session
        .wait_for(
            "the style cards",
            "return document.querySelectorAll('#cards .card').length",
            |n| n.as_u64() == Some(6), // the six first-party styles
        )
        .await;
    let previews: Value = common::send_json(http.get(server.at("/v1/styles"))).await;
    let with_preview = previews["styles"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["preview"].is_string())
        .count() as u64;
    session
        .wait_for(
            "the preview thumbnails",
            "return [...document.querySelectorAll('#cards img.thumb')]
                 .filter(img => img.complete && img.naturalWidth > 0).length",
            |n| n.as_u64() == Some(with_preview),
        )
        .await;
    let placeholders = session
        .script("return document.querySelectorAll('#cards .placeholder').length")
        .await;
    assert_eq!(placeholders.as_u64().unwrap(), 6 - with_preview);

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

    // Pick a style: its options become form controls from describe(): the palette a select of
    // its four choices, the pixel size a slider over its range.
    let card = session.find("#cards .card[data-style='pixel-art']").await;
    session
        .call(
            reqwest::Method::POST,
            &format!("/element/{card}/click"),
            Some(json!({})),
        )
        .await;
    let controls = session
        .wait_for(
            "the option controls",
            "const p = document.getElementById('option-palette');
             const s = document.getElementById('option-pixel-size');
             return p && s ? [p.tagName, p.options.length, p.value, s.type, s.min, s.max, s.value] : null;",
            |c| c.is_array(),
        )
        .await;
    assert_eq!(
        controls,
        json!(["SELECT", 4, "pico8", "range", "2", "64", "8"]),
        "{controls}"
    );
    // Set two options as a user would (the slider by its input event, the select by a choice).
    session
        .script(
            "const s = document.getElementById('option-pixel-size');
             s.value = 16; s.dispatchEvent(new Event('input', { bubbles: true }));
             const p = document.getElementById('option-palette');
             p.value = 'gameboy'; p.dispatchEvent(new Event('change', { bubbles: true }));
             return null;",
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
    // The options reached the style, checked and typed by the host.
    let used = session
        .script("return document.getElementById('used-options').textContent")
        .await;
    let used = used.as_str().unwrap();
    assert!(
        used.contains("pixel-size 16") && used.contains("palette gameboy"),
        "{used}"
    );
    // The identity score and the stage timings are shown.
    let identity = session
        .script("return document.getElementById('identity').textContent")
        .await;
    let identity = identity.as_str().unwrap();
    assert!(
        identity
            .split_whitespace()
            .next()
            .is_some_and(|score| score.parse::<f32>().is_ok()),
        "a score, with the gate's verdict when the plan has one: {identity}"
    );
    let stages = session
        .script(
            "return [...document.querySelectorAll('#timings tr')].map(r => r.cells[0].textContent)",
        )
        .await;
    let stages = stages.as_array().unwrap();
    assert!(
        stages.len() >= 3 && stages.last().unwrap() == "total",
        "{stages:?}"
    );
    // The before/after slider uncovers the photo over the result.
    let clip = session
        .script(
            "const s = document.getElementById('slider');
             s.value = 30; s.dispatchEvent(new Event('input', { bubbles: true }));
             return document.getElementById('before').style.clipPath;",
        )
        .await;
    assert_eq!(clip, "inset(0px 70% 0px 0px)");
    let method = session.find("#method").await;
    let text = session
        .call(
            reqwest::Method::GET,
            &format!("/element/{method}/text"),
            None,
        )
        .await;
    assert_eq!(
        text, "style-transfer",
        "the host has the style-transfer pack (make test fetches it)"
    );
    let reason = session
        .script("return document.getElementById('reason').textContent")
        .await;
    assert!(
        reason.as_str().unwrap().contains("no diffusion"),
        "{reason}"
    );
    // The live progress came from the job's event stream: one post-processing per image made
    // (a second one when the identity gate asked for a retry).
    let events = session
        .script("return [...document.querySelectorAll('#progress li')].map(li => li.dataset.event)")
        .await;
    let events: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    let made = events.iter().filter(|e| **e == "post-processing").count();
    assert!((1..=2).contains(&made), "{events:?}");
    assert_eq!(
        events[..3],
        ["queued", "analysing", "planning"],
        "{events:?}"
    );
    assert_eq!(events[3..3 + made], vec!["post-processing"; made][..]);
    assert_eq!(events[3 + made..], ["succeeded"], "{events:?}");
    let original = session
        .script("return document.getElementById('original').naturalWidth")
        .await;
    assert_eq!(original, 512, "the original is shown beside the result");

    // LIKENESS_PLAYGROUND_SCREENSHOT=page.png keeps a picture of the page, to look at.
    if let Some(path) = std::env::var_os("LIKENESS_PLAYGROUND_SCREENSHOT") {
        use base64::Engine as _;
        session
            .call(
                reqwest::Method::POST,
                "/window/rect",
                Some(json!({ "width": 1280, "height": 1500 })),
            )
            .await;
        let shot = session
            .call(reqwest::Method::GET, "/screenshot", None)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot.as_str().unwrap())
            .unwrap();
        std::fs::write(&path, png).unwrap();
    }
    session.call(reqwest::Method::DELETE, "", None).await;
    drop(driver);
}

/// A styles folder with copies of the first-party packages: anime with another (PNG) preview,
/// pixel-art without one, watercolor with a "preview" that is not an image.
fn styles_with_previews() -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    common::copy_packages(common::first_party_styles(), dir.path());
    let png = common::small_png();
    // Sets (or, with no file, removes) a package's preview.
    let with_preview = |id: &str, preview: Option<(&str, &[u8])>| {
        let package = dir.path().join(id);
        let manifest = package.join("style.toml");
        let text: String = std::fs::read_to_string(&manifest)
            .unwrap()
            .lines()
            .filter(|line| !line.starts_with("preview ="))
            .map(|line| format!("{line}\n"))
            .collect();
        let Some((file, bytes)) = preview else {
            std::fs::write(&manifest, text).unwrap();
            return;
        };
        std::fs::write(package.join(file), bytes).unwrap();
        // Top-level keys go before the first table.
        let (head, tables) = text.split_at(text.find("\n[").map_or(text.len(), |i| i + 1));
        std::fs::write(&manifest, format!("{head}preview = \"{file}\"\n{tables}")).unwrap();
    };
    with_preview("anime", Some(("preview.png", &png)));
    with_preview("pixel-art", None);
    with_preview(
        "watercolor",
        Some(("preview.webp", b"<svg onload=alert(1)></svg>")),
    );
    (dir, png)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_style_serves_its_preview_with_a_tag_and_a_bad_preview_fails_the_package() {
    let (styles, png) = styles_with_previews();
    let server = TestServer::start(serve_config(styles.path())).await;
    let http = common::client();

    let list: Value = common::send_json(http.get(server.at("/v1/styles"))).await;
    let style = |id: &str| {
        list["styles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("{id} in {list}"))
            .clone()
    };
    assert_eq!(style("anime")["preview"], "/v1/styles/anime/preview");
    assert!(style("pixel-art").get("preview").is_none());
    let watercolor = style("watercolor");
    assert_eq!(watercolor["status"]["state"], "failed", "{watercolor}");
    let error = watercolor["status"]["last_error"].as_str().unwrap();
    assert!(
        error.contains("the preview preview.webp is not a PNG, JPEG or WebP image"),
        "{error}"
    );

    let response = http
        .get(server.at("/v1/styles/anime/preview"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(header(&response, "content-type").unwrap(), "image/png");
    assert_eq!(
        header(&response, "x-content-type-options").unwrap(),
        "nosniff"
    );
    assert_eq!(header(&response, "cache-control").unwrap(), "no-cache");
    let etag = header(&response, "etag").unwrap();
    assert!(etag.starts_with('"') && etag.len() == 34, "{etag}");
    assert_eq!(response.bytes().await.unwrap().as_ref(), png.as_slice());

    let again = http
        .get(server.at("/v1/styles/anime/preview"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert!(again.bytes().await.unwrap().is_empty());

    for (path, code) in [
        ("/v1/styles/pixel-art/preview", "no_preview"),
        ("/v1/styles/nope/preview", "unknown_style"),
    ] {
        let response = http.get(server.at(path)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().len() > 10);
    }
    server.stop().await;
}
