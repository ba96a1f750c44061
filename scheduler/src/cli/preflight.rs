//! What is checked before a run touches anything, and the disk watch while it goes.
//!
//! The state dir and its log dir must be directories this process can write (exit 2 naming
//! the path), and the filesystems of the state dir, the NATS store and the work dir must have
//! `--min-free-space` free (exit 2 before the run, exit 3 and the run left resumable when
//! the space runs short during it).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::disk::{DiskError, Watched, check_free_space};

/// How often free space is read during a run.
const DISK_POLL: Duration = Duration::from_secs(1);

/// A directory the run cannot use.
#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {problem}: {source}", .path.display())]
pub struct UnusableDir {
    what: &'static str,
    path: PathBuf,
    problem: &'static str,
    source: std::io::Error,
}

/// Creates `dir` if needed and proves this process can write in it.
pub fn check_writable(what: &'static str, dir: &Path) -> Result<(), UnusableDir> {
    let unusable = |problem, source| UnusableDir { what, path: dir.to_path_buf(), problem, source };
    if dir.exists() && !dir.is_dir() {
        return Err(unusable("cannot use it", std::io::Error::from(std::io::ErrorKind::NotADirectory)));
    }
    std::fs::create_dir_all(dir).map_err(|e| unusable("cannot create it", e))?;
    let probe = dir.join(format!(".write-check-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| unusable("cannot write in it", e))?;
    std::fs::remove_file(&probe).map_err(|e| unusable("cannot remove a file from it", e))
}

/// Checks the state dir and its log dir, `--state-dir` named on failure.
pub fn check_state_dir(state_dir: &Path) -> bool {
    let checked =
        check_writable("--state-dir", state_dir).and_then(|()| check_writable("log dir", &state_dir.join("logs")));
    match checked {
        Ok(()) => true,
        Err(error) => {
            say!("error: {error}");
            false
        }
    }
}

/// The directories whose free space a run watches, and the minimum.
#[derive(Clone)]
pub struct DiskWatch {
    watched: Vec<Watched>,
    minimum: u64,
    short: Arc<OnceLock<String>>,
}

impl DiskWatch {
    /// Watches the state dir, its work dir, and the NATS store when this run starts
    /// nats-server (an external server's store is its operator's).
    pub fn new(state_dir: &Path, nats_store: bool, minimum: u64) -> DiskWatch {
        let mut watched = vec![
            Watched { what: "state dir", path: state_dir.to_path_buf() },
            Watched { what: "work dir", path: state_dir.join("work") },
        ];
        if nats_store {
            watched.push(Watched { what: "NATS store", path: state_dir.join("nats") });
        }
        DiskWatch { watched, minimum, short: Arc::new(OnceLock::new()) }
    }

    /// Checks the free space now.
    pub fn check(&self) -> Result<(), DiskError> {
        check_free_space(&self.watched, self.minimum)
    }

    /// Reads the free space every second until `stop` is cancelled; when it runs short,
    /// says so and cancels `stop`.
    pub fn spawn(&self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let watch = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(DISK_POLL);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stop.cancelled() => return,
                }
                let checked = {
                    let watch = watch.clone();
                    tokio::task::spawn_blocking(move || watch.check()).await
                };
                if let Ok(Err(error @ DiskError::Short { .. })) = checked {
                    let message = error.to_string();
                    say!("error: {message}; stopping the run");
                    let _ = watch.short.set(message);
                    stop.cancel();
                    return;
                }
            }
        })
    }

    /// Why the run was stopped for lack of space, if it was.
    pub fn short(&self) -> Option<&str> {
        self.short.get().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_where_the_state_dir_should_be_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state");
        std::fs::write(&file, "x").unwrap();
        let error = check_writable("--state-dir", &file).unwrap_err().to_string();
        assert_eq!(error, format!("--state-dir {}: cannot use it: not a directory", file.display()));
        check_writable("--state-dir", &dir.path().join("new/state")).unwrap();
        assert!(dir.path().join("new/state").is_dir());
    }
}
