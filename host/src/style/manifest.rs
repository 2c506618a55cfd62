//! `style.toml`: the manifest of a style package.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use serde::{Deserialize, Serialize};

use crate::wasm::CallLimits;

/// The manifest's file name inside a package folder.
pub const MANIFEST_FILE: &str = "style.toml";
/// Largest manifest accepted.
const MANIFEST_MAX_BYTES: u64 = 64 * 1024;

/// A parsed, validated `style.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The style's id: lowercase letters, digits and dashes; equals the package folder's name.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// The style's version; `describe()` must report the same.
    pub version: String,
    /// One sentence for clients.
    #[serde(default)]
    pub description: String,
    /// The component's file name inside the package folder.
    pub component: String,
    /// SHA-256 of the component file, lowercase hex.
    pub sha256: String,
    /// Overrides of the host's default call limits.
    #[serde(default)]
    pub limits: LimitOverrides,
    /// Capabilities the style asks for beyond logging.
    #[serde(default)]
    pub grants: Grants,
    /// A picture of the look (a PNG, JPEG or WebP file name inside the package folder) that
    /// clients show beside the style; see [`super::preview`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
}

/// Per-style overrides of the host's call limits, each capped by the host's ceilings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    /// CPU budget of `describe` and `plan`, in milliseconds.
    pub plan_ms: Option<u64>,
    /// CPU budget of `post-process`, in milliseconds.
    pub post_process_ms: Option<u64>,
    /// Memory cap of one instance, in MiB.
    pub memory_mib: Option<u64>,
}

/// Capabilities a style may ask for.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Pre-open the package's `assets/` folder read-only at `/assets`.
    #[serde(default)]
    pub assets: bool,
}

impl Manifest {
    /// Reads and validates `dir/style.toml`.
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let size = std::fs::metadata(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        ensure!(
            size <= MANIFEST_MAX_BYTES,
            "{} is {size} bytes; the limit is {MANIFEST_MAX_BYTES}",
            path.display()
        );
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid {}", path.display()))
    }

    /// Parses and validates a manifest's text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let manifest: Manifest = toml::from_str(text)?;
        manifest.validate()?;
        Ok(manifest)
    }

    fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            is_style_id(&self.id),
            "id '{}' must be 1-63 lowercase letters, digits or dashes, starting with a letter or digit",
            self.id
        );
        ensure!(!self.name.trim().is_empty(), "name must not be empty");
        ensure!(!self.version.trim().is_empty(), "version must not be empty");
        let plain_file = Path::new(&self.component)
            .file_name()
            .is_some_and(|name| name == self.component.as_str());
        ensure!(
            plain_file && self.component.ends_with(".wasm"),
            "component '{}' must be a .wasm file name inside the package folder",
            self.component
        );
        if let Some(preview) = &self.preview {
            let plain_file = Path::new(preview)
                .file_name()
                .is_some_and(|name| name == preview.as_str());
            let lower = preview.to_ascii_lowercase();
            ensure!(
                plain_file
                    && [".png", ".jpg", ".jpeg", ".webp"]
                        .iter()
                        .any(|ext| lower.ends_with(ext)),
                "preview '{preview}' must be a .png, .jpg or .webp file name inside the package folder"
            );
        }
        ensure!(
            self.sha256.len() == 64
                && self
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "sha256 must be 64 lowercase hex digits"
        );
        Ok(())
    }

    /// The limits this style runs under: the host's defaults with the manifest's overrides,
    /// refused when an override is zero or above the host's ceiling.
    pub fn limits(&self, defaults: CallLimits, ceilings: CallLimits) -> anyhow::Result<CallLimits> {
        let mut limits = defaults;
        if let Some(ms) = self.limits.plan_ms {
            limits.plan = bounded("limits.plan_ms", Duration::from_millis(ms), ceilings.plan)?;
        }
        if let Some(ms) = self.limits.post_process_ms {
            limits.post_process = bounded(
                "limits.post_process_ms",
                Duration::from_millis(ms),
                ceilings.post_process,
            )?;
        }
        if let Some(mib) = self.limits.memory_mib {
            let ceiling_mib = (ceilings.memory >> 20) as u64;
            if mib == 0 || mib > ceiling_mib {
                bail!("limits.memory_mib = {mib} is outside 1..={ceiling_mib}");
            }
            limits.memory = (mib as usize) << 20;
        }
        Ok(limits)
    }
}

fn bounded(name: &str, value: Duration, ceiling: Duration) -> anyhow::Result<Duration> {
    if value.is_zero() || value > ceiling {
        bail!(
            "{name} = {} is outside 1..={}",
            value.as_millis(),
            ceiling.as_millis()
        );
    }
    Ok(value)
}

/// Whether `id` is a valid style id (also the package folder's name).
pub fn is_style_id(id: &str) -> bool {
    (1..=63).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        id = "anime"
        name = "Anime"
        version = "0.1.0"
        component = "anime.wasm"
        sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
    "#;

    #[test]
    fn parses_a_minimal_manifest() {
        let manifest = Manifest::parse(GOOD).unwrap();
        assert_eq!(manifest.id, "anime");
        assert!(!manifest.grants.assets);
        assert_eq!(
            manifest
                .limits(CallLimits::default(), CallLimits::default())
                .unwrap(),
            CallLimits::default()
        );
    }

    #[test]
    fn rejects_bad_fields() {
        for (from, to, complaint) in [
            ("id = \"anime\"", "id = \"../etc\"", "id '../etc'"),
            ("anime.wasm", "../anime.wasm", "component"),
            ("anime.wasm", "anime.so", "component"),
            (
                "0000000000000000000000000000000000000000000000000000000000000000",
                "abc",
                "sha256",
            ),
            (
                "name = \"Anime\"",
                "name = \"Anime\"\ncolour = \"red\"",
                "unknown field",
            ),
        ] {
            let error = Manifest::parse(&GOOD.replace(from, to)).unwrap_err();
            assert!(
                format!("{error:#}").contains(complaint),
                "{error:#} should mention {complaint}"
            );
        }
    }

    #[test]
    fn limit_overrides_are_bounded_by_the_ceilings() {
        let mut manifest = Manifest::parse(GOOD).unwrap();
        let ceilings = CallLimits {
            plan: Duration::from_secs(1),
            post_process: Duration::from_secs(10),
            memory: 512 << 20,
        };
        manifest.limits = LimitOverrides {
            plan_ms: Some(200),
            post_process_ms: None,
            memory_mib: Some(64),
        };
        let limits = manifest.limits(CallLimits::default(), ceilings).unwrap();
        assert_eq!(limits.plan, Duration::from_millis(200));
        assert_eq!(limits.memory, 64 << 20);
        manifest.limits.plan_ms = Some(5_000);
        assert!(manifest.limits(CallLimits::default(), ceilings).is_err());
        manifest.limits = LimitOverrides {
            memory_mib: Some(0),
            ..Default::default()
        };
        assert!(manifest.limits(CallLimits::default(), ceilings).is_err());
    }
}
