//! The conformance kit (`likeness styles check --conformance DIR`): the behaviour every style
//! must show whatever its language, checked through the real sandbox on the loaded package.
//!
//! For each style: it loads as the registry loads it; it plans no face, one clear face, a group
//! and a tiny face on four hosts (no diffusion, ControlNet only, InstantID + ControlNet,
//! everything), each plan within that host's capabilities with a reason (the runtime's checks,
//! [`crate::wasm::checks`]); its post-process keeps the image's size; the same request gives
//! the same plan and the same pixels; a post-process of the largest photo the host sends
//! (1280 x 960) stays within its CPU and memory budgets; and its parameter specs let the host
//! refuse unknown and malformed options (and accept the defaults).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use likeness_contract::options::{RawOptions, check};
use likeness_contract::{
    Analysis, Capabilities, ControlKind, Face, Landmarks, MethodKind, Options, ParamKind, Point,
    Rect,
};

use super::manifest::MANIFEST_FILE;
use super::package::{self, LoadedStyle};
use crate::wasm::{Image, StyleRuntime};

/// One check's outcome.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was checked.
    pub check: String,
    /// Whether it passed.
    pub passed: bool,
    /// What was seen (the failure, or a measurement).
    pub detail: String,
}

/// A style's outcomes.
#[derive(Debug, Clone)]
pub struct Report {
    /// The package folder's name (the style id).
    pub style: String,
    /// Each check, in order.
    pub rows: Vec<Row>,
}

impl Report {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.rows.iter().all(|row| row.passed)
    }
}

