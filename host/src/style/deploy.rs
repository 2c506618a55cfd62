//! Atomic deploys (`likeness styles deploy PKG_DIR --styles DIR`).
//!
//! A package is validated exactly as the registry validates it, copied to
//! `DIR/.releases/<id>@<package digest>/`, and served by flipping `DIR/<id>` to a symlink to
//! that release with one rename (the link is made under a hidden name, then renamed over the
//! old one). A watching host sees one rename in the styles folder and never a missing or half
//! written package. Earlier releases stay for a rollback; the oldest are pruned, keeping `keep`
//! of them and never the one serving.
//!
//! The package digest (the release's name) is the SHA-256 of every file of the package, so
//! two packages that differ only in their manifest or assets are two releases; the style's
//! status shows the component's digest.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context as _, ensure};
use sha2::{Digest, Sha256};

use super::build::copy_dir;
use super::canary::CANARIES;
use super::package::{self, LoadedStyle};
use crate::wasm::StyleRuntime;

/// The folder of `DIR` holding the releases (hidden, so the registry never serves it as a
/// package).
pub const RELEASES: &str = ".releases";
/// Releases of one style kept by default.
pub const KEEP: usize = 3;

/// What a deploy did.
#[derive(Debug)]
pub struct Deployed {
    /// The style id.
    pub id: String,
    /// The version deployed.
    pub version: String,
    /// SHA-256 of the component (what `GET /v1/styles/{id}` shows).
    pub digest: String,
    /// The release folder now serving.
    pub release: PathBuf,
    /// The release that served before, kept for a rollback (none on a first deploy).
    pub previous: Option<PathBuf>,
    /// Releases deleted by the pruning.
    pub pruned: Vec<PathBuf>,
}

/// Validates the package in `package_dir` and deploys it into the styles folder `styles`,
/// keeping the `keep` newest releases of the style (and always the one serving).
pub async fn deploy(
    runtime: &Arc<StyleRuntime>,
    package_dir: &Path,
    styles: &Path,
    keep: usize,
) -> anyhow::Result<Deployed> {
    ensure!(keep >= 1, "--keep must be at least 1");
    let (style, release) = validate_and_stage(runtime, package_dir, styles).await?;
    let id = &style.manifest.id;
    let previous = release_of(&styles.join(id));
    flip(styles, id, &release)?;
    let pruned = prune(styles, id, keep, &[])?;
    Ok(Deployed::new(&style, release, previous, pruned))
}

impl Deployed {
    fn new(
        style: &LoadedStyle,
        release: PathBuf,
        previous: Option<PathBuf>,
        pruned: Vec<PathBuf>,
    ) -> Deployed {
        Deployed {
            id: style.manifest.id.clone(),
            version: style.manifest.version.clone(),
            digest: style.digest.clone(),
            release,
            previous,
            pruned,
        }
    }
}

/// Validates the package in `package_dir` exactly as the registry does and stages its
/// release in `styles`.
async fn validate_and_stage(
    runtime: &Arc<StyleRuntime>,
    package_dir: &Path,
    styles: &Path,
) -> anyhow::Result<(Arc<LoadedStyle>, PathBuf)> {
    let style = package::load(runtime, package_dir)
        .await
        .with_context(|| format!("{} is not a valid package", package_dir.display()))?;
    let release = stage(package_dir, styles, &style.manifest.id)?;
    Ok((style, release))
}

