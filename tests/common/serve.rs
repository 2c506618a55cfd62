//! Starting `likeness serve` as a child process, for the tests and the benchmarks.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

/// Spawns `command` (a `likeness serve … --addr 127.0.0.1:0`) with its stdout piped and returns
/// the process and its URL, read from the first line it prints (`listening on URL`).
pub fn spawn_listening(command: &mut Command) -> (Child, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawning likeness serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, url)
}
