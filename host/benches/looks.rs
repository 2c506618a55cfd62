//! The first-party Rust styles on the neural CPU tier, end to end in-process (decode, face
//! analysis, the style's plan, the style transfer and its face-preserving composite, the
//! style's post-process, the identity score): the p50 wall time per style at 512 x 512 and
//! 1024 x 1024, the encoding of each style's 1024 x 1024 result in every output format (the
//! mean CPU time of [`ENCODES`] runs, which the machine's load hardly moves, and their p50 wall
//! time; the size), and the identity score per style per photo. Prints markdown tables for
//! docs/benchmarks.md.
//!
//! `cargo bench -p likeness-host --bench looks` (release), or `cargo test -p likeness-host
//! --bench looks` (the dev profile: the same ONNX Runtime and Cranelift-compiled styles, the
//! host's own code less optimised). The model packs of `LIKENESS_MODELS` (default `models/`,
//! with the `styletransfer` pack), the test photos of `LIKENESS_TESTDATA` (default
//! `.cache/testdata/`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use likeness_host::output::OutputFormat;
use likeness_host::pipeline::{Generation, Pipeline};
use likeness_host::style::{Registry, build};
use likeness_host::wasm::{RuntimeConfig, StyleRuntime};
use likeness_vision::{Vision, fetch};
use tokio_util::sync::CancellationToken;

const STYLES: [&str; 4] = ["anime", "claymation", "pixel-art", "watercolor"];
const SIDES: [u32; 2] = [512, 1024];
const RUNS: usize = 7;
/// Encodings timed per style and format.
const ENCODES: usize = 15;
/// The photos scored (obama and biden are test photos only, never committed).
const PHOTOS: [&str; 4] = ["astronaut.png", "obama.jpg", "obama2.jpg", "biden.jpg"];

fn env_dir(var: &str, default: &str, repo: &Path) -> PathBuf {
    std::env::var_os(var).map_or_else(|| repo.join(default), PathBuf::from)
}

/// `photo` scaled (and cropped to a square around its upper middle, where the face is) to
/// `side` x `side`, as PNG bytes.
fn square(photo: &[u8], side: u32) -> Vec<u8> {
    let image = image::load_from_memory(photo).unwrap();
    let short = image.width().min(image.height());
    let x = (image.width() - short) / 2;
    let y = ((image.height() - short) / 4).min(image.height() - short);
    let cropped = image.crop_imm(x, y, short, short).resize_exact(
        side,
        side,
        image::imageops::FilterType::Lanczos3,
    );
    let mut png = std::io::Cursor::new(Vec::new());
    cropped.write_to(&mut png, image::ImageFormat::Png).unwrap();
    png.into_inner()
}

/// The calling thread's CPU time so far in milliseconds (Linux's per-thread scheduler
/// statistics, updated at scheduler ticks: read around many runs, not one; 0 where there are
/// none).
fn thread_cpu_ms() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|stat| stat.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |ns| ns / 1e6)
}

