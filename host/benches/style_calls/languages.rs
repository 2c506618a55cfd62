//! The cost of a style by language: one first-party style each in Rust (`anime`), Python
//! (`pop-art`, componentize-py) and JavaScript (`sketch`, componentize-js). For each: the
//! component's size, its compilation (precheck + Cranelift, the process's CPU time), loading it
//! from the on-disk cache as `serve` does after a deploy, and p50/p99 of a fresh instance +
//! `describe` (about the instantiation alone) and a fresh instance + `choose-plan` (the policy
//! import included), next to the 50 ms plan budget.

use std::path::Path;
use std::time::{Duration, Instant};

use likeness_contract::{Analysis, Capabilities};
use likeness_host::style::{build, package};
use likeness_host::wasm::{CallLimits, RuntimeConfig, StyleRuntime};
use sha2::{Digest, Sha256};

use super::{Stats, process_cpu, stats};

/// Calls sampled per style and kind of call.
const CALLS: usize = 400;
/// Calls before sampling starts.
const WARM_UP: usize = 20;

/// One style's numbers.
struct Row {
    language: &'static str,
    id: &'static str,
    bytes: usize,
    compile_cpu: Duration,
    compile_wall: Duration,
    cached_load: Duration,
    describe: Stats,
    plan: Stats,
}

/// Builds the three styles, measures them and prints the table.
pub fn run(tokio: &tokio::runtime::Runtime, repo: &Path, analysis: &Analysis) {
    let styles = [
        ("Rust", "anime"),
        ("Python", "pop-art"),
        ("JavaScript", "sketch"),
    ];
    let out = tempfile::tempdir().unwrap();
    let ids: Vec<String> = styles.iter().map(|(_, id)| id.to_string()).collect();
    build::build_styles(
        &repo.join("plugins"),
        out.path(),
        &ids,
        Some(&repo.join("target/test-plugins")),
    )
    .expect("building one style per language");
    let cache = tempfile::tempdir().unwrap();
    let config = || RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    };
    let none = Capabilities::none();
    let all = Capabilities::all();

    let mut rows = Vec::new();
    for (language, id) in styles {
        let dir = out.path().join(id);
        let wasm = std::fs::read(dir.join(format!("{id}.wasm"))).unwrap();
        let digest = hex::encode(Sha256::digest(&wasm));

        // A cold compilation, stored in the cache as `styles build` / `styles deploy` do.
        let compiling = StyleRuntime::new(config()).unwrap();
        let (cpu, wall) = (process_cpu(), Instant::now());
        compiling
            .compile(id, &wasm, &digest, CallLimits::default(), None)
            .unwrap_or_else(|e| panic!("compiling {id}: {e:#}"));
        let (compile_cpu, compile_wall) = (process_cpu() - cpu, wall.elapsed());
        drop(compiling);

        // What `serve` does with a deployed component: load it from the cache.
        let serving = StyleRuntime::new(config()).unwrap();
        let started = Instant::now();
        serving
            .compile(id, &wasm, &digest, CallLimits::default(), None)
            .unwrap();
        let cached_load = started.elapsed();
        assert_eq!(serving.compilations(), 0, "{id} was compiled again");

        let style = tokio.block_on(package::load(&serving, &dir)).unwrap();
        let options = likeness_contract::options::check(&style.info.params, &[]).unwrap();
        let mut describe = Vec::with_capacity(CALLS);
        let mut plan = Vec::with_capacity(CALLS);
        tokio.block_on(async {
            for i in 0..CALLS + WARM_UP {
                let started = Instant::now();
                std::hint::black_box(style.component.describe().await.unwrap());
                let described = started.elapsed();
                let started = Instant::now();
                let capabilities = if i % 2 == 0 { &none } else { &all };
                let made = style.component.plan(analysis, capabilities, &options).await;
                std::hint::black_box(made.unwrap());
                if i >= WARM_UP {
                    describe.push(described);
                    plan.push(started.elapsed());
                }
            }
        });
        rows.push(Row {
            language,
            id,
            bytes: wasm.len(),
            compile_cpu,
            compile_wall,
            cached_load,
            describe: stats(describe),
            plan: stats(plan),
        });
    }

    println!("\nStyle cost by language ({CALLS} calls each, plan budget 50 ms)\n");
    println!(
        "| language | style | component MB | compile s CPU (wall) | cached load ms | instance + describe p50 / p99 ms | instance + choose-plan p50 / p99 ms |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for row in rows {
        println!(
            "| {} | {} | {:.1} | {:.1} ({:.1}) | {:.1} | {:.3} / {:.3} | {:.3} / {:.3} |",
            row.language,
            row.id,
            row.bytes as f64 / 1e6,
            row.compile_cpu.as_secs_f64(),
            row.compile_wall.as_secs_f64(),
            ms(row.cached_load),
            ms(row.describe.p50),
            ms(row.describe.p99),
            ms(row.plan.p50),
            ms(row.plan.p99),
        );
    }
}
