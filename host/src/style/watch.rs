//! Hot reload: watches the styles folder and reloads a package once its files have been quiet
//! for a short while (writers rarely finish a package in one event).

use std::collections::HashMap;
use std::path::{Component, Path};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::registry::Registry;

/// How long a package's files must be quiet before it is reloaded.
pub const QUIET: Duration = Duration::from_millis(100);

/// Keeps the folder watched; dropping it stops the watching.
pub struct StyleWatcher {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StyleWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts watching the registry's folder. Must be called inside a tokio runtime.
pub fn watch(registry: Arc<Registry>) -> anyhow::Result<StyleWatcher> {
    let root = registry
        .dir()
        .canonicalize()
        .with_context(|| format!("watching {}", registry.dir().display()))?;
    let (tx, rx) = mpsc::unbounded_channel::<String>();
    let event_root = root.clone();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) => {
                for path in &event.paths {
                    if let Some(name) = package_of(&event_root, path) {
                        let _ = tx.send(name);
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "style folder watch error"),
        })?;
    watcher.watch(&root, RecursiveMode::Recursive)?;
    let task = tokio::spawn(debounce(registry, rx));
    Ok(StyleWatcher {
        _watcher: watcher,
        task,
    })
}

/// The package folder name a changed path belongs to.
fn package_of(root: &Path, path: &Path) -> Option<String> {
    match path.strip_prefix(root).ok()?.components().next()? {
        Component::Normal(name) => name.to_str().map(str::to_string),
        _ => None,
    }
}

async fn debounce(registry: Arc<Registry>, mut rx: mpsc::UnboundedReceiver<String>) {
    let mut pending: HashMap<String, Instant> = HashMap::new();
    loop {
        let next_due = pending.values().min().copied();
        tokio::select! {
            event = rx.recv() => match event {
                Some(name) => { pending.insert(name, Instant::now() + QUIET); }
                None => return,
            },
            () = sleep_until(next_due) => {
                let now = Instant::now();
                let due: Vec<String> = pending.iter().filter(|(_, at)| **at <= now).map(|(n, _)| n.clone()).collect();
                for name in due {
                    pending.remove(&name);
                    registry.reload(&name).await;
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
