//! `likeness styles build`: compiles the style crates in `plugins/` to components and assembles
//! deployable packages in `styles/`.
//!
//! A style crate is a folder of `plugins/` holding a `style.toml` template (the manifest without
//! `sha256`); its package is named `style-<id>`. Each package is assembled in a hidden staging
//! folder and renamed into place, so a watching host never sees half a package.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail, ensure};
use sha2::{Digest, Sha256};

use super::manifest::{MANIFEST_FILE, Manifest};

/// The wasm target styles are built for.
pub const TARGET: &str = "wasm32-wasip2";
/// The cargo profile styles are built with (size-optimised release, see the workspace).
pub const PROFILE: &str = "style";

/// Builds the styles found in `plugins` (all, or those named in `only`) into `out`; returns
/// the package folders written. `target_dir` overrides cargo's target folder.
pub fn build_styles(
    plugins: &Path,
    out: &Path,
    only: &[String],
    target_dir: Option<&Path>,
) -> anyhow::Result<Vec<PathBuf>> {
    let mut ids = Vec::new();
    for entry in
        std::fs::read_dir(plugins).with_context(|| format!("reading {}", plugins.display()))?
    {
        let dir = entry?.path();
        if dir.join(MANIFEST_FILE).is_file() {
            let id = dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            if only.is_empty() || only.contains(&id) {
                ids.push(id);
            }
        }
    }
    ids.sort();
    for wanted in only {
        ensure!(
            ids.contains(wanted),
            "no style crate '{wanted}' in {}",
            plugins.display()
        );
    }
    ensure!(
        !ids.is_empty(),
        "no style crates (folders with a {MANIFEST_FILE}) in {}",
        plugins.display()
    );

    ensure_target_installed()?;
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .current_dir(plugins)
        .args(["build", "--profile", PROFILE, "--target", TARGET]);
    if let Some(dir) = target_dir {
        cargo.arg("--target-dir").arg(dir);
    }
    for id in &ids {
        cargo.args(["-p", &format!("style-{id}")]);
    }
    run(&mut cargo)?;
    let target_dir = match target_dir {
        Some(dir) => dir.to_path_buf(),
        None => cargo_target_dir(plugins)?,
    };
    let artifacts = target_dir.join(TARGET).join(PROFILE);

    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    ids.iter()
        .map(|id| {
            let wasm = artifacts.join(format!("style_{}.wasm", id.replace('-', "_")));
            assemble(&plugins.join(id), &wasm, out)
        })
        .collect()
}

/// Writes the package for the crate in `crate_dir` from its built component `wasm`.
fn assemble(crate_dir: &Path, wasm: &Path, out: &Path) -> anyhow::Result<PathBuf> {
    let template_path = crate_dir.join(MANIFEST_FILE);
    let mut template: toml::Table = std::fs::read_to_string(&template_path)
        .with_context(|| format!("reading {}", template_path.display()))?
        .parse()
        .with_context(|| format!("parsing {}", template_path.display()))?;
    let bytes = std::fs::read(wasm)
        .with_context(|| format!("reading the built component {}", wasm.display()))?;
    template.insert("sha256".into(), hex::encode(Sha256::digest(&bytes)).into());
    let manifest_text = toml::to_string(&template)?;
    let manifest = Manifest::parse(&manifest_text)
        .with_context(|| format!("{} is not a valid template", template_path.display()))?;

    let staging = out.join(format!(".{}.staging", manifest.id));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    std::fs::write(staging.join(&manifest.component), &bytes)?;
    let assets = crate_dir.join("assets");
    if assets.is_dir() {
        copy_dir(&assets, &staging.join("assets"))?;
    }
    std::fs::write(staging.join(MANIFEST_FILE), manifest_text)?;

    let target = out.join(&manifest.id);
    let old = out.join(format!(".{}.old", manifest.id));
    let _ = std::fs::remove_dir_all(&old);
    if target.exists() {
        std::fs::rename(&target, &old)?;
    }
    std::fs::rename(&staging, &target)?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(target)
}

/// Copies the folder `from` to `to` (folders and plain files; anything else is skipped).
pub(crate) fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()))?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// Installs the wasm target with rustup when it is missing (a fresh machine).
fn ensure_target_installed() -> anyhow::Result<()> {
    let Ok(listed) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    else {
        return Ok(()); // no rustup: let cargo say what is missing
    };
    if !String::from_utf8_lossy(&listed.stdout)
        .lines()
        .any(|line| line.trim() == TARGET)
    {
        run(Command::new("rustup").args(["target", "add", TARGET]))?;
    }
    Ok(())
}

fn cargo_target_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(dir)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("running cargo metadata")?;
    ensure!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    match metadata["target_directory"].as_str() {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => bail!("cargo metadata named no target directory"),
    }
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {command:?}"))?;
    ensure!(status.success(), "{command:?} failed with {status}");
    Ok(())
}
