//! The `likeness` command: the service and its operator tools.

#![deny(missing_docs)]

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use likeness_host::config::{LogFormat, SandboxConfig, ServeArgs, ServeConfig};
use likeness_host::output::OutputFormat;
use likeness_host::pipeline::Pipeline;
use likeness_host::queue::redis::RedisQueue;
use likeness_host::queue::worker;
use likeness_host::server::{self, AppState};
use likeness_host::service::Service;
use likeness_host::style::{self, Registry, RegistrySettings};
use likeness_host::wasm::{RuntimeConfig, StyleRuntime};
use likeness_host::{batch, scaffold};
use likeness_vision::{Vision, fetch, ingest};

#[derive(Parser)]
#[command(
    name = "likeness",
    version,
    about = "Turns a person's photo into an artistic style, keeping them recognisable."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the HTTP service, hot-reloading the styles folder. Settings come from --config FILE
    /// (TOML), then LIKENESS_* variables, then flags.
    Serve(Box<ServeArgs>),
    /// Styles photos in-process (no server), writing <out>/<stem>.<style>.<ext>. Exits 1 when
    /// any photo failed.
    Run {
        /// The style to apply.
        #[arg(long)]
        style: String,
        /// The photos.
        #[arg(required = true)]
        photos: Vec<PathBuf>,
        /// Where the results go.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// A style option, NAME=VALUE (repeatable).
        #[arg(long = "option", value_name = "NAME=VALUE")]
        options: Vec<String>,
        /// The result format: png, jpeg or webp.
        #[arg(long, default_value = "png")]
        format: String,
        /// The folder of style packages.
        #[arg(long, env = "LIKENESS_STYLES", default_value = "styles")]
        styles: PathBuf,
        /// The folder of model packs.
        #[arg(long, env = "LIKENESS_MODELS", default_value = "models")]
        models: PathBuf,
        /// Where compiled components are cached.
        #[arg(long, env = "LIKENESS_CACHE", default_value = ".cache/components")]
        cache_dir: PathBuf,
    },
    /// Manages style packages.
    #[command(subcommand)]
    Styles(StylesCommand),
    /// Manages the face-analysis model packs.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Face tools.
    #[command(subcommand)]
    Faces(FacesCommand),
}

