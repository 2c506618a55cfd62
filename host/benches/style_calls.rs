//! Style call overhead: instantiate + `plan`, and the `post-process` (method `none`) of a
//! 1024x1024 RGBA test card by each first-party Rust style in wasm next to the same style
//! compiled natively (p50/p99 of each, their ratio, and whether the bytes agree). Prints tables.
//!
//! Then the same style contract in each language ([`languages`]): component size, compile time,
//! the cached load and fresh instance + `describe` / `choose-plan` for Rust, Python and
//! JavaScript.
//!
//! `cargo bench -p likeness-host --bench style_calls` (`-- post [STYLE...]` runs the
//! post-process table alone, of the styles named or all).

#[path = "style_calls/languages.rs"]
mod languages;
#[path = "../../tests/common/native.rs"]
mod native;

use std::path::Path;
use std::time::{Duration, Instant};

use likeness_contract::Capabilities;
use likeness_host::style::{build, package};
use likeness_host::wasm::{RuntimeConfig, StyleRuntime};
use likeness_sdk::image::Rgba;
use native::{NativeStyles, RUST_STYLES, card_analysis, test_card};

const PLAN_RUNS: usize = 2000;
const IMAGE_RUNS: usize = 25;
const SIDE: u32 = 1024;

/// This process's CPU time so far (all threads: Cranelift compiles in parallel).
pub(crate) fn process_cpu() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

struct Stats {
    p50: Duration,
    p99: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Stats {
        p50: at(0.50),
        p99: at(0.99),
    }
}

fn row(what: &str, s: &Stats, note: &str) {
    println!(
        "| {what:<44} | {:>10.3} | {:>10.3} | {note}",
        s.p50.as_secs_f64() * 1e3,
        s.p99.as_secs_f64() * 1e3
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let post_only = args.iter().any(|a| a == "post");
    let only: Vec<&str> = RUST_STYLES
        .into_iter()
        .filter(|id| args.iter().any(|a| a == id))
        .collect();
    let styles = if only.is_empty() {
        RUST_STYLES.to_vec()
    } else {
        only
    };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = tempfile::tempdir().unwrap();
    build::build_styles(
        &repo.join("plugins"),
        out.path(),
        &styles.iter().map(|id| id.to_string()).collect::<Vec<_>>(),
        Some(&repo.join("target/test-plugins")),
    )
    .expect("building the Rust styles");

    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let runtime = StyleRuntime::new(RuntimeConfig::default()).unwrap();
    let load = |id: &str| {
        tokio
            .block_on(package::load(&runtime, &out.path().join(id)))
            .unwrap()
    };
    let analysis = card_analysis(SIDE, SIDE);
    let none = Capabilities::none();
    let all = Capabilities::all();

    if !post_only {
        let style = load(styles[0]);
        let options = likeness_contract::options::check(&style.info.params, &[]).unwrap();
        let mut plan_samples = Vec::with_capacity(PLAN_RUNS);
        tokio.block_on(async {
            for i in 0..PLAN_RUNS + 100 {
                let started = Instant::now();
                let plan = style
                    .component
                    .plan(&analysis, if i % 2 == 0 { &none } else { &all }, &options)
                    .await
                    .unwrap();
                let took = started.elapsed();
                std::hint::black_box(plan);
                if i >= 100 {
                    plan_samples.push(took);
                }
            }
        });
        println!(
            "\nStyle call overhead (style '{}', {PLAN_RUNS} plans)\n",
            styles[0]
        );
        println!(
            "| {:<44} | {:>10} | {:>10} | note",
            "what", "p50 ms", "p99 ms"
        );
        println!("|{:-<46}|{:-<12}|{:-<12}|------", "", "", "");
        row(
            "fresh instance + plan",
            &stats(plan_samples),
            "goal: p50 <= 0.100 ms",
        );
    }

    // Each style's post-process without diffusion, wasm and native alternating.
    let photo = test_card(SIDE, SIDE);
    let native_input = Rgba::from_raw(SIDE, SIDE, photo.rgba.clone()).unwrap();
    let natives = NativeStyles::new(repo);
    println!(
        "\nPost-process without diffusion, wasm (fresh instance) against native, {IMAGE_RUNS} \
         images of {SIDE}x{SIDE} RGBA each\n"
    );
    println!(
        "| {:<10} | {:>17} | {:>17} | {:>6} | {:>7} | {:>7} | {:>6} | {:<4} | native twin",
        "style",
        "wasm p50/p99 ms",
        "native p50/p99 ms",
        "ratio",
        "wasm CPU",
        "native CPU",
        "ratio",
        "same"
    );
    println!(
        "|{:-<12}|{:-<19}|{:-<19}|{:-<8}|{:-<9}|{:-<9}|{:-<8}|{:-<6}|------",
        "", "", "", "", "", "", "", ""
    );
    for &id in &styles {
        let style = load(id);
        let options = likeness_contract::options::check(&style.info.params, &[]).unwrap();
        let plan = tokio
            .block_on(style.component.plan(&analysis, &none, &options))
            .unwrap();
        let (mut wasm_wall, mut wasm_cpu) = (Vec::new(), Vec::new());
        let (mut native_wall, mut native_cpu) = (Vec::new(), Vec::new());
        let mut same = true;
        for _ in 0..IMAGE_RUNS {
            let (started, cpu) = (Instant::now(), process_cpu());
            let styled = tokio
                .block_on(
                    style
                        .component
                        .post_process(&photo, &analysis, &plan, &options),
                )
                .unwrap();
            wasm_wall.push(started.elapsed());
            wasm_cpu.push(process_cpu() - cpu);

            let (started, cpu) = (Instant::now(), process_cpu());
            let twin = natives.post_process(id, &native_input, &analysis);
            native_wall.push(started.elapsed());
            native_cpu.push(process_cpu() - cpu);
            same &= styled.rgba == twin.data;
            std::hint::black_box((styled, twin));
        }
        let (wasm, native) = (stats(wasm_wall), stats(native_wall));
        let (wasm_cpu, native_cpu) = (stats(wasm_cpu), stats(native_cpu));
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let ratio = |a: &Stats, b: &Stats| a.p50.as_secs_f64() / b.p50.as_secs_f64();
        println!(
            "| {id:<10} | {:>7.1} / {:>7.1} | {:>7.1} / {:>7.1} | {:>5.2}x | {:>7.1} | {:>7.1} | {:>5.2}x | {:<4} | {}",
            ms(wasm.p50),
            ms(wasm.p99),
            ms(native.p50),
            ms(native.p99),
            ratio(&wasm, &native),
            ms(wasm_cpu.p50),
            ms(native_cpu.p50),
            ratio(&wasm_cpu, &native_cpu),
            if same { "yes" } else { "NO" },
            NativeStyles::function(id)
        );
    }
    println!(
        "\nratio: wasm / native of the p50s, of wall time and of the process's CPU time (p50 \
         ms; robust to a loaded machine); same: identical bytes. Goal: <= 1.2x for each style"
    );

    if !post_only {
        languages::run(&tokio, repo, &analysis);
    }
}
