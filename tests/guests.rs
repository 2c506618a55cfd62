//! The interpreted first-party styles, `pop-art` (Python, componentize-py) and `sketch`
//! (JavaScript, componentize-js), built by `likeness styles build`'s own code with the pinned
//! toolchains and run in real wasmtime: their plans follow the host's policy import, their
//! post-processes draw the look with the canvas operations at the photo's size and
//! deterministically, they serve over real HTTP, bad options are refused with 400, and the
//! `styles new --lang python|js` templates build and validate as generated.

mod common;

use std::sync::Arc;

use common::send;
use likeness_contract::policy::{self, Preferences};
use likeness_contract::{Analysis, Capabilities, MethodKind, Options, Plan};
use likeness_host::style::build::{Language, build_styles_with};
use likeness_host::style::toolchain::Toolchains;
use likeness_host::style::{LoadedStyle, conformance, package};
use likeness_host::wasm::Image;
use reqwest::StatusCode;
use serde_json::Value as Json;

/// The interpreted first-party styles, their language and the options that pick each of their
/// looks without diffusion.
const GUESTS: [(&str, Language, &[&str]); 2] = [
    (
        "pop-art",
        Language::Python,
        &[
            r#"{"palette": "comic"}"#,
            r#"{"palette": "warhol", "dot-size": 14}"#,
            r#"{"panels": true}"#,
        ],
    ),
    (
        "sketch",
        Language::JavaScript,
        &[
            r#"{"medium": "pencil"}"#,
            r#"{"medium": "ink", "shading": 0.2, "line-weight": 1.0}"#,
        ],
    ),
];

async fn load(id: &str) -> Arc<LoadedStyle> {
    package::load(&common::runtime(), &common::first_party_styles().join(id))
        .await
        .unwrap_or_else(|e| panic!("{id} loads: {e:#}"))
}

/// The options of a request after the host's check: the style's defaults with `json` on top.
fn options(style: &LoadedStyle, json: &str) -> Options {
    let raw: serde_json::Map<String, Json> = serde_json::from_str(json).unwrap();
    let raw: Vec<(String, String)> = raw
        .into_iter()
        .map(|(k, v)| {
            let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            (k, text)
        })
        .collect();
    likeness_contract::options::check(&style.info.params, &raw).unwrap()
}

#[test]
fn each_style_describes_itself_in_its_language() {
    common::tokio().block_on(async {
        for (id, language, _) in GUESTS {
            let dir = common::repo().join("plugins").join(id);
            assert_eq!(Language::detect(&dir).unwrap(), language, "{id}");
            let style = load(id).await;
            assert_eq!(style.component.contract(), "0.2.0", "{id}");
            assert_eq!(style.info.id, id);
            assert_eq!(style.info.version, "0.1.0");
            let names: Vec<&str> = style.info.params.iter().map(|p| p.name.as_str()).collect();
            assert_eq!(&names[..2], ["caption", "seed"], "{id}");
            assert!(names.len() >= 4, "{id}: {names:?}");
        }
    });
}

