//! A shard's outputs: the files under `out/` when the entry point exits 0 (symlinks that lead
//! outside `out/` are refused), and, with tracking off, their atomic move to
//! `<output_root>/<shard>/`.

use std::path::{Path, PathBuf};

use concurrent_mlflow::object_path::ObjectPath;

/// One file the entry point left in its output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalOutput {
    /// Path under the output directory.
    pub path: ObjectPath,
    /// The file on disk (for a symlink, the file it points to).
    pub file: PathBuf,
    /// Size in bytes.
    pub size: u64,
}

/// The outputs could not be collected or kept.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// Walking the output directory failed.
    #[error("reading the output directory {dir}")]
    Walk {
        /// The output directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: walkdir::Error,
    },
    /// An output is a symlink that leads outside the output directory.
    #[error("output {path:?} is a symlink that leads outside the output directory")]
    EscapingSymlink {
        /// The output's relative path.
        path: String,
    },
    /// An output's path is not UTF-8.
    #[error("output {} has a path that is not UTF-8", .0.display())]
    NotUtf8(PathBuf),
    /// A filesystem operation failed.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl OutputError {
    /// Whether another attempt would fail the same way: the outputs' destination refuses
    /// writes (permissions, a read-only filesystem).
    pub fn is_permanent(&self) -> bool {
        match self {
            OutputError::Io { source, .. } => is_unwritable(source),
            OutputError::Walk { source, .. } => source.io_error().is_some_and(is_unwritable),
            OutputError::EscapingSymlink { .. } | OutputError::NotUtf8(_) => false,
        }
    }
}

fn is_unwritable(error: &std::io::Error) -> bool {
    matches!(error.kind(), std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem)
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> OutputError {
    let path = path.to_path_buf();
    move |source| OutputError::Io { what, path, source }
}

/// Lists the files under `out_dir`, sorted by path. A symlink must resolve inside `out_dir`; a
/// symlink to a file counts as that file, a symlink to a directory is skipped (its files are
/// listed where they really are).
pub fn collect(out_dir: &Path) -> Result<Vec<LocalOutput>, OutputError> {
    // Resolved only when a symlink needs it: most outputs dirs hold none.
    let mut root: Option<PathBuf> = None;
    let mut outputs = Vec::new();
    for entry in walkdir::WalkDir::new(out_dir).min_depth(1).follow_links(false).sort_by_file_name() {
        let entry = entry.map_err(|source| OutputError::Walk { dir: out_dir.to_path_buf(), source })?;
        let path = match ObjectPath::below(out_dir, entry.path()) {
            Some(Ok(path)) => path,
            _ => return Err(OutputError::NotUtf8(entry.path().into())),
        };
        let file_type = entry.file_type();
        let file = if file_type.is_symlink() {
            let escaping = || OutputError::EscapingSymlink { path: path.as_str().to_owned() };
            let target = entry.path().canonicalize().map_err(|_| escaping())?;
            let root = match &mut root {
                Some(root) => root,
                unresolved => unresolved.insert(out_dir.canonicalize().map_err(io("resolving", out_dir))?),
            };
            if !target.starts_with(&*root) {
                return Err(escaping());
            }
            if !target.is_file() {
                continue;
            }
            target
        } else if file_type.is_file() {
            entry.path().to_path_buf()
        } else {
            continue;
        };
        let size = std::fs::metadata(&file).map_err(io("reading", &file))?.len();
        outputs.push(LocalOutput { path, file, size });
    }
    Ok(outputs)
}

/// Copies `outputs` into `<output_root>/<shard>/` atomically: they are written to a temp
/// directory beside it, renamed into place in one step. Returns the final directory.
///
/// Another attempt of the shard may have kept its outputs there first (a speculative copy
/// running at the same time, or an attempt whose result was lost): the scheduler may have
/// decided the shard with them, so they are never replaced or removed. This attempt's then go
/// to `<output_root>/<shard>.<attempt_tag>/`, and its result names them there.
pub fn keep_locally(
    outputs: &[LocalOutput],
    output_root: &Path,
    shard: u32,
    attempt_tag: &str,
) -> Result<PathBuf, OutputError> {
    let target = output_root.join(shard.to_string());
    if outputs.is_empty() {
        return Ok(target);
    }
    std::fs::create_dir_all(output_root).map_err(io("creating", output_root))?;
    let staging = output_root.join(format!(".{shard}.{attempt_tag}.tmp"));
    remove_dir_if_exists(&staging)?;
    std::fs::create_dir(&staging).map_err(io("creating", &staging))?;
    for output in outputs {
        let dest = output.path.to_fs_path(&staging);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        }
        // A hard link is instant; copy when the work dir is on another filesystem.
        if std::fs::hard_link(&output.file, &dest).is_err() {
            std::fs::copy(&output.file, &dest).map_err(io("copying to", &dest))?;
        }
    }
    // A rename onto a directory that exists and is not empty fails: the other attempt's stays.
    match std::fs::rename(&staging, &target) {
        Ok(()) => Ok(target),
        Err(_) if target.is_dir() => {
            let beside = output_root.join(format!("{shard}.{attempt_tag}"));
            remove_dir_if_exists(&beside)?;
            std::fs::rename(&staging, &beside).map_err(io("renaming into place", &staging))?;
            Ok(beside)
        }
        Err(error) => Err(io("renaming into place", &staging)(error)),
    }
}

