//! The Python interpreter of the vision reference (`tools/vision-bench`), shared by the vision
//! and host-overhead benchmarks.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `LIKENESS_BENCH_PYTHON`, else `<root>/.cache/vision-bench-venv`'s interpreter, creating the
/// venv from `tools/vision-bench/requirements.txt` when absent; `None` when that fails.
pub fn reference_python(root: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LIKENESS_BENCH_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = root.join(".cache/vision-bench-venv");
    let py = venv.join("bin/python");
    if !py.is_file() {
        eprintln!("creating {} for the Python reference ...", venv.display());
        let ok = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(&py)
                .args(["-m", "pip", "install", "-q", "-r"])
                .arg(root.join("tools/vision-bench/requirements.txt"))
                .status()
                .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "could not set up the Python reference in {}",
                venv.display()
            );
            return None;
        }
    }
    Some(py)
}
