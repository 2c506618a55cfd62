//! Loading a style package: the checks every package passes before it may serve, shared by the
//! registry and `likeness styles check`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, ensure};
use sha2::{Digest, Sha256};

use super::manifest::Manifest;
use super::preview::Preview;
use likeness_contract::{Analysis, Capabilities, Face, Landmarks, Point, Rect};

use crate::wasm::{Image, StyleComponent, StyleInfo, StyleRuntime};

/// Largest component file accepted.
const COMPONENT_MAX_BYTES: u64 = 64 << 20;

/// A validated package, compiled and ready to serve.
pub struct LoadedStyle {
    /// The package's manifest.
    pub manifest: Manifest,
    /// What the style said of itself in `describe()`.
    pub info: StyleInfo,
    /// SHA-256 of the component.
    pub digest: String,
    /// The package folder.
    pub dir: PathBuf,
    /// When this version was loaded.
    pub loaded_at: SystemTime,
    /// The compiled component.
    pub component: StyleComponent,
    /// The package's preview picture, if it has one.
    pub preview: Option<Preview>,
    /// Whether its dry-run plan, offered the diffusion methods, picks one: a fleet routes its
    /// jobs to workers with a diffusion pack (`crate::queue::class`).
    pub plans_diffusion: bool,
}

impl std::fmt::Debug for LoadedStyle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedStyle")
            .field("id", &self.manifest.id)
            .field("version", &self.manifest.version)
            .field("digest", &self.digest)
            .finish()
    }
}

/// A package's files as read from disk, checked as far as no runtime is needed: manifest
/// schema, folder name, component size and hash, the preview picture.
pub struct PackageFiles {
    /// The package's manifest.
    pub manifest: Manifest,
    /// SHA-256 of the component.
    pub digest: String,
    /// The package folder.
    pub dir: PathBuf,
    /// The package's preview picture, checked.
    pub preview: Option<Preview>,
    wasm: Vec<u8>,
}

/// Reads the package in `dir` (see [`PackageFiles`]).
pub fn read(dir: &Path) -> anyhow::Result<PackageFiles> {
    let manifest = Manifest::read(dir)?;
    let folder = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    ensure!(
        folder == manifest.id,
        "the package folder '{folder}' must be named after the style id '{}'",
        manifest.id
    );

    let wasm_path = dir.join(&manifest.component);
    let size = std::fs::metadata(&wasm_path)
        .with_context(|| format!("reading the component {}", wasm_path.display()))?
        .len();
    ensure!(
        size <= COMPONENT_MAX_BYTES,
        "the component is {size} bytes; the limit is {COMPONENT_MAX_BYTES}"
    );
    let wasm =
        std::fs::read(&wasm_path).with_context(|| format!("reading {}", wasm_path.display()))?;
    let digest = hex::encode(Sha256::digest(&wasm));
    ensure!(
        digest == manifest.sha256,
        "the sha256 of {} is {digest}, but style.toml says {}",
        manifest.component,
        manifest.sha256
    );
    let preview = manifest
        .preview
        .as_deref()
        .map(|name| Preview::read(dir, name))
        .transpose()?;
    Ok(PackageFiles {
        manifest,
        digest,
        dir: dir.to_path_buf(),
        preview,
        wasm,
    })
}

/// Loads the package in `dir` and validates it: manifest schema, folder name, component hash,
/// world match, `describe()` agreeing with the manifest, and dry `plan` and `post-process` calls
/// on synthetic analyses. Compilation runs on a blocking thread, off the request path.
pub async fn load(runtime: &Arc<StyleRuntime>, dir: &Path) -> anyhow::Result<Arc<LoadedStyle>> {
    load_files(runtime, read(dir)?, None).await
}