#[derive(Subcommand)]
enum StylesCommand {
    /// Validates a style package exactly as the registry does; with `--conformance`, runs the
    /// conformance kit on a package or a styles folder and prints a table.
    Check {
        /// The package folder (holding style.toml), or with `--conformance` a styles folder.
        dir: PathBuf,
        /// Run the behavioural checks every style must pass (faces x capabilities, reasons,
        /// plans within the capabilities, output size, determinism, budgets, bad options).
        #[arg(long)]
        conformance: bool,
        /// Where compiled components are cached (a Python or JavaScript style compiles for
        /// tens of seconds once, then loads from here).
        #[arg(long, env = "LIKENESS_CACHE", default_value = ".cache/components")]
        cache_dir: PathBuf,
    },
    /// Lists the packages in a styles folder and whether each is valid.
    List {
        #[arg(long, default_value = "styles")]
        styles: PathBuf,
    },
    /// Compiles the style crates in plugins/ into packages and deploys each into styles/ as
    /// `styles deploy` does.
    Build {
        /// Only these styles (default: all).
        ids: Vec<String>,
        #[arg(long, default_value = "plugins")]
        plugins: PathBuf,
        #[arg(long, default_value = "styles")]
        out: PathBuf,
        /// Releases of each style kept for a rollback.
        #[arg(long, default_value_t = style::deploy::KEEP)]
        keep: usize,
        /// Where compiled components are cached.
        #[arg(long, env = "LIKENESS_CACHE", default_value = ".cache/components")]
        cache_dir: PathBuf,
    },
    /// Validates a package exactly as the registry does, copies it to
    /// <styles>/.releases/<id>@<digest>/ and flips <styles>/<id> to it with one rename.
    Deploy {
        /// The package folder (holding style.toml), named after the style id.
        package: PathBuf,
        /// The styles folder a host serves.
        #[arg(long, default_value = "styles")]
        styles: PathBuf,
        /// Releases of the style kept for a rollback (the serving one is never pruned).
        #[arg(long, default_value_t = style::deploy::KEEP)]
        keep: usize,
        /// Serve it as a canary beside the current version to this share of traffic (e.g.
        /// 10%); the host rolls it back on too many errors. Finish with promote or rollback.
        #[arg(long, value_name = "SHARE")]
        canary: Option<String>,
        /// Where compiled components are cached.
        #[arg(long, env = "LIKENESS_CACHE", default_value = ".cache/components")]
        cache_dir: PathBuf,
    },
    /// Makes a style's canary its current version.
    Promote {
        /// The style id.
        id: String,
        #[arg(long, default_value = "styles")]
        styles: PathBuf,
    },
    /// Rolls a style back: ends its canary, or without one flips it to its previous release.
    Rollback {
        /// The style id.
        id: String,
        #[arg(long, default_value = "styles")]
        styles: PathBuf,
    },
    /// Scaffolds a new style plugins/NAME in Rust (a crate added to the cargo workspace), Python
    /// or JavaScript.
    New {
        /// The style id: lowercase letters, digits and dashes.
        name: String,
        /// The language: rust (a crate, added to the cargo workspace), python or js.
        #[arg(long, default_value = "rust")]
        lang: style::build::Language,
        /// The folder of styles (for Rust, inside a cargo workspace).
        #[arg(long, default_value = "plugins")]
        plugins: PathBuf,
    },
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Fetches the default model packs and the ONNX Runtime library (idempotent).
    Fetch {
        /// The folder of model packs.
        #[arg(long, env = "LIKENESS_MODELS", default_value = "models")]
        models: PathBuf,
    },
    /// Verifies every installed pack (checksums, roles).
    Check {
        /// The folder of model packs.
        #[arg(long, env = "LIKENESS_MODELS", default_value = "models")]
        models: PathBuf,
    },
}

#[derive(Subcommand)]
enum FacesCommand {
    /// Prints the cosine similarity of the dominant faces of two photos (1 = same).
    Compare {
        /// The first photo.
        a: PathBuf,
        /// The second photo.
        b: PathBuf,
        /// The folder of model packs.
        #[arg(long, env = "LIKENESS_MODELS", default_value = "models")]
        models: PathBuf,
    },
}

/// Logs to stderr as `format` says (plain text is coloured only on a terminal); `RUST_LOG`
/// filters. By default the libraries log warnings only (the file watcher's notes on removed
/// watches during a deploy are not news for an operator).
fn init_logging(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                "info,cranelift=warn,wasmtime=warn,ort=warn,notify=warn".into()
            }),
        )
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    };
    // A blocking task may still be compiling a component (tens of seconds for a Python or
    // JavaScript style) when a signal stops the server: do not wait for it, so that Ctrl-C and
    // SIGTERM end the process once the drain is done. (The component cache writes each artifact
    // atomically, so an abandoned compile leaves nothing half-written.)
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    code
}