#[test]
fn plans_are_the_host_policy_with_the_style_prompt() {
    common::tokio().block_on(async {
        for (id, _, _) in GUESTS {
            let style = load(id).await;
            let opts = options(&style, r#"{"caption": "a woman\nin a hat", "seed": 42}"#);
            for capabilities in [Capabilities::none(), Capabilities::all()] {
                for (_, analysis) in conformance::situations() {
                    let plan = style
                        .component
                        .plan(&analysis, &capabilities, &opts)
                        .await
                        .unwrap_or_else(|e| panic!("{id}: {e}"));
                    let preferences = Preferences {
                        look: id.to_string(),
                        preferred: MethodKind::InstantId,
                        prompt: String::new(),
                        negative_prompt: String::new(),
                        seed: Some(42),
                    };
                    let expected = policy::default_plan(&analysis, &capabilities, &preferences);
                    assert_eq!(plan.method.kind(), expected.method.kind(), "{id}");
                    let kinds = |p: &Plan| p.fallbacks.iter().map(|m| m.kind()).collect::<Vec<_>>();
                    assert_eq!(kinds(&plan), kinds(&expected), "{id}");
                    assert_eq!(plan.reason, expected.reason, "{id}");
                    assert_eq!(plan.reference_faces, expected.reference_faces, "{id}");
                    if let Some(diffusion) = plan.method.diffusion() {
                        assert!(
                            diffusion.prompt.contains("a woman in a hat"),
                            "{id}: {}",
                            diffusion.prompt
                        );
                        assert!(!diffusion.negative_prompt.is_empty(), "{id}");
                        assert_eq!(diffusion.seed, Some(42), "{id}");
                    }
                }
            }
        }
    });
}

#[test]
fn post_process_draws_each_look_at_the_photo_size_deterministically() {
    let photos = ["astronaut.png", "chelsea.png"].map(|name| {
        let rgba = image::open(common::photo_path(name)).unwrap().to_rgba8();
        let (width, height) = rgba.dimensions();
        Image {
            width,
            height,
            rgba: rgba.into_raw(),
        }
    });
    common::tokio().block_on(async {
        for (id, _, looks) in GUESTS {
            let style = load(id).await;
            for photo in &photos {
                let analysis = Analysis {
                    width: photo.width,
                    height: photo.height,
                    faces: Vec::new(),
                };
                for look in looks {
                    let opts = options(&style, look);
                    let plan = Plan::none("test");
                    let call = || style.component.post_process(photo, &analysis, &plan, &opts);
                    let first = call().await.unwrap_or_else(|e| panic!("{id} {look}: {e}"));
                    assert_eq!((first.width, first.height), (photo.width, photo.height));
                    assert_eq!(first.rgba.len(), photo.rgba.len());
                    let changed = first
                        .rgba
                        .iter()
                        .zip(&photo.rgba)
                        .filter(|(a, b)| a.abs_diff(**b) > 24)
                        .count();
                    assert!(
                        changed > photo.rgba.len() / 5,
                        "{id} {look} changed only {changed} of {} bytes",
                        photo.rgba.len()
                    );
                    let again = call().await.unwrap();
                    assert!(first.rgba == again.rgba, "{id} {look} is not deterministic");
                }
            }
        }
    });
}

#[test]
fn options_are_checked_by_the_host_and_missing_ones_fall_back_to_defaults() {
    // The host refuses a malformed option before the style sees it, and a style given no
    // options at all (a caller other than the host) falls back to its defaults.
    common::tokio().block_on(async {
        for (id, _, _) in GUESTS {
            let style = load(id).await;
            let raw = vec![("caption".to_string(), "x".repeat(10_000))];
            let refused = likeness_contract::options::check(&style.info.params, &raw);
            assert!(refused.is_err(), "{id}: a 10,000-character caption");
            let plan = style
                .component
                .plan(
                    &conformance::situations()[1].1,
                    &Capabilities::all(),
                    &Vec::new(),
                )
                .await
                .unwrap_or_else(|e| panic!("{id} without options: {e}"));
            assert_eq!(plan.method.kind(), MethodKind::InstantId, "{id}");
            let prompt = &plan.method.diffusion().unwrap().prompt;
            assert!(prompt.contains("a person"), "{id}: {prompt}");
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_styles_serve_over_http_and_refuse_bad_options() {
    let server =
        common::TestServer::start(common::serve_config(common::first_party_styles())).await;
    let http = reqwest::Client::new();
    let form = |options: Option<&str>| {
        let mut form = reqwest::multipart::Form::new().part(
            "image",
            reqwest::multipart::Part::bytes(common::photo_bytes("astronaut.png"))
                .file_name("astronaut.png")
                .mime_str("image/png")
                .unwrap(),
        );
        if let Some(options) = options {
            form = form.text("options", options.to_string());
        }
        form
    };
    for (id, _, looks) in GUESTS {
        let url = format!("{}/v1/styles/{id}/generations", server.url);
        let response = send(http.post(&url).multipart(form(Some(looks[1])))).await;
        assert_eq!(response.status(), StatusCode::OK, "{id}");
        let body: Json = response.json().await.unwrap();
        assert_eq!(body["style"]["id"], id);
        assert_eq!(body["method"], "none");
        assert_eq!(body["output"]["width"], 512);
        assert_eq!(body["output"]["height"], 512);

        let bad = match id {
            "pop-art" => r#"{"palette": "mauve"}"#,
            _ => r#"{"shading": 7}"#,
        };
        let response = send(http.post(&url).multipart(form(Some(bad)))).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{id}");
        let error: Json = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "invalid_options", "{error}");
        let name = if id == "pop-art" {
            "palette"
        } else {
            "shading"
        };
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(name), "{message}");
    }
    server.stop().await;
}

#[test]
fn the_python_and_js_templates_build_and_validate_as_generated() {
    let plugins = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    for (id, language) in [
        ("my-py-look", Language::Python),
        ("my-js-look", Language::JavaScript),
    ] {
        likeness_host::scaffold::new_style(plugins.path(), id, language).unwrap();
    }
    let built = build_styles_with(
        &Toolchains::for_project(&common::repo()),
        plugins.path(),
        out.path(),
        &[],
        Some(&common::repo().join("target").join("test-plugins")),
    )
    .expect("the scaffolded styles build");
    assert_eq!(built.len(), 2);
    common::tokio().block_on(async {
        for package in built {
            let style = package::load(&common::runtime(), &package)
                .await
                .unwrap_or_else(|e| panic!("{}: {e:#}", package.display()));
            assert_eq!(style.info.version, "0.1.0");
            assert_eq!(style.info.params.len(), 3);
        }
    });
}
