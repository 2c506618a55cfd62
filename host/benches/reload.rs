//! Hot reload latency: how long after a deploy (two renames, as a shell deploy does) the new
//! version serves, measured by polling the registry. Prints a table.
//!
//! `cargo bench -p likeness-host --bench reload`

#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use likeness_host::style::{Registry, watch};

const DEPLOYS: usize = 30;
const VERSIONS: [&str; 2] = ["0.1.0-generation-a", "0.1.0-generation-b"];

/// Replaces package `hostile` the way a shell deploy does: `mv old away; mv new in`.
fn deploy(styles: &Path, version: &str, wasm: &[u8]) {
    let staging = styles.join(".staging");
    let _ = std::fs::remove_dir_all(&staging);
    let package = common::write_package(&staging, "hostile", version, wasm, "");
    let (target, away) = (styles.join("hostile"), styles.join(".away"));
    let _ = std::fs::remove_dir_all(&away);
    std::fs::rename(&target, &away).unwrap();
    std::fs::rename(&package, &target).unwrap();
}

fn main() {
    let wasms = [
        common::hostile_wasm().to_vec(),
        common::hostile_wasm_generation_b(),
    ];
    let styles = tempfile::tempdir().unwrap();
    common::write_package(styles.path(), "hostile", VERSIONS[0], &wasms[0], "");
    let runtime = common::tokio();
    let mut took = runtime.block_on(async {
        let registry = Registry::new(common::runtime(), styles.path());
        registry.load_all().await.unwrap();
        let _watcher = watch::watch(registry.clone()).unwrap();
        let mut took = Vec::new();
        for i in 1..=DEPLOYS {
            let version = VERSIONS[i % 2];
            let started = Instant::now();
            deploy(styles.path(), version, &wasms[i % 2]);
            while registry
                .get("hostile")
                .is_none_or(|style| style.manifest.version != version)
            {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "deploy {i} hung"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            took.push(started.elapsed());
        }
        took
    });
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let at = |q: f64| ms(took[((took.len() - 1) as f64 * q).round() as usize]);
    println!(
        "reload latency over {DEPLOYS} deploys (the watcher waits {} ms for quiet)",
        watch::QUIET.as_millis()
    );
    println!("| min | p50 | p90 | max |");
    println!("|---|---|---|---|");
    println!(
        "| {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms |",
        ms(took[0]),
        at(0.5),
        at(0.9),
        ms(took[took.len() - 1])
    );
}
