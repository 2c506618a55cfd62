//! The pinned toolchains that turn Python and JavaScript styles into components, installed from
//! the registries into a cache folder on first use.
//!
//! The pins live in one place, `host/toolchains/` (compiled into the binary): `python/
//! requirements.txt` (componentize-py, installed with `pip install --target`) and `js/
//! package.json` + `package-lock.json` (componentize-js and jco, installed with `npm ci`). Each
//! toolchain goes into a folder of the cache named for a hash of its pins, so a changed pin
//! installs afresh beside the old one. An install runs in a hidden folder that is renamed into
//! place when it has succeeded: a failed or concurrent install never leaves half a toolchain.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail, ensure};
use sha2::{Digest, Sha256};

/// `host/toolchains/python/requirements.txt`: the Python toolchain's pin.
const PYTHON_REQUIREMENTS: &str = include_str!("../../toolchains/python/requirements.txt");
/// `host/toolchains/js/package.json`: the JavaScript toolchain's pins.
const JS_PACKAGE: &str = include_str!("../../toolchains/js/package.json");
/// `host/toolchains/js/package-lock.json`: every package of the JavaScript toolchain, exactly.
const JS_LOCK: &str = include_str!("../../toolchains/js/package-lock.json");

/// The environment variable that moves the toolchain cache.
pub const CACHE_ENV: &str = "LIKENESS_TOOLCHAINS";

/// A guest language's build tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// componentize-py, for Python styles.
    ComponentizePy,
    /// componentize-js (with jco), for JavaScript styles.
    ComponentizeJs,
}

impl Tool {
    /// The tool and its pinned version, e.g. `componentize-py 0.25.1`.
    pub fn pinned(self) -> String {
        match self {
            Tool::ComponentizePy => format!("componentize-py {}", python_pin()),
            Tool::ComponentizeJs => {
                let package: serde_json::Value =
                    serde_json::from_str(JS_PACKAGE).expect("host/toolchains/js/package.json");
                let version = |name: &str| {
                    package["dependencies"][name]
                        .as_str()
                        .unwrap_or("?")
                        .to_string()
                };
                format!(
                    "componentize-js {} with jco {}",
                    version("@bytecodealliance/componentize-js"),
                    version("@bytecodealliance/jco")
                )
            }
        }
    }

    /// The folder name of this tool's install: its kind and a hash of its pins.
    fn folder(self) -> String {
        let (kind, pins): (&str, &[&str]) = match self {
            Tool::ComponentizePy => ("python", &[PYTHON_REQUIREMENTS]),
            Tool::ComponentizeJs => ("js", &[JS_PACKAGE, JS_LOCK]),
        };
        let mut hash = Sha256::new();
        for pin in pins {
            hash.update(pin.as_bytes());
        }
        format!("{kind}-{}", &hex::encode(hash.finalize())[..12])
    }

    /// The command that installs the tool into `dir` by hand (for error messages).
    fn manual_install(self, dir: &Path) -> String {
        match self {
            Tool::ComponentizePy => format!(
                "python3 -m pip install --target {} {}",
                dir.display(),
                python_requirement()
            ),
            Tool::ComponentizeJs => format!(
                "mkdir -p {dir} && cp host/toolchains/js/package.json \
                 host/toolchains/js/package-lock.json {dir}/ && npm ci --prefix {dir}",
                dir = dir.display()
            ),
        }
    }
}

/// `componentize-py==0.25.1`, the one requirement line.
fn python_requirement() -> &'static str {
    PYTHON_REQUIREMENTS
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
        .expect("host/toolchains/python/requirements.txt names componentize-py")
}

/// `0.25.1`.
fn python_pin() -> &'static str {
    python_requirement()
        .split_once("==")
        .map_or("?", |(_, version)| version)
}

/// The toolchain cache: a folder holding one install per tool and pin.
#[derive(Debug, Clone)]
pub struct Toolchains {
    root: PathBuf,
}

