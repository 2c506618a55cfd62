//! End to end through HTTP with a diffusion model pack installed (the tiny pack: the real pack
//! contract on tiny random graphs): the styles are offered the identity methods, and a
//! generation runs InstantID or PuLID for one clear face and ControlNet-only for a photo
//! without one or with a group.

mod common;

use common::{TestServer, client, photo_form, send, serve_config};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_diffusion_pack_the_plan_runs_on_the_engine() {
    let server = serve_with_pack(common::first_party_styles(), common::tiny_pack()).await;
    let http = client();
    for (photo, method, faces) in [
        ("astronaut.png", "instant-id", 1),
        ("chelsea.png", "controlnet", 0),
    ] {
        let response = send(
            http.post(server.at("/v1/styles/anime/generations"))
                .multipart(photo_form(photo, Some(r#"{"seed": 3}"#))),
        )
        .await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{photo}: {body}");
        assert_eq!(body["method"], method, "{photo}: {}", body["reason"]);
        assert_eq!(body["faces"].as_array().unwrap().len(), faces, "{photo}");
        assert!(
            body["timings"]["generating"].as_f64().unwrap() > 0.0,
            "{photo}: {}",
            body["timings"]
        );
        let steps = body["plan"]["steps"].as_u64().unwrap();
        assert!(steps > 0, "{photo}");
        let (width, height) = (
            body["plan"]["size"]["width"].as_u64().unwrap(),
            body["plan"]["size"]["height"].as_u64().unwrap(),
        );
        let data_url = body["output"]["data_url"].as_str().unwrap();
        let png = base64_decode(data_url.split_once("base64,").unwrap().1);
        let image = image::load_from_memory(&png).unwrap();
        // The plan's size is one the pack runs (the host fills in the pack's default for the
        // photo's aspect ratio when the style sets none; the tiny pack's largest side is 512).
        let (got_w, got_h) = (image.width() as u64, image.height() as u64);
        assert!(
            got_w == width && got_h == height && got_w.max(got_h) <= 512,
            "{photo}: {got_w}x{got_h} for a {width}x{height} plan"
        );
        let aspect = |w: u64, h: u64| w as f64 / h as f64;
        assert!(
            (aspect(got_w, got_h) - aspect(width, height)).abs() < 0.1,
            "{photo}: the aspect ratio changed"
        );
    }
    assert!(server.stop().await);
}

/// A claymation generation (claymation prefers PuLID) on the PNG `png`, as JSON.
async fn claymation(server: &TestServer, name: &str, png: Vec<u8>) -> Value {
    let part = reqwest::multipart::Part::bytes(png)
        .file_name(name.to_string())
        .mime_str("image/png")
        .unwrap();
    let form = reqwest::multipart::Form::new()
        .part("image", part)
        .text("options", r#"{"seed": 5}"#);
    generation(server, "claymation", form).await
}

/// Six real faces in a 3 x 2 grid of 320-pixel tiles (the lower row mirrored), as PNG.
fn six_face_collage() -> Vec<u8> {
    let names = [
        "astronaut.png",
        "obama.jpg",
        "obama2.jpg",
        "obama2.jpg",
        "astronaut.png",
        "obama.jpg",
    ];
    let mut canvas = image::RgbImage::new(960, 640);
    for (i, name) in names.iter().enumerate() {
        let photo = image::load_from_memory(&common::photo_bytes(name)).unwrap();
        let mut tile = photo.resize_to_fill(320, 320, image::imageops::FilterType::Triangle);
        if i >= 3 {
            tile = tile.fliph();
        }
        let (x, y) = ((i % 3) as i64 * 320, (i / 3) as i64 * 320);
        image::imageops::overlay(&mut canvas, &tile.to_rgb8(), x, y);
    }
    let mut png = std::io::Cursor::new(Vec::new());
    canvas.write_to(&mut png, image::ImageFormat::Png).unwrap();
    png.into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pulid_runs_for_one_clear_face_when_the_pack_has_every_part() {
    let server = serve_with_pack(common::first_party_styles(), common::tiny_pack()).await;

    // One clear face: claymation plans PuLID and the host runs it: the identity features come
    // from the pack's EVA02-CLIP and face parsing on the aligned face.
    let body = claymation(
        &server,
        "astronaut.png",
        common::photo_bytes("astronaut.png"),
    )
    .await;
    assert_eq!(body["planned"], "pulid", "{}", body["reason"]);
    assert_eq!(body["method"], "pulid", "{}", body["reason"]);
    let identity = &body["identity"];
    assert!(identity["score"].is_number(), "{body}");
    assert_eq!(identity["reference_face"], 0, "{identity}");
    assert!(body["timings"]["generating"].as_f64().unwrap() > 0.0);

    // Pixel-art prefers PuLID too.
    let form = photo_form("astronaut.png", Some(r#"{"seed": 5}"#));
    let body = generation(&server, "pixel-art", form).await;
    assert_eq!(body["method"], "pulid", "{}", body["reason"]);

    // No face (the cat) and a group: ControlNet, as the style's policy says.
    let body = claymation(&server, "chelsea.png", common::photo_bytes("chelsea.png")).await;
    assert_eq!(body["method"], "controlnet", "{}", body["reason"]);
    let body = claymation(&server, "collage.png", six_face_collage()).await;
    assert_eq!(
        body["faces"].as_array().unwrap().len(),
        6,
        "{}",
        body["faces"]
    );
    assert_eq!(body["method"], "controlnet", "{}", body["reason"]);
    assert!(server.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pulid_needs_the_eva_role_and_runs_without_face_parsing() {
    // Without EVA02-CLIP the host cannot make PuLID's features: PuLID is not offered and
    // claymation runs InstantID, saying why.
    let pack = tiny_pack_copy();
    drop_graph(pack.path(), "pulid_eva_clip");
    let server = serve_with_pack(common::first_party_styles(), pack.path().to_path_buf()).await;
    let body = claymation(
        &server,
        "astronaut.png",
        common::photo_bytes("astronaut.png"),
    )
    .await;
    assert_eq!(body["method"], "instant-id", "{body}");
    assert!(
        body["reason"].as_str().unwrap().contains("PuLID"),
        "{}",
        body["reason"]
    );
    assert!(server.stop().await);

    // Without face parsing PuLID still runs, whitening outside the landmark ellipse.
    let pack = tiny_pack_copy();
    drop_graph(pack.path(), "face_parsing");
    let server = serve_with_pack(common::first_party_styles(), pack.path().to_path_buf()).await;
    let body = claymation(
        &server,
        "astronaut.png",
        common::photo_bytes("astronaut.png"),
    )
    .await;
    assert_eq!(body["method"], "pulid", "{}", body["reason"]);
    assert!(server.stop().await);
}

/// Removes the `[graphs.ROLE]` table (up to the next blank line) from the pack's manifest.
fn drop_graph(pack: &std::path::Path, role: &str) {
    let path = pack.join("pack.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find(&format!("[graphs.{role}]\n")).unwrap();
    let end = text[start..]
        .find("\n\n")
        .map_or(text.len(), |e| start + e + 2);
    std::fs::write(&path, format!("{}{}", &text[..start], &text[end..])).unwrap();
}

/// A server with the styles in `styles` and the diffusion pack in `pack`.
async fn serve_with_pack(styles: &std::path::Path, pack: std::path::PathBuf) -> TestServer {
    let mut config = serve_config(styles);
    config.diffusion_pack = Some(pack);
    TestServer::start(config).await
}

/// A generation of `style` with `form`, as JSON (which must be 200 OK).
async fn generation(server: &TestServer, style: &str, form: reqwest::multipart::Form) -> Value {
    let response = client()
        .post(server.at(&format!("/v1/styles/{style}/generations")))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{style}: {body}");
    body
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

/// A copy of the tiny pack in a temporary folder, for tests that break one of its files.
fn tiny_pack_copy() -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    common::copy_packages(&common::tiny_pack(), copy.path());
    copy
}

/// A generation of the gated test style on `photo` with `options`, as JSON.
async fn gated(server: &TestServer, photo: &str, options: &str) -> Value {
    generation(server, "gated", photo_form(photo, Some(options))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pack_part_failing_at_run_time_makes_the_plan_run_its_fallback() {
    let pack = tiny_pack_copy();
    let server = serve_with_pack(common::gated_styles(), pack.path().to_path_buf()).await;
    // The pack was verified at start-up; IdentityNet's file breaks afterwards, so InstantID is
    // offered and planned, and fails only when its session is built.
    std::fs::write(pack.path().join("identitynet.onnx"), b"not an onnx model").unwrap();
    let body = gated(&server, "astronaut.png", r#"{"threshold": 0}"#).await;
    assert_eq!(body["planned"], "instant-id", "{body}");
    assert_eq!(body["method"], "controlnet", "{}", body["reason"]);
    let reason = body["reason"].as_str().unwrap();
    eprintln!("fallback: {reason}; identity {}", body["identity"]);
    assert!(
        reason.contains("instant-id could not run (") && reason.contains("identitynet"),
        "{reason}"
    );
    assert!(reason.contains("so controlnet ran instead"), "{reason}");
    assert_eq!(body["identity"]["attempts"], 1, "{}", body["identity"]);
    assert_eq!(body["identity"]["passed"], true);
    assert!(server.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_identity_gate_retries_with_new_seeds_then_falls_back() {
    let server = serve_with_pack(common::gated_styles(), common::tiny_pack()).await;

    // Threshold 0: every score passes; one image.
    let body = gated(
        &server,
        "astronaut.png",
        r#"{"threshold": 0, "attempts": 3}"#,
    )
    .await;
    assert_eq!(
        (&body["method"], &body["planned"]),
        (&json!("instant-id"), &json!("instant-id"))
    );
    let identity = &body["identity"];
    assert_eq!(
        (&identity["attempts"], &identity["passed"]),
        (&json!(1), &json!(true)),
        "{identity}"
    );
    assert_eq!(identity["threshold"], 0.0);

    // The tiny pack's random weights draw coloured noise: no diffusion image has a face, so
    // none reaches 0.99. Each diffusion method gets its two attempts, then `none` answers with
    // the photo itself, which does.
    let body = gated(
        &server,
        "astronaut.png",
        r#"{"threshold": 0.99, "attempts": 2}"#,
    )
    .await;
    let identity = &body["identity"];
    assert_eq!(body["planned"], "instant-id");
    assert_eq!(body["method"], "none", "{}", body["reason"]);
    assert_eq!(identity["attempts"], 5, "{identity}");
    assert_eq!(identity["passed"], true, "{identity}");
    assert!(identity["score"].as_f64().unwrap() >= 0.99, "{identity}");
    let reason = body["reason"].as_str().unwrap();
    eprintln!(
        "gate: {reason}; identity {identity}; timings {}",
        body["timings"]
    );
    for clause in [
        "2 instant-id attempts scored below the identity threshold 0.99",
        "2 controlnet attempts scored below the identity threshold 0.99",
        "so none ran instead",
    ] {
        assert!(reason.contains(clause), "{clause} in {reason}");
    }
    assert!(server.stop().await);

    // With no time for retries, the first image is answered, below the threshold, and the
    // reason says why.
    let mut config = serve_config(common::gated_styles());
    config.diffusion_pack = Some(common::tiny_pack());
    config.identity.retry_budget_secs = 0;
    let server = TestServer::start(config).await;
    let body = gated(
        &server,
        "astronaut.png",
        r#"{"threshold": 0.99, "attempts": 4}"#,
    )
    .await;
    let identity = &body["identity"];
    assert_eq!(body["method"], "instant-id");
    assert_eq!(
        (&identity["attempts"], &identity["passed"]),
        (&json!(1), &json!(false)),
        "{identity}"
    );
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.contains("the 0 s for retries were spent"),
        "{reason}"
    );
    assert!(server.stop().await);
}

/// The stages of a generation around the engine's inputs, in order.
const STAGES: [&str; 5] = [
    "analysing",
    "planning",
    "reference-face",
    "post-processing",
    "identity",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_requests_independent_stages_run_side_by_side_only_on_free_cpu_slots() {
    let mut config = serve_config(common::first_party_styles());
    config.diffusion_pack = Some(common::tiny_pack());
    config.admission.cpu_slots = 4;
    let server = TestServer::start(config).await;
    let pipeline = server.service.pipeline();
    let photo = common::photo_bytes("astronaut.png");
    let options = vec![("seed".to_string(), "3".to_string())];
    let cancel = tokio_util::sync::CancellationToken::new();
    let generate = || pipeline.generate("anime", photo.clone(), &options, &|_| {}, &cancel);
    let lanes = |g: &likeness_host::pipeline::Generation, name: &str| -> Vec<u32> {
        g.spans
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.lane)
            .collect()
    };

    // All four slots free: the reference face is embedded beside the plan, and InstantID's
    // inputs (canny, the face keypoints, the face embedding) are made on several lanes.
    let free = generate().await.unwrap();
    assert_eq!(
        free.plan.method.kind().name(),
        "instant-id",
        "{}",
        free.plan.reason
    );
    eprintln!("free slots: {:#?}", free.spans);
    assert!(free.peak_cpu_slots >= 2, "{}", free.peak_cpu_slots);
    assert!(free.peak_cpu_slots <= 4);
    assert!(lanes(&free, "reference-face").iter().all(|&l| l > 0));
    assert_eq!(lanes(&free, "planning"), [0]);
    let mut inputs: Vec<u32> = free
        .spans
        .iter()
        .filter(|s| !STAGES.contains(&s.name))
        .map(|s| s.lane)
        .collect();
    assert!(
        inputs.len() >= 2,
        "the face embedding and a control map: {:?}",
        free.spans
    );
    inputs.sort();
    inputs.dedup();
    assert!(inputs.len() >= 2, "{:?}", free.spans);

    // One slot free (three held by others): every stage in order on the request's own lane.
    let others = server
        .service
        .admission()
        .cpu_slots()
        .clone()
        .acquire_many_owned(3)
        .await
        .unwrap();
    let one = generate().await.unwrap();
    drop(others);
    eprintln!("one slot: {:#?}", one.spans);
    assert_eq!(one.peak_cpu_slots, 1);
    assert!(one.spans.iter().all(|s| s.lane == 0), "{:?}", one.spans);
    assert!(
        one.spans.windows(2).all(|w| w[0].end_ms <= w[1].start_ms),
        "overlapping stages on one slot: {:?}",
        one.spans
    );
    let order: Vec<&str> = one.spans.iter().map(|s| s.name).collect();
    let n = order.len();
    assert_eq!(order[..3], STAGES[..3], "{order:?}");
    assert_eq!(order[n - 2..], STAGES[3..], "{order:?}");
    assert!(order[3..n - 2].contains(&"face-embedding"), "{order:?}");

    // The same answer either way.
    assert_eq!(free.plan, one.plan);
    assert_eq!(free.analysis, one.analysis);
    assert_eq!(free.identity, one.identity);
    assert!(free.image.rgba == one.image.rgba, "the images differ");
    assert!(server.stop().await);
}