fn main() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let models = env_dir("LIKENESS_MODELS", "models", repo);
    let photos = env_dir("LIKENESS_TESTDATA", ".cache/testdata", repo);
    fetch::fetch_default_packs(&models).expect("fetching the default model packs");
    fetch::fetch_test_photos(&photos).expect("fetching the test photos");
    let styles = tempfile::tempdir().unwrap();
    let ids: Vec<String> = STYLES.iter().map(|s| s.to_string()).collect();
    build::build_styles(
        &repo.join("plugins"),
        styles.path(),
        &ids,
        Some(&repo.join("target/test-plugins")),
    )
    .expect("building the styles");

    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let vision = Arc::new(
        Vision::load(&models, &fetch::runtime_library_path(&models)).expect("loading vision"),
    );
    let runtime = StyleRuntime::new(RuntimeConfig::default()).unwrap();
    let registry = Registry::new(runtime, styles.path());
    tokio.block_on(registry.load_all()).unwrap();
    let pipeline = Pipeline::new(registry, vision, Default::default());
    let generate = |style: &str, photo: Vec<u8>| -> (Generation, f64) {
        let started = Instant::now();
        let generation = tokio
            .block_on(pipeline.generate(
                style,
                photo,
                &Vec::new(),
                &|_| {},
                &CancellationToken::new(),
            ))
            .unwrap_or_else(|e| panic!("{style}: {e}"));
        (generation, started.elapsed().as_secs_f64())
    };
    let read = |name: &str| std::fs::read(photos.join(name)).unwrap();

    /// The stages whose p50 at the larger side the second table shows.
    const STAGES: [&str; 5] = [
        "analysing",
        "planning",
        "generating",
        "post-processing",
        "identity",
    ];
    let p50 = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let astronaut = read("astronaut.png");
    let mut totals = Vec::new();
    let mut stages = Vec::new();
    let mut encodes = Vec::new();
    for style in STYLES {
        let mut cells = Vec::new();
        let mut method = "";
        for side in SIDES {
            let photo = square(&astronaut, side);
            let _ = generate(style, photo.clone()); // warm: sessions, instances
            let runs: Vec<(Generation, f64)> =
                (0..RUNS).map(|_| generate(style, photo.clone())).collect();
            method = runs[0].0.plan.method.kind().name();
            cells.push(format!("{:.2} s", p50(runs.iter().map(|r| r.1).collect())));
            if side == SIDES[SIDES.len() - 1] {
                let stage = |name: &str| {
                    p50(runs
                        .iter()
                        .map(|(g, _)| g.timings.iter().find(|t| t.0 == name).map_or(0.0, |t| t.1))
                        .collect())
                };
                stages.push(format!(
                    "| {style} | {} |",
                    STAGES.map(|name| format!("{:.0}", stage(name))).join(" | ")
                ));
                let image = &runs[0].0.image;
                let cells = OutputFormat::ALL.map(|format| {
                    let mut bytes = 0;
                    let cpu = thread_cpu_ms();
                    let wall: Vec<f64> = (0..ENCODES)
                        .map(|_| {
                            let started = Instant::now();
                            bytes = format.encode(image).unwrap().len();
                            started.elapsed().as_secs_f64() * 1e3
                        })
                        .collect();
                    format!(
                        "{:.1} ms ({:.1}), {:.0} KiB",
                        (thread_cpu_ms() - cpu) / ENCODES as f64,
                        p50(wall),
                        bytes as f64 / 1024.0
                    )
                });
                encodes.push(format!("| {style} | {} |", cells.join(" | ")));
            }
        }
        totals.push(format!(
            "| {style} | {method} | {} | {} |",
            cells[0], cells[1]
        ));
    }
    println!("| style | method | 512 x 512 p50 | 1024 x 1024 p50 |");
    println!("|---|---|---:|---:|");
    println!("{}", totals.join("\n"));
    println!();
    println!("| style (1024 x 1024, p50 ms) | {} |", STAGES.join(" | "));
    println!("|---|{}", "---:|".repeat(STAGES.len()));
    println!("{}", stages.join("\n"));

    println!();
    println!(
        "| style (1024 x 1024 result; CPU mean (wall p50), size) | {} |",
        OutputFormat::ALL.map(OutputFormat::name).join(" | ")
    );
    println!("|---|{}", "---:|".repeat(OutputFormat::ALL.len()));
    println!("{}", encodes.join("\n"));

    println!();
    println!("| style | threshold | {} |", PHOTOS.join(" | "));
    println!("|---|---:|{}", "---:|".repeat(PHOTOS.len()));
    for style in STYLES {
        let mut threshold = String::from("-");
        let scores: Vec<String> = PHOTOS
            .iter()
            .map(|name| {
                let (generation, _) = generate(style, read(name));
                if let Some(gate) = &generation.plan.identity_gate {
                    threshold = format!("{:.2}", gate.threshold);
                }
                match generation.identity.report() {
                    Some(report) => format!("{:.2}", report.score),
                    None => "-".into(),
                }
            })
            .collect();
        println!("| {style} | {threshold} | {} |", scores.join(" | "));
    }
}