/// Validates and compiles a package already [`read`] (the rest of [`load`]). Compilations
/// take turns ([`StyleRuntime::compile_turn`]) and are bounded by the component's size
/// limits, not by time; `limit` bounds the guest's part (`describe` and the dry runs).
pub async fn load_files(
    runtime: &Arc<StyleRuntime>,
    files: PackageFiles,
    limit: Option<Duration>,
) -> anyhow::Result<Arc<LoadedStyle>> {
    let PackageFiles {
        manifest,
        digest,
        dir,
        preview,
        wasm,
    } = files;
    let config = runtime.config();
    let limits = manifest.limits(config.defaults, config.ceilings)?;
    let assets = if manifest.grants.assets {
        let assets = dir.join("assets");
        ensure!(
            assets.is_dir(),
            "style.toml grants assets, but {} is not a folder",
            assets.display()
        );
        Some(assets)
    } else {
        None
    };

    // Compiling is the host's own work, bounded by the component's size limits: it takes its
    // turn and is not timed. The guest's part (`describe`, dry runs) is, as a whole.
    let turn = runtime.compile_turn(&digest).await;
    let compiling = Instant::now();
    let component = {
        let runtime = runtime.clone();
        let id = manifest.id.clone();
        let digest = digest.clone();
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            runtime.compile(&id, &wasm, &digest, limits, assets)
        })
        .await
        .context("the compiler thread failed")?
        .with_context(|| format!("compiling {}", manifest.component))?
    };
    tracing::debug!(style = %manifest.id, took = ?compiling.elapsed(), "component ready");

    let checking = async {
        let info = component.describe().await?;
        for (field, said, manifest_says) in [
            ("id", &info.id, &manifest.id),
            ("name", &info.name, &manifest.name),
            ("version", &info.version, &manifest.version),
        ] {
            ensure!(
                said == manifest_says,
                "describe() says {field} '{said}', but style.toml says '{manifest_says}'"
            );
        }
        let plans_diffusion = dry_run(&component, &info).await?;
        Ok((info, plans_diffusion))
    };
    let (info, plans_diffusion) = match limit {
        Some(limit) => tokio::time::timeout(limit, checking)
            .await
            .unwrap_or_else(|_| {
                Err(anyhow::anyhow!(
                    "describe and the dry runs took longer than {} s",
                    limit.as_secs_f64()
                ))
            })?,
        None => checking.await?,
    };

    Ok(Arc::new(LoadedStyle {
        manifest,
        info,
        digest,
        dir,
        loaded_at: SystemTime::now(),
        component,
        preview,
        plans_diffusion,
    }))
}

/// Plans a one-face and a no-face photo with and without diffusion capabilities, then
/// post-processes a small photo with the plan for a host without diffusion. The options are
/// the style's defaults (checked against its own specs). The runtime checks
/// every result's bounds (`wasm::checks`), as it does at request time. Returns whether a plan
/// offered the diffusion methods picked one.
async fn dry_run(component: &StyleComponent, info: &StyleInfo) -> anyhow::Result<bool> {
    let options = likeness_contract::options::check(&info.params, &[])
        .context("the style's defaults fail its own parameter specs")?;
    let mut fallback_plan = None;
    let mut plans_diffusion = false;
    for analysis in [synthetic_analysis(1), synthetic_analysis(0)] {
        for capabilities in [Capabilities::none(), Capabilities::all()] {
            let plan = component
                .plan(&analysis, &capabilities, &options)
                .await
                .context("the dry plan failed")?;
            if capabilities.diffusion_sizes.is_none() {
                fallback_plan = Some(plan);
            } else {
                plans_diffusion |= plan.method.kind().is_diffusion();
            }
        }
    }
    let plan = fallback_plan.expect("the loop plans without capabilities");
    let (width, height) = (64, 48);
    let photo = Image {
        width,
        height,
        rgba: vec![128; (width * height * 4) as usize],
    };
    component
        .post_process(&photo, &synthetic_analysis(0), &plan, &options)
        .await
        .context("the dry post-process failed")?;
    Ok(plans_diffusion)
}

/// A 1024x1024 photo's analysis with `faces` evenly sized, well-placed faces.
fn synthetic_analysis(faces: usize) -> Analysis {
    let faces = (0..faces)
        .map(|i| {
            let x = 300.0 + i as f32 * 300.0;
            let p = |dx: f32, dy: f32| Point {
                x: x + dx,
                y: 400.0 + dy,
            };
            Face {
                bbox: Rect {
                    x1: x,
                    y1: 300.0,
                    x2: x + 250.0,
                    y2: 600.0,
                },
                score: 0.99,
                landmarks: Landmarks {
                    left_eye: p(70.0, 0.0),
                    right_eye: p(180.0, 0.0),
                    nose: p(125.0, 60.0),
                    mouth_left: p(85.0, 130.0),
                    mouth_right: p(165.0, 130.0),
                },
                share: 250.0 * 300.0 / (1024.0 * 1024.0),
                dominant: i == 0,
            }
        })
        .collect();
    Analysis {
        width: 1024,
        height: 1024,
        faces,
    }
}
