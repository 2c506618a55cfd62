//! The live API against its own OpenAPI document: schemathesis (property-based, from the
//! document at `/openapi.json`) sends generated and mutated requests to a real server with the
//! four first-party styles and real models, and checks that no response is a 5xx and every
//! response matches the document (status codes, content types, headers, schemas). Stateful
//! testing follows the document's links from a 202 generation to its job's operations.
//!
//! schemathesis comes from `LIKENESS_SCHEMATHESIS` (the executable; `.ci/run` installs a
//! pinned version into a venv), else `<repo>/.cache/schemathesis-venv/bin/schemathesis`, else
//! `schemathesis` on PATH. Missing, the test fails under `CI=true` and is skipped otherwise.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{TestServer, serve_config};

fn schemathesis() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("LIKENESS_SCHEMATHESIS") {
        return Some(PathBuf::from(path));
    }
    let venv = common::repo()
        .join(".cache")
        .join("schemathesis-venv")
        .join("bin")
        .join("schemathesis");
    if venv.is_file() {
        return Some(venv);
    }
    let on_path = Command::new("schemathesis").arg("--version").output();
    on_path
        .is_ok_and(|o| o.status.success())
        .then(|| PathBuf::from("schemathesis"))
}

#[test]
fn the_live_api_conforms_to_its_openapi_document() {
    let Some(schemathesis) = schemathesis() else {
        assert!(
            !common::in_ci(),
            "schemathesis is missing: CI must install it (see .ci/run) and set LIKENESS_SCHEMATHESIS"
        );
        eprintln!(
            "note: skipping the OpenAPI conformance test: schemathesis is not installed \
             (python3 -m venv .cache/schemathesis-venv && \
             .cache/schemathesis-venv/bin/pip install schemathesis==4.32.5)"
        );
        return;
    };
    let runtime = common::tokio();
    let server = runtime.block_on(TestServer::start(
        serve_config(common::first_party_styles()),
    ));
    let workdir = tempfile::tempdir().unwrap();
    let output = Command::new(&schemathesis)
        .current_dir(workdir.path())
        .args(["run", &server.at("/openapi.json")])
        // Every check but `positive_data_acceptance`: a schema can say "binary" but not "a
        // photo", so schema-valid random bytes are rightly refused with 4xx.
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        // Stateful testing follows the document's links (a 202 generation to its job's
        // `getJob`, `jobEvents`, `cancelJob`).
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--max-examples", "25", "--max-time", "90", "--workers", "2"])
        .args(["--seed", "20261125", "--generation-database", "none"])
        .args(["--request-timeout", "30", "--no-color"])
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", schemathesis.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let tail: String = stdout
        .lines()
        .rev()
        .take(120)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!("{tail}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "schemathesis found responses that break the OpenAPI document (see above)"
    );
    let operations = runtime.block_on(async {
        let document: serde_json::Value =
            common::send_json(common::client().get(server.at("/openapi.json"))).await;
        document["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|path| path.as_object().unwrap().len())
            .sum::<usize>()
    });
    assert!(
        stdout.contains(&format!("Tested: {operations}")),
        "every one of the {operations} operations was tested"
    );
    let covered = stdout
        .lines()
        .find_map(|line| {
            let rest = line.split("API Links:").nth(1)?;
            rest.split_whitespace().next()?.parse::<u32>().ok()
        })
        .unwrap_or(0);
    assert!(
        covered >= 3,
        "stateful testing followed the links from a 202 generation to its job ({covered} covered)"
    );
    drop(server);
}