/// Validates the package in `package_dir` and starts it as the canary of its style in
/// `styles`, serving `share` (0 to 1) of the traffic beside the current version.
pub async fn deploy_canary(
    runtime: &Arc<StyleRuntime>,
    package_dir: &Path,
    styles: &Path,
    share: f64,
) -> anyhow::Result<Deployed> {
    ensure!(
        share > 0.0 && share < 1.0,
        "a canary's share must be above 0% and below 100%"
    );
    let (style, release) = validate_and_stage(runtime, package_dir, styles).await?;
    let id = style.manifest.id.clone();
    ensure!(
        styles.join(&id).is_dir(),
        "style '{id}' has no current version in {} to run a canary beside",
        styles.display()
    );
    let canaries = styles.join(CANARIES);
    std::fs::create_dir_all(&canaries)?;
    let _ = std::fs::remove_file(canaries.join(format!("{id}.rollback")));
    write_atomically(&canaries.join(format!("{id}.share")), &share.to_string())?;
    let link = canaries.join(&id);
    let previous = release_of(&link);
    let relative = Path::new("..").join(release.strip_prefix(styles)?);
    let temporary = canaries.join(format!(".{id}.link-{}", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    std::os::unix::fs::symlink(relative, &temporary)?;
    std::fs::rename(&temporary, &link).with_context(|| format!("flipping {}", link.display()))?;
    let pruned = prune(styles, &id, KEEP, &[])?;
    Ok(Deployed::new(&style, release, previous, pruned))
}

/// Makes the canary of style `id` its current version: flips `styles/<id>` to the
/// candidate's release, then removes the canary.
pub fn promote(styles: &Path, id: &str) -> anyhow::Result<PathBuf> {
    let release = release_of(&styles.join(CANARIES).join(id))
        .with_context(|| format!("style '{id}' has no canary"))?;
    let release = release
        .strip_prefix(styles.canonicalize()?)
        .map(|r| styles.join(r))
        .unwrap_or(release);
    flip(styles, id, &release)?;
    remove_canary(styles, id, None)?;
    Ok(release)
}

/// Ends the canary of style `id`: removes its link and share; a `reason` is left in
/// `.canary/<id>.rollback`.
pub fn remove_canary(styles: &Path, id: &str, reason: Option<&str>) -> anyhow::Result<()> {
    let canaries = styles.join(CANARIES);
    if let Some(reason) = reason {
        write_atomically(&canaries.join(format!("{id}.rollback")), reason)?;
    }
    match std::fs::remove_file(canaries.join(id)) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error)?,
        _ => {}
    }
    let _ = std::fs::remove_file(canaries.join(format!("{id}.share")));
    Ok(())
}

/// What `likeness styles rollback` undid.
#[derive(Debug)]
pub enum RolledBack {
    /// The style's canary was ended.
    Canary,
    /// The style was flipped back to this earlier release.
    Release(PathBuf),
}

/// Rolls style `id` back: ends its canary if it has one, else flips it to the release
/// deployed before the one serving.
pub fn rollback(styles: &Path, id: &str) -> anyhow::Result<RolledBack> {
    if std::fs::symlink_metadata(styles.join(CANARIES).join(id)).is_ok() {
        remove_canary(styles, id, Some("rolled back by the operator"))?;
        return Ok(RolledBack::Canary);
    }
    let serving = release_of(&styles.join(id))
        .with_context(|| format!("style '{id}' was not deployed by `likeness styles deploy`"))?;
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let serving_since = modified(&serving);
    let prefix = format!("{id}@");
    let earlier = std::fs::read_dir(styles.join(RELEASES))?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
        .map(|entry| entry.path())
        .filter(|path| path.canonicalize().ok().as_ref() != Some(&serving))
        .filter_map(|path| Some((modified(&path)?, path)))
        .filter(|(at, _)| Some(*at) <= serving_since)
        .max_by_key(|(at, _)| *at)
        .map(|(_, path)| path)
        .with_context(|| format!("style '{id}' has no earlier release to roll back to"))?;
    flip(styles, id, &earlier)?;
    Ok(RolledBack::Release(earlier))
}

/// The share of traffic of style `id`'s canary, from `.canary/<id>.share`.
pub fn read_share(styles: &Path, id: &str) -> anyhow::Result<f64> {
    let path = styles.join(CANARIES).join(format!("{id}.share"));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_share(&text).with_context(|| format!("in {}", path.display()))
}

/// A share of traffic written `10%` or `0.1`, as a fraction.
pub fn parse_share(text: &str) -> anyhow::Result<f64> {
    let text = text.trim();
    let share = match text.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().map(|p| p / 100.0),
        None => text.parse::<f64>(),
    }
    .with_context(|| format!("'{text}' is not a share of traffic (e.g. 10% or 0.1)"))?;
    ensure!(
        share > 0.0 && share < 1.0,
        "a canary's share must be above 0% and below 100%, not {text}"
    );
    Ok(share)
}

