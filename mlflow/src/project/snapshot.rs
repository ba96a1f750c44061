//! Project snapshots: a deterministic tar of a project directory, named by its sha256, that
//! the scheduler puts in the object store and workers unpack (DESIGN §5), so workers need
//! neither git nor the user's disk.
//!
//! [`pack`] writes entries sorted by name with mtime 0, uid/gid 0, no user names and mode
//! `0755` (directories and files with any executable bit) or `0644`, so the same content
//! always gives the same bytes and hash. It skips [`SKIPPED_NAMES`] at any depth. A symbolic
//! link whose target stays inside the project is packed as what it points to (a file or a
//! directory, at the link's path); one whose target leaves the project (it would point at the
//! user's disk, which a worker does not have), a dangling link, a link loop and special files
//! are **refused**, naming the path. [`check_tree`] makes the same checks without reading
//! files, for `validate`. [`unpack`] refuses entries with `..`, absolute paths, links and
//! special files, and writes only regular files and directories.

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};
use tar::{Archive, Builder, EntryType, Header};
use walkdir::WalkDir;

/// Directory or file names left out of snapshots wherever they appear.
pub const SKIPPED_NAMES: [&str; 5] = [".git", "__pycache__", ".venv", "mlruns", ".concurrent"];

/// A packed project: tar bytes and their content hash.
#[derive(Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The tar archive.
    pub bytes: Vec<u8>,
    /// Lowercase hex sha256 of `bytes`.
    pub hash: String,
}

impl Snapshot {
    /// Wraps tar bytes (e.g. downloaded from the object store), computing their hash.
    pub fn new(bytes: Vec<u8>) -> Snapshot {
        let hash = sha256_hex(&bytes);
        Snapshot { bytes, hash }
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot").field("hash", &self.hash).field("len", &self.bytes.len()).finish()
    }
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a snapshot could not be packed or unpacked.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The project path is not a directory.
    #[error("{path}: not a directory")]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// Walking the project directory failed.
    #[error("walking the project: {source}")]
    Walk {
        /// The walk error (names the path).
        #[source]
        source: walkdir::Error,
    },
    /// The project holds a symbolic link whose target is outside it.
    #[error(
        "{path} is a symbolic link to {target}, outside the project {project}; workers get only the \
         project's own files (copy what it points to into the project, or make it a stage input)"
    )]
    LinkOutside {
        /// The link.
        path: PathBuf,
        /// Where it points, resolved.
        target: PathBuf,
        /// The project directory, resolved.
        project: PathBuf,
    },
    /// The project holds a symbolic link whose target does not exist.
    #[error("{path} is a symbolic link to {target}, which does not exist")]
    DanglingLink {
        /// The link.
        path: PathBuf,
        /// Where it points, as written.
        target: PathBuf,
    },
    /// A symbolic link points at a directory that contains it.
    #[error("{path} is a symbolic link to {ancestor}, a directory that contains it (a loop)")]
    LinkLoop {
        /// The link.
        path: PathBuf,
        /// The directory it points back to.
        ancestor: PathBuf,
    },
    /// The project holds a socket, FIFO or device.
    #[error("{path}: not a regular file or directory; cannot be packed")]
    SpecialFile {
        /// The file.
        path: PathBuf,
    },
    /// The archive is not a readable tar.
    #[error("snapshot is not a valid tar archive: {source}")]
    Tar {
        /// The tar reader's error.
        #[source]
        source: io::Error,
    },
    /// An archive entry would land outside the destination.
    #[error("snapshot entry '{path}' is absolute or contains '..'; refused")]
    UnsafePath {
        /// The entry's path as stored.
        path: String,
    },
    /// An archive entry is a link or special file.
    #[error("snapshot entry '{path}' is a {kind:?} entry; only files and directories are allowed")]
    UnsupportedEntry {
        /// The entry's path as stored.
        path: String,
        /// The entry type.
        kind: EntryType,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io { path: path.to_path_buf(), source }
}

