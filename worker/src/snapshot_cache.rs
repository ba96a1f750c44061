//! The project snapshot cache: a stage's project, fetched once from the object store
//! `CONCURRENT_PROJECTS` and unpacked into `<cache-dir>/<hash>`, shared by every worker on the
//! machine. Unpacking goes to a temp dir beside it and is renamed into place, so a racing
//! worker sees either nothing or the whole project.

use std::path::{Path, PathBuf};

use tokio::io::AsyncReadExt;

/// The snapshot could not be fetched or unpacked.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The snapshot key is not a plain file name.
    #[error("project snapshot key `{0}` is not a plain name")]
    BadKey(String),
    /// The object store could not be opened.
    #[error("opening object store {bucket}")]
    Store {
        /// The object store.
        bucket: &'static str,
        /// The cause.
        #[source]
        source: async_nats::jetstream::context::ObjectStoreError,
    },
    /// The snapshot object could not be read.
    #[error("reading project snapshot `{key}` from the object store")]
    Get {
        /// The snapshot key.
        key: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The snapshot could not be unpacked.
    #[error("unpacking project snapshot `{key}`")]
    Unpack {
        /// The snapshot key.
        key: String,
        /// The cause.
        #[source]
        source: concurrent_mlflow::project::snapshot::SnapshotError,
    },
    /// A filesystem operation failed.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The directory of snapshot `key` in `cache_dir`, after checking the key is a plain name.
pub fn cached_dir(cache_dir: &Path, key: &str) -> Result<PathBuf, SnapshotError> {
    let plain = !key.is_empty()
        && key != "."
        && key != ".."
        && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if !plain {
        return Err(SnapshotError::BadKey(key.to_string()));
    }
    Ok(cache_dir.join(key))
}

/// Returns the unpacked project of snapshot `key`, fetching it from the object store when it
/// is not in `cache_dir` yet.
pub async fn ensure(
    jetstream: &async_nats::jetstream::Context,
    key: &str,
    cache_dir: &Path,
) -> Result<PathBuf, SnapshotError> {
    let dir = cached_dir(cache_dir, key)?;
    if dir.is_dir() {
        tracing::debug!(snapshot = key, dir = %dir.display(), "project snapshot already unpacked");
        return Ok(dir);
    }
    let bucket = concurrent_proto::names::PROJECTS_STORE;
    let store = jetstream.get_object_store(bucket).await.map_err(|source| SnapshotError::Store { bucket, source })?;
    let get_err =
        |source: Box<dyn std::error::Error + Send + Sync>| SnapshotError::Get { key: key.to_string(), source };
    let mut object = store.get(key).await.map_err(|e| get_err(Box::new(e)))?;
    let mut bytes = Vec::new();
    object.read_to_end(&mut bytes).await.map_err(|e| get_err(Box::new(e)))?;
    install(&bytes, cache_dir, key)
}

/// Unpacks snapshot bytes into `<cache_dir>/<key>` atomically; if another worker got there
/// first, its copy is used.
pub fn install(bytes: &[u8], cache_dir: &Path, key: &str) -> Result<PathBuf, SnapshotError> {
    let dir = cached_dir(cache_dir, key)?;
    if dir.is_dir() {
        return Ok(dir);
    }
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| SnapshotError::Io { what, path, source }
    };
    std::fs::create_dir_all(cache_dir).map_err(io("creating", cache_dir))?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{key}.unpacking-"))
        .tempdir_in(cache_dir)
        .map_err(io("creating a temp dir in", cache_dir))?;
    concurrent_mlflow::project::snapshot::unpack(bytes, staging.path())
        .map_err(|source| SnapshotError::Unpack { key: key.to_string(), source })?;
    let staged = staging.keep();
    match std::fs::rename(&staged, &dir) {
        Ok(()) => Ok(dir),
        // Another worker renamed its copy into place first: use that one.
        Err(_) if dir.is_dir() => {
            let _ = std::fs::remove_dir_all(&staged);
            Ok(dir)
        }
        Err(source) => {
            let _ = std::fs::remove_dir_all(&staged);
            Err(SnapshotError::Io { what: "renaming into place", path: dir, source })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> concurrent_mlflow::project::snapshot::Snapshot {
        let project = tempfile::tempdir().unwrap();
        std::fs::write(project.path().join("MLproject"), "name: t\nentry_points: {main: {command: 'true'}}\n").unwrap();
        concurrent_mlflow::project::snapshot::pack(project.path()).unwrap()
    }

    #[test]
    fn a_snapshot_is_unpacked_once_and_reused() {
        let cache = tempfile::tempdir().unwrap();
        let snapshot = snapshot();
        let dir = install(&snapshot.bytes, cache.path(), &snapshot.hash).unwrap();
        assert_eq!(dir, cache.path().join(&snapshot.hash));
        assert!(dir.join("MLproject").is_file());
        // A second install (another worker) reuses it; nothing else is left in the cache.
        assert_eq!(install(b"not even a tar", cache.path(), &snapshot.hash).unwrap(), dir);
        let entries: Vec<_> = std::fs::read_dir(cache.path()).unwrap().flatten().collect();
        assert_eq!(entries.len(), 1);
    }

    #[test]
    fn racing_installs_all_end_with_the_same_dir() {
        let cache = tempfile::tempdir().unwrap();
        let snapshot = snapshot();
        let dirs: Vec<PathBuf> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| install(&snapshot.bytes, cache.path(), &snapshot.hash).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(dirs.iter().all(|d| d == &cache.path().join(&snapshot.hash)));
        assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 1, "no temp dirs left");
    }

    #[test]
    fn keys_that_are_not_plain_names_are_refused() {
        for bad in ["", ".", "..", "../x", "a/b", "/abs"] {
            assert!(matches!(cached_dir(Path::new("/c"), bad), Err(SnapshotError::BadKey(_))), "{bad}");
        }
        assert_eq!(cached_dir(Path::new("/c"), "ab12").unwrap(), Path::new("/c/ab12"));
    }
}
