//! Per-step and total generation time per method, split into time inside ONNX Runtime (per
//! stage: text encoders, ControlNets, UNet, VAE, identity graphs) and the engine's own overhead
//! around it (tokenising, conversions, bindings, sampler), with the process's peak RSS.
//! `cargo bench -p likeness-diffusion`. Needs the ONNX Runtime library (ORT_DYLIB_PATH or
//! models/runtime/) and Python with tools/tiny-pack/requirements.txt (to make the tiny pack).
//!
//! By default it runs the tiny pack; the same bench runs any pack (e.g. a real-size random-weight
//! one from tools/export/random_checkpoints.py, docs/benchmarks.md) with
//! `LIKENESS_BENCH_PACK=DIR`, `LIKENESS_BENCH_SIZES=512,1024`, `LIKENESS_BENCH_STEPS=1,4`,
//! `LIKENESS_BENCH_RUNS=N` (median of N after one warm-up), `LIKENESS_BENCH_THREADS=N` (intra-op
//! threads; 0 = ONNX Runtime's default). Providers: TensorRT and CUDA when the runtime library
//! ships them (a GPU host), else the CPU.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use likeness_diffusion::noise::gaussian;
use likeness_diffusion::{
    CancelToken, ControlImage, ControlKind, ControlMap, DiffusionEngine, EngineOptions,
    GenerationInput, Image, Method, PulidFeatures, Role, Runtime, RuntimeOptions, Size,
};

/// A comma-separated list of numbers from the environment, else `default`.
fn env_list(name: &str, default: &[u32]) -> Vec<u32> {
    std::env::var(name).map_or_else(
        |_| default.to_vec(),
        |v| {
            v.split(',')
                .map(|x| x.trim().parse().unwrap_or_else(|_| panic!("{name}: {v}")))
                .collect()
        },
    )
}

/// The process's peak resident set (VmHWM), in MiB; 0 where /proc is absent.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The stage a graph's time counts to.
fn stage(role: Role) -> usize {
    match role {
        Role::TextEncoder | Role::TextEncoder2 => 0,
        r if r.is_controlnet() => 1,
        Role::Unet => 2,
        Role::VaeDecoder | Role::VaeEncoder => 3,
        _ => 4,
    }
}
const STAGES: [&str; 5] = ["text", "control", "unet", "vae", "identity"];

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

