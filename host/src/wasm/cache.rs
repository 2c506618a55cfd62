//! The on-disk cache of compiled components, keyed by the component's SHA-256 and the engine's
//! compatibility hash (wasmtime version + configuration), so a restart or a re-deploy of the
//! same bytes never compiles twice.
//!
//! Loading a cached artifact maps native code into the process: the cache folder must be
//! writable by the host alone, never by style authors.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use wasmtime::Engine;
use wasmtime::component::Component;

/// A folder of precompiled components.
pub struct ComponentCache {
    dir: PathBuf,
    engine_key: String,
}

impl ComponentCache {
    /// Opens (creating it if needed) the cache folder for this engine's configuration.
    pub fn open(dir: &Path, engine: &Engine) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the component cache {}", dir.display()))?;
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(ComponentCache {
            dir: dir.to_path_buf(),
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    /// The cached compilation of the component whose SHA-256 is `digest`, if there is a usable
    /// one. An unusable entry (corrupt, or refused by this engine) is removed, so it is never
    /// tried twice.
    pub fn load(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let path = self.path(digest);
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was written by `store` after an engine with the same compatibility
        // hash produced and loaded it, into a folder only the host writes; wasmtime still checks
        // its header and refuses an artifact from another version or configuration.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "removing an unusable cache entry");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Whether there is an entry for the component `digest` (usable or not: [`ComponentCache::load`]
    /// says).
    pub fn has(&self, digest: &str) -> bool {
        self.path(digest).exists()
    }

    /// Loads `compiled` (this engine's compilation of the component `digest`) and, once it has
    /// loaded, stores it for next time: an artifact the engine refuses is never written.
    pub fn store(
        &self,
        engine: &Engine,
        digest: &str,
        compiled: &[u8],
    ) -> anyhow::Result<Component> {
        // SAFETY: the bytes were produced just now by this engine.
        let component =
            unsafe { Component::deserialize(engine, compiled) }.map_err(anyhow::Error::from)?;
        let path = self.path(digest);
        // A name of its own per write: two loads of the same component may compile at once.
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let write = WRITES.fetch_add(1, Ordering::Relaxed);
        let partial = path.with_extension(format!("tmp{}-{write}", std::process::id()));
        std::fs::write(&partial, compiled)
            .and_then(|()| std::fs::rename(&partial, &path))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(component)
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }
}