/// How long the process waits, after its work is done, for blocking tasks still running.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    if !matches!(command, Command::Serve(_)) {
        init_logging(LogFormat::Text);
    }
    match command {
        Command::Serve(args) => {
            let config = ServeConfig::resolve(*args)?;
            init_logging(config.log_format);
            serve(config).await
        }
        Command::Run {
            style,
            photos,
            out,
            options,
            format,
            styles,
            models,
            cache_dir,
        } => {
            let format = OutputFormat::parse(&format)
                .with_context(|| format!("unknown format '{format}': use png, jpeg or webp"))?;
            let options = options
                .iter()
                .map(|pair| {
                    pair.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .with_context(|| format!("option '{pair}' is not NAME=VALUE"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let registry = load_registry(&styles, &cache_dir).await?;
            let vision = load_vision(&models).await?;
            let pipeline = Pipeline::new(registry, vision, ingest::Limits::default());
            let items = batch::run(&pipeline, &style, &photos, &out, &options, format).await?;
            let failed = items.iter().filter(|item| item.result.is_err()).count();
            println!(
                "{} of {} photos styled with '{style}' into {}",
                items.len() - failed,
                items.len(),
                out.display()
            );
            Ok(exit_code(failed == 0))
        }
        Command::Styles(command) => styles_command(command).await,
        Command::Models(ModelsCommand::Fetch { models }) => {
            let report =
                tokio::task::spawn_blocking(move || fetch::fetch_default_packs(&models)).await??;
            for path in &report.fetched {
                println!("fetched {}", path.display());
            }
            println!(
                "{} files fetched, {} already present",
                report.fetched.len(),
                report.present.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Models(ModelsCommand::Check { models }) => {
            let packs = likeness_vision::check_packs(&models)?;
            let mut ok = !packs.is_empty();
            for pack in &packs {
                let roles: Vec<&str> = pack.roles.iter().map(|r| r.as_str()).collect();
                match &pack.problem {
                    None => println!("ok      {:<12} {}", pack.name, roles.join(", ")),
                    Some(problem) => {
                        ok = false;
                        println!("invalid {:<12} {problem}", pack.name);
                    }
                }
            }
            let library = fetch::runtime_library_path(&models);
            if library.is_file() {
                println!("ok      {:<12} {}", "runtime", library.display());
            } else {
                ok = false;
                println!("missing {:<12} {}", "runtime", library.display());
            }
            if packs.is_empty() {
                println!(
                    "no model packs in {}: run `likeness models fetch`",
                    models.display()
                );
            }
            Ok(exit_code(ok))
        }
        Command::Faces(FacesCommand::Compare { a, b, models }) => {
            let vision = load_vision(&models).await?;
            let similarity = tokio::task::spawn_blocking(move || {
                let read = |path: &Path| -> anyhow::Result<image::RgbImage> {
                    let bytes = std::fs::read(path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let decoded = ingest::decode(&bytes, &ingest::Limits::default())
                        .with_context(|| format!("decoding {}", path.display()))?;
                    Ok(decoded.image)
                };
                anyhow::Ok(vision.compare_dominant(&read(&a)?, &read(&b)?)?)
            })
            .await??;
            println!("{similarity:.4}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn styles_command(command: StylesCommand) -> anyhow::Result<ExitCode> {
    match command {
        StylesCommand::Check {
            dir,
            conformance: true,
            cache_dir,
        } => {
            let runtime = cached_runtime(&cache_dir)?;
            let reports = style::conformance::run(&runtime, &dir).await?;
            print!("{}", style::conformance::table(&reports));
            Ok(exit_code(reports.iter().all(|r| r.passed())))
        }
        StylesCommand::Check { dir, cache_dir, .. } => {
            let runtime = cached_runtime(&cache_dir)?;
            match style::package::load(&runtime, &dir).await {
                Ok(style) => {
                    println!(
                        "ok: {} {} ({})",
                        style.manifest.id, style.manifest.version, style.digest
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => {
                    println!("invalid: {}: {error:#}", dir.display());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        StylesCommand::List { styles } => {
            let runtime = StyleRuntime::new(RuntimeConfig::default())?;
            let registry = Registry::new(runtime, styles);
            registry.load_all().await?;
            let statuses = registry.statuses();
            for status in &statuses {
                let version = status.version.as_deref().unwrap_or("-");
                let error = status.last_error.as_deref().unwrap_or("");
                println!(
                    "{:<16} {:<8} {:?} {error}",
                    status.id, version, status.state
                );
            }
            Ok(exit_code(statuses.iter().all(|s| s.last_error.is_none())))
        }
        StylesCommand::Build {
            ids,
            plugins,
            out,
            keep,
            cache_dir,
        } => {
            // Packages are assembled in a hidden folder of `out`, then deployed from there.
            let staging = out.join(format!(".build-{}", std::process::id()));
            let built = {
                let staging = staging.clone();
                tokio::task::spawn_blocking(move || {
                    style::build::build_styles(&plugins, &staging, &ids, None)
                })
                .await?
            };
            let runtime = cached_runtime(&cache_dir)?;
            let mut deployed = Vec::new();
            for package in built.iter().flatten() {
                deployed.push(style::deploy::deploy(&runtime, package, &out, keep).await);
            }
            let _ = std::fs::remove_dir_all(&staging);
            built?;
            for result in deployed {
                print_deployed(&result?);
            }
            Ok(ExitCode::SUCCESS)
        }
        StylesCommand::Deploy {
            package,
            styles,
            keep,
            canary,
            cache_dir,
        } => {
            let runtime = cached_runtime(&cache_dir)?;
            let deployed = match canary {
                Some(share) => {
                    let share = style::deploy::parse_share(&share)?;
                    let deployed =
                        style::deploy::deploy_canary(&runtime, &package, &styles, share).await?;
                    println!("canary at {:.1}% of traffic:", share * 100.0);
                    deployed
                }
                None => style::deploy::deploy(&runtime, &package, &styles, keep).await?,
            };
            print_deployed(&deployed);
            Ok(ExitCode::SUCCESS)
        }
        StylesCommand::Promote { id, styles } => {
            let release = style::deploy::promote(&styles, &id)?;
            println!("promoted {id}: now serving {}", release.display());
            Ok(ExitCode::SUCCESS)
        }
        StylesCommand::Rollback { id, styles } => {
            match style::deploy::rollback(&styles, &id)? {
                style::deploy::RolledBack::Canary => println!("rolled back {id}'s canary"),
                style::deploy::RolledBack::Release(release) => {
                    println!("rolled {id} back to {}", release.display())
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        StylesCommand::New {
            name,
            lang,
            plugins,
        } => {
            let made = scaffold::new_style(&plugins, &name, lang)?;
            println!("created {}", made.dir.display());
            if let Some(workspace) = made.workspace {
                println!("added it to the members of {}", workspace.display());
            }
            println!("next: likeness styles build {name} && likeness styles check styles/{name}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One line per deploy: what serves now, and what was kept and pruned.
fn print_deployed(deployed: &style::deploy::Deployed) {
    println!(
        "deployed {} {} ({}) from {}",
        deployed.id,
        deployed.version,
        deployed.digest,
        deployed.release.display()
    );
    if let Some(previous) = &deployed.previous {
        println!("  previous release kept: {}", previous.display());
    }
    for pruned in &deployed.pruned {
        println!("  pruned {}", pruned.display());
    }
}

/// A style runtime caching compiled components in `cache_dir`.
fn cached_runtime(cache_dir: &Path) -> anyhow::Result<Arc<StyleRuntime>> {
    StyleRuntime::new(SandboxConfig::default().runtime(cache_dir))
}

fn exit_code(success: bool) -> ExitCode {
    if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The styles of `dir`, loaded and validated (compiled components cached in `cache_dir`).
async fn load_registry(dir: &Path, cache_dir: &Path) -> anyhow::Result<Arc<Registry>> {
    let registry = registry(dir, cached_runtime(cache_dir)?, RegistrySettings::default())?;
    registry.load_all().await?;
    Ok(registry)
}

/// An empty registry over the styles of `dir` (created if missing).
fn registry(
    dir: &Path,
    runtime: Arc<StyleRuntime>,
    settings: RegistrySettings,
) -> anyhow::Result<Arc<Registry>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(Registry::with_settings(runtime, dir, settings))
}

/// The face-analysis engine on the packs in `models`.
async fn load_vision(models: &Path) -> anyhow::Result<Arc<Vision>> {
    let dir = models.to_path_buf();
    let vision = tokio::task::spawn_blocking(move || {
        Vision::load(&dir, &fetch::runtime_library_path(&dir))
    })
    .await?
    .with_context(|| {
        format!(
            "loading the face models from {} (run `likeness models fetch --models {}` first)",
            models.display(),
            models.display()
        )
    })?;
    Ok(Arc::new(vision))
}

/// Loads the diffusion model pack on the vision engine's ONNX Runtime (one per process).
async fn load_diffusion(
    pack: &Path,
    vision: &Arc<Vision>,
) -> anyhow::Result<Arc<likeness_diffusion::DiffusionEngine>> {
    let (dir, runtime) = (pack.to_path_buf(), vision.runtime().clone());
    let engine = tokio::task::spawn_blocking(move || {
        likeness_diffusion::DiffusionEngine::load(&dir, runtime, Default::default())
    })
    .await?
    .with_context(|| format!("loading the diffusion model pack {}", pack.display()))?;
    let capabilities = engine.capabilities();
    tracing::info!(pack = %pack.display(), methods = ?capabilities.methods, "diffusion model pack loaded");
    Ok(engine)
}

async fn serve(config: ServeConfig) -> anyhow::Result<ExitCode> {
    let shutdown = shutdown_signal()?;
    let runtime = StyleRuntime::new(config.sandbox.runtime(&config.cache_dir))?;
    let registry = registry(&config.styles, runtime, config.deploy.registry())?;
    // Packages load in parallel, off the start-up path: the server answers meanwhile and lists
    // them as loading; /readyz turns 200 once one style serves.
    registry.start_loading()?;
    let _watcher = style::watch::watch(Arc::clone(&registry))?;
    let vision = load_vision(&config.models).await?;
    let limits = ingest::Limits {
        max_upload_bytes: config.limits.max_upload_bytes,
        ..ingest::Limits::default()
    };
    let mut pipeline = Pipeline::new(registry, vision.clone(), limits);
    if let Some(pack) = &config.diffusion_pack {
        pipeline = pipeline.with_diffusion(load_diffusion(pack, &vision).await?);
    }
    let service = match &config.queue.url {
        None => Service::new(pipeline, &config),
        Some(url) => {
            let redis = RedisQueue::connect(&config.queue, &config.jobs)
                .await
                .with_context(|| format!("connecting to the job queue {url}"))?;
            tracing::info!(role = ?config.role, "jobs go through the Redis queue");
            Service::with_redis(pipeline, &config, Arc::new(redis))
        }
    };
    if config.role.runs_jobs()
        && let Some(redis) = service.redis()
    {
        // Tracked, so that the drain waits for it to stop reading and withdraw its advertisement.
        service.spawn_tracked(worker::run(
            service.clone(),
            redis.clone(),
            config.admission.generation_slots,
        ));
    }
    let mut state = AppState::new(service, &config);
    state.accepts_generations = config.role.serves_api();
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("binding {}", config.addr))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, styles = %config.styles.display(), "likeness is listening");
    // One line on stdout for scripts (the port, when --addr asked for port 0).
    println!("listening on http://{addr}");
    std::io::stdout().flush()?;
    let drain = Duration::from_secs(config.shutdown.drain_secs);
    let finished = server::serve(listener, state, shutdown, drain).await?;
    tracing::info!(drained = finished, "likeness stopped");
    Ok(ExitCode::SUCCESS)
}

/// A future that resolves on Ctrl-C (SIGINT) or SIGTERM, with its handlers installed at once.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    // Installed now, not when the future is first polled: a SIGTERM that arrives right after
    // start-up must drain, not kill the process.
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut interrupt =
            signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
