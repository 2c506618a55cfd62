//! The style registry: every package in the styles folder, loaded, validated and swapped in
//! atomically. Requests take an `Arc` of the version they start with, so a reload never disturbs
//! a request in flight; a package that fails validation leaves the previous version serving.
//!
//! Reloads of one package are serialised, and a reading of the files never replaces a newer
//! one: every reload takes a generation number when it starts reading, and a result is swapped
//! in only if no later reading has been swapped in already. A reload that finds the files the
//! serving version came from (same component digest, same manifest) does nothing.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::Serialize;

use anyhow::Context as _;

use super::canary::{
    Arm, CANARIES, Canary, CanaryPolicy, CanaryReport, CanaryState, Routed, Routing, SideReport,
};
use super::deploy;
use super::package::{self, LoadedStyle};
use crate::wasm::StyleRuntime;

/// Whether a style can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StyleState {
    /// A validated version is serving (possibly an older one, if `last_error` is set).
    Serving,
    /// The package's first load has not finished yet.
    Loading,
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
    /// The style's canary, serving or ended (none if it never had one since start).
    pub canary: Option<CanaryReport>,
}

/// What one call of [`Registry::reload`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// A new version was validated and swapped in.
    Loaded,
    /// The files are those of the serving version: nothing to do.
    Unchanged,
    /// The package was refused; the previous version (if any) keeps serving.
    Rejected,
    /// A newer reading of the package was swapped in first; this one was dropped.
    Superseded,
    /// The package folder is missing, but not yet for the grace period: the style keeps
    /// serving; look again after `recheck_in`.
    Missing {
        /// When to look again.
        recheck_in: Duration,
    },
    /// The style was retired: its folder stayed missing for the grace period.
    Retired,
    /// Not a package name, or a folder that is gone and was never known.
    Ignored,
}

/// One package's reload state.
#[derive(Default)]
struct Slot {
    /// Serialises this package's reloads (other packages reload in parallel).
    serial: tokio::sync::Mutex<()>,
    /// The generation of the reading serving now (0: none).
    serving_generation: AtomicU64,
    /// Since when the package folder has been missing, while it stays missing.
    absent_since: Mutex<Option<Instant>>,
}

/// How the registry treats package folders.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistrySettings {
    /// How long a package folder must stay missing before its style is retired, so that a
    /// deploy by two renames (`mv old away; mv new in`) never makes a style vanish.
    pub retire_grace: Duration,
    /// The most one package's `describe` and dry runs may take together; a package whose
    /// guest takes longer is rejected. (Compiling is not timed: it is bounded by the
    /// component's size limits and runs one package at a time.)
    pub load_timeout: Duration,
    /// When a canary is rolled back automatically.
    pub canary: CanaryPolicy,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        RegistrySettings {
            retire_grace: Duration::from_secs(2),
            load_timeout: Duration::from_secs(60),
            canary: CanaryPolicy::default(),
        }
    }
}

impl StyleStatus {
    /// Why the style cannot serve now (meaningful when it is not serving).
    pub fn unavailable_reason(&self) -> String {
        match (self.state, &self.last_error) {
            (StyleState::Loading, _) => "its package is still loading".to_string(),
            (_, Some(error)) => error.clone(),
            (_, None) => "no version of it passed validation".to_string(),
        }
    }
}

/// The styles this host serves.
pub struct Registry {
    runtime: Arc<StyleRuntime>,
    dir: PathBuf,
    settings: RegistrySettings,
    active: ArcSwap<HashMap<String, Arc<LoadedStyle>>>,
    status: Mutex<BTreeMap<String, StyleStatus>>,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    /// The last generation handed to a reading.
    generations: AtomicU64,
    /// Candidates serving beside the current versions, by style id.
    canaries: ArcSwap<HashMap<String, Arc<Canary>>>,
    /// How each style's last canary ended.
    ended_canaries: Mutex<HashMap<String, CanaryReport>>,
    canary_rollbacks: AtomicU64,
    reloads: AtomicU64,
    rejections: AtomicU64,
}

impl Registry {
    /// An empty registry over the styles folder `dir` with default settings; call
    /// [`Registry::load_all`] next.
    pub fn new(runtime: Arc<StyleRuntime>, dir: impl Into<PathBuf>) -> Arc<Self> {
        Registry::with_settings(runtime, dir, RegistrySettings::default())
    }

