//! `likeness styles new NAME [--lang rust|python|js]`: a new style in `plugins/NAME` from a
//! template that builds and passes `likeness styles check` as generated: a Rust crate
//! (Cargo.toml, style.toml, src/lib.rs on the SDK's helpers) added to the cargo workspace's
//! members, or a Python (`app.py`) or JavaScript (`app.js`) module beside its style.toml.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail, ensure};
use toml_edit::{DocumentMut, Value};

use crate::style::build::Language;
use crate::style::manifest::{MANIFEST_FILE, is_style_id};

const CARGO_TEMPLATE: &str = include_str!("../templates/style/Cargo.toml.tmpl");
const MANIFEST_TEMPLATE: &str = include_str!("../templates/style/style.toml.tmpl");
const LIB_TEMPLATE: &str = include_str!("../templates/style/lib.rs.tmpl");
const PYTHON_TEMPLATE: &str = include_str!("../templates/style/app.py.tmpl");
const JS_TEMPLATE: &str = include_str!("../templates/style/app.js.tmpl");

/// What [`new_style`] made.
#[derive(Debug)]
pub struct Scaffolded {
    /// The new style's folder.
    pub dir: PathBuf,
    /// The workspace manifest a Rust crate was added to (`None` when a glob already covered
    /// it, and for Python and JavaScript styles).
    pub workspace: Option<PathBuf>,
}

/// Writes the style `plugins/<id>` in `language`. A Rust crate is added to the enclosing cargo
/// workspace, which must provide `likeness-sdk` in `[workspace.dependencies]` (the Likeness
/// repository does); a Python or JavaScript style needs nothing beside it (the build brings
/// its SDK).
pub fn new_style(plugins: &Path, id: &str, language: Language) -> anyhow::Result<Scaffolded> {
    ensure!(
        is_style_id(id),
        "'{id}' is not a style id: use 1-63 lowercase letters, digits or dashes, starting with a \
         letter or digit"
    );
    std::fs::create_dir_all(plugins).with_context(|| format!("creating {}", plugins.display()))?;
    let plugins = plugins
        .canonicalize()
        .with_context(|| format!("resolving {}", plugins.display()))?;
    let dir = plugins.join(id);
    ensure!(!dir.exists(), "{} already exists", dir.display());
    let name = title(id);
    let fill = |template: &str| {
        template
            .replace("{{id}}", id)
            .replace("{{name}}", &name)
            .replace("{{description}}", &format!("A {name} look."))
    };
    let module = match language {
        Language::Rust => return new_crate(&plugins, &dir, &fill),
        Language::Python => ("app.py", PYTHON_TEMPLATE),
        Language::JavaScript => ("app.js", JS_TEMPLATE),
    };
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(MANIFEST_FILE), fill(MANIFEST_TEMPLATE))?;
    std::fs::write(dir.join(module.0), fill(module.1))?;
    Ok(Scaffolded {
        dir,
        workspace: None,
    })
}

/// Writes the Rust crate `dir` and adds it to the workspace enclosing `plugins`.
fn new_crate(
    plugins: &Path,
    dir: &Path,
    fill: &dyn Fn(&str) -> String,
) -> anyhow::Result<Scaffolded> {
    let root = workspace_root(plugins)?;
    let manifest_path = root.join("Cargo.toml");
    let mut workspace: DocumentMut = std::fs::read_to_string(&manifest_path)?
        .parse()
        .with_context(|| format!("parsing {}", manifest_path.display()))?;
    ensure!(
        workspace
            .get("workspace")
            .and_then(|w| w.get("dependencies"))
            .and_then(|d| d.get("likeness-sdk"))
            .is_some(),
        "{} has no `likeness-sdk` in [workspace.dependencies]; run this inside the Likeness \
         repository",
        manifest_path.display()
    );

    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::write(dir.join("Cargo.toml"), fill(CARGO_TEMPLATE))?;
    std::fs::write(dir.join(MANIFEST_FILE), fill(MANIFEST_TEMPLATE))?;
    std::fs::write(dir.join("src").join("lib.rs"), fill(LIB_TEMPLATE))?;

    let member = dir
        .strip_prefix(&root)
        .context("the plugins folder is outside the workspace")?
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/");
    let added = add_member(&mut workspace, &member)?;
    if added {
        std::fs::write(&manifest_path, workspace.to_string())
            .with_context(|| format!("writing {}", manifest_path.display()))?;
    }
    Ok(Scaffolded {
        dir: dir.to_path_buf(),
        workspace: added.then_some(manifest_path),
    })
}

