//! The log lines of `likeness serve` (the real binary): plain text without colour codes when
//! stderr is not a terminal, and one JSON object per line with `--log-format json`.

mod common;

use std::io::Read as _;
use std::process::{Command, Stdio};

/// Starts `likeness serve` on an empty styles folder with `extra` arguments, waits until it
/// listens, stops it, and returns what it wrote to stderr.
fn serve_and_stop(extra: &[&str]) -> String {
    let styles = tempfile::tempdir().unwrap();
    let (mut child, _url) = common::serve::spawn_listening(
        Command::new(env!("CARGO_BIN_EXE_likeness"))
            .arg("serve")
            .args(["--addr", "127.0.0.1:0"])
            .arg("--styles")
            .arg(styles.path())
            .arg("--models")
            .arg(common::models_dir())
            .arg("--cache-dir")
            .arg(common::component_cache())
            .args(extra)
            .env_remove("LIKENESS_CONFIG")
            .env_remove("LIKENESS_LOG_FORMAT")
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped()),
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(child.wait().unwrap().success(), "{stderr}");
    stderr
}

#[test]
fn logs_are_plain_text_off_a_terminal_and_json_on_request() {
    let text = serve_and_stop(&[]);
    assert!(text.contains("likeness is listening"), "{text}");
    assert!(!text.contains('\u{1b}'), "colour codes in {text:?}");

    let json = serve_and_stop(&["--log-format", "json"]);
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: not JSON: {line:?}"))
        })
        .collect();
    assert!(
        lines
            .iter()
            .any(|line| line["fields"]["message"] == "likeness is listening"
                && line["level"] == "INFO"),
        "{json}"
    );
}