fn input(
    engine: &DiffusionEngine,
    method: Method,
    guidance: f32,
    size: u32,
    steps: u32,
) -> GenerationInput {
    let m = &engine.pack().manifest;
    let kinds = engine.capabilities().control_maps;
    let mut i = GenerationInput::new(
        method,
        "a watercolor portrait of a smiling woman",
        steps,
        guidance,
        7,
    );
    i.settings.size = Some(Size {
        width: size,
        height: size,
    });
    let map = |kind, weight| ControlMap {
        kind,
        weight,
        start: 0.0,
        end: 1.0,
    };
    match method {
        Method::Controlnet => {
            for (salt, (kind, weight)) in [(ControlKind::Canny, 0.8), (ControlKind::Depth, 0.4)]
                .into_iter()
                .filter(|(k, _)| kinds.contains(k))
                .enumerate()
            {
                i.settings.control_maps.push(map(kind, weight));
                i.control_images.push(ControlImage {
                    kind,
                    image: image(size, size, 1, salt as u32 + 1),
                });
            }
        }
        Method::InstantId => {
            i.settings.control_maps = vec![map(ControlKind::FaceKeypoints, 0.8)];
            i.control_images = vec![ControlImage {
                kind: ControlKind::FaceKeypoints,
                image: image(size, size, 3, 3),
            }];
            let dim = m.instantid.as_ref().map_or(512, |c| c.embedding_dim);
            i.face_embedding = Some(gaussian(1, 1, dim));
        }
        Method::Pulid => {
            let cfg = m.pulid.as_ref().expect("a pulid pack has [pulid]");
            i.pulid = Some(PulidFeatures {
                id_cond: gaussian(2, 1, cfg.id_cond_dim),
                id_vit_hidden: gaussian(2, 2, cfg.vit_hidden_shape.iter().product()),
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
    let pack = std::env::var_os("LIKENESS_BENCH_PACK").map(PathBuf::from);
    let sizes = env_list("LIKENESS_BENCH_SIZES", &[64, 256]);
    let step_counts = env_list("LIKENESS_BENCH_STEPS", &[8]);
    let runs = env_list("LIKENESS_BENCH_RUNS", &[9])[0] as usize;
    // One intra-op thread by default: the tiny graphs gain nothing from a pool, and on a shared
    // 2-core machine a thread pool's barrier waiting for a descheduled thread shows as 40-80 ms
    // spikes.
    let threads = env_list("LIKENESS_BENCH_THREADS", &[1])[0] as usize;
    let options = RuntimeOptions {
        intra_threads: threads,
        ..Default::default()
    };
    let runtime = Runtime::init(&lib, options).expect("ONNX Runtime loads");
    let providers = runtime.providers().to_vec();
    let dir = pack.unwrap_or_else(|| tiny_pack(&root));
    let t0 = Instant::now();
    let engine =
        DiffusionEngine::load(&dir, runtime, EngineOptions { slots: 1 }).expect("pack loads");
    engine.preload().expect("sessions build");
    println!(
        "pack {}, loaded in {:.1} s (peak RSS {:.0} MiB); median of {runs} runs after one warm-up; providers {providers:?}; {threads} intra-op thread(s)",
        dir.display(),
        t0.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
    println!(
        "| method | cfg | size | steps | total ms | ms/step | {} ms | overhead ms | overhead share | peak RSS MiB |",
        STAGES.join(" ms | ")
    );
    println!(
        "|---|---|---|---:|---:|---:|{}---:|---:|---:|",
        "---:|".repeat(STAGES.len())
    );
    let methods = engine.capabilities().methods;
    for &size in &sizes {
        for &steps in &step_counts {
            for &method in &methods {
                for guidance in [5.0f32, 1.0] {
                    let inp = input(&engine, method, guidance, size, steps);
                    let mut samples = Vec::new();
                    for run in 0..=runs {
                        let stamps = Mutex::new(Vec::new());
                        let before = engine.ort_times();
                        let t0 = Instant::now();
                        engine
                            .generate(
                                &inp,
                                &|_, _| stamps.lock().unwrap().push(Instant::now()),
                                &CancelToken::new(),
                            )
                            .expect("generation");
                        let total = t0.elapsed();
                        let mut per_stage = [Duration::ZERO; STAGES.len()];
                        for ((role, after), (_, b)) in engine.ort_times().into_iter().zip(before) {
                            per_stage[stage(role)] += after - b;
                        }
                        let stamps = stamps.into_inner().unwrap();
                        if run == 0 {
                            continue;
                        }
                        let step = if stamps.len() > 1 {
                            (*stamps.last().unwrap() - stamps[0]) / (stamps.len() as u32 - 1)
                        } else {
                            per_stage[1] + per_stage[2]
                        };
                        samples.push((total, step, per_stage));
                    }
                    samples.sort_by_key(|s| s.0);
                    let (total, step, per_stage) = samples[samples.len() / 2];
                    let ort: Duration = per_stage.iter().sum();
                    let ms = |d: Duration| d.as_secs_f64() * 1e3;
                    let overhead = total.saturating_sub(ort);
                    let cells: Vec<String> =
                        per_stage.iter().map(|d| format!("{:.2}", ms(*d))).collect();
                    println!(
                        "| {} | {} | {size}x{size} | {steps} | {:.2} | {:.3} | {} | {:.2} | {:.1}% | {:.0} |",
                        method.name(),
                        if guidance > 1.0 { "on" } else { "off" },
                        ms(total),
                        ms(step),
                        cells.join(" | "),
                        ms(overhead),
                        100.0 * overhead.as_secs_f64() / total.as_secs_f64().max(1e-12),
                        peak_rss_mib()
                    );
                }
            }
        }
    }
}
