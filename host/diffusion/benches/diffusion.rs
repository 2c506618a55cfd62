//! Per-step and total generation time per method on the tiny pack, split into time inside ONNX
//! Runtime and the engine's own overhead around it (tokenising, conversions, bindings, sampler).
//! `cargo bench -p likeness-diffusion`. Needs the ONNX Runtime library (ORT_DYLIB_PATH or
//! models/runtime/) and Python with tools/tiny-pack/requirements.txt (to make the tiny pack).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use likeness_diffusion::noise::gaussian;
use likeness_diffusion::{
    CancelToken, ControlImage, ControlKind, ControlMap, DiffusionEngine, EngineOptions,
    GenerationInput, Image, Method, PulidFeatures, Runtime, RuntimeOptions,
};

const RUNS: usize = 9;
const STEPS: u32 = 8;

fn tiny_pack(root: &Path) -> PathBuf {
    let dir = root.join("target/tiny-pack-bench");
    if !dir.join("pack.toml").is_file() {
        let python = std::env::var("LIKENESS_PYTHON").unwrap_or_else(|_| "python3".into());
        let status = Command::new(&python)
            .arg(root.join("tools/tiny-pack/make_tiny_pack.py"))
            .arg(&dir)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {python} ({e})"));
        assert!(
            status.success(),
            "run `pip install -r tools/tiny-pack/requirements.txt` then `python3 tools/tiny-pack/make_tiny_pack.py {}`",
            dir.display()
        );
    }
    dir
}

fn image(w: u32, h: u32, channels: u8, salt: u32) -> Image {
    let data: Vec<u8> = (0..w * h * u32::from(channels))
        .map(|i| ((i * 31 + salt * 7) % 253) as u8)
        .collect();
    if channels == 1 {
        Image::grey(w, h, data).unwrap()
    } else {
        Image::rgb(w, h, data).unwrap()
    }
}

fn input(method: Method, guidance: f32, size: u32) -> GenerationInput {
    let mut i = GenerationInput::new(
        method,
        "a watercolor portrait of a smiling woman",
        STEPS,
        guidance,
        7,
    );
    i.width = size;
    i.height = size;
    let m = |kind, weight| ControlMap {
        kind,
        weight,
        start: 0.0,
        end: 1.0,
    };
    match method {
        Method::Controlnet => {
            i.control_maps = vec![m(ControlKind::Canny, 0.8), m(ControlKind::Depth, 0.4)];
            i.control_images = vec![
                ControlImage {
                    kind: ControlKind::Canny,
                    image: image(size, size, 1, 1),
                },
                ControlImage {
                    kind: ControlKind::Depth,
                    image: image(size, size, 1, 2),
                },
            ];
        }
        Method::InstantId => {
            i.control_maps = vec![m(ControlKind::FaceKeypoints, 0.8)];
            i.control_images = vec![ControlImage {
                kind: ControlKind::FaceKeypoints,
                image: image(size, size, 3, 3),
            }];
            i.face_embedding = Some(gaussian(1, 1, 512));
        }
        Method::Pulid => {
            i.pulid = Some(PulidFeatures {
                id_cond: gaussian(2, 1, 544),
                id_vit_hidden: gaussian(2, 2, 5 * 16 * 24),
            });
        }
        Method::StyleTransfer | Method::None => unreachable!("not a diffusion method"),
    }
    i
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let Some(lib) = likeness_diffusion::locate_library(&root) else {
        eprintln!(
            "ONNX Runtime library not found (ORT_DYLIB_PATH or models/runtime/): benchmark skipped"
        );
        return;
    };
    // One intra-op thread: the graphs are tiny, and on a shared 2-core machine a thread pool's
    // barrier waiting for a descheduled thread shows as 40-80 ms spikes.
    let options = RuntimeOptions {
        intra_threads: 1,
        ..Default::default()
    };
    let runtime = Runtime::init(&lib, options).expect("ONNX Runtime loads");
    let providers = runtime.providers().to_vec();
    let engine = DiffusionEngine::load(&tiny_pack(&root), runtime, EngineOptions { slots: 1 })
        .expect("tiny pack loads");
    engine.preload().expect("sessions build");
    println!(
        "tiny pack, {STEPS} steps, median of {RUNS} runs after one warm-up; providers {providers:?}; 1 intra-op thread"
    );
    println!(
        "| {:<12} | {:>4} | {:>7} | {:>10} | {:>10} | {:>12} | {:>12} |",
        "method", "cfg", "size", "total ms", "ms/step", "ORT ms/gen", "overhead ms"
    );
    println!(
        "|{:-<14}|{:-<6}|{:-<9}|{:-<12}|{:-<12}|{:-<14}|{:-<14}|",
        "", "", "", "", "", "", ""
    );
    for size in [64u32, 256] {
        for method in [Method::Controlnet, Method::InstantId, Method::Pulid] {
            for guidance in [5.0f32, 1.0] {
                let inp = input(method, guidance, size);
                let mut totals = Vec::new();
                let mut steps = Vec::new();
                let mut orts = Vec::new();
                for run in 0..=RUNS {
                    let stamps = Mutex::new(Vec::new());
                    let ort_before = engine.ort_time();
                    let t0 = Instant::now();
                    engine
                        .generate(
                            &inp,
                            &|_, _| stamps.lock().unwrap().push(Instant::now()),
                            &CancelToken::new(),
                        )
                        .expect("generation");
                    let total = t0.elapsed();
                    let ort = engine.ort_time() - ort_before;
                    let stamps = stamps.into_inner().unwrap();
                    if run == 0 {
                        continue;
                    }
                    let loop_time = *stamps.last().unwrap() - stamps[0];
                    steps.push(loop_time / (stamps.len() as u32 - 1).max(1));
                    totals.push(total);
                    orts.push(ort);
                }
                let med = |v: &mut Vec<Duration>| {
                    v.sort();
                    v[v.len() / 2]
                };
                let (total, step, ort) = (med(&mut totals), med(&mut steps), med(&mut orts));
                let ms = |d: Duration| d.as_secs_f64() * 1e3;
                println!(
                    "| {:<12} | {:>4} | {:>7} | {:>10.2} | {:>10.3} | {:>12.2} | {:>12.2} |",
                    method.name(),
                    if guidance > 1.0 { "on" } else { "off" },
                    format!("{size}x{size}"),
                    ms(total),
                    ms(step),
                    ms(ort),
                    ms(total.saturating_sub(ort))
                );
            }
        }
    }
}