/// Writes `text` to `path` through a temporary file and a rename.
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path)?;
    Ok(())
}

/// Copies the package in `package_dir` to its release folder (unless that release exists
/// already) and marks it the newest release; returns the release folder.
pub fn stage(package_dir: &Path, styles: &Path, id: &str) -> anyhow::Result<PathBuf> {
    let releases = styles.join(RELEASES);
    std::fs::create_dir_all(&releases)
        .with_context(|| format!("creating {}", releases.display()))?;
    let name = format!("{id}@{}", &package_digest(package_dir)?[..16]);
    let release = releases.join(&name);
    if !release.is_dir() {
        let partial = releases.join(format!(".{name}.partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&partial);
        copy_dir(package_dir, &partial)?;
        std::fs::rename(&partial, &release)
            .with_context(|| format!("moving the release into {}", release.display()))?;
    }
    // The release's modification time orders releases for pruning.
    std::fs::File::open(&release)?.set_modified(SystemTime::now())?;
    Ok(release)
}

/// Points `styles/<id>` at `release` with one rename. A plain package folder in its place is
/// exchanged for the link atomically (Linux) and kept as a release.
pub fn flip(styles: &Path, id: &str, release: &Path) -> anyhow::Result<()> {
    let link = styles.join(id);
    let relative = release
        .strip_prefix(styles)
        .with_context(|| format!("{} is not inside {}", release.display(), styles.display()))?;
    let temporary = styles.join(format!(".{id}.link-{}", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    std::os::unix::fs::symlink(relative, &temporary)
        .with_context(|| format!("creating the link {}", temporary.display()))?;
    let is_plain_folder = std::fs::symlink_metadata(&link).is_ok_and(|m| m.is_dir());
    if is_plain_folder {
        migrate(styles, id, &link, &temporary)
    } else {
        std::fs::rename(&temporary, &link).with_context(|| format!("flipping {}", link.display()))
    }
}

/// Replaces the plain folder `link` by the symlink `temporary`, keeping the folder as a
/// release.
fn migrate(styles: &Path, id: &str, link: &Path, temporary: &Path) -> anyhow::Result<()> {
    let name = format!("{id}@{}", &package_digest(link)?[..16]);
    let kept = styles.join(RELEASES).join(name);
    let modified = std::fs::metadata(link)?.modified()?;
    exchange(temporary, link).with_context(|| format!("flipping {}", link.display()))?;
    // `temporary` now names the old folder.
    if kept.exists() {
        std::fs::remove_dir_all(temporary)?;
    } else {
        std::fs::rename(temporary, &kept)?;
        // Older than the release that replaced it, for the pruning.
        std::fs::File::open(&kept)?.set_modified(modified)?;
    }
    Ok(())
}

/// Swaps two paths atomically.
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).map_err(std::io::Error::from)
}

/// Swaps two paths with two renames (the registry's grace period covers the gap).
#[cfg(not(target_os = "linux"))]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    let aside = a.with_extension("aside");
    std::fs::rename(b, &aside)?;
    std::fs::rename(a, b)?;
    std::fs::rename(aside, a)
}

/// The release folder the symlink `link` points at, if it is one.
pub fn release_of(link: &Path) -> Option<PathBuf> {
    std::fs::symlink_metadata(link)
        .ok()
        .filter(|m| m.file_type().is_symlink())?;
    link.canonicalize().ok()
}

/// Deletes the oldest releases of style `id`, keeping the `keep` newest, the one serving and
/// those in `protect`; returns the deleted ones.
pub fn prune(
    styles: &Path,
    id: &str,
    keep: usize,
    protect: &[PathBuf],
) -> anyhow::Result<Vec<PathBuf>> {
    let mut protected: Vec<PathBuf> = protect
        .iter()
        .filter_map(|p| p.canonicalize().ok())
        .collect();
    protected.extend(release_of(&styles.join(id)));
    protected.extend(release_of(&styles.join(CANARIES).join(id)));
    let prefix = format!("{id}@");
    let mut releases: Vec<(SystemTime, PathBuf)> = std::fs::read_dir(styles.join(RELEASES))?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
        .filter_map(|entry| {
            let modified = entry.metadata().ok()?.modified().ok()?;
            Some((modified, entry.path().canonicalize().ok()?))
        })
        .collect();
    releases.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    let mut pruned = Vec::new();
    for (_, release) in releases.into_iter().skip(keep) {
        if !protected.contains(&release) {
            std::fs::remove_dir_all(&release)
                .with_context(|| format!("pruning {}", release.display()))?;
            pruned.push(release);
        }
    }
    Ok(pruned)
}

/// SHA-256 over every file of the package folder `dir` (relative paths and contents, in
/// order), hex.
pub fn package_digest(dir: &Path) -> anyhow::Result<String> {
    fn walk(root: &Path, dir: &Path, hash: &mut Sha256) -> anyhow::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|entry| entry.file_name());
        for entry in entries {
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                walk(root, &path, hash)?;
            } else if kind.is_file() {
                let relative = path.strip_prefix(root).unwrap_or(&path);
                let bytes = std::fs::read(&path)?;
                hash.update(relative.to_string_lossy().as_bytes());
                hash.update([0]);
                hash.update((bytes.len() as u64).to_le_bytes());
                hash.update(&bytes);
            }
        }
        Ok(())
    }
    let mut hash = Sha256::new();
    walk(dir, dir, &mut hash).with_context(|| format!("reading {}", dir.display()))?;
    Ok(hex::encode(hash.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(dir: &Path, id: &str, content: &str) -> PathBuf {
        let package = dir.join(id);
        std::fs::create_dir_all(package.join("assets")).unwrap();
        std::fs::write(package.join("style.toml"), content).unwrap();
        std::fs::write(package.join("assets").join("a.txt"), "asset").unwrap();
        package
    }

    #[test]
    fn flips_keep_the_previous_release_and_prune_the_oldest() {
        let work = tempfile::tempdir().unwrap();
        let styles = work.path().join("styles");
        std::fs::create_dir_all(&styles).unwrap();
        // A plain folder first: migrated into a release by the first flip.
        package(&styles, "look", "plain");
        let mut releases = Vec::new();
        for n in 0..5 {
            let source = package(&work.path().join(format!("src{n}")), "look", &n.to_string());
            let release = stage(&source, &styles, "look").unwrap();
            flip(&styles, "look", &release).unwrap();
            assert_eq!(
                release_of(&styles.join("look")),
                release.canonicalize().ok()
            );
            assert_eq!(
                std::fs::read_to_string(styles.join("look").join("style.toml")).unwrap(),
                n.to_string()
            );
            releases.push(release);
        }
        let contents: Vec<String> = std::fs::read_dir(styles.join(RELEASES))
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path().join("style.toml")).unwrap())
            .collect();
        assert!(contents.contains(&"plain".to_string()), "{contents:?}");
        // Serving the second-newest must keep it even when keep = 1.
        flip(&styles, "look", &releases[3]).unwrap();
        let pruned = prune(&styles, "look", 1, &[]).unwrap();
        let left: Vec<_> = std::fs::read_dir(styles.join(RELEASES))
            .unwrap()
            .map(|e| e.unwrap().path().canonicalize().unwrap())
            .collect();
        assert_eq!(left.len(), 2, "the newest and the serving one: {left:?}");
        assert!(left.contains(&releases[4].canonicalize().unwrap()));
        assert!(left.contains(&releases[3].canonicalize().unwrap()));
        assert_eq!(pruned.len(), 4, "{pruned:?}");
        let hidden: Vec<_> = std::fs::read_dir(&styles)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".look"))
            .collect();
        assert!(hidden.is_empty(), "temporary links left behind: {hidden:?}");
    }

    #[test]
    fn the_package_digest_covers_every_file() {
        let work = tempfile::tempdir().unwrap();
        let a = package(&work.path().join("a"), "look", "same");
        let b = package(&work.path().join("b"), "look", "same");
        assert_eq!(package_digest(&a).unwrap(), package_digest(&b).unwrap());
        std::fs::write(b.join("assets").join("a.txt"), "other").unwrap();
        assert_ne!(package_digest(&a).unwrap(), package_digest(&b).unwrap());
    }
}
