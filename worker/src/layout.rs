//! Where an attempt's files go and what its names are: the attempt directory layout and the
//! shard run's name. Pure.

use std::path::{Path, PathBuf};

/// The files and directories of a shard attempt under the work dir: a worker's slot
/// `<work-dir>/<run>/<stage>/<worker>/{in,out,manifest.json,entry_point.log}`, reused (emptied)
/// from one attempt to the next (the files of `in/` kept in its `spare/` to be written again,
/// `crate::spares`), or a failed attempt kept as `…/<stage>/<shard>-a<attempt>/`.
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
}
