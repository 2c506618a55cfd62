//! Hot reload: watches the styles folder and reloads a package once its files have been quiet
//! for a short while (writers rarely finish a package in one event).
//!
//! Only events that can change a package schedule a reload: creation, writes, metadata
//! changes, removal and renames. Reading a file (open, access, close) never does, so the
//! registry's own reads of a package cannot start the next reload. A package folder that is a
//! symlink is followed: the link's own flip is a rename in the styles folder, and a target
//! outside the styles folder gets a watch of its own. Changes in `.canary/` reload the
//! package they name (its canary).

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use notify::event::{EventKind, MetadataKind, ModifyKind};
use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::canary::CANARIES;
use super::registry::{Registry, Reload, is_package_name};

/// How long a package's files must be quiet before it is reloaded.
pub const QUIET: Duration = Duration::from_millis(100);

/// What the watcher tells its reload loop.
enum Message {
    /// A file of package `name` changed.
    Changed(String),
    /// Events were lost (the kernel queue overflowed): look at every package again.
    Rescan,
    /// Package `name`'s folder is missing: look again at this time.
    Recheck(String, Instant),
}

/// Keeps the folder watched; dropping it stops the watching.
pub struct StyleWatcher {
    _follow: Arc<Follow>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StyleWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The notify watcher and the symlink targets it follows.
struct Follow {
    root: PathBuf,
    watcher: Mutex<notify::RecommendedWatcher>,
    /// Canonical target folder of each symlinked package, by package name.
    targets: Arc<Mutex<HashMap<String, PathBuf>>>,
}

impl Follow {
    /// Follows package `name` if its folder is a symlink: events under its target then count
    /// for it; a target outside the styles folder is watched as well.
    fn follow(&self, name: &str) {
        let link = self.root.join(name);
        let is_link = std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink());
        let target = is_link.then(|| link.canonicalize().ok()).flatten();
        let mut targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        if targets.get(name) == target.as_ref() {
            return;
        }
        let mut watcher = self.watcher.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = targets.remove(name)
            && !old.starts_with(&self.root)
        {
            let _ = watcher.unwatch(&old);
        }
        if let Some(target) = target {
            if !target.starts_with(&self.root)
                && let Err(error) = watcher.watch(&target, RecursiveMode::Recursive)
            {
                tracing::warn!(style = name, target = %target.display(), %error, "cannot watch a symlinked package's target");
            }
            targets.insert(name.to_string(), target);
        }
    }
}

/// Starts watching the registry's folder. Must be called inside a tokio runtime.
pub fn watch(registry: Arc<Registry>) -> anyhow::Result<StyleWatcher> {
    let root = registry
        .dir()
        .canonicalize()
        .with_context(|| format!("watching {}", registry.dir().display()))?;
    let (tx, rx) = mpsc::unbounded_channel::<Message>();
    let targets: Arc<Mutex<HashMap<String, PathBuf>>> = Arc::default();
    let (event_root, event_targets) = (root.clone(), targets.clone());
    let tx_recheck = tx.clone();
    let handler = move |event: notify::Result<notify::Event>| match event {
        Ok(event) if event.need_rescan() => {
            let _ = tx.send(Message::Rescan);
        }
        Ok(event) if changes_files(&event.kind) => {
            let targets = event_targets.lock().unwrap_or_else(|e| e.into_inner());
            for path in &event.paths {
                // Files written right after `.canary/` was made may come before its watch:
                // look at every package.
                if path
                    .strip_prefix(&event_root)
                    .is_ok_and(|p| p == Path::new(CANARIES))
                {
                    let _ = tx.send(Message::Rescan);
                }
                for name in packages_of(&event_root, &targets, path) {
                    let _ = tx.send(Message::Changed(name));
                }
            }
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "style folder watch error"),
    };
    // Symlinks are followed by hand (`Follow`), so that no folder is watched twice.
    let config = notify::Config::default().with_follow_symlinks(false);
    let mut watcher = notify::RecommendedWatcher::new(handler, config)?;
    watcher.watch(&root, RecursiveMode::Recursive)?;
    let follow = Arc::new(Follow {
        root,
        watcher: Mutex::new(watcher),
        targets,
    });
    for name in package_names(&follow.root) {
        follow.follow(&name);
    }
    let task = tokio::spawn(debounce(registry, follow.clone(), tx_recheck, rx));
    Ok(StyleWatcher {
        _follow: follow,
        task,
    })
}

/// Whether an event of this kind can change a package. Opening, reading and closing a file
/// cannot, nor can a new access time.
fn changes_files(kind: &EventKind) -> bool {
    !matches!(
        kind,
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime))
    )
}

/// The packages a changed path belongs to: the package folder it lies in, and every package
/// whose symlink points at or above it.
fn packages_of(root: &Path, targets: &HashMap<String, PathBuf>, path: &Path) -> Vec<String> {
    let mut names: Vec<String> = targets
        .iter()
        .filter(|(_, target)| path.starts_with(target))
        .map(|(name, _)| name.clone())
        .collect();
    let mut parts = path
        .strip_prefix(root)
        .ok()
        .into_iter()
        .flat_map(|p| p.components())
        .filter_map(|c| match c {
            Component::Normal(name) => name.to_str(),
            _ => None,
        });
    let mut name = parts.next();
    // `.canary/<id>` and its `.share`, `.rollback` files belong to package `<id>`.
    if name == Some(CANARIES) {
        name = parts
            .next()
            .map(|file| file.split_once('.').map_or(file, |(id, _)| id));
    }
    if let Some(name) = name.filter(|n| is_package_name(n))
        && !names.iter().any(|n| n == name)
    {
        names.push(name.to_string());
    }
    names
}

/// The package names in `dir` now.
fn package_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| is_package_name(name))
        .collect()
}

async fn debounce(
    registry: Arc<Registry>,
    follow: Arc<Follow>,
    tx: mpsc::UnboundedSender<Message>,
    mut rx: mpsc::UnboundedReceiver<Message>,
) {
    let mut pending: HashMap<String, Instant> = HashMap::new();
    loop {
        let next_due = pending.values().min().copied();
        tokio::select! {
            message = rx.recv() => match message {
                Some(Message::Changed(name)) => {
                    pending.insert(name, Instant::now() + QUIET);
                }
                Some(Message::Rescan) => {
                    let mut names = package_names(&follow.root);
                    names.extend(registry.statuses().into_iter().map(|s| s.id));
                    for name in names {
                        pending.insert(name, Instant::now() + QUIET);
                    }
                }
                Some(Message::Recheck(name, at)) => {
                    let due = pending.entry(name).or_insert(at);
                    *due = (*due).min(at);
                }
                None => return,
            },
            () = sleep_until(next_due) => {
                let now = Instant::now();
                let due: Vec<String> = pending.iter().filter(|(_, at)| **at <= now).map(|(n, _)| n.clone()).collect();
                for name in due {
                    pending.remove(&name);
                    // Each package reloads in its own task: a slow one holds up nobody else
                    // (the registry serialises the reloads of one package).
                    let (registry, follow, tx) = (registry.clone(), follow.clone(), tx.clone());
                    tokio::spawn(async move {
                        if let Reload::Missing { recheck_in } = registry.reload(&name).await {
                            let _ = tx.send(Message::Recheck(name.clone(), Instant::now() + recheck_in));
                        }
                        follow.follow(&name);
                    });
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