/// The nearest folder at or above `dir` whose Cargo.toml has a `[workspace]`.
fn workspace_root(dir: &Path) -> anyhow::Result<PathBuf> {
    for candidate in dir.ancestors() {
        let manifest = candidate.join("Cargo.toml");
        if let Ok(text) = std::fs::read_to_string(&manifest)
            && text
                .parse::<DocumentMut>()
                .is_ok_and(|doc| doc.contains_key("workspace"))
        {
            return Ok(candidate.to_path_buf());
        }
    }
    bail!(
        "no cargo workspace encloses {}; run this inside the Likeness repository",
        dir.display()
    )
}

/// Adds `member` to `workspace.members`, formatted like the entries before it; `false` when it
/// is already listed or a glob covers it.
fn add_member(workspace: &mut DocumentMut, member: &str) -> anyhow::Result<bool> {
    let members = workspace["workspace"]
        .as_table_like_mut()
        .context("[workspace] is not a table")?
        .entry("members")
        .or_insert(toml_edit::value(toml_edit::Array::new()))
        .as_array_mut()
        .context("workspace.members is not an array")?;
    let listed = members.iter().filter_map(Value::as_str).any(|m| {
        m == member
            || m.strip_suffix("/*")
                .is_some_and(|parent| member.rsplit_once('/').is_some_and(|(p, _)| p == parent))
    });
    if listed {
        return Ok(false);
    }
    let prefix = members
        .iter()
        .last()
        .and_then(|last| last.decor().prefix())
        .and_then(|p| p.as_str())
        .unwrap_or(" ")
        .to_string();
    let mut value = Value::from(member);
    value.decor_mut().set_prefix(prefix);
    members.push_formatted(value);
    Ok(true)
}

/// `my-style` -> `My Style`.
fn title(id: &str) -> String {
    id.split('-')
        .filter(|w| !w.is_empty())
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_uppercase().chain(chars).collect()
            })
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_keep_their_layout() {
        let mut doc: DocumentMut =
            "[workspace]\nmembers = [\n    \"host\",\n    \"plugins/sdk\",\n]\n"
                .parse()
                .unwrap();
        assert!(add_member(&mut doc, "plugins/new-look").unwrap());
        assert_eq!(
            doc.to_string(),
            "[workspace]\nmembers = [\n    \"host\",\n    \"plugins/sdk\",\n    \"plugins/new-look\",\n]\n"
        );
        assert!(!add_member(&mut doc, "plugins/new-look").unwrap());
        let mut globbed: DocumentMut = "[workspace]\nmembers = [\"plugins/*\"]\n".parse().unwrap();
        assert!(!add_member(&mut globbed, "plugins/x").unwrap());
    }

    #[test]
    fn titles_and_ids() {
        assert_eq!(title("my-style"), "My Style");
        assert_eq!(title("8bit"), "8bit");
        let dir = tempfile::tempdir().unwrap();
        assert!(new_style(dir.path(), "Bad Name", Language::Python).is_err());
        let made = new_style(dir.path(), "my-look", Language::JavaScript).unwrap();
        assert_eq!(made.workspace, None);
        let app = std::fs::read_to_string(made.dir.join("app.js")).unwrap();
        assert!(
            app.contains("const ID = \"my-look\";") && app.contains("const NAME = \"My Look\";")
        );
        assert_eq!(Language::detect(&made.dir).unwrap(), Language::JavaScript);
        assert!(
            new_style(dir.path(), "my-look", Language::Python).is_err(),
            "exists"
        );
    }
}
