//! The `canvas` image resource through the real sandbox: a contract 0.2 component
//! (`tests/plugins/canvas-probe`) calls every native operation and gets what likeness-imaging
//! computes natively; a style that blurs in a loop is stopped at its CPU budget (the host's
//! work on its behalf is its own CPU time); one long operation past the budget fails the call
//! with the timeout; a style that hoards images is refused at its memory cap; and after each
//! failure the same style serves again.
//!
//! Timing bounds here only catch hangs; budgets are CPU time.

mod common;

use std::path::Path;
use std::sync::{Arc, OnceLock};

use likeness_contract::Value;
use likeness_host::style::{LoadedStyle, build, package};
use likeness_host::wasm::{Analysis, Call, CallError, Image, Limit, Options, Plan};
use likeness_imaging::{BlendMode, Rgba, canvas};

/// The canvas-probe component, built once per test process.
fn probe_wasm() -> &'static [u8] {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    WASM.get_or_init(|| {
        let out = tempfile::tempdir().unwrap();
        let built = build::build_styles(
            &common::repo().join("tests").join("plugins"),
            out.path(),
            &["canvas-probe".to_string()],
            Some(&common::repo().join("target").join("test-plugins")),
        )
        .expect("building the canvas-probe test style");
        std::fs::read(built[0].join("canvas-probe.wasm")).unwrap()
    })
}

/// The probe, loaded and validated as the registry does, with `extra` manifest lines.
async fn probe(extra: &str) -> Arc<LoadedStyle> {
    let dir = common::kept_dir("canvas-probe");
    let package = common::write_package(&dir, "canvas-probe", "0.2.0", probe_wasm(), extra);
    package::load(&common::runtime(), &package)
        .await
        .expect("the canvas probe passes the registry's checks")
}

/// A real photo (the imaging crate's golden input, 160 x 120), Lanczos-resized to `w` x `h`.
fn photo(width: u32, height: u32) -> Rgba {
    let path = common::repo().join("crates/imaging/tests/goldens/photo-large.png");
    let decoded = image::open(Path::new(&path)).unwrap().to_rgba8();
    let (w, h) = decoded.dimensions();
    let small = Rgba::from_raw(w, h, decoded.into_raw()).unwrap();
    canvas::resize(&small, width, height, false).unwrap()
}

fn options(probe: &str) -> Options {
    vec![("probe".to_string(), Value::Text(probe.to_string()))]
}

fn analysis(image: &Rgba) -> Analysis {
    Analysis {
        width: image.width,
        height: image.height,
        faces: Vec::new(),
    }
}

fn plan() -> Plan {
    Plan::none("The canvas probe renders with the host's image operations.")
}

async fn post_process(style: &LoadedStyle, photo: &Rgba, probe: &str) -> Result<Rgba, CallError> {
    let image = Image::new(photo.width, photo.height, photo.data.clone()).unwrap();
    let out = style
        .component
        .post_process(&image, &analysis(photo), &plan(), &options(probe))
        .await?;
    Ok(Rgba::from_raw(out.width, out.height, out.rgba).unwrap())
}

/// The probe's `every-op` pipeline, computed natively.
fn every_op(image: &Rgba) -> Rgba {
    let (w, h) = (image.width, image.height);
    let back = canvas::resize(
        &canvas::resize(image, w / 2, h / 2, false).unwrap(),
        w,
        h,
        true,
    )
    .unwrap();
    let blurred = canvas::blur(image, 2.5);
    let poster = canvas::posterize(&canvas::smooth(image, 4, 0.01), 5);
    let palette = canvas::palette(image, 6);
    let quantized = canvas::quantize(image, &palette, true);
    let edges = canvas::edges(image, 1.0);
    let adjusted = canvas::adjust(image, 0.05, 1.2, 1.1);
    let noise = canvas::noise(w, h, 12.0, 42).unwrap();
    let bbox = [
        w as f32 * 0.2,
        h as f32 * 0.1,
        w as f32 * 0.8,
        h as f32 * 0.9,
    ];
    let mask = canvas::ellipse_mask(image, bbox, 8.0);
    let layered = canvas::blend(&adjusted, &edges, BlendMode::Multiply, 0.6).unwrap();
    let layered = canvas::blend(&layered, &noise, BlendMode::SoftLight, 0.3).unwrap();
    let framed = canvas::composite(&quantized, &poster, &mask).unwrap();
    let glow = canvas::blend(&back, &blurred, BlendMode::Screen, 0.5).unwrap();
    let red = canvas::filled(w, h, [255, 0, 0, 255]).unwrap();
    let out = canvas::composite(&framed, &layered, &glow).unwrap();
    let out = canvas::blend(&out, &red, BlendMode::Overlay, 0.2).unwrap();
    canvas::blend(&out, &glow, BlendMode::Normal, 0.25).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_through_the_sandbox_gives_the_native_pixels() {
    let style = probe("").await;
    for (w, h) in [(320, 240), (97, 61)] {
        let photo = photo(w, h);
        let out = post_process(&style, &photo, "every-op").await.unwrap();
        assert_eq!((out.width, out.height), (w, h));
        assert!(out == every_op(&photo), "{w}x{h}: the pixels differ");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_style_blurring_in_a_loop_is_stopped_at_its_cpu_budget() {
    let style = probe("[limits]\npost_process_ms = 300\n").await;
    let photo = photo(512, 384);
    let error = post_process(&style, &photo, "blur-loop").await.unwrap_err();
    // Nearly all of that CPU is the host's blurs: were they not charged, the loop would run
    // to the wall-clock ceiling (3 s) instead.
    let CallError::Timeout {
        call: Call::PostProcess,
        limit: Limit::Cpu,
        limit_ms: 300,
        cpu_ms,
        ..
    } = error
    else {
        panic!("{error:?}")
    };
    assert!(cpu_ms >= 300, "stopped before its budget: {cpu_ms} ms");
    assert_eq!(error.code(), "style_timeout");
    // The same style serves again.
    let small = self::photo(64, 48);
    assert_eq!(
        post_process(&style, &small, "every-op").await.unwrap(),
        every_op(&small)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_native_operation_past_the_budget_fails_the_call_with_the_timeout() {
    let style = probe("[limits]\npost_process_ms = 5\n").await;
    let photo = photo(1024, 768);
    let error = post_process(&style, &photo, "smooth-once")
        .await
        .unwrap_err();
    let CallError::Timeout {
        call: Call::PostProcess,
        limit: Limit::Cpu,
        cpu_ms,
        ..
    } = error
    else {
        panic!("{error:?}")
    };
    assert!(cpu_ms >= 5, "{cpu_ms} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_style_hoarding_images_is_refused_at_its_memory_cap() {
    let style = probe("[limits]\nmemory_mib = 64\n").await;
    let photo = photo(64, 48);
    let error = post_process(&style, &photo, "hoard").await.unwrap_err();
    let CallError::MemoryLimit {
        call: Call::PostProcess,
        limit_mib: 64,
        ..
    } = error
    else {
        panic!("{error:?}")
    };
    assert_eq!(error.code(), "style_memory_limit");
    assert_eq!(
        post_process(&style, &photo, "every-op").await.unwrap(),
        every_op(&photo)
    );
}
