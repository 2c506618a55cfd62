//! The `likeness` command: the service and its operator tools.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use likeness_host::runtime::{RuntimeConfig, StyleRuntime};
use likeness_host::server::{AppState, router};
use likeness_host::style::{self, Registry};

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
    /// Runs the HTTP service, hot-reloading the styles folder.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "LIKENESS_ADDR", default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
        /// The folder of style packages to serve and watch.
        #[arg(long, env = "LIKENESS_STYLES", default_value = "styles")]
        styles: PathBuf,
        /// Where compiled components are cached (writable by this host alone).
        #[arg(long, env = "LIKENESS_CACHE", default_value = ".cache/components")]
        cache_dir: PathBuf,
    },
    /// Manages style packages.
    #[command(subcommand)]
    Styles(StylesCommand),
}

#[derive(Subcommand)]
enum StylesCommand {
    /// Validates a style package exactly as the registry does.
    Check {
        /// The package folder (holding style.toml).
        dir: PathBuf,
    },
    /// Lists the packages in a styles folder and whether each is valid.
    List {
        #[arg(long, default_value = "styles")]
        styles: PathBuf,
    },
    /// Compiles the style crates in plugins/ into packages in styles/.
    Build {
        /// Only these styles (default: all).
        ids: Vec<String>,
        #[arg(long, default_value = "plugins")]
        plugins: PathBuf,
        #[arg(long, default_value = "styles")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,cranelift=warn,wasmtime=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve {
            addr,
            styles,
            cache_dir,
        } => serve(addr, styles, cache_dir).await,
        Command::Styles(StylesCommand::Check { dir }) => {
            let runtime = StyleRuntime::new(RuntimeConfig::default())?;
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
        Command::Styles(StylesCommand::List { styles }) => {
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
            let all_valid = statuses.iter().all(|s| s.last_error.is_none());
            Ok(if all_valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Styles(StylesCommand::Build { ids, plugins, out }) => {
            let built = tokio::task::spawn_blocking(move || {
                style::build::build_styles(&plugins, &out, &ids, None)
            })
            .await??;
            for dir in built {
                println!("built {}", dir.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(addr: SocketAddr, styles: PathBuf, cache_dir: PathBuf) -> anyhow::Result<ExitCode> {
    let config = RuntimeConfig {
        cache_dir: Some(cache_dir),
        ..RuntimeConfig::default()
    };
    let runtime = StyleRuntime::new(config)?;
    std::fs::create_dir_all(&styles).with_context(|| format!("creating {}", styles.display()))?;
    let registry = Registry::new(runtime, &styles);
    registry.load_all().await?;
    let _watcher = style::watch::watch(Arc::clone(&registry))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    tracing::info!(%addr, styles = %styles.display(), "likeness is listening");
    axum::serve(listener, router(AppState { registry }))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(ExitCode::SUCCESS)
}