    /// An empty registry over the styles folder `dir`; call [`Registry::load_all`] next.
    pub fn with_settings(
        runtime: Arc<StyleRuntime>,
        dir: impl Into<PathBuf>,
        settings: RegistrySettings,
    ) -> Arc<Self> {
        Arc::new(Registry {
            runtime,
            dir: dir.into(),
            settings,
            active: ArcSwap::default(),
            status: Mutex::default(),
            slots: Mutex::default(),
            generations: AtomicU64::new(0),
            canaries: ArcSwap::default(),
            ended_canaries: Mutex::default(),
            canary_rollbacks: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
            rejections: AtomicU64::new(0),
        })
    }

    /// The styles folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads every package folder, or symlink to one (hidden folders are ignored: they are
    /// staging areas and releases), in parallel; returns when every load has ended.
    pub async fn load_all(self: &Arc<Self>) -> anyhow::Result<()> {
        for load in self.start_loading()? {
            load.await?;
        }
        Ok(())
    }

    /// Starts loading every package, each in its own task, and returns at once: one slow
    /// package delays no other. Until its first load ends a style is listed as
    /// [`StyleState::Loading`].
    pub fn start_loading(self: &Arc<Self>) -> anyhow::Result<Vec<tokio::task::JoinHandle<Reload>>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            if !entry.path().is_dir() {
                continue;
            }
            if let Some(name) = entry.file_name().to_str().filter(|n| is_package_name(n)) {
                names.push(name.to_string());
            }
        }
        names.sort();
        for name in &names {
            self.mark_loading(name);
        }
        Ok(names
            .into_iter()
            .map(|name| {
                let registry = self.clone();
                tokio::spawn(async move { registry.reload(&name).await })
            })
            .collect())
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
        let statuses: Vec<StyleStatus> = self
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        statuses.into_iter().map(|s| self.with_canary(s)).collect()
    }

    /// The status of style `id`.
    pub fn status(&self, id: &str) -> Option<StyleStatus> {
        let status = self
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()?;
        Some(self.with_canary(status))
    }

    fn with_canary(&self, mut status: StyleStatus) -> StyleStatus {
        let current = self.get(&status.id);
        status.canary = match self.canaries.load().get(&status.id) {
            Some(canary) => Some(canary.report(current.as_deref(), CanaryState::Active)),
            None => self
                .ended_canaries
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&status.id)
                .cloned(),
        };
        status
    }

    /// The version that serves a request for style `id`: the current one, or its canary for
    /// the requests `routing` assigns to it.
    pub fn route(self: &Arc<Self>, id: &str, routing: &Routing) -> Option<Routed> {
        let current = self.get(id)?;
        let Some(canary) = self.canaries.load().get(id).cloned() else {
            return Some(Routed::new(current, None, self.clone()));
        };
        let arm = canary.assign(routing);
        let style = match arm {
            Arm::Candidate => canary.style.clone(),
            Arm::Current => current,
        };
        Some(Routed::new(style, Some((canary, arm)), self.clone()))
    }

    /// Records a settled request of a canary's side; rolls the candidate back when the policy
    /// says so.
    pub(crate) fn record_canary(
        &self,
        canary: &Arc<Canary>,
        arm: Arm,
        outcome: Result<Duration, ()>,
    ) {
        if let Some(reason) = canary.record(arm, outcome, &self.settings.canary) {
            let id = canary.style.manifest.id.clone();
            self.end_canary(&id, canary, CanaryState::RolledBack, Some(reason.clone()));
            if let Err(error) = deploy::remove_canary(&self.dir, &id, Some(&reason)) {
                tracing::error!(style = %id, %error, "could not remove the rolled-back canary's link");
            }
        }
    }

    /// Takes `canary` out of service and keeps its report as `state`.
    fn end_canary(
        &self,
        id: &str,
        canary: &Arc<Canary>,
        state: CanaryState,
        reason: Option<String>,
    ) {
        self.canaries.rcu(|canaries| {
            let mut canaries = HashMap::clone(canaries);
            if canaries.get(id).is_some_and(|c| Arc::ptr_eq(c, canary)) {
                canaries.remove(id);
            }
            canaries
        });
        let mut report = canary.report(self.get(id).as_deref(), state);
        report.reason = reason.clone();
        report.since_ms = Some(unix_ms(SystemTime::now()));
        self.ended_canaries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), report);
        match state {
            CanaryState::RolledBack => {
                self.canary_rollbacks.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(style = id, version = %canary.style.manifest.version, reason = reason.as_deref().unwrap_or(""), "canary rolled back");
            }
            _ => {
                tracing::info!(style = id, version = %canary.style.manifest.version, ?state, "canary ended")
            }
        }
    }

    /// Canaries rolled back since start (automatically or by hand).
    pub fn canary_rollbacks(&self) -> u64 {
        self.canary_rollbacks.load(Ordering::Relaxed)
    }

    /// Promotes style `id`'s canary: the candidate becomes the current version at once, and
    /// `DIR/<id>` is flipped to its release.
    pub async fn promote(&self, id: &str) -> anyhow::Result<()> {
        self.finish_canary(id, CanaryState::Promoted).await
    }

    /// Rolls style `id`'s canary back by hand.
    pub async fn roll_back(&self, id: &str) -> anyhow::Result<()> {
        self.finish_canary(id, CanaryState::RolledBack).await
    }

    /// Ends style `id`'s canary by hand, on disk and in memory, as `state`.
    async fn finish_canary(&self, id: &str, state: CanaryState) -> anyhow::Result<()> {
        let slot = self.slot(id);
        let _serial = slot.serial.lock().await;
        let canary = self
            .canaries
            .load()
            .get(id)
            .cloned()
            .with_context(|| format!("style '{id}' has no canary"))?;
        if state == CanaryState::Promoted {
            deploy::promote(&self.dir, id)?;
            let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
            slot.serving_generation
                .fetch_max(generation, Ordering::AcqRel);
            canary.end();
            // The report names the version it replaced as the current one.
            self.end_canary(id, &canary, state, None);
            self.swap_in(id, &canary.style, unix_ms(SystemTime::now()));
        } else {
            let reason = "rolled back by the operator";
            deploy::remove_canary(&self.dir, id, Some(reason))?;
            canary.end();
            self.end_canary(id, &canary, state, Some(reason.to_string()));
        }
        Ok(())
    }

    /// The plugin runtime packages are compiled on.
    pub fn runtime(&self) -> &Arc<StyleRuntime> {
        &self.runtime
    }

    /// Successful (re)loads and rejected ones since start; reloads that found nothing new are
    /// not counted.
    pub fn reload_counts(&self) -> (u64, u64) {
        (
            self.reloads.load(Ordering::Relaxed),
            self.rejections.load(Ordering::Relaxed),
        )
    }

    /// (Re)loads the package folder `name`: validates it and swaps it in, or records why it was
    /// rejected and keeps the previous version; retires the style when the folder has been gone
    /// for the grace period (checked again now).
    pub async fn reload(&self, name: &str) -> Reload {
        if !is_package_name(name) {
            return Reload::Ignored;
        }
        let slot = self.slot(name);
        let _serial = slot.serial.lock().await;
        let outcome = self.reload_current(name, &slot).await;
        self.reload_canary(name).await;
        outcome
    }

    /// The current version's part of [`Registry::reload`].
    async fn reload_current(&self, name: &str, slot: &Slot) -> Reload {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let dir = self.dir.join(name);
        if !dir.is_dir() {
            if self.status(name).is_none() {
                return Reload::Ignored;
            }
            let since = *slot
                .absent_since
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert_with(Instant::now);
            let missing_for = since.elapsed();
            if missing_for < self.settings.retire_grace {
                tracing::debug!(
                    style = name,
                    ?missing_for,
                    "style package missing; keeps serving for now"
                );
                return Reload::Missing {
                    recheck_in: self.settings.retire_grace - missing_for,
                };
            }
            return self.retire(name);
        }
        *slot.absent_since.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let now = unix_ms(SystemTime::now());
        let loaded = match package::read(&dir) {
            Ok(files) => {
                if self.get(name).is_some_and(|serving| {
                    serving.digest == files.digest && serving.manifest == files.manifest
                }) {
                    tracing::debug!(style = name, "style package unchanged");
                    self.set_status(name, |status| status.last_error = None);
                    return Reload::Unchanged;
                }
                self.mark_loading(name);
                let limit = Some(self.settings.load_timeout);
                package::load_files(&self.runtime, files, limit).await
            }
            Err(error) => Err(error),
        };
        match loaded {
            Ok(style) => {
                if slot
                    .serving_generation
                    .fetch_max(generation, Ordering::AcqRel)
                    > generation
                {
                    return Reload::Superseded;
                }
                tracing::info!(style = name, version = %style.manifest.version, digest = %style.digest, "style loaded");
                self.reloads.fetch_add(1, Ordering::Relaxed);
                self.swap_in(name, &style, now);
                Reload::Loaded
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
                Reload::Rejected
            }
        }
    }

    /// Serves `style` as the current version of `name`.
    fn swap_in(&self, name: &str, style: &Arc<LoadedStyle>, now: u64) {
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

    /// The canary's part of [`Registry::reload`]: starts, updates or ends the canary of
    /// `name` as `DIR/.canary/` says.
    async fn reload_canary(&self, name: &str) {
        let dir = self.dir.join(CANARIES).join(name);
        let serving = self.canaries.load().get(name).cloned();
        if !dir.is_dir() {
            if let Some(canary) = serving
                && canary.end()
            {
                let reason = "its link in .canary/ was removed".to_string();
                self.end_canary(name, &canary, CanaryState::RolledBack, Some(reason));
            }
            return;
        }
        let loaded = match (deploy::read_share(&self.dir, name), package::read(&dir)) {
            (Ok(share), Ok(files)) => {
                if let Some(canary) = &serving
                    && canary.style.digest == files.digest
                    && canary.style.manifest == files.manifest
                    && canary.share == share
                {
                    return;
                }
                let limit = Some(self.settings.load_timeout);
                package::load_files(&self.runtime, files, limit)
                    .await
                    .map(|style| (style, share))
            }
            (Err(error), _) | (_, Err(error)) => Err(error),
        };
        match loaded {
            // Checked again: a rollback may have removed the link meanwhile.
            Ok((style, share)) if dir.is_dir() => {
                tracing::info!(style = name, version = %style.manifest.version, digest = %style.digest, share, "canary serving");
                let canary = Arc::new(Canary::new(style, share));
                self.canaries.rcu(|canaries| {
                    let mut canaries = HashMap::clone(canaries);
                    canaries.insert(name.to_string(), canary.clone());
                    canaries
                });
                if let Some(old) = serving {
                    old.end();
                }
                self.ended_canaries
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(name);
            }
            Ok(_) => {}
            Err(error) => {
                let reason = format!("{error:#}");
                tracing::warn!(style = name, %reason, "canary package rejected");
                let current = self.get(name);
                let side = |style: Option<&LoadedStyle>, share| SideReport {
                    version: style.map(|s| s.manifest.version.clone()),
                    digest: style.map(|s| s.digest.clone()),
                    share,
                    requests: 0,
                    errors: 0,
                    mean_ms: None,
                };
                if serving.is_none() {
                    self.ended_canaries
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(
                            name.to_string(),
                            CanaryReport {
                                state: CanaryState::Rejected,
                                reason: Some(reason),
                                current: side(current.as_deref(), 1.0),
                                candidate: side(None, 0.0),
                                since_ms: Some(unix_ms(SystemTime::now())),
                            },
                        );
                }
            }
        }
    }

    /// The reload state of package `name`.
    fn slot(&self, name: &str) -> Arc<Slot> {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// Removes style `name`; requests holding it finish on it, new ones no longer find it.
    fn retire(&self, name: &str) -> Reload {
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
        Reload::Retired
    }

    /// Lists a package never loaded before as loading.
    fn mark_loading(&self, name: &str) {
        self.set_status(name, |status| {
            if status.version.is_none() && status.last_error.is_none() {
                status.state = StyleState::Loading;
            }
        });
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
                canary: None,
            });
        update(status);
    }
}

/// Package folders are named like style ids; anything else (hidden staging folders, editor
/// droppings) is not a package.
pub(crate) fn is_package_name(name: &str) -> bool {
    super::manifest::is_style_id(name)
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