/// Runs the kit on `dir`: one package (a folder with a `style.toml`) or a styles folder (each
/// package in it).
pub async fn run(runtime: &Arc<StyleRuntime>, dir: &Path) -> anyhow::Result<Vec<Report>> {
    let packages = if dir.join(MANIFEST_FILE).is_file() {
        vec![dir.to_path_buf()]
    } else {
        let mut found: Vec<_> = std::fs::read_dir(dir)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| {
                path.join(MANIFEST_FILE).is_file()
                    && !path
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        found.sort();
        found
    };
    anyhow::ensure!(
        !packages.is_empty(),
        "no style packages in {}",
        dir.display()
    );
    let mut reports = Vec::new();
    for package in packages {
        reports.push(check_package(runtime, &package).await);
    }
    Ok(reports)
}

/// The outcomes as a table, one row per check.
pub fn table(reports: &[Report]) -> String {
    let mut out = format!(
        "{:<16} {:<34} {:<6} {}\n",
        "style", "check", "result", "detail"
    );
    for report in reports {
        for row in &report.rows {
            out.push_str(&format!(
                "{:<16} {:<34} {:<6} {}\n",
                report.style,
                row.check,
                if row.passed { "pass" } else { "FAIL" },
                row.detail
            ));
        }
    }
    out
}

fn row(check: impl Into<String>, result: Result<String, String>) -> Row {
    let (passed, detail) = match result {
        Ok(detail) => (true, detail),
        Err(detail) => (false, detail),
    };
    Row {
        check: check.into(),
        passed,
        detail,
    }
}

async fn check_package(runtime: &Arc<StyleRuntime>, dir: &Path) -> Report {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let style = match package::load(runtime, dir).await {
        Ok(style) => style,
        Err(error) => {
            return Report {
                style: name,
                rows: vec![row("loads", Err(format!("{error:#}")))],
            };
        }
    };
    let mut rows = vec![row(
        "loads",
        Ok(format!(
            "{} {} (contract {})",
            style.manifest.id,
            style.manifest.version,
            style.component.contract()
        )),
    )];
    rows.push(row(
        "options: specs refuse bad values",
        options_refused(&style),
    ));
    let options = match request_options(&style) {
        Ok(options) => options,
        Err(error) => {
            rows.push(row("options: defaults pass", Err(error)));
            return Report { style: name, rows };
        }
    };
    for (host, capabilities) in capability_sets() {
        let result = plans(&style, &capabilities, &options).await;
        rows.push(row(format!("plans on {host}"), result));
    }
    rows.push(row(
        "post-process keeps the size",
        sizes_kept(&style, &options).await,
    ));
    rows.push(row(
        "same request, same result",
        deterministic(&style, &options).await,
    ));
    rows.push(row(
        "1280 x 960 within budgets",
        within_budgets(&style, &options).await,
    ));
    Report { style: name, rows }
}

/// The options a request setting only the seed (when the style has one) gives the style.
fn request_options(style: &LoadedStyle) -> Result<Options, String> {
    let raw: RawOptions = if style.info.params.iter().any(|p| p.name == "seed") {
        vec![("seed".into(), "7".into())]
    } else {
        Vec::new()
    };
    check(&style.info.params, &raw).map_err(|e| format!("the defaults fail the specs: {e}"))
}

fn options_refused(style: &LoadedStyle) -> Result<String, String> {
    let params = &style.info.params;
    let unknown = vec![("no-such-option-xyz".to_string(), "1".to_string())];
    check(params, &unknown)
        .err()
        .ok_or("an unknown option was accepted")?;
    let mut refused = 1;
    for spec in params {
        let bad = match &spec.kind {
            ParamKind::Integer { .. } => "1.5",
            ParamKind::Number { .. } => "NaN",
            ParamKind::Boolean => "maybe",
            ParamKind::Choice(_) => "\u{1}not-a-choice",
            ParamKind::Text(max) => &"x".repeat(*max as usize + 1),
        };
        let raw = vec![(spec.name.clone(), bad.to_string())];
        match check(params, &raw) {
            Err(error) if error.option == spec.name => refused += 1,
            _ => return Err(format!("option '{}' accepted '{bad}'", spec.name)),
        }
    }
    Ok(format!("{refused} bad options refused"))
}

/// The four hosts the plans are checked on.
fn capability_sets() -> Vec<(&'static str, Capabilities)> {
    let all = Capabilities::all();
    let with = |methods: &[MethodKind], maps: &[ControlKind]| Capabilities {
        methods: methods.to_vec(),
        control_maps: maps.to_vec(),
        ..all.clone()
    };
    vec![
        ("no diffusion", Capabilities::none()),
        (
            "ControlNet only",
            with(
                &[MethodKind::Controlnet, MethodKind::None],
                &[ControlKind::Canny, ControlKind::Depth],
            ),
        ),
        (
            "InstantID + ControlNet",
            with(
                &[
                    MethodKind::InstantId,
                    MethodKind::Controlnet,
                    MethodKind::None,
                ],
                &[
                    ControlKind::Canny,
                    ControlKind::Depth,
                    ControlKind::FaceKeypoints,
                ],
            ),
        ),
        ("everything", all.clone()),
    ]
}

/// A detected face whose box is `side` pixels square with its top-left corner at (x, y), on a
/// photo of `size`, with landmarks where a face has them.
pub fn face(x: f32, y: f32, side: f32, size: (u32, u32), dominant: bool) -> Face {
    let p = |fx: f32, fy: f32| Point {
        x: x + fx * side,
        y: y + fy * side,
    };
    Face {
        bbox: Rect {
            x1: x,
            y1: y,
            x2: x + side,
            y2: y + side,
        },
        score: 0.99,
        landmarks: Landmarks {
            left_eye: p(0.3, 0.4),
            right_eye: p(0.7, 0.4),
            nose: p(0.5, 0.6),
            mouth_left: p(0.35, 0.8),
            mouth_right: p(0.65, 0.8),
        },
        share: side * side / (size.0 * size.1) as f32,
        dominant,
    }
}

/// The situations of the identity-method rules, named: no face, one clear face, two faces of
/// similar size and one tiny face, on a 1024 x 768 photo.
pub fn situations() -> Vec<(&'static str, Analysis)> {
    let size = (1024u32, 768u32);
    let photo = |faces| Analysis {
        width: size.0,
        height: size.1,
        faces,
    };
    vec![
        ("no face", photo(vec![])),
        (
            "one face",
            photo(vec![face(380.0, 200.0, 260.0, size, true)]),
        ),
        (
            "a group",
            photo(vec![
                face(100.0, 200.0, 240.0, size, true),
                face(600.0, 220.0, 220.0, size, false),
            ]),
        ),
        (
            "a tiny face",
            photo(vec![face(500.0, 300.0, 30.0, size, true)]),
        ),
    ]
}

/// Plans every situation on `capabilities`: each plan passed the runtime's checks (methods and
/// settings within the capabilities, a reason); lists the methods chosen.
async fn plans(
    style: &LoadedStyle,
    capabilities: &Capabilities,
    options: &Options,
) -> Result<String, String> {
    let mut chosen = Vec::new();
    for (situation, analysis) in situations() {
        let plan = style
            .component
            .plan(&analysis, capabilities, options)
            .await
            .map_err(|e| format!("{situation}: {e}"))?;
        chosen.push(format!("{situation}: {}", plan.method.kind().name()));
    }
    Ok(chosen.join(", "))
}

/// A photo-like test card: a gradient with a skin-toned disc.
fn photo(width: u32, height: u32) -> Image {
    let mut rgba = Vec::with_capacity(width as usize * height as usize * 4);
    let (cx, cy, r) = (
        width as f32 / 2.0,
        height as f32 / 2.0,
        width.min(height) as f32 / 3.0,
    );
    for y in 0..height {
        for x in 0..width {
            let (dx, dy) = (x as f32 - cx, y as f32 - cy);
            let pixel = if dx * dx + dy * dy < r * r {
                [220, 170, 140, 255]
            } else {
                [
                    (x * 255 / width.max(1)) as u8,
                    (y * 255 / height.max(1)) as u8,
                    90,
                    255,
                ]
            };
            rgba.extend_from_slice(&pixel);
        }
    }
    Image {
        width,
        height,
        rgba,
    }
}

/// The plan for `analysis` on a host without diffusion, and the post-process of `image`.
async fn render(style: &LoadedStyle, image: &Image, options: &Options) -> Result<Image, String> {
    let analysis = Analysis {
        width: image.width,
        height: image.height,
        faces: Vec::new(),
    };
    let plan = style
        .component
        .plan(&analysis, &Capabilities::none(), options)
        .await
        .map_err(|e| e.to_string())?;
    style
        .component
        .post_process(image, &analysis, &plan, options)
        .await
        .map_err(|e| e.to_string())
}

async fn sizes_kept(style: &LoadedStyle, options: &Options) -> Result<String, String> {
    let sizes = [(1, 1), (3, 200), (64, 48)];
    for (w, h) in sizes {
        render(style, &photo(w, h), options)
            .await
            .map_err(|e| format!("{w}x{h}: {e}"))?;
    }
    Ok("1x1, 3x200, 64x48".into())
}

async fn deterministic(style: &LoadedStyle, options: &Options) -> Result<String, String> {
    let (_, analysis) = &situations()[1];
    let capabilities = Capabilities::all();
    let plan = |_| style.component.plan(analysis, &capabilities, options);
    let (a, b) = (plan(()).await, plan(()).await);
    match (a, b) {
        (Ok(a), Ok(b)) if a == b => {}
        (Ok(_), Ok(_)) => return Err("two plans of one request differ".into()),
        (Err(e), _) | (_, Err(e)) => return Err(e.to_string()),
    }
    let image = photo(256, 192);
    let first = render(style, &image, options).await?;
    let second = render(style, &image, options).await?;
    if first != second {
        return Err("two post-processes of one request differ".into());
    }
    Ok("plan and 256x192 pixels identical".into())
}

async fn within_budgets(style: &LoadedStyle, options: &Options) -> Result<String, String> {
    let limits = style.component.limits();
    let started = Instant::now();
    render(style, &photo(1280, 960), options).await?;
    Ok(format!(
        "{} ms wall (budget {} ms CPU, {} MiB)",
        started.elapsed().as_millis(),
        limits.post_process.as_millis(),
        limits.memory >> 20
    ))
}
