//! The HTTP API end to end: a real server on a loopback socket, a real HTTP client, the four
//! first-party styles (and the hostile test style for slow requests), real models and photos.
//! This host has no diffusion pack: the Rust styles draw by style transfer (the CPU tier's pack
//! is a default pack), the Python and JavaScript ones run method `none`, and without the
//! style-transfer pack every style runs method `none`.

mod common;

use std::io::Cursor;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{
    TestServer, client, error_code, expect_error, photo_bytes, photo_form, read_events, send,
    send_json, serve_config, styles_with_hostile,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The first-party styles: four in Rust, `pop-art` in Python, `sketch` in JavaScript.
const STYLES: [&str; 6] = [
    "anime",
    "claymation",
    "pixel-art",
    "pop-art",
    "sketch",
    "watercolor",
];

/// The sha256 a first-party style's manifest names (the digest of its component).
fn manifest_sha256(style: &str) -> String {
    let path = common::first_party_styles().join(style).join("style.toml");
    let manifest: toml::Table = std::fs::read_to_string(path).unwrap().parse().unwrap();
    manifest["sha256"].as_str().unwrap().to_string()
}

async fn start_default() -> TestServer {
    TestServer::start(serve_config(common::first_party_styles())).await
}

/// Decodes a `data:image/...;base64,` URL.
fn decode_data_url(url: &str) -> image::DynamicImage {
    let (meta, data) = url.split_once(',').expect("a data URL");
    assert!(
        meta.starts_with("data:image/") && meta.ends_with(";base64"),
        "{meta}"
    );
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap();
    image::load_from_memory(&bytes).unwrap()
}

/// A JPEG of `image` whose EXIF orientation is `orientation`.
fn jpeg_with_orientation(image: &image::RgbImage, orientation: u16) -> Vec<u8> {
    use image::ImageEncoder as _;
    let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes());
    tiff.extend_from_slice(&0x0112u16.to_be_bytes());
    tiff.extend_from_slice(&3u16.to_be_bytes());
    tiff.extend_from_slice(&1u32.to_be_bytes());
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut jpeg = Vec::new();
    let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 92);
    encoder.set_exif_metadata(tiff).unwrap();
    encoder
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    jpeg
}

