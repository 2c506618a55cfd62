//! Helpers shared by the integration tests: real components built from `plugins/` and
//! `tests/plugins/`, packaged into temporary style folders.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use likeness_host::runtime::{RuntimeConfig, StyleRuntime};
use sha2::{Digest, Sha256};

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Cargo's target folder for the test components: separate from the one running the tests,
/// so the nested build never waits on the outer cargo's lock.
fn plugin_target() -> PathBuf {
    repo().join("target").join("test-plugins")
}

/// A folder holding freshly built packages of the four first-party styles (built once per test
/// process; cargo makes rebuilds no-ops).
pub fn first_party_styles() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        likeness_host::style::build::build_styles(
            &repo().join("plugins"),
            dir.path(),
            &[],
            Some(&plugin_target()),
        )
        .expect("building the first-party styles");
        dir
    })
    .path()
}

/// The bytes of the hostile test component.
pub fn hostile_wasm() -> &'static [u8] {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    WASM.get_or_init(|| {
        let out = tempfile::tempdir().unwrap();
        let built = likeness_host::style::build::build_styles(
            &repo().join("tests").join("plugins"),
            out.path(),
            &["hostile".to_string()],
            Some(&plugin_target()),
        )
        .expect("building the hostile test style");
        std::fs::read(built[0].join("hostile.wasm")).unwrap()
    })
}

/// A second version of the hostile component: the same code reporting version
/// `0.1.0-generation-b`.
pub fn hostile_wasm_generation_b() -> Vec<u8> {
    let wasm = hostile_wasm();
    let (from, to) = (b"generation-a", b"generation-b");
    let mut patched = wasm.to_vec();
    let mut found = 0;
    for i in 0..=patched.len() - from.len() {
        if &patched[i..i + from.len()] == from {
            patched[i..i + to.len()].copy_from_slice(to);
            found += 1;
        }
    }
    assert!(
        found > 0,
        "the version marker is missing from the hostile component"
    );
    patched
}

/// Writes a package `dir/id` holding `wasm`, with a manifest for `version` plus `extra` TOML
/// lines (e.g. limits); the manifest's sha256 is the component's.
pub fn write_package(dir: &Path, id: &str, version: &str, wasm: &[u8], extra: &str) -> PathBuf {
    let package = dir.join(id);
    std::fs::create_dir_all(&package).unwrap();
    std::fs::write(package.join(format!("{id}.wasm")), wasm).unwrap();
    let manifest = format!(
        "id = \"{id}\"\nname = \"{name}\"\nversion = \"{version}\"\ncomponent = \"{id}.wasm\"\nsha256 = \"{sha}\"\n{extra}\n",
        name = if id == "hostile" {
            "Hostile".to_string()
        } else {
            id.to_string()
        },
        sha = hex::encode(Sha256::digest(wasm)),
    );
    std::fs::write(package.join("style.toml"), manifest).unwrap();
    package
}

/// A runtime with the compiled-component cache shared by all test binaries.
pub fn runtime() -> Arc<StyleRuntime> {
    let config = RuntimeConfig {
        cache_dir: Some(repo().join("target").join("test-component-cache")),
        ..RuntimeConfig::default()
    };
    StyleRuntime::new(config).unwrap()
}

/// A tokio runtime with several workers, as the service has.
pub fn tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}
