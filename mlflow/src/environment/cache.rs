//! The per-machine cache of built environments: `<root>/<kind>-<hash>/`, each built once.
//!
//! A build takes an exclusive lock on `<root>/<kind>-<hash>.lock` (`flock`), so workers that
//! start together wait for the first one's build instead of racing it. An environment is
//! complete when its `.concurrent-ready` file exists (written last); a directory without it
//! (a builder that died, a build that failed) is removed and built again. A failed build
//! leaves nothing behind.

use std::fs::File;
use std::path::{Path, PathBuf};

/// The variable that moves the cache (default: `$XDG_CACHE_HOME/concurrent/envs`, else
/// `~/.cache/concurrent/envs`).
pub const CACHE_DIR_VARIABLE: &str = "CONCURRENT_ENV_CACHE";

/// The file whose presence marks a complete environment.
pub const READY_FILE: &str = ".concurrent-ready";

/// The cache directory of this machine, from the environment.
pub fn default_root() -> PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_DIR_VARIABLE).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("concurrent").join("envs")
}

/// Whether [`EnvCache::get_or_build`] found the environment or built it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// It was complete already.
    Cached,
    /// This call built it.
    Built,
}

/// A cache operation failed, or the build did.
#[derive(Debug, thiserror::Error)]
pub enum CacheError<E: std::error::Error + 'static> {
    /// The cache directory or its lock could not be used.
    #[error("environment cache {path}")]
    Io {
        /// What could not be used.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The build failed (nothing was kept).
    #[error(transparent)]
    Build(E),
}

/// The environments of one machine under `root`.
#[derive(Debug, Clone)]
pub struct EnvCache {
    root: PathBuf,
}

impl EnvCache {
    /// The cache at `root`.
    pub fn new(root: impl Into<PathBuf>) -> EnvCache {
        EnvCache { root: root.into() }
    }

    /// The cache's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of environment `<kind>-<hash>` (built or not).
    pub fn dir(&self, kind: &str, hash: &str) -> PathBuf {
        self.root.join(format!("{kind}-{hash}"))
    }

    /// The environment `<kind>-<hash>`: returned at once when complete; otherwise built by
    /// `build` (given the directory to fill, which does not exist yet) under the lock, by
    /// exactly one caller on the machine while the others wait. Blocking.
    pub fn get_or_build<E: std::error::Error + 'static>(
        &self,
        kind: &str,
        hash: &str,
        build: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<(PathBuf, Found), CacheError<E>> {
        let dir = self.dir(kind, hash);
        if dir.join(READY_FILE).is_file() {
            return Ok((dir, Found::Cached));
        }
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CacheError::Io { path, source }
        };
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        let lock_path = self.root.join(format!("{kind}-{hash}.lock"));
        let lock = File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(io(&lock_path))?;
        // Held until `lock` is dropped (or the process dies).
        lock.lock().map_err(io(&lock_path))?;
        if dir.join(READY_FILE).is_file() {
            return Ok((dir, Found::Cached));
        }
        remove_if_present(&dir).map_err(io(&dir))?;
        if let Err(error) = build(&dir) {
            remove_if_present(&dir).map_err(io(&dir))?;
            return Err(CacheError::Build(error));
        }
        let ready = dir.join(READY_FILE);
        std::fs::write(&ready, hash).map_err(io(&ready))?;
        File::open(&dir).and_then(|d| d.sync_all()).map_err(io(&dir))?;
        Ok((dir, Found::Built))
    }
}

fn remove_if_present(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