/// Packs `dir` into a deterministic tar; see the module docs for what is kept.
pub fn pack(dir: &Path) -> Result<Snapshot, SnapshotError> {
    let mut builder = Builder::new(Vec::new());
    for entry in tree(dir)? {
        let entry = entry?;
        let path = entry.path();
        let rel = path.strip_prefix(dir).unwrap_or(path);
        let mut header = Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        if entry.file_type().is_dir() {
            header.set_entry_type(EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            builder.append_data(&mut header, rel, io::empty()).map_err(io_error(path))?;
        } else {
            let data = fs::read(path).map_err(io_error(path))?;
            let metadata = entry.metadata().map_err(|source| SnapshotError::Walk { source })?;
            header.set_entry_type(EntryType::Regular);
            header.set_mode(if is_executable(&metadata) { 0o755 } else { 0o644 });
            header.set_size(data.len() as u64);
            builder.append_data(&mut header, rel, data.as_slice()).map_err(io_error(path))?;
        }
    }
    let bytes = builder.into_inner().map_err(io_error(dir))?;
    Ok(Snapshot::new(bytes))
}

/// Checks that `dir` can be packed (links stay inside it, no special files) without reading
/// any file: the first problem [`pack`] would meet.
pub fn check_tree(dir: &Path) -> Result<(), SnapshotError> {
    tree(dir)?.try_for_each(|entry| entry.map(drop))
}

/// The entries [`pack`] writes, in order: directories and regular files, links followed (a
/// followed link's entry has the link's path and its target's type). Yields an error for a
/// link leaving `dir`, a dangling link, a link loop or a special file.
fn tree(dir: &Path) -> Result<impl Iterator<Item = Result<walkdir::DirEntry, SnapshotError>>, SnapshotError> {
    if !dir.is_dir() {
        return Err(SnapshotError::NotADirectory { path: dir.to_path_buf() });
    }
    let root = dir.canonicalize().map_err(io_error(dir))?;
    let walk = WalkDir::new(dir)
        .min_depth(1)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| !SKIPPED_NAMES.iter().any(|name| e.file_name() == std::ffi::OsStr::new(name)));
    Ok(walk.map(move |entry| {
        let entry = entry.map_err(walk_error)?;
        if entry.path_is_symlink() {
            let path = entry.path();
            let target = path.canonicalize().map_err(io_error(path))?;
            if !target.starts_with(&root) {
                return Err(SnapshotError::LinkOutside { path: path.to_path_buf(), target, project: root.clone() });
            }
        }
        let file_type = entry.file_type();
        if file_type.is_dir() || file_type.is_file() {
            Ok(entry)
        } else {
            Err(SnapshotError::SpecialFile { path: entry.path().to_path_buf() })
        }
    }))
}

/// A walk error with following links: a loop or a dangling link named as such.
fn walk_error(error: walkdir::Error) -> SnapshotError {
    if let (Some(ancestor), Some(path)) = (error.loop_ancestor(), error.path()) {
        return SnapshotError::LinkLoop { path: path.to_path_buf(), ancestor: ancestor.to_path_buf() };
    }
    if let Some(path) = error.path()
        && error.io_error().is_some_and(|e| e.kind() == io::ErrorKind::NotFound)
        && let Ok(target) = fs::read_link(path)
    {
        return SnapshotError::DanglingLink { path: path.to_path_buf(), target };
    }
    SnapshotError::Walk { source: error }
}

#[cfg(unix)]
fn is_executable(metadata: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_metadata: &fs::Metadata) -> bool {
    false
}

/// Unpacks snapshot `bytes` into `dest` (created if missing), refusing unsafe entries.
///
/// Entries are written as they are read, so on error `dest` may hold part of the snapshot:
/// unpack into a fresh temporary directory and rename it when this returns `Ok`.
pub fn unpack(bytes: &[u8], dest: &Path) -> Result<(), SnapshotError> {
    fs::create_dir_all(dest).map_err(io_error(dest))?;
    let mut archive = Archive::new(bytes);
    let entries = archive.entries().map_err(|source| SnapshotError::Tar { source })?;
    for entry in entries {
        let mut entry = entry.map_err(|source| SnapshotError::Tar { source })?;
        let stored = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let rel = entry.path().map_err(|source| SnapshotError::Tar { source })?.into_owned();
        let safe = rel.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !safe || stored.starts_with('/') {
            return Err(SnapshotError::UnsafePath { path: stored });
        }
        let target = dest.join(&rel);
        match entry.header().entry_type() {
            EntryType::Directory => fs::create_dir_all(&target).map_err(io_error(&target))?,
            EntryType::Regular | EntryType::Continuous => {
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent).map_err(io_error(parent))?;
                }
                let executable = entry.header().mode().is_ok_and(|m| m & 0o111 != 0);
                write_file(&mut entry, &target, executable)?;
            }
            kind => return Err(SnapshotError::UnsupportedEntry { path: stored, kind }),
        }
    }
    Ok(())
}

fn write_file(data: &mut impl Read, target: &Path, executable: bool) -> Result<(), SnapshotError> {
    let mut file = fs::File::create(target).map_err(io_error(target))?;
    io::copy(data, &mut file).map_err(io_error(target))?;
    set_executable(&file, executable).map_err(io_error(target))
}

#[cfg(unix)]
fn set_executable(file: &fs::File, executable: bool) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = if executable { 0o755 } else { 0o644 };
    file.set_permissions(fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_executable(_file: &fs::File, _executable: bool) -> io::Result<()> {
    Ok(())
}