impl Toolchains {
    /// The cache at `root` (made absolute: the tools run in other folders).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        Toolchains {
            root: std::path::absolute(&root).unwrap_or(root),
        }
    }

    /// The cache named by `LIKENESS_TOOLCHAINS`, else `.cache/toolchains` in `project` (the
    /// folder above `plugins/`).
    pub fn for_project(project: &Path) -> Self {
        match std::env::var_os(CACHE_ENV) {
            Some(dir) => Toolchains::new(dir),
            None => Toolchains::new(project.join(".cache").join("toolchains")),
        }
    }

    /// Where `tool` is (or will be) installed.
    pub fn dir(&self, tool: Tool) -> PathBuf {
        self.root.join(tool.folder())
    }

    /// A command running `tool` (its arguments still to add), installing it first when the
    /// cache lacks it. The error names the tool, its version and the command to install it by
    /// hand.
    pub fn command(&self, tool: Tool) -> anyhow::Result<Command> {
        let dir = self.dir(tool);
        if !dir.is_dir() {
            self.install(tool, &dir).with_context(|| {
                format!(
                    "could not install {} (the {} style toolchain) into {}; install it by hand \
                     with `{}`, or point {CACHE_ENV} at a folder that holds it",
                    tool.pinned(),
                    match tool {
                        Tool::ComponentizePy => "Python",
                        Tool::ComponentizeJs => "JavaScript",
                    },
                    dir.display(),
                    tool.manual_install(&dir),
                )
            })?;
        }
        Ok(match tool {
            Tool::ComponentizePy => {
                let mut python = Command::new("python3");
                python.env("PYTHONPATH", &dir).args([
                    "-c",
                    "import sys; from componentize_py import script; sys.exit(script())",
                ]);
                python
            }
            Tool::ComponentizeJs => {
                let mut node = Command::new("node");
                node.arg(dir.join("node_modules/@bytecodealliance/componentize-js/src/cli.js"));
                node
            }
        })
    }

    fn install(&self, tool: Tool, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("creating {}", self.root.display()))?;
        let partial = self
            .root
            .join(format!(".{}.partial-{}", tool.folder(), std::process::id()));
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir_all(&partial)?;
        eprintln!("installing {} into {}", tool.pinned(), dir.display());
        let installed = match tool {
            Tool::ComponentizePy => run_tool(
                Command::new("python3")
                    .args([
                        "-m",
                        "pip",
                        "install",
                        "--quiet",
                        "--disable-pip-version-check",
                    ])
                    .args(["--no-warn-script-location", "--root-user-action=ignore"])
                    .arg("--target")
                    .arg(&partial)
                    .arg(python_requirement()),
                "python3 with pip (Debian: apt-get install python3-pip)",
            ),
            Tool::ComponentizeJs => {
                std::fs::write(partial.join("package.json"), JS_PACKAGE)?;
                std::fs::write(partial.join("package-lock.json"), JS_LOCK)?;
                run_tool(
                    Command::new("npm")
                        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                        .current_dir(&partial),
                    "Node.js 18 or later with npm (Debian: apt-get install nodejs npm)",
                )
            }
        };
        if let Err(error) = installed {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(error);
        }
        match std::fs::rename(&partial, dir) {
            Ok(()) => Ok(()),
            // Another build installed it meanwhile: use theirs.
            Err(_) if dir.is_dir() => {
                let _ = std::fs::remove_dir_all(&partial);
                Ok(())
            }
            Err(error) => {
                let _ = std::fs::remove_dir_all(&partial);
                Err(error).with_context(|| format!("moving the install to {}", dir.display()))
            }
        }
    }
}

/// Runs a build or install tool; `needs` says what to install when the program is missing.
pub(crate) fn run_tool(command: &mut Command, needs: &str) -> anyhow::Result<()> {
    let program = command.get_program().to_string_lossy().into_owned();
    let status = match command.status() {
        Ok(status) => status,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            bail!("`{program}` is not installed; this needs {needs}")
        }
        Err(error) => return Err(error).with_context(|| format!("running {command:?}")),
    };
    ensure!(status.success(), "{command:?} failed with {status}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_read_from_host_toolchains() {
        assert_eq!(Tool::ComponentizePy.pinned(), "componentize-py 0.25.1");
        assert_eq!(
            Tool::ComponentizeJs.pinned(),
            "componentize-js 0.23.0 with jco 1.35.0"
        );
        let lock: serde_json::Value = serde_json::from_str(JS_LOCK).unwrap();
        for (name, version) in [
            ("@bytecodealliance/componentize-js", "0.23.0"),
            ("@bytecodealliance/jco", "1.35.0"),
        ] {
            assert_eq!(
                lock["packages"][format!("node_modules/{name}")]["version"],
                version,
                "package-lock.json is stale: run `npm install --package-lock-only \
                 --omit-lockfile-registry-resolved` in host/toolchains/js"
            );
        }
        let folders = [Tool::ComponentizePy.folder(), Tool::ComponentizeJs.folder()];
        assert!(folders[0].starts_with("python-") && folders[1].starts_with("js-"));
    }

    #[test]
    fn a_missing_installer_is_named_with_the_manual_command() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Toolchains::new(dir.path());
        // No npm on this PATH: the install fails and says what to do.
        let mut command = Command::new("/nonexistent/npm");
        let error = run_tool(&mut command, "Node.js").unwrap_err().to_string();
        assert!(error.contains("`/nonexistent/npm` is not installed; this needs Node.js"));
        let manual = Tool::ComponentizeJs.manual_install(&cache.dir(Tool::ComponentizeJs));
        assert!(manual.contains("npm ci --prefix"), "{manual}");
        assert!(
            Tool::ComponentizePy
                .manual_install(Path::new("/x"))
                .ends_with("--target /x componentize-py==0.25.1")
        );
    }
}
