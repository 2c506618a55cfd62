//! The style registry: every package in the styles folder, loaded, validated and swapped in
//! atomically. Requests take an `Arc` of the version they start with, so a reload never disturbs
//! a request in flight; a package that fails validation leaves the previous version serving.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::Serialize;

use super::package::{self, LoadedStyle};
use crate::runtime::StyleRuntime;

/// Whether a style can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StyleState {
    /// A validated version is serving (possibly an older one, if `last_error` is set).
    Serving,
    /// No version of this style passed validation.
    Failed,
}

/// What operators and clients see of a style's life.
#[derive(Debug, Clone, Serialize)]
pub struct StyleStatus {
    /// The style id (the package folder's name).
    pub id: String,
    /// Serving or failed.
    pub state: StyleState,
    /// The version serving now.
    pub version: Option<String>,
    /// SHA-256 of the component serving now.
    pub digest: Option<String>,
    /// When the serving version was loaded, in milliseconds since the Unix epoch.
    pub loaded_at_ms: Option<u64>,
    /// Why the last (re)load was rejected; cleared by the next successful one.
    pub last_error: Option<String>,
    /// When the package was last (re)loaded or rejected.
    pub last_reload_at_ms: u64,
}

/// The styles this host serves.
pub struct Registry {
    runtime: Arc<StyleRuntime>,
    dir: PathBuf,
    active: ArcSwap<HashMap<String, Arc<LoadedStyle>>>,
    status: Mutex<BTreeMap<String, StyleStatus>>,
    /// Serialises reloads, so two events for one package never race.
    reloading: tokio::sync::Mutex<()>,
    reloads: AtomicU64,
    rejections: AtomicU64,
}

impl Registry {
    /// An empty registry over the styles folder `dir`; call [`Registry::load_all`] next.
    pub fn new(runtime: Arc<StyleRuntime>, dir: impl Into<PathBuf>) -> Arc<Self> {
        Arc::new(Registry {
            runtime,
            dir: dir.into(),
            active: ArcSwap::default(),
            status: Mutex::default(),
            reloading: tokio::sync::Mutex::new(()),
            reloads: AtomicU64::new(0),
            rejections: AtomicU64::new(0),
        })
    }

    /// The styles folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads every package folder (hidden folders are ignored: they are staging areas).
    pub async fn load_all(&self) -> anyhow::Result<()> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            if let Some(name) = entry.file_name().to_str().filter(|n| is_package_name(n)) {
                names.push(name.to_string());
            }
        }
        names.sort();
        for name in names {
            self.reload(&name).await;
        }
        Ok(())
    }

    /// The serving version of style `id`.
    pub fn get(&self, id: &str) -> Option<Arc<LoadedStyle>> {
        self.active.load().get(id).cloned()
    }

    /// Every serving style, by id.
    pub fn styles(&self) -> Vec<Arc<LoadedStyle>> {
        let mut styles: Vec<_> = self.active.load().values().cloned().collect();
        styles.sort_by(|a, b| a.manifest.id.cmp(&b.manifest.id));
        styles
    }

    /// The status of every known style, serving or failed.
    pub fn statuses(&self) -> Vec<StyleStatus> {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The status of style `id`.
    pub fn status(&self, id: &str) -> Option<StyleStatus> {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// Successful (re)loads and rejected ones since start.
    pub fn reload_counts(&self) -> (u64, u64) {
        (
            self.reloads.load(Ordering::Relaxed),
            self.rejections.load(Ordering::Relaxed),
        )
    }

    /// (Re)loads the package folder `name`: validates it and swaps it in, or records why it was
    /// rejected and keeps the previous version; retires the style when the folder is gone.
    pub async fn reload(&self, name: &str) {
        if !is_package_name(name) {
            return;
        }
        let _serial = self.reloading.lock().await;
        let dir = self.dir.join(name);
        if !dir.is_dir() {
            self.retire(name);
            return;
        }
        let now = unix_ms(SystemTime::now());
        match package::load(&self.runtime, &dir).await {
            Ok(style) => {
                tracing::info!(style = name, version = %style.manifest.version, digest = %style.digest, "style loaded");
                self.reloads.fetch_add(1, Ordering::Relaxed);
                self.set_status(name, |status| {
                    status.state = StyleState::Serving;
                    status.version = Some(style.manifest.version.clone());
                    status.digest = Some(style.digest.clone());
                    status.loaded_at_ms = Some(unix_ms(style.loaded_at));
                    status.last_error = None;
                    status.last_reload_at_ms = now;
                });
                self.active.rcu(|active| {
                    let mut active = HashMap::clone(active);
                    active.insert(name.to_string(), style.clone());
                    active
                });
            }
            Err(error) => {
                let reason = format!("{error:#}");
                let serving = self.get(name).is_some();
                tracing::warn!(style = name, %reason, keeps_serving_previous = serving, "style package rejected");
                self.rejections.fetch_add(1, Ordering::Relaxed);
                self.set_status(name, |status| {
                    if !serving {
                        status.state = StyleState::Failed;
                    }
                    status.last_error = Some(reason.clone());
                    status.last_reload_at_ms = now;
                });
            }
        }
    }

    /// Removes style `name`; requests holding it finish on it, new ones no longer find it.
    fn retire(&self, name: &str) {
        let removed = self.get(name).is_some();
        self.active.rcu(|active| {
            let mut active = HashMap::clone(active);
            active.remove(name);
            active
        });
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        if removed {
            tracing::info!(style = name, "style retired: its package was removed");
        }
    }

    fn set_status(&self, name: &str, update: impl FnOnce(&mut StyleStatus)) {
        let mut statuses = self.status.lock().unwrap_or_else(|e| e.into_inner());
        let status = statuses
            .entry(name.to_string())
            .or_insert_with(|| StyleStatus {
                id: name.to_string(),
                state: StyleState::Failed,
                version: None,
                digest: None,
                loaded_at_ms: None,
                last_error: None,
                last_reload_at_ms: 0,
            });
        update(status);
    }
}

/// Package folders are named like style ids; anything else (hidden staging folders, editor
/// droppings) is not a package.
fn is_package_name(name: &str) -> bool {
    super::manifest::is_style_id(name)
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
