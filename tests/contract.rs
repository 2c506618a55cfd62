//! Contract 0.2 over real HTTP: the host checks every request's options against the style's
//! parameter specs before the style runs (and applies the defaults once), and a package built
//! against 0.1.0 (`tests/fixtures/v0.1/pixel-art`, built from the tree before the migration)
//! serves next to 0.2 styles through the host's adapter, with the same look as its 0.2 build.

mod common;

use common::{
    TestServer, client, copy_packages, photo_form, send, send_json, serve_config,
    styles_with_hostile,
};
use reqwest::StatusCode;
use serde_json::Value;

async fn generate(server: &TestServer, style: &str, options: &str) -> (StatusCode, Value) {
    let response = send(
        client()
            .post(server.at(&format!("/v1/styles/{style}/generations")))
            .multipart(photo_form("astronaut.png", Some(options))),
    )
    .await;
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// The output image's RGBA pixels.
fn pixels(body: &Value) -> Vec<u8> {
    use base64::Engine as _;
    let url = body["output"]["data_url"].as_str().unwrap();
    let png = base64::engine::general_purpose::STANDARD
        .decode(url.split_once("base64,").unwrap().1)
        .unwrap();
    image::load_from_memory(&png).unwrap().to_rgba8().into_raw()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_host_refuses_bad_options_naming_them_and_applies_the_defaults() {
    let styles = styles_with_hostile();
    let server = TestServer::start(serve_config(styles.path())).await;
    for (style, options, option, says) in [
        (
            "pixel-art",
            r#"{"colour": "red"}"#,
            "colour",
            "is unknown; this style takes: caption, seed, pixel-size, palette",
        ),
        (
            "pixel-art",
            r#"{"pixel-size": "banana"}"#,
            "pixel-size",
            "must be a whole number",
        ),
        (
            "pixel-art",
            r#"{"pixel-size": 100}"#,
            "pixel-size",
            "it must be in 2..=64",
        ),
        (
            "pixel-art",
            r#"{"pixel-size": 2.5}"#,
            "pixel-size",
            "must be a whole number",
        ),
        (
            "pixel-art",
            r#"{"palette": "cga"}"#,
            "palette",
            "must be one of: pico8, gameboy, nes, c64",
        ),
        (
            "anime",
            r#"{"line-strength": "NaN"}"#,
            "line-strength",
            "must be a number",
        ),
        (
            "anime",
            r#"{"line-strength": 1.5}"#,
            "line-strength",
            "it must be in 0..=1",
        ),
        ("anime", r#"{"seed": -1}"#, "seed", "it must be in 0..="),
        (
            "watercolor",
            &format!(r#"{{"caption": "{}"}}"#, "x".repeat(201)),
            "caption",
            "at most 200 are allowed",
        ),
        // The hostile style would crash on these if it ever saw them: it never does.
        (
            "hostile",
            r#"{"no-such-option": "1"}"#,
            "no-such-option",
            "is unknown",
        ),
        (
            "hostile",
            r#"{"sleep-ms": "forever"}"#,
            "sleep-ms",
            "must be a whole number",
        ),
    ] {
        let (status, body) = generate(&server, style, options).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{style} {options}: {body}");
        let error = &body["error"];
        assert_eq!(error["code"], "invalid_options", "{body}");
        assert_eq!(error["style"], style, "{body}");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("option '{option}' ")) && message.contains(says),
            "{style} {options}: {message}"
        );
    }
    // A good request: the style got the client's values, typed, and every default.
    let (status, body) =
        generate(&server, "pixel-art", r#"{"palette": "nes", "seed": "12"}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["options"],
        serde_json::json!({"caption": "a person", "seed": 12, "pixel-size": 8, "palette": "nes"})
    );
    // The specs are in the listing, typed.
    let styles = send_json(client().get(server.at("/v1/styles"))).await;
    let pixel = styles["styles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "pixel-art")
        .unwrap();
    assert_eq!(pixel["contract"], "0.2.0");
    let size = &pixel["params"][2];
    assert_eq!(
        (size["name"].as_str(), size["kind"].as_str()),
        (Some("pixel-size"), Some("integer"))
    );
    assert_eq!(
        (
            size["default"].as_i64(),
            size["min"].as_f64(),
            size["max"].as_f64()
        ),
        (Some(8), Some(2.0), Some(64.0))
    );
    assert!(server.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_0_1_package_serves_next_to_0_2_styles_with_the_same_look() {
    // The 0.2 builds of today's styles, for the comparison, and a styles folder where the
    // committed 0.1.0 build of pixel-art serves next to the 0.2 anime and watercolor.
    // Both without the style-transfer pack, so that both draw from the photo alone.
    let without_transfer = |styles: &std::path::Path| {
        let mut config = serve_config(styles);
        config.models = common::models_without_transfer();
        config
    };
    let current = TestServer::start(without_transfer(common::first_party_styles())).await;
    let mixed = tempfile::tempdir().unwrap();
    copy_packages(common::first_party_styles(), mixed.path());
    std::fs::remove_dir_all(mixed.path().join("pixel-art")).unwrap();
    copy_packages(
        &common::repo().join("tests/fixtures/v0.1/pixel-art"),
        &mixed.path().join("pixel-art"),
    );
    let server = TestServer::start(without_transfer(mixed.path())).await;

    let styles = send_json(client().get(server.at("/v1/styles"))).await;
    let contract = |id: &str| {
        styles["styles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .map(|s| s["contract"].clone())
    };
    assert_eq!(contract("pixel-art"), Some("0.1.0".into()), "{styles}");
    assert_eq!(contract("anime"), Some("0.2.0".into()));

    for options in [
        r#"{"seed": 5}"#,
        r#"{"palette": "gameboy", "pixel-size": 12}"#,
    ] {
        let (status, old) = generate(&server, "pixel-art", options).await;
        assert_eq!(status, StatusCode::OK, "{old}");
        assert_eq!(old["method"], "none");
        assert_eq!(
            old["plan"]["fallbacks"][0]["method"], "none",
            "0.1 fallback none -> [none]"
        );
        let (status, new) = generate(&current, "pixel-art", options).await;
        assert_eq!(status, StatusCode::OK, "{new}");
        assert_eq!(old["options"], new["options"], "{options}");
        assert!(
            pixels(&old) == pixels(&new),
            "{options}: the 0.1 and 0.2 builds differ"
        );
    }
    let (status, body) = generate(&server, "anime", r#"{"seed": 5}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // 0.1 declares no bounds: the host checks the kind, the 0.1 style its own range.
    let (status, body) = generate(&server, "pixel-art", r#"{"pixel-size": "banana"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("option 'pixel-size'")
    );
    let (status, body) = generate(&server, "pixel-art", r#"{"pixel-size": 100}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_options");
    assert!(server.stop().await);
    assert!(current.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_party_styles_pass_the_conformance_kit() {
    let reports =
        likeness_host::style::conformance::run(&common::runtime(), common::first_party_styles())
            .await
            .unwrap();
    let table = likeness_host::style::conformance::table(&reports);
    println!("{table}");
    let ids: Vec<&str> = reports.iter().map(|r| r.style.as_str()).collect();
    assert_eq!(
        ids,
        [
            "anime",
            "claymation",
            "pixel-art",
            "pop-art",
            "sketch",
            "watercolor"
        ],
        "the Rust, Python (pop-art) and JavaScript (sketch) styles"
    );
    for report in &reports {
        assert!(report.passed(), "{table}");
        assert_eq!(report.rows.len(), 9, "{table}");
    }
    // The kit fails what breaks the contract: the hostile style's 1280 x 960 render is fine,
    // but a package whose component is not a style does not load.
    let broken = tempfile::tempdir().unwrap();
    common::write_package(broken.path(), "broken", "0.1.0", b"\0asm\x01\0\0\0", "");
    let reports = likeness_host::style::conformance::run(&common::runtime(), broken.path())
        .await
        .unwrap();
    assert!(!reports[0].passed());
    assert_eq!(reports[0].rows[0].check, "loads");
}
