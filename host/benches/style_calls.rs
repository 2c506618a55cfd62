//! Style call overhead: instantiate + `plan`, and `post-process` of a 1024x1024 RGBA image in
//! wasm next to the same filter compiled natively. Prints a table.
//!
//! Then the same style contract in each language ([`languages`]): component size, compile time,
//! the cached load and fresh instance + `describe` / `choose-plan` for Rust, Python and
//! JavaScript.
//!
//! `cargo bench -p likeness-host --bench style_calls`

#[path = "style_calls/languages.rs"]
mod languages;

use std::path::Path;
use std::time::{Duration, Instant};

use likeness_contract::{Analysis, Capabilities, Face, Landmarks, Point, Rect};
use likeness_host::style::{build, package};
use likeness_host::wasm::{Image, RuntimeConfig, StyleRuntime};
use likeness_sdk::image::Rgba;

const PLAN_RUNS: usize = 2000;
const IMAGE_RUNS: usize = 25;
const SIDE: u32 = 1024;

/// A 1024x1024 photo-like test card: smooth gradients, a face-sized disc and fine noise, so the
/// filters do their full work.
fn test_card() -> Image {
    let mut rgba = Vec::with_capacity((SIDE * SIDE * 4) as usize);
    let mut seed = 0x2545_f491_u32;
    for y in 0..SIDE {
        for x in 0..SIDE {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let noise = (seed % 24) as i32 - 12;
            let inside = (x as i32 - 512).pow(2) + (y as i32 - 420).pow(2) < 220 * 220;
            let (r, g, b) = if inside {
                (224, 172, 138)
            } else {
                ((x / 4) as i32, (y / 4) as i32, 120)
            };
            let px = |c: i32| (c + noise).clamp(0, 255) as u8;
            rgba.extend_from_slice(&[px(r), px(g), px(b), 255]);
        }
    }
    Image {
        width: SIDE,
        height: SIDE,
        rgba,
    }
}

fn one_face() -> Analysis {
    let p = |x: f32, y: f32| Point { x, y };
    Analysis {
        width: SIDE,
        height: SIDE,
        faces: vec![Face {
            bbox: Rect {
                x1: 300.0,
                y1: 200.0,
                x2: 720.0,
                y2: 640.0,
            },
            score: 0.99,
            landmarks: Landmarks {
                left_eye: p(430.0, 380.0),
                right_eye: p(590.0, 380.0),
                nose: p(510.0, 460.0),
                mouth_left: p(450.0, 540.0),
                mouth_right: p(570.0, 540.0),
            },
            share: 0.17,
            dominant: true,
        }],
    }
}

struct Stats {
    p50: Duration,
    p99: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Stats {
        p50: at(0.50),
        p99: at(0.99),
    }
}

fn row(what: &str, s: &Stats, note: &str) {
    println!(
        "| {what:<44} | {:>10.3} | {:>10.3} | {note}",
        s.p50.as_secs_f64() * 1e3,
        s.p99.as_secs_f64() * 1e3
    );
}

fn main() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = tempfile::tempdir().unwrap();
    build::build_styles(
        &repo.join("plugins"),
        out.path(),
        &["anime".into()],
        Some(&repo.join("target/test-plugins")),
    )
    .expect("building the anime style");

    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let runtime = StyleRuntime::new(RuntimeConfig::default()).unwrap();
    let style = tokio
        .block_on(package::load(&runtime, &out.path().join("anime")))
        .unwrap();
    let analysis = one_face();
    let none = Capabilities::none();
    let all = Capabilities::all();
    let options = likeness_contract::options::check(&style.info.params, &[]).unwrap();

    let mut plan_samples = Vec::with_capacity(PLAN_RUNS);
    tokio.block_on(async {
        for i in 0..PLAN_RUNS + 100 {
            let started = Instant::now();
            let plan = style
                .component
                .plan(&analysis, if i % 2 == 0 { &none } else { &all }, &options)
                .await
                .unwrap();
            let took = started.elapsed();
            std::hint::black_box(plan);
            if i >= 100 {
                plan_samples.push(took);
            }
        }
    });

    let photo = test_card();
    let plan = tokio
        .block_on(style.component.plan(&analysis, &none, &options))
        .unwrap();
    let mut wasm_samples = Vec::with_capacity(IMAGE_RUNS);
    let mut native_samples = Vec::with_capacity(IMAGE_RUNS);
    let native_input = Rgba::from_raw(SIDE, SIDE, photo.rgba.clone()).unwrap();
    for _ in 0..IMAGE_RUNS {
        let started = Instant::now();
        let styled = tokio
            .block_on(
                style
                    .component
                    .post_process(&photo, &analysis, &plan, &options),
            )
            .unwrap();
        wasm_samples.push(started.elapsed());
        std::hint::black_box(styled);

        let started = Instant::now();
        let styled = style_anime::cel_shade(&native_input, style_anime::DEFAULT_LINE_STRENGTH);
        native_samples.push(started.elapsed());
        std::hint::black_box(styled);
    }

    let plan_stats = stats(plan_samples);
    let wasm = stats(wasm_samples);
    let native = stats(native_samples);
    println!(
        "\nStyle call overhead (style 'anime', {PLAN_RUNS} plans, {IMAGE_RUNS} images of {SIDE}x{SIDE} RGBA)\n"
    );
    println!(
        "| {:<44} | {:>10} | {:>10} | note",
        "what", "p50 ms", "p99 ms"
    );
    println!("|{:-<46}|{:-<12}|{:-<12}|------", "", "", "");
    row(
        "fresh instance + plan",
        &plan_stats,
        "goal: p50 <= 0.100 ms",
    );
    row(
        "fresh instance + post-process, wasm",
        &wasm,
        "cel shading (method none)",
    );
    row("the same filter, native", &native, "style_anime::cel_shade");
    let ratio = wasm.p50.as_secs_f64() / native.p50.as_secs_f64();
    println!("\nwasm / native (p50): {ratio:.2}x   (goal: <= 1.5x)");

    languages::run(&tokio, repo, &analysis);
}
