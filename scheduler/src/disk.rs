//! Free disk space where a run writes: the state dir (sled, logs), the NATS store and the
//! workers' work dir. Checked before a run starts and watched while it goes, so a filling disk
//! stops the run with an error naming the filesystem and the path, rather than starving
//! nats-server or sled.
//!
//! [`short_of_space`] decides (pure); [`read_free_space`] asks the kernel (`statvfs`) and
//! `/proc/self/mounts` which filesystem holds a path.

use std::path::{Path, PathBuf};

/// Free space below which a run does not start and a running one stops, unless
/// `--min-free-space` says otherwise.
pub const DEFAULT_MIN_FREE: &str = "256Mi";

/// A directory a run writes to, and what it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// What the directory is, e.g. `state dir`.
    pub what: &'static str,
    pub path: PathBuf,
}

/// Free space of the filesystem holding a watched directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreeSpace {
    pub watched: Watched,
    /// Bytes an unprivileged process may still write.
    pub available: u64,
    /// The filesystem: its mount point and type, e.g. `/mnt/data (ext4)`.
    pub filesystem: String,
}

/// The disk space of a run ran short.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error(
        "{} {}: only {} free on filesystem {} (at least {} needed; --min-free-space sets it)",
        .space.watched.what, .space.watched.path.display(), human(.space.available), .space.filesystem, human(*.minimum)
    )]
    Short { space: FreeSpace, minimum: u64 },
    #[error("{what} {}: cannot read its free space: {source}", .path.display())]
    Unreadable { what: &'static str, path: PathBuf, source: std::io::Error },
}

/// The first reading below `minimum` bytes, if any.
pub fn short_of_space(readings: &[FreeSpace], minimum: u64) -> Option<&FreeSpace> {
    readings.iter().find(|reading| reading.available < minimum)
}

/// Reads the free space of each watched directory (of its nearest existing ancestor when it
/// does not exist yet).
pub fn read_free_space(watched: &[Watched]) -> Result<Vec<FreeSpace>, DiskError> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    watched
        .iter()
        .map(|w| {
            let existing = nearest_existing(&w.path);
            let stat = nix::sys::statvfs::statvfs(&existing).map_err(|errno| DiskError::Unreadable {
                what: w.what,
                path: w.path.clone(),
                source: std::io::Error::from(errno),
            })?;
            let available = stat.blocks_available().saturating_mul(stat.fragment_size());
            let real = std::fs::canonicalize(&existing).unwrap_or(existing);
            Ok(FreeSpace { watched: w.clone(), available, filesystem: filesystem_of(&mounts, &real) })
        })
        .collect()
}

/// Checks every watched directory against `minimum`.
pub fn check_free_space(watched: &[Watched], minimum: u64) -> Result<(), DiskError> {
    let readings = read_free_space(watched)?;
    match short_of_space(&readings, minimum) {
        Some(space) => Err(DiskError::Short { space: space.clone(), minimum }),
        None => Ok(()),
    }
}

fn nearest_existing(path: &Path) -> PathBuf {
    path.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/")).to_path_buf()
}

/// The mount point and type of the filesystem holding `path`, from `/proc/self/mounts` text
/// (the longest mount point that contains it).
pub fn filesystem_of(mounts: &str, path: &Path) -> String {
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_device, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
            let point = point.replace("\\040", " ");
            path.starts_with(&point).then_some((point, kind.to_string()))
        })
        .max_by_key(|(point, _)| point.len())
        .map_or_else(|| "?".to_string(), |(point, kind)| format!("{point} ({kind})"))
}

/// Bytes in binary units, e.g. `12.0 MiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(what: &'static str, available: u64) -> FreeSpace {
        FreeSpace { watched: Watched { what, path: PathBuf::from("/x") }, available, filesystem: "/ (ext4)".into() }
    }

    #[test]
    fn the_first_directory_below_the_minimum_is_named() {
        let readings = [reading("state dir", 500), reading("work dir", 10), reading("NATS store", 5)];
        assert_eq!(short_of_space(&readings, 100).map(|r| r.watched.what), Some("work dir"));
        assert_eq!(short_of_space(&readings, 5), None);
    }

    #[test]
    fn the_longest_mount_point_holds_the_path() {
        let mounts = "/dev/sda1 / ext4 rw 0 0\ntmpfs /mnt/small tmpfs rw 0 0\ntmpfs /mnt/small\\040dir tmpfs rw 0 0\n";
        assert_eq!(filesystem_of(mounts, Path::new("/mnt/small/state")), "/mnt/small (tmpfs)");
        assert_eq!(filesystem_of(mounts, Path::new("/mnt/small dir/a")), "/mnt/small dir (tmpfs)");
        assert_eq!(filesystem_of(mounts, Path::new("/home")), "/ (ext4)");
        assert_eq!(filesystem_of(mounts, Path::new("/mnt/smaller")), "/ (ext4)");
    }

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 * 1024 * 1024), "3.0 MiB");
    }
}