async fn poll_job(server: &TestServer, id: &str, until: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let job = send_json(client().get(server.at(&format!("/v1/jobs/{id}")))).await;
        if until.contains(&job["status"].as_str().unwrap()) {
            return job;
        }
        assert!(Instant::now() < deadline, "job stuck: {job}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for_metric(server: &TestServer, series: &str, value: f64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let now = server.metric(series).await;
        if now == value {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} is {now}, expected {value}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_styles_openapi_playground_and_request_ids() {
    let server = start_default().await;
    let http = client();

    let health = send(http.get(server.at("/healthz"))).await;
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.text().await.unwrap(), "ok");
    let ready = send(http.get(server.at("/readyz"))).await;
    assert_eq!(ready.status(), StatusCode::OK);

    let listed = send_json(http.get(server.at("/v1/styles"))).await;
    let ids: Vec<&str> = listed["styles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, STYLES);
    for style in listed["styles"].as_array().unwrap() {
        assert_eq!(style["status"]["state"], "serving", "{style}");
        assert!(style["version"].is_string());
        assert!(!style["params"].as_array().unwrap().is_empty());
    }
    let pixel = send_json(http.get(server.at("/v1/styles/pixel-art"))).await;
    assert_eq!(pixel["name"], "Pixel Art");
    let palette = pixel["params"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "palette")
        .unwrap();
    assert_eq!(palette["kind"], "choice");
    assert!(
        palette["choices"]
            .as_array()
            .unwrap()
            .contains(&json!("gameboy"))
    );
    let error = expect_error(
        http.get(server.at("/v1/styles/nope")),
        StatusCode::NOT_FOUND,
        "unknown_style",
    )
    .await;
    assert_eq!(error["style"], "nope");

    let document = send_json(http.get(server.at("/openapi.json"))).await;
    assert_eq!(document["openapi"], "3.1.0");
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/styles",
        "/v1/styles/{id}",
        "/v1/analyze",
        "/v1/styles/{id}/generations",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/events",
    ] {
        assert!(
            document["paths"][path].is_object(),
            "{path} is not documented"
        );
    }
    assert!(document["components"]["schemas"]["GenerationView"].is_object());
    // A 202 generation links to its job's operations, which exist.
    let operations: Vec<&str> = document["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|operation| operation["operationId"].as_str())
        .collect();
    let links =
        &document["paths"]["/v1/styles/{id}/generations"]["post"]["responses"]["202"]["links"];
    for operation in ["getJob", "jobEvents", "cancelJob"] {
        assert_eq!(links[operation]["operationId"], operation, "{links}");
        assert_eq!(links[operation]["parameters"]["id"], "$response.body#/id");
        assert!(operations.contains(&operation), "{operations:?}");
    }
    // An empty image is refused, and documented so.
    let schemas = &document["components"]["schemas"];
    assert_eq!(
        schemas["GenerationJson"]["properties"]["image"]["minLength"],
        1
    );
    assert_eq!(schemas["ImageJson"]["properties"]["image"]["minLength"], 1);

    let page = send(http.get(server.at("/"))).await;
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("Likeness playground") && !html.contains("https://"));

    let generated = send(http.get(server.at("/healthz"))).await;
    let id = generated.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let echoed = send(
        http.get(server.at("/healthz"))
            .header("x-request-id", "client-chosen-42"),
    )
    .await;
    assert_eq!(echoed.headers()["x-request-id"], "client-chosen-42");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn analyze_reports_faces_in_oriented_pixels_for_every_body_encoding() {
    let server = start_default().await;
    let http = client();
    let astronaut = photo_bytes("astronaut.png");

    let multipart = send_json(
        http.post(server.at("/v1/analyze"))
            .multipart(photo_form("astronaut.png", None)),
    )
    .await;
    assert_eq!(
        (multipart["width"].as_u64(), multipart["height"].as_u64()),
        (Some(512), Some(512))
    );
    let faces = multipart["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 1, "{multipart}");
    let face = &faces[0];
    let bbox: Vec<f64> = face["box"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(bbox.len(), 4);
    assert!(
        bbox[0] < bbox[2] && bbox[1] < bbox[3] && bbox[0] >= 0.0 && bbox[3] <= 512.0,
        "{bbox:?}"
    );
    assert_eq!(face["landmarks"].as_array().unwrap().len(), 5);
    assert!(face["score"].as_f64().unwrap() > 0.9);
    assert_eq!(face["dominant"], true);
    let share = face["share"].as_f64().unwrap();
    assert!(share > 0.01 && share < 0.5, "{share}");
    assert!(face.get("embedding").is_none());

    let raw = send_json(
        http.post(server.at("/v1/analyze?embedding=true"))
            .header("content-type", "image/png")
            .body(astronaut.clone()),
    )
    .await;
    let embedding: Vec<f64> = raw["faces"][0]["embedding"]
        .as_array()
        .expect("an embedding with ?embedding=true")
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let norm: f64 = embedding.iter().map(|v| v * v).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-3, "L2 norm {norm}");
    assert_eq!(raw["faces"][0]["box"], face["box"]);

    let data_url = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&astronaut)
    );
    let json_body = send_json(
        http.post(server.at("/v1/analyze"))
            .json(&json!({ "image": data_url })),
    )
    .await;
    assert_eq!(json_body["faces"].as_array().unwrap().len(), 1);

    // EXIF orientation 6 (rotate 90° clockwise): a 451x300 cat becomes 300x451.
    let cat = image::load_from_memory(&photo_bytes("chelsea.png"))
        .unwrap()
        .to_rgb8();
    let (w, h) = cat.dimensions();
    let oriented = send_json(
        http.post(server.at("/v1/analyze"))
            .header("content-type", "image/jpeg")
            .body(jpeg_with_orientation(&cat, 6)),
    )
    .await;
    assert_eq!(
        (
            oriented["width"].as_u64().unwrap(),
            oriented["height"].as_u64().unwrap()
        ),
        (u64::from(h), u64::from(w))
    );
    assert_eq!(
        oriented["faces"].as_array().unwrap().len(),
        0,
        "a cat has no face"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_the_style_transfer_pack_every_first_party_style_runs_method_none() {
    // The filter-only renditions: the fallback of a host without the CPU tier's pack.
    let mut config = serve_config(common::first_party_styles());
    config.models = common::models_without_transfer();
    let server = TestServer::start(config).await;
    let http = client();
    for style in STYLES {
        let started = Instant::now();
        let response = send(
            http.post(server.at(&format!("/v1/styles/{style}/generations")))
                .multipart(photo_form("astronaut.png", Some(r#"{"seed": 7}"#))),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK, "{style}");
        assert_eq!(response.headers()["x-likeness-method"], "none");
        let digest = response.headers()["x-likeness-style-digest"].clone();
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["style"]["id"], style);
        assert_eq!(body["style"]["version"], "0.1.0");
        assert_eq!(body["style"]["digest"], manifest_sha256(style));
        assert_eq!(digest, manifest_sha256(style));
        assert_eq!(body["method"], "none");
        assert_eq!(body["plan"]["method"], "none");
        // The options the style got: the request's, typed, with the style's defaults.
        assert_eq!(body["options"]["seed"], 7);
        assert_eq!(body["options"]["caption"], "a person");
        let reason = body["reason"].as_str().unwrap();
        assert!(reason.contains("no diffusion models"), "{reason}");
        assert_eq!(body["faces"].as_array().unwrap().len(), 1);
        // The finished image is scored against the astronaut's face, whatever the method.
        let identity = &body["identity"];
        let score = identity["score"].as_f64().unwrap();
        eprintln!("{style}: identity {identity}");
        assert!((0.0..=1.0).contains(&score), "{identity}");
        assert_eq!(identity["reference_face"], 0);
        assert_eq!(identity["attempts"], 1);
        assert_eq!(
            (&identity["threshold"], &identity["passed"]),
            (&Value::Null, &Value::Null)
        );
        assert!(body.get("identity_reason").is_none());
        assert!(body["timings"]["identity"].as_f64().is_some());
        assert_eq!(body["output"]["format"], "webp", "the default format");
        let result = decode_data_url(body["output"]["data_url"].as_str().unwrap());
        assert_eq!((result.width(), result.height()), (512, 512));
        let original = image::load_from_memory(&photo_bytes("astronaut.png")).unwrap();
        assert_ne!(
            result.to_rgb8().as_raw(),
            original.to_rgb8().as_raw(),
            "{style} changed nothing"
        );
        for stage in [
            "queued",
            "analysing",
            "planning",
            "post-processing",
            "identity",
            "encoding",
        ] {
            assert!(
                body["timings"][stage].as_f64().is_some(),
                "{stage} in {}",
                body["timings"]
            );
        }
        eprintln!("{style}: {:?}", started.elapsed());
    }

    // A photo without a face still renders, and says so.
    let cat = send_json(
        http.post(server.at("/v1/styles/watercolor/generations"))
            .multipart(photo_form("chelsea.png", None)),
    )
    .await;
    assert_eq!(cat["method"], "none");
    assert_eq!(cat["faces"].as_array().unwrap().len(), 0);
    assert_eq!(cat["identity"], Value::Null);
    assert_eq!(
        cat["identity_reason"],
        "the photo has no face to compare the output with"
    );
    let result = decode_data_url(cat["output"]["data_url"].as_str().unwrap());
    assert_eq!((result.width(), result.height()), (451, 300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accept_an_image_type_returns_the_image_with_facts_in_headers() {
    let server = start_default().await;
    let http = client();
    let data_url = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(photo_bytes("astronaut.png"))
    );
    for (accept, format) in [
        ("image/jpeg", image::ImageFormat::Jpeg),
        ("image/webp", image::ImageFormat::WebP),
        ("image/png", image::ImageFormat::Png),
    ] {
        let response = send(http
            .post(server.at("/v1/styles/pixel-art/generations"))
            .header("accept", accept)
            .json(
                &json!({ "image": data_url, "options": { "palette": "gameboy", "pixel-size": 6 } }),
            )).await;
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], accept);
        assert!(
            headers["x-likeness-id"]
                .to_str()
                .unwrap()
                .starts_with("gen_")
        );
        assert_eq!(headers["x-likeness-style"], "pixel-art");
        assert_eq!(headers["x-likeness-style-version"], "0.1.0");
        assert_eq!(
            headers["x-likeness-style-digest"],
            manifest_sha256("pixel-art")
        );
        assert_eq!(headers["x-likeness-method"], "style-transfer");
        assert!(
            headers["x-likeness-reason"]
                .to_str()
                .unwrap()
                .contains("no diffusion")
        );
        let timings = headers["x-likeness-timings"].to_str().unwrap();
        assert!(
            timings.contains("analysing;dur=") && timings.contains("post-processing;dur="),
            "{timings}"
        );
        let identity = headers["x-likeness-identity"].to_str().unwrap();
        assert!(
            identity.starts_with("score=0.") && identity.contains("; reference-face=0"),
            "{identity}"
        );
        let bytes = response.bytes().await.unwrap();
        let decoded = image::ImageReader::with_format(Cursor::new(bytes), format)
            .decode()
            .unwrap();
        assert_eq!((decoded.width(), decoded.height()), (512, 512));
    }
    // JSON with a chosen output format.
    let body = send_json(
        http.post(server.at("/v1/styles/anime/generations"))
            .json(&json!({ "image": data_url, "output_format": "jpeg" })),
    )
    .await;
    assert_eq!(body["output"]["format"], "jpeg");
    assert!(
        body["output"]["data_url"]
            .as_str()
            .unwrap()
            .starts_with("data:image/jpeg;base64,")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_reason_is_cut_in_its_header_and_whole_in_json() {
    let styles = styles_with_hostile();
    let server = TestServer::start(serve_config(styles.path())).await;
    // The hostile style echoes an unknown attack's name in its reason (here about 820 bytes,
    // under the bound on reasons, over the 512 bytes a header carries).
    let name = "é".repeat(400);
    let options = json!({ "attack": name }).to_string();
    let response = send(
        client()
            .post(server.at("/v1/styles/hostile/generations"))
            .header("accept", "image/png")
            .multipart(photo_form("astronaut.png", Some(&options))),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let header = response.headers()["x-likeness-reason"].to_str().unwrap();
    let reason = percent_encoding::percent_decode_str(header)
        .decode_utf8()
        .unwrap();
    assert!(reason.len() <= 512, "{} bytes", reason.len());
    assert!(reason.ends_with('…'), "{reason}");
    assert!(reason.starts_with("no such attack 'éé"), "{reason}");

    let body = send_json(
        client()
            .post(server.at("/v1/styles/hostile/generations"))
            .multipart(photo_form("astronaut.png", Some(&options))),
    )
    .await;
    assert!(body["reason"].as_str().unwrap().contains(&name), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_error_has_one_json_shape_and_its_status() {
    let styles = styles_with_hostile();
    // A package that never validates: its style is listed as failed and cannot serve.
    common::write_package(styles.path(), "broken", "1.0.0", b"not wasm", "");
    let mut config = serve_config(styles.path());
    config.limits.max_upload_bytes = 2 * 1024 * 1024;
    let server = TestServer::start(config).await;
    let http = client();
    let generate = |style: &str| http.post(server.at(&format!("/v1/styles/{style}/generations")));
    let png = |bytes: Vec<u8>| {
        reqwest::multipart::Form::new().part(
            "image",
            reqwest::multipart::Part::bytes(bytes).file_name("x.png"),
        )
    };

    // 400: options the style refuses, options that are not an object, no image, bad JSON.
    let error = expect_error(
        generate("pixel-art").multipart(photo_form(
            "astronaut.png",
            Some(r#"{"pixel-size": "banana"}"#),
        )),
        StatusCode::BAD_REQUEST,
        "invalid_options",
    )
    .await;
    assert_eq!(error["style"], "pixel-art");
    expect_error(
        generate("anime").multipart(photo_form("astronaut.png", Some("[1, 2]"))),
        StatusCode::BAD_REQUEST,
        "invalid_options",
    )
    .await;
    expect_error(
        generate("anime").multipart(reqwest::multipart::Form::new().text("options", "{}")),
        StatusCode::BAD_REQUEST,
        "missing_image",
    )
    .await;
    expect_error(
        generate("anime")
            .header("content-type", "application/json")
            .body("{\"image\": "),
        StatusCode::BAD_REQUEST,
        "invalid_body",
    )
    .await;
    expect_error(
        generate("anime").multipart(png(Vec::new())),
        StatusCode::BAD_REQUEST,
        "empty_upload",
    )
    .await;
    let bad_query = send(
        http.post(server.at("/v1/analyze?embedding=perhaps"))
            .multipart(photo_form("astronaut.png", None)),
    )
    .await;
    error_code(bad_query, StatusCode::BAD_REQUEST).await;

    // 404: unknown style, unknown job, unknown route; 405 keeps its Allow header.
    expect_error(
        generate("no-such-style").multipart(photo_form("astronaut.png", None)),
        StatusCode::NOT_FOUND,
        "unknown_style",
    )
    .await;
    expect_error(
        http.get(server.at("/v1/jobs/gen_nope")),
        StatusCode::NOT_FOUND,
        "unknown_job",
    )
    .await;
    expect_error(
        http.get(server.at("/v2/anything")),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let method = send(http.put(server.at("/v1/styles"))).await;
    assert!(method.headers().contains_key("allow"));
    assert_eq!(
        error_code(method, StatusCode::METHOD_NOT_ALLOWED).await["code"],
        "method_not_allowed"
    );

    // 413: a body past the limit (axum's own rejection), and an image whose header declares
    // more pixels per side than allowed.
    let huge = generate("anime")
        .multipart(png(vec![0u8; 4 * 1024 * 1024]))
        .send()
        .await;
    match huge {
        Ok(response) => {
            error_code(response, StatusCode::PAYLOAD_TOO_LARGE).await;
        }
        // The server may answer and close before the client has sent everything.
        Err(error) => assert!(error.is_request() || error.is_body(), "{error}"),
    }
    expect_error(
        http.post(server.at("/v1/analyze"))
            .header("content-type", "application/octet-stream")
            .body(vec![0u8; 2_621_440]),
        StatusCode::PAYLOAD_TOO_LARGE,
        "image_too_large",
    )
    .await;
    let mut wide = Vec::new();
    image::RgbImage::new(13_000, 1)
        .write_to(&mut Cursor::new(&mut wide), image::ImageFormat::Png)
        .unwrap();
    expect_error(
        generate("anime").multipart(png(wide)),
        StatusCode::PAYLOAD_TOO_LARGE,
        "image_too_large",
    )
    .await;

    // 415: not an image type we take, and a content type we do not read.
    expect_error(
        generate("anime").multipart(png(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec())),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_image",
    )
    .await;
    expect_error(
        generate("anime")
            .header("content-type", "text/plain")
            .body("hello"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_content_type",
    )
    .await;

    // 422: a truncated PNG.
    let mut truncated = photo_bytes("astronaut.png");
    truncated.truncate(truncated.len() / 3);
    expect_error(
        generate("anime").multipart(png(truncated)),
        StatusCode::UNPROCESSABLE_ENTITY,
        "corrupt_image",
    )
    .await;

    // 503: a style that never validated, with its reason; and a style the sandbox stopped.
    let broken = send(generate("broken").multipart(photo_form("astronaut.png", None))).await;
    assert!(broken.headers().contains_key("retry-after"));
    let error = error_code(broken, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(error["code"], "style_unavailable");
    assert_eq!(error["style"], "broken");
    expect_error(
        generate("hostile").multipart(photo_form("astronaut.png", Some(r#"{"attack": "trap"}"#))),
        StatusCode::SERVICE_UNAVAILABLE,
        "style_trap",
    )
    .await;
    assert_eq!(
        server
            .metric(r#"likeness_plugin_traps_total{style="hostile",code="style_trap"}"#)
            .await,
        1.0
    );
    // The host keeps serving after the trap.
    let after = send(generate("hostile").multipart(photo_form("astronaut.png", None))).await;
    assert_eq!(after.status(), StatusCode::OK);
    let listed = send_json(http.get(server.at("/v1/styles/broken"))).await;
    assert_eq!(listed["status"]["state"], "failed");
    assert!(!listed["status"]["last_error"].as_str().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_jobs_stream_events_in_order_and_replay_them_to_late_subscribers() {
    let styles = styles_with_hostile();
    let server = TestServer::start(serve_config(styles.path())).await;
    let http = client();
    let created = send(
        http.post(server.at("/v1/styles/hostile/generations"))
            .header("prefer", "respond-async")
            .multipart(photo_form("astronaut.png", Some(r#"{"sleep-ms": 300}"#))),
    )
    .await;
    assert_eq!(created.status(), StatusCode::ACCEPTED);
    assert_eq!(created.headers()["preference-applied"], "respond-async");
    let location = created.headers()["location"].to_str().unwrap().to_string();
    let job: Value = created.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/v1/jobs/{id}"));
    assert!(["queued", "running"].contains(&job["status"].as_str().unwrap()));
    assert_eq!(job["links"]["self"], location);
    assert_eq!(job["links"]["events"], format!("{location}/events"));
    assert_eq!(job["links"]["cancel"], location);

    // A live subscriber: every stage in order, then the outcome, then the stream ends.
    let live = read_events(send(http.get(server.at(&format!("{location}/events")))).await).await;
    let names: Vec<&str> = live.iter().map(|(name, _, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "queued",
            "analysing",
            "planning",
            "post-processing",
            "succeeded"
        ]
    );
    assert_eq!(
        live.iter().map(|(_, id, _)| *id).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    let outcome = &live[4].2;
    assert_eq!(outcome["method"], "none");
    assert_eq!(outcome["job"], id.as_str());
    assert_eq!(live[2].2["status"], "running");

    let finished = poll_job(&server, &id, &["succeeded"]).await;
    assert_eq!(finished["style"]["version"], "0.1.0-generation-a");
    assert_eq!(
        finished["style"]["digest"],
        finished["result"]["style"]["digest"]
    );
    assert_eq!(
        finished["style"]["digest"].as_str().unwrap().len(),
        64,
        "{finished}"
    );
    assert_eq!(finished["result"]["method"], "none");
    assert!(
        finished["expires_at_ms"].as_u64().unwrap() > finished["finished_at_ms"].as_u64().unwrap()
    );
    let image = decode_data_url(finished["result"]["output"]["data_url"].as_str().unwrap());
    assert_eq!((image.width(), image.height()), (512, 512));

    // A late subscriber gets the same events; Last-Event-ID resumes after one.
    let late = read_events(send(http.get(server.at(&format!("{location}/events")))).await).await;
    assert_eq!(
        late.iter()
            .map(|(n, i, _)| (n.clone(), *i))
            .collect::<Vec<_>>(),
        live.iter()
            .map(|(n, i, _)| (n.clone(), *i))
            .collect::<Vec<_>>()
    );
    let resumed = read_events(
        send(
            http.get(server.at(&format!("{location}/events")))
                .header("last-event-id", "3"),
        )
        .await,
    )
    .await;
    assert_eq!(
        resumed
            .iter()
            .map(|(n, _, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["post-processing", "succeeded"]
    );

    // A failing job reports its error in the job and in its last event.
    let failing = send_json(
        http.post(server.at("/v1/styles/pixel-art/generations"))
            .header("prefer", "respond-async")
            .multipart(photo_form("astronaut.png", Some(r#"{"palette": "neon"}"#))),
    )
    .await;
    let failing_id = failing["id"].as_str().unwrap();
    let events =
        read_events(send(http.get(server.at(&format!("/v1/jobs/{failing_id}/events")))).await)
            .await;
    let (last, _, data) = events.last().unwrap();
    assert_eq!(last, "failed");
    assert_eq!(data["error"]["code"], "invalid_options");
    let failed = poll_job(&server, failing_id, &["failed"]).await;
    assert_eq!(failed["error"]["code"], "invalid_options");
    assert!(failed.get("result").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_cancels_a_running_job_at_once_and_deletes_a_finished_one() {
    let styles = styles_with_hostile();
    let mut config = serve_config(styles.path());
    config.admission.generation_slots = 1;
    let server = TestServer::start(config).await;
    let http = client();
    let job = send_json(
        http.post(server.at("/v1/styles/hostile/generations"))
            .header("prefer", "respond-async")
            .multipart(photo_form("astronaut.png", Some(r#"{"sleep-ms": 900}"#))),
    )
    .await;
    let id = job["id"].as_str().unwrap().to_string();
    let events = send(http.get(server.at(&format!("/v1/jobs/{id}/events")))).await;
    poll_job(&server, &id, &["running"]).await;
    // Wait until the style is sleeping in `plan`.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.service.jobs().get(&id).unwrap().snapshot().stage
        != Some(likeness_host::pipeline::Stage::Planning)
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let canceled = send_json(http.delete(server.at(&format!("/v1/jobs/{id}")))).await;
    assert_eq!(canceled["status"], "canceled");
    let names: Vec<String> = read_events(events)
        .await
        .into_iter()
        .map(|(n, _, _)| n)
        .collect();
    assert_eq!(names, ["queued", "analysing", "planning", "canceled"]);
    assert_eq!(
        poll_job(&server, &id, &["canceled"]).await["stage"],
        "planning"
    );
    // The generation stopped at once: the single slot is free for the next request long
    // before the 1.8 s the canceled one would have taken.
    wait_for_metric(
        &server,
        "likeness_generations_running",
        0.0,
        Duration::from_secs(1),
    )
    .await;
    let next = send_json(
        http.post(server.at("/v1/styles/hostile/generations"))
            .multipart(photo_form("astronaut.png", None)),
    )
    .await;
    let queued = next["timings"]["queued"].as_f64().unwrap();
    assert!(queued < 300.0, "waited {queued} ms for the slot");

    // Deleting a finished job deletes its result.
    let done = send_json(
        http.post(server.at("/v1/styles/anime/generations"))
            .header("prefer", "respond-async")
            .multipart(photo_form("astronaut.png", None)),
    )
    .await;
    let done_id = done["id"].as_str().unwrap();
    poll_job(&server, done_id, &["succeeded"]).await;
    let deleted = send(http.delete(server.at(&format!("/v1/jobs/{done_id}")))).await;
    assert_eq!(deleted.status(), StatusCode::OK);
    expect_error(
        http.get(server.at(&format!("/v1/jobs/{done_id}"))),
        StatusCode::NOT_FOUND,
        "unknown_job",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finished_jobs_and_their_results_are_deleted_after_the_ttl() {
    let mut config = serve_config(common::first_party_styles());
    config.jobs.ttl_secs = 1;
    let server = TestServer::start(config).await;
    let http = client();
    let job = send_json(
        http.post(server.at("/v1/styles/claymation/generations"))
            .header("prefer", "respond-async")
            .multipart(photo_form("astronaut.png", None)),
    )
    .await;
    let id = job["id"].as_str().unwrap();
    let finished = poll_job(&server, id, &["succeeded"]).await;
    assert!(finished["result"]["output"]["data_url"].is_string());
    assert_eq!(server.metric("likeness_jobs_stored").await, 1.0);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    for request in [
        http.get(server.at(&format!("/v1/jobs/{id}"))),
        http.get(server.at(&format!("/v1/jobs/{id}/events"))),
        http.delete(server.at(&format!("/v1/jobs/{id}"))),
    ] {
        expect_error(request, StatusCode::NOT_FOUND, "unknown_job").await;
    }
    // The reaper removed it from memory, not just from view.
    wait_for_metric(&server, "likeness_jobs_stored", 0.0, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_beyond_the_queue_is_shed_with_429_and_the_server_recovers() {
    let styles = styles_with_hostile();
    let mut config = serve_config(styles.path());
    config.admission.queue = 2;
    config.admission.generation_slots = 1;
    let server = TestServer::start(config).await;
    let url = server.at("/v1/styles/hostile/generations");
    let flood: Vec<_> = (0..12)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let response = send(
                    client()
                        .post(url)
                        .multipart(photo_form("astronaut.png", Some(r#"{"sleep-ms": 250}"#))),
                )
                .await;
                let status = response.status();
                let retry_after = response.headers().get("retry-after").cloned();
                let body: Value = response.json().await.unwrap();
                (status, retry_after, body)
            })
        })
        .collect();
    let mut ok = 0;
    let mut shed = 0;
    for task in flood {
        let (status, retry_after, body) = task.await.unwrap();
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                shed += 1;
                assert_eq!(body["error"]["code"], "queue_full");
                let seconds: u64 = retry_after.unwrap().to_str().unwrap().parse().unwrap();
                assert!((1..=60).contains(&seconds));
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(
        ok >= 3,
        "one running and two queued must complete ({ok} did)"
    );
    assert!(shed >= 1, "a flood of 12 past a queue of 2 must shed");
    assert_eq!(ok + shed, 12);
    assert_eq!(
        server
            .metric(r#"likeness_shed_total{reason="queue_full"}"#)
            .await,
        f64::from(shed)
    );
    assert_eq!(server.metric("likeness_queue_depth").await, 0.0);
    assert_eq!(server.metric("likeness_generations_running").await, 0.0);
    // Recovered: the next request is served.
    let after = send(
        client()
            .post(url)
            .multipart(photo_form("astronaut.png", None)),
    )
    .await;
    assert_eq!(after.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sync_client_that_disconnects_stops_its_generation() {
    let styles = styles_with_hostile();
    let mut config = serve_config(styles.path());
    config.admission.generation_slots = 1;
    let server = TestServer::start(config).await;
    let url = server.at("/v1/styles/hostile/generations");
    // 900 ms in plan plus 900 ms in post-process: the client gives up after 400 ms.
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(400))
        .build()
        .unwrap();
    let gave_up = impatient
        .post(&url)
        .multipart(photo_form("astronaut.png", Some(r#"{"sleep-ms": 900}"#)))
        .send()
        .await
        .unwrap_err();
    assert!(gave_up.is_timeout(), "{gave_up}");
    wait_for_metric(
        &server,
        "likeness_client_disconnects_total",
        1.0,
        Duration::from_secs(2),
    )
    .await;
    wait_for_metric(
        &server,
        "likeness_generations_running",
        0.0,
        Duration::from_secs(1),
    )
    .await;
    // The single slot is free again: the next request does not wait for the abandoned work
    // (which had more than a second left).
    let next = send_json(
        client()
            .post(&url)
            .multipart(photo_form("astronaut.png", None)),
    )
    .await;
    let queued = next["timings"]["queued"].as_f64().unwrap();
    assert!(queued < 300.0, "waited {queued} ms for the slot");
    assert_eq!(
        server
            .metric(r#"likeness_generations_total{style="hostile",method="none",status="200"}"#)
            .await,
        1.0,
        "only the second generation completed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_keys_are_required_when_configured_and_rate_limited_per_key() {
    let mut config = serve_config(common::first_party_styles());
    config.access.api_keys = vec!["key-one".into(), "key-two".into()];
    config.access.rate_per_second = 0.2;
    config.access.burst = 3;
    config.access.cors_origins = vec!["https://app.example".into()];
    let server = TestServer::start(config).await;
    let http = client();
    let styles = server.at("/v1/styles");

    let missing = send(http.get(&styles)).await;
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        error_code(missing, StatusCode::UNAUTHORIZED).await["code"],
        "unauthorized"
    );
    expect_error(
        http.get(&styles).bearer_auth("key-three"),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let post = send(
        http.post(server.at("/v1/styles/anime/generations"))
            .multipart(photo_form("astronaut.png", None)),
    )
    .await;
    error_code(post, StatusCode::UNAUTHORIZED).await;

    // Operations stay open.
    for open in ["/healthz", "/readyz", "/metrics", "/openapi.json", "/"] {
        assert_eq!(
            send(http.get(server.at(open))).await.status(),
            StatusCode::OK,
            "{open}"
        );
    }

    // A burst of 3, then 429 with Retry-After; another key has its own bucket.
    for _ in 0..3 {
        let ok = send(http.get(&styles).bearer_auth("key-one")).await;
        assert_eq!(ok.status(), StatusCode::OK);
    }
    let limited = send(http.get(&styles).bearer_auth("key-one")).await;
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(
        error_code(limited, StatusCode::TOO_MANY_REQUESTS).await["code"],
        "rate_limited"
    );
    let other = send(
        http.post(server.at("/v1/styles/anime/generations"))
            .bearer_auth("key-two")
            .multipart(photo_form("astronaut.png", None)),
    )
    .await;
    assert_eq!(other.status(), StatusCode::OK);
    assert_eq!(
        server
            .metric(r#"likeness_shed_total{reason="rate_limited"}"#)
            .await,
        1.0
    );

    // CORS: the configured origin may call, with the facts headers exposed.
    let preflight = send(
        http.request(
            reqwest::Method::OPTIONS,
            server.at("/v1/styles/anime/generations"),
        )
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, prefer"),
    )
    .await;
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let simple = send(
        http.get(&styles)
            .bearer_auth("key-two")
            .header("origin", "https://app.example"),
    )
    .await;
    let exposed = simple.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(exposed.contains("x-likeness-method"), "{exposed}");
    let foreign = send(
        http.get(server.at("/healthz"))
            .header("origin", "https://evil.example"),
    )
    .await;
    assert!(
        !foreign
            .headers()
            .contains_key("access-control-allow-origin")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_count_requests_generations_stages_and_reloads() {
    let server = start_default().await;
    let http = client();
    for style in ["anime", "anime", "watercolor"] {
        let response = send(
            http.post(server.at(&format!("/v1/styles/{style}/generations")))
                .multipart(photo_form("astronaut.png", None)),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let _ = send(http.get(server.at("/v1/styles/nope"))).await;
    let text = send(http.get(server.at("/metrics"))).await;
    assert!(
        text.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = text.text().await.unwrap();
    let value = |series: &str| common::metric_value(&text, series);
    assert_eq!(
        value(r#"likeness_generations_total{style="anime",method="style-transfer",status="200"}"#),
        2.0
    );
    assert_eq!(
        value(
            r#"likeness_generations_total{style="watercolor",method="style-transfer",status="200"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            r#"likeness_http_requests_total{route="/v1/styles/{id}/generations",method="POST",status="200"}"#
        ),
        3.0
    );
    assert_eq!(
        value(r#"likeness_http_requests_total{route="/v1/styles/{id}",method="GET",status="404"}"#),
        1.0
    );
    for stage in [
        "queued",
        "analysing",
        "planning",
        "post-processing",
        "encoding",
    ] {
        assert_eq!(
            value(&format!(
                r#"likeness_stage_seconds_count{{stage="{stage}"}}"#
            )),
            3.0,
            "{stage}"
        );
    }
    assert_eq!(
        value(r#"likeness_identity_score_count{style="anime",method="style-transfer"}"#),
        2.0
    );
    assert_eq!(
        value(r#"likeness_identity_score_count{style="watercolor",method="style-transfer"}"#),
        1.0
    );
    assert_eq!(
        value(r#"likeness_style_reloads{result="loaded"}"#),
        STYLES.len() as f64
    );
    assert_eq!(value(r#"likeness_style_reloads{result="rejected"}"#), 0.0);
    assert!(text.contains("likeness_queue_depth 0"));
    assert!(text.contains("likeness_plugin_traps_total") || !text.contains("style_trap"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn draining_refuses_new_work_and_finishes_what_is_in_flight() {
    let styles = styles_with_hostile();
    let mut config = serve_config(styles.path());
    config.shutdown.drain_secs = 10;
    // Two generations of one style in flight at once.
    config.admission.generation_slots = 2;
    config.admission.style_slots = Some(2);
    let server = TestServer::start(config).await;
    let url = server.at("/v1/styles/hostile/generations");
    let in_flight = tokio::spawn({
        let url = url.clone();
        async move {
            send(
                client()
                    .post(url)
                    .multipart(photo_form("astronaut.png", Some(r#"{"sleep-ms": 400}"#))),
            )
            .await
        }
    });
    let job = send_json(
        client()
            .post(&url)
            .header("prefer", "respond-async")
            .multipart(photo_form("astronaut.png", Some(r#"{"sleep-ms": 400}"#))),
    )
    .await;
    wait_for_metric(
        &server,
        "likeness_generations_running",
        2.0,
        Duration::from_secs(5),
    )
    .await;
    server.service.begin_drain();
    let refused = send(
        client()
            .post(&url)
            .multipart(photo_form("astronaut.png", None)),
    )
    .await;
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(
        error_code(refused, StatusCode::SERVICE_UNAVAILABLE).await["code"],
        "shutting_down"
    );
    let ready = send(client().get(server.at("/readyz"))).await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Reads still work while draining: the async client collects its job.
    let job_id = job["id"].as_str().unwrap().to_string();
    let done = poll_job(&server, &job_id, &["succeeded", "failed", "canceled"]).await;
    assert_eq!(done["status"], "succeeded");
    assert_eq!(in_flight.await.unwrap().status(), StatusCode::OK);
    assert!(
        server.stop().await,
        "everything finished within the drain deadline"
    );
}

/// The first-party styles in Rust, which draw their looks by style transfer without diffusion,
/// with each style's identity threshold: measured through this test (the astronaut, obama) and
/// the gallery (camera.png), the photo's own person scores anime 0.36-0.70, claymation
/// 0.45-0.57, pixel-art 0.23-0.65, watercolor 0.69-0.83, and Biden's face pasted on Obama's
/// photo at most 0.08 as Obama (pixel-art; the others 0.02): each threshold sits a little
/// below its lowest right-person score and well above the wrong person.
const TRANSFER_STYLES: [(&str, f64); 4] = [
    ("anime", 0.3),
    ("claymation", 0.3),
    ("pixel-art", 0.15),
    ("watercolor", 0.45),
];

/// The least mean absolute difference, per RGB channel on 0..255, between a photo and its
/// style-transfer rendition: a look, not a touch-up.
const MIN_RESTYLING: f64 = 15.0;

/// One synchronous generation of `style` on `photo` (named `name`), as JSON.
async fn generate(server: &TestServer, style: &str, name: &str, photo: Vec<u8>) -> Value {
    let part = reqwest::multipart::Part::bytes(photo)
        .file_name(name.to_string())
        .mime_str("application/octet-stream")
        .unwrap();
    let response = client()
        .post(server.at(&format!("/v1/styles/{style}/generations")))
        .multipart(reqwest::multipart::Form::new().part("image", part))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{style} on {name}");
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_diffusion_the_rust_styles_draw_by_style_transfer_and_keep_the_person() {
    let server = start_default().await;
    let wrong = common::face_swapped("obama.jpg", "biden.jpg");
    let vision = common::vision();
    let photo = image::load_from_memory(&photo_bytes("obama.jpg"))
        .unwrap()
        .to_rgb8();
    let analysis = vision
        .analyze(&photo, &likeness_vision::AnalyzeOptions::default())
        .unwrap();
    let obama = vision
        .reference(&photo, analysis.dominant().unwrap())
        .unwrap();
    for (style, threshold) in TRANSFER_STYLES {
        for name in ["astronaut.png", "obama.jpg"] {
            let photo = photo_bytes(name);
            let body = generate(&server, style, name, photo.clone()).await;
            let identity = &body["identity"];
            eprintln!("{style} on {name}: {identity}");
            assert_eq!(
                body["method"], "style-transfer",
                "{style}: {}",
                body["reason"]
            );
            let original = image::load_from_memory(&photo).unwrap().to_rgb8();
            let result = decode_data_url(body["output"]["data_url"].as_str().unwrap()).to_rgb8();
            assert_eq!(
                result.dimensions(),
                original.dimensions(),
                "{style} on {name}"
            );
            let change = common::mean_abs_diff(&original, &result, |_, _| true, true);
            eprintln!("{style} on {name}: mean difference {change:.1}");
            assert!(change > MIN_RESTYLING, "{style} on {name}: {change:.1}");
            assert_eq!(
                identity["threshold"].as_f64().map(|t| t as f32),
                Some(threshold as f32)
            );
            let score = identity["score"].as_f64().unwrap();
            assert!(score >= threshold, "{style} on {name}: {identity}");
            assert_eq!(identity["passed"], true);
        }
        // Biden's face on Obama's photo, styled, scored as the host scores (the face at the
        // reference's place, embedded and compared) against Obama's face: the right place, the
        // wrong person, below the threshold.
        let body = generate(&server, style, "wrong.png", wrong.clone()).await;
        let output = decode_data_url(body["output"]["data_url"].as_str().unwrap()).to_rgb8();
        let score = vision
            .identity_score(
                &obama,
                &output,
                &likeness_vision::MatchOptions::default(),
                &likeness_vision::Cores,
            )
            .unwrap();
        eprintln!(
            "{style}: the wrong person scores {:.3} as Obama",
            score.score
        );
        assert!(score.matched.is_some(), "{style}: no face at Obama's place");
        assert!(f64::from(score.score) < threshold, "{style}: {score:?}");
    }
}
