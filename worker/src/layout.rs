//! Where an attempt's files go and what its names are: the attempt directory layout, the
//! shard run's name, and the check that keeps a relative path inside its directory. Pure.

use std::path::{Component, Path, PathBuf};

/// The files and directories of a shard attempt under the work dir: a worker's slot
/// `<work-dir>/<run>/<stage>/<worker>/{in,out,manifest.json,entry_point.log}`, reused (emptied)
/// from one attempt to the next, or a failed attempt kept as `…/<stage>/<shard>-a<attempt>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptLayout {
    /// The attempt directory.
    pub root: PathBuf,
    /// `CONCURRENT_INPUT_DIR`: the inputs at their relative paths.
    pub input_dir: PathBuf,
    /// `CONCURRENT_OUTPUT_DIR`: empty at start; its files at exit 0 are the outputs.
    pub output_dir: PathBuf,
    /// `CONCURRENT_MANIFEST`: JSON list of the inputs.
    pub manifest: PathBuf,
    /// The entry point's stdout and stderr.
    pub log: PathBuf,
}

impl AttemptLayout {
    /// The layout of attempt `attempt` of `shard` under `work_dir` (where a failed attempt is kept).
    pub fn new(work_dir: &Path, run_id: &str, stage: &str, shard: u32, attempt: u32) -> Self {
        Self::at(work_dir.join(run_id).join(stage).join(format!("{shard}-a{attempt}")))
    }

    /// The slot of worker `worker` under `work_dir`: every attempt of that worker runs there.
    pub fn slot(work_dir: &Path, run_id: &str, stage: &str, worker: &str) -> Self {
        Self::at(work_dir.join(run_id).join(stage).join(worker))
    }

    fn at(root: PathBuf) -> Self {
        AttemptLayout {
            input_dir: root.join("in"),
            output_dir: root.join("out"),
            manifest: root.join("manifest.json"),
            log: root.join("entry_point.log"),
            root,
        }
    }
}

/// Name of a shard attempt's MLflow run: `<stage>-<shard>`, `-a<attempt>` after the first.
pub fn shard_run_name(stage: &str, shard: u32, attempt: u32) -> String {
    if attempt <= 1 { format!("{stage}-{shard}") } else { format!("{stage}-{shard}-a{attempt}") }
}

/// A relative path that would leave its directory.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnsafePath {
    /// The path is empty or names the directory itself.
    #[error("path `{0}` is empty")]
    Empty(String),
    /// The path is absolute.
    #[error("path `{0}` is absolute")]
    Absolute(String),
    /// The path has a `..` component.
    #[error("path `{0}` contains `..`")]
    ParentDir(String),
}

/// Checks that `path` is relative and stays inside the directory it is joined to; returns it
/// normalised (without `.` components). Symlinks inside the directory are the caller's business.
pub fn safe_relative_path(path: &str) -> Result<PathBuf, UnsafePath> {
    let mut clean = PathBuf::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(UnsafePath::ParentDir(path.to_string())),
            Component::RootDir | Component::Prefix(_) => {
                return Err(UnsafePath::Absolute(path.to_string()));
            }
        }
    }
    if clean.as_os_str().is_empty() {
        return Err(UnsafePath::Empty(path.to_string()));
    }
    Ok(clean)
}

/// `path` relative to `base` as a `/`-separated string (the form used on the wire).
pub fn wire_path(base: &Path, path: &Path) -> Option<String> {
    let relative = path.strip_prefix(base).ok()?;
    let parts: Option<Vec<&str>> = relative.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_layout_follows_the_contract() {
        let layout = AttemptLayout::new(Path::new("/w"), "r1", "thumbnails", 3, 2);
        assert_eq!(layout.root, Path::new("/w/r1/thumbnails/3-a2"));
        assert_eq!(layout.input_dir, Path::new("/w/r1/thumbnails/3-a2/in"));
        assert_eq!(layout.output_dir, Path::new("/w/r1/thumbnails/3-a2/out"));
        assert_eq!(layout.manifest, Path::new("/w/r1/thumbnails/3-a2/manifest.json"));
        assert_eq!(layout.log, Path::new("/w/r1/thumbnails/3-a2/entry_point.log"));
    }

    #[test]
    fn run_names_get_an_attempt_suffix_after_the_first() {
        assert_eq!(shard_run_name("thumbnails", 3, 1), "thumbnails-3");
        assert_eq!(shard_run_name("thumbnails", 3, 2), "thumbnails-3-a2");
    }

    #[test]
    fn relative_paths_are_kept_and_normalised() {
        assert_eq!(safe_relative_path("a/b.jpg"), Ok(PathBuf::from("a/b.jpg")));
        assert_eq!(safe_relative_path("./a/./b.jpg"), Ok(PathBuf::from("a/b.jpg")));
        assert_eq!(safe_relative_path("a..b/c"), Ok(PathBuf::from("a..b/c")));
    }

    #[test]
    fn escaping_paths_are_refused() {
        assert!(matches!(safe_relative_path("../x"), Err(UnsafePath::ParentDir(_))));
        assert!(matches!(safe_relative_path("a/../../x"), Err(UnsafePath::ParentDir(_))));
        assert!(matches!(safe_relative_path("a/.."), Err(UnsafePath::ParentDir(_))));
        assert!(matches!(safe_relative_path("/etc/passwd"), Err(UnsafePath::Absolute(_))));
        assert!(matches!(safe_relative_path(""), Err(UnsafePath::Empty(_))));
        assert!(matches!(safe_relative_path("."), Err(UnsafePath::Empty(_))));
    }

    #[test]
    fn wire_paths_use_slashes() {
        assert_eq!(wire_path(Path::new("/o"), Path::new("/o/a/b.png")).as_deref(), Some("a/b.png"));
        assert_eq!(wire_path(Path::new("/o"), Path::new("/x/b.png")), None);
    }
}
