//! Building a Python or JavaScript style into a component with its pinned toolchain.
//!
//! The style's folder is copied into a staging folder beside the contract (`wit/style.wit`)
//! and the language's SDK (`plugins/sdk-python/likeness.py`, `plugins/sdk-js/likeness.js`),
//! all three compiled into this binary, so a style builds the same wherever its folder is.
//! The staging layout mirrors `plugins/`: a JavaScript style imports `../sdk-js/likeness.js`,
//! a Python style `import likeness`. The tools are not reproducible (two componentize-py runs
//! differ in bytes), so each component is kept by a hash of everything that goes in: an
//! unchanged style is never rebuilt and keeps its digest, and a deploy of it is a no-op.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use sha2::{Digest, Sha256};

use super::build::{Language, copy_dir};
use super::toolchain::{Tool, Toolchains, run_tool};

/// The contract every 0.2 style is built against.
const WIT: &str = include_str!("../../../wit/style.wit");
/// The world a style implements.
const WORLD: &str = "plugin";
/// The Python SDK, importable as `likeness`.
const PYTHON_SDK: &str = include_str!("../../../plugins/sdk-python/likeness.py");
/// The JavaScript SDK, imported as `../sdk-js/likeness.js`.
const JS_SDK: &str = include_str!("../../../plugins/sdk-js/likeness.js");
/// The Python module the generated bindings go to (the SDK re-exports what a style needs).
pub const PYTHON_BINDINGS: &str = "likeness_bindings";

/// Files of a style folder that never go into its component.
fn skipped(name: &str) -> bool {
    name.starts_with('.') || name == "__pycache__" || name == "node_modules"
}

/// Builds the `language` style in `dir` (Python or JavaScript) into a component kept in
/// `builds`; returns its path.
pub fn build(
    toolchains: &Toolchains,
    language: Language,
    dir: &Path,
    builds: &Path,
) -> anyhow::Result<PathBuf> {
    let id = dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("a style folder needs a name")?;
    let (tool, sdk_path, sdk) = match language {
        Language::Python => (Tool::ComponentizePy, "likeness.py", PYTHON_SDK),
        Language::JavaScript => (Tool::ComponentizeJs, "sdk-js/likeness.js", JS_SDK),
        Language::Rust => anyhow::bail!("{id} is a Rust crate: cargo builds it"),
    };
    let mut hash = Sha256::new();
    for part in [tool.pinned().as_str(), WIT, sdk] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    hash_dir(&mut hash, dir, Path::new(""))?;
    let key = hex::encode(hash.finalize());
    let built = builds.join(format!("{id}-{}.wasm", &key[..16]));
    if built.is_file() {
        return Ok(built);
    }

    std::fs::create_dir_all(builds).with_context(|| format!("creating {}", builds.display()))?;
    static STAGINGS: AtomicU64 = AtomicU64::new(0);
    let stage = builds.join(format!(
        ".{id}.staging-{}-{}",
        std::process::id(),
        STAGINGS.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&stage);
    let result = stage_and_build(toolchains, tool, dir, id, &stage, sdk_path, sdk);
    let renamed = result.and_then(|wasm| {
        std::fs::rename(&wasm, &built).with_context(|| format!("writing {}", built.display()))
    });
    let _ = std::fs::remove_dir_all(&stage);
    renamed?;
    // Older builds of this style are of no more use.
    for entry in std::fs::read_dir(builds)?.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&format!("{id}-")) && name.ends_with(".wasm") && entry.path() != built {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(built)
}

/// Lays out `stage` (the contract, the SDK, the style's files) and runs the tool there;
/// returns the component's path.
fn stage_and_build(
    toolchains: &Toolchains,
    tool: Tool,
    dir: &Path,
    id: &str,
    stage: &Path,
    sdk_path: &str,
    sdk: &str,
) -> anyhow::Result<PathBuf> {
    let sources = stage.join("src");
    let style = sources.join(id);
    copy_dir(dir, &style)?;
    for name in ["__pycache__", "node_modules"] {
        let _ = std::fs::remove_dir_all(style.join(name));
    }
    let sdk_file = match tool {
        Tool::ComponentizePy => style.join(sdk_path),
        Tool::ComponentizeJs => sources.join(sdk_path),
    };
    std::fs::create_dir_all(sdk_file.parent().unwrap_or(&sources))?;
    std::fs::write(&sdk_file, sdk)?;
    let wit = stage.join("wit");
    std::fs::create_dir_all(&wit)?;
    std::fs::write(wit.join("style.wit"), WIT)?;
    let wasm = stage.join("style.wasm");

    let mut command = toolchains.command(tool)?;
    match tool {
        // Run in the copy: componentize-py writes __pycache__ beside the sources.
        Tool::ComponentizePy => command
            .current_dir(&style)
            .arg("-d")
            .arg(&wit)
            .args([
                "-w",
                WORLD,
                "--world-module",
                PYTHON_BINDINGS,
                "componentize",
            ])
            .args(["app", "-p", "."])
            .arg("-o")
            .arg(&wasm),
        // The sources' folder is the module root the engine sees while it initialises.
        Tool::ComponentizeJs => command
            .current_dir(&sources)
            .arg(format!("{id}/app.js"))
            .arg("--wit")
            .arg(&wit)
            .args(["--world-name", WORLD])
            .args(["--disable", "http", "fetch-event"])
            .arg("-o")
            .arg(&wasm),
    };
    let needs = match tool {
        Tool::ComponentizePy => "python3 (3.10 or later)",
        Tool::ComponentizeJs => "Node.js 18 or later",
    };
    run_tool(&mut command, needs).with_context(|| format!("{} failed", tool.pinned()))?;
    anyhow::ensure!(
        wasm.is_file(),
        "{} wrote no component to {}",
        tool.pinned(),
        wasm.display()
    );
    Ok(wasm)
}

/// Feeds every file under `dir` (sorted, skipping [`skipped`] names) into `hash`: relative
/// path and contents.
fn hash_dir(hash: &mut Sha256, dir: &Path, relative: &Path) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        if skipped(&name.to_string_lossy()) {
            continue;
        }
        let path = relative.join(&name);
        let kind = entry.file_type()?;
        if kind.is_dir() {
            hash_dir(hash, &entry.path(), &path)?;
        } else if kind.is_file() {
            let bytes = std::fs::read(entry.path())?;
            let name = path.to_string_lossy();
            hash.update((name.len() as u64).to_le_bytes());
            hash.update(name.as_bytes());
            hash.update((bytes.len() as u64).to_le_bytes());
            hash.update(&bytes);
        }
    }
    Ok(())
}
