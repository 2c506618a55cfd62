//! `likeness styles build`: compiles the styles in `plugins/` (Rust, Python, JavaScript) to components and assembles
//! deployable packages in `styles/`.
//!
//! A style is a folder of `plugins/` holding a `style.toml` template (the manifest without
//! `sha256`) and its code: a Rust crate named `style-<id>`, a Python `app.py` or a JavaScript
//! `app.js` ([`Language`]). Each package is assembled in a hidden staging
//! folder and renamed into place, so a watching host never sees half a package.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail, ensure};
use sha2::{Digest, Sha256};

use super::guest;
use super::manifest::{MANIFEST_FILE, Manifest};
use super::toolchain::Toolchains;

/// The wasm target styles are built for.
pub const TARGET: &str = "wasm32-wasip2";
/// The cargo profile styles are built with (size-optimised release, see the workspace).
pub const PROFILE: &str = "style";

/// The language a style is written in, told by its files: `Cargo.toml` (Rust), `app.py`
/// (Python) or `app.js` (JavaScript).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// A Rust crate built with cargo for [`TARGET`].
    Rust,
    /// A Python module `app.py` built with componentize-py.
    Python,
    /// A JavaScript module `app.js` built with componentize-js.
    JavaScript,
}

impl Language {
    /// The language of the style in `dir`; an error when no or several entry files are there.
    pub fn detect(dir: &Path) -> anyhow::Result<Language> {
        let found: Vec<Language> = [
            ("Cargo.toml", Language::Rust),
            ("app.py", Language::Python),
            ("app.js", Language::JavaScript),
        ]
        .into_iter()
        .filter(|(file, _)| dir.join(file).is_file())
        .map(|(_, language)| language)
        .collect();
        match found[..] {
            [language] => Ok(language),
            [] => bail!(
                "{} holds no Cargo.toml (Rust), app.py (Python) or app.js (JavaScript)",
                dir.display()
            ),
            _ => bail!(
                "{} holds more than one of Cargo.toml, app.py and app.js; a style is written in \
                 one language",
                dir.display()
            ),
        }
    }

    /// The language's name, as `likeness styles new --lang` spells it: `rust`, `python`, `js`.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::JavaScript => "js",
        }
    }
}

impl std::str::FromStr for Language {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        [Language::Rust, Language::Python, Language::JavaScript]
            .into_iter()
            .find(|language| language.as_str() == name)
            .ok_or_else(|| format!("'{name}' is not a style language: use rust, python or js"))
    }
}

/// Builds the styles found in `plugins` (all, or those named in `only`) into `out`; returns
/// the package folders written. Rust crates build with cargo (`target_dir` overrides its
/// target folder); Python and JavaScript styles with their pinned toolchains
/// ([`toolchain`](super::toolchain)), their components kept in `<target>/guests/` by a hash of
/// everything that goes in, so an unchanged style is not rebuilt.
pub fn build_styles(
    plugins: &Path,
    out: &Path,
    only: &[String],
    target_dir: Option<&Path>,
) -> anyhow::Result<Vec<PathBuf>> {
    let project = std::path::absolute(plugins)?;
    let project = project.parent().unwrap_or(&project);
    build_styles_with(
        &Toolchains::for_project(project),
        plugins,
        out,
        only,
        target_dir,
    )
}

/// [`build_styles`] with the guest toolchains of `toolchains` (a project's cache, for styles
/// outside it).
pub fn build_styles_with(
    toolchains: &Toolchains,
    plugins: &Path,
    out: &Path,
    only: &[String],
    target_dir: Option<&Path>,
) -> anyhow::Result<Vec<PathBuf>> {
    // The guest tools run in other folders: every path they get is absolute.
    let plugins = &std::path::absolute(plugins)?;
    let target_dir = target_dir.map(std::path::absolute).transpose()?;
    let target_dir = target_dir.as_deref();
    let mut styles = Vec::new();
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
                styles.push((id, Language::detect(&dir)?));
            }
        }
    }
    styles.sort_by(|a, b| a.0.cmp(&b.0));
    for wanted in only {
        ensure!(
            styles.iter().any(|(id, _)| id == wanted),
            "no style '{wanted}' in {}",
            plugins.display()
        );
    }
    ensure!(
        !styles.is_empty(),
        "no styles (folders with a {MANIFEST_FILE}) in {}",
        plugins.display()
    );

    let crates: Vec<&str> = styles
        .iter()
        .filter(|(_, language)| *language == Language::Rust)
        .map(|(id, _)| id.as_str())
        .collect();
    let artifacts = if crates.is_empty() {
        None
    } else {
        Some(build_crates(plugins, &crates, target_dir)?)
    };
    let project = plugins.parent().unwrap_or(plugins);
    let guests = target_dir
        .map_or_else(|| project.join("target"), Path::to_path_buf)
        .join("guests");

    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    styles
        .iter()
        .map(|(id, language)| {
            let dir = plugins.join(id);
            let wasm = match (language, &artifacts) {
                (Language::Rust, Some(artifacts)) => {
                    artifacts.join(format!("style_{}.wasm", id.replace('-', "_")))
                }
                _ => guest::build(toolchains, *language, &dir, &guests)
                    .with_context(|| format!("building the {} style '{id}'", language.as_str()))?,
            };
            assemble(&dir, &wasm, out)
        })
        .collect()
}

/// Builds the style crates `crates` of `plugins` with cargo; returns the folder of their
/// components.
fn build_crates(
    plugins: &Path,
    crates: &[&str],
    target_dir: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    ensure_target_installed()?;
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .current_dir(plugins)
        .args(["build", "--profile", PROFILE, "--target", TARGET]);
    if let Some(dir) = target_dir {
        cargo.arg("--target-dir").arg(dir);
    }
    for id in crates {
        cargo.args(["-p", &format!("style-{id}")]);
    }
    run(&mut cargo)?;
    let target_dir = match target_dir {
        Some(dir) => dir.to_path_buf(),
        None => cargo_target_dir(plugins)?,
    };
    Ok(target_dir.join(TARGET).join(PROFILE))
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
    if let Some(preview) = &manifest.preview {
        std::fs::copy(crate_dir.join(preview), staging.join(preview))
            .with_context(|| format!("copying the preview {preview}"))?;
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