fn remove_dir_if_exists(dir: &Path) -> Result<(), OutputError> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("removing", dir)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn files_are_listed_with_relative_paths_and_sizes() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("b.txt"), "bb");
        write(&dir.path().join("a/c.txt"), "ccc");
        symlink("a/c.txt", dir.path().join("link.txt")).unwrap();
        symlink("a", dir.path().join("dirlink")).unwrap();
        let outputs = collect(dir.path()).unwrap();
        let listed: Vec<(&str, u64)> = outputs.iter().map(|o| (o.path.as_str(), o.size)).collect();
        assert_eq!(listed, vec![("a/c.txt", 3), ("b.txt", 2), ("link.txt", 3)]);
    }

    #[test]
    fn odd_names_are_kept_byte_for_byte() {
        let work = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let names = ["new\nline #1.txt", "ü/%41 'q'.txt", "-dash\t.txt"];
        for name in names {
            write(&work.path().join("out").join(name), name);
        }
        let outputs = collect(&work.path().join("out")).unwrap();
        let mut listed: Vec<&str> = outputs.iter().map(|o| o.path.as_str()).collect();
        listed.sort();
        let mut expected = names.to_vec();
        expected.sort();
        assert_eq!(listed, expected);
        let dir = keep_locally(&outputs, root.path(), 0, "a1").unwrap();
        for name in names {
            assert_eq!(std::fs::read_to_string(dir.join(name)).unwrap(), name);
        }
    }

    #[test]
    fn an_output_name_that_is_not_utf8_is_named() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(std::ffi::OsStr::from_bytes(b"bad\xff")), "x").unwrap();
        let err = collect(dir.path()).unwrap_err();
        assert!(matches!(err, OutputError::NotUtf8(_)), "{err}");
        assert!(err.to_string().contains("bad"), "{err}");
    }

    #[test]
    fn symlinks_leading_outside_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        write(&outside.path().join("secret"), "s");
        let dir = tempfile::tempdir().unwrap();
        symlink(outside.path().join("secret"), dir.path().join("x")).unwrap();
        assert!(matches!(collect(dir.path()), Err(OutputError::EscapingSymlink { path }) if path == "x"));

        let dir = tempfile::tempdir().unwrap();
        symlink("../../../../../../etc", dir.path().join("etc")).unwrap();
        assert!(matches!(collect(dir.path()), Err(OutputError::EscapingSymlink { .. })));

        let dir = tempfile::tempdir().unwrap();
        symlink("does-not-exist", dir.path().join("dangling")).unwrap();
        assert!(matches!(collect(dir.path()), Err(OutputError::EscapingSymlink { .. })));
    }

    #[test]
    fn local_outputs_never_replace_another_attempt_s() {
        let work = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        write(&work.path().join("out/x/y.txt"), "first");
        let outputs = collect(&work.path().join("out")).unwrap();
        let first = keep_locally(&outputs, root.path(), 2, "a1-w1").unwrap();
        assert_eq!(first, root.path().join("2"));

        // The slot's outputs dir is emptied between attempts (the kept files are hard links).
        std::fs::remove_dir_all(work.path().join("out")).unwrap();
        write(&work.path().join("out/x/y.txt"), "second");
        let outputs = collect(&work.path().join("out")).unwrap();
        let second = keep_locally(&outputs, root.path(), 2, "a4-w2").unwrap();
        assert_eq!(second, root.path().join("2.a4-w2"), "beside the first attempt's, which may have decided the shard");
        assert_eq!(std::fs::read_to_string(first.join("x/y.txt")).unwrap(), "first");
        assert_eq!(std::fs::read_to_string(second.join("x/y.txt")).unwrap(), "second");
        assert_eq!(keep_locally(&[], root.path(), 2, "a5-w1").unwrap(), first, "no outputs: nothing is removed");
        assert!(first.join("x/y.txt").is_file());
        let mut names: Vec<_> = std::fs::read_dir(root.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        names.sort();
        assert_eq!(names, ["2", "2.a4-w2"].map(std::ffi::OsString::from), "no temp dirs left behind");
    }
}
