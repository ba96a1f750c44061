//! Input files of the worker's slot written again rather than created anew: emptying `in/`
//! moves its plain files to `<slot>/spare/`, and the next attempt's `file://` inputs are
//! copied into them. Creating and removing a file per input costs some filesystems (ext4
//! without a journal) an inode search that grows with every file removed in the last minutes,
//! so a long run of small shards would slow down as it goes; a file written again costs none.
//!
//! Only a file with a single link is kept (one the entry point linked elsewhere, say into its
//! outputs, is removed from `in/` as before), and at most [`MAX_SPARES`].

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Most spare files a slot keeps.
pub const MAX_SPARES: usize = 256;

/// The spare files of one worker's slot.
#[derive(Debug)]
pub struct Spares {
    dir: PathBuf,
    files: Mutex<Vec<PathBuf>>,
}

impl Spares {
    /// The spares kept in `dir` (none yet).
    pub fn new(dir: PathBuf) -> Spares {
        Spares { dir, files: Mutex::new(Vec::new()) }
    }

    fn files(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        self.files.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes `file`, of no more use, as a spare when it is a plain file with one link and
    /// there is room; removes it otherwise.
    pub fn keep_or_remove(&self, file: &Path, meta: &std::fs::Metadata) -> std::io::Result<()> {
        let mut files = self.files();
        if meta.is_file() && meta.nlink() == 1 && files.len() < MAX_SPARES {
            // Named by its inode: unique among the files that exist.
            let spare = self.dir.join(meta.ino().to_string());
            let moved = std::fs::rename(file, &spare).or_else(|_| {
                std::fs::create_dir_all(&self.dir)?;
                std::fs::rename(file, &spare)
            });
            if moved.is_ok() {
                files.push(spare);
                return Ok(());
            }
        }
        std::fs::remove_file(file)
    }

    /// A spare file to write an input into, if there is one.
    pub fn take(&self) -> Option<PathBuf> {
        self.files().pop()
    }

    /// Forgets every spare: the slot they were in was moved away (a failed attempt kept).
    pub fn forget(&self) {
        self.files().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_files_are_kept_and_linked_ones_removed() {
        let dir = tempfile::tempdir().unwrap();
        let spares = Spares::new(dir.path().join("spare"));
        let plain = dir.path().join("a.txt");
        std::fs::write(&plain, "a").unwrap();
        let linked = dir.path().join("b.txt");
        std::fs::write(&linked, "b").unwrap();
        std::fs::hard_link(&linked, dir.path().join("kept-elsewhere")).unwrap();
        for file in [&plain, &linked] {
            let meta = std::fs::symlink_metadata(file).unwrap();
            spares.keep_or_remove(file, &meta).unwrap();
            assert!(!file.exists());
        }
        assert_eq!(std::fs::read_to_string(dir.path().join("kept-elsewhere")).unwrap(), "b", "never written again");
        let spare = spares.take().expect("the plain file is a spare");
        assert_eq!(std::fs::read_to_string(&spare).unwrap(), "a");
        assert_eq!(spares.take(), None, "the linked file is not");
    }

    #[tokio::test]
    async fn an_input_copied_into_a_spare_is_the_input_and_takes_no_new_inode() {
        let dir = tempfile::tempdir().unwrap();
        let spares = Spares::new(dir.path().join("spare"));
        let old = dir.path().join("in/old.txt");
        std::fs::create_dir_all(old.parent().unwrap()).unwrap();
        std::fs::write(&old, "a much longer previous input").unwrap();
        let ino = std::fs::metadata(&old).unwrap().ino();
        spares.keep_or_remove(&old, &std::fs::metadata(&old).unwrap()).unwrap();
        let src = dir.path().join("src.txt");
        std::fs::write(&src, "new").unwrap();
        let uri = concurrent_mlflow::artifacts::file_uri(&src);
        let dest = dir.path().join("in/sub/new.txt");
        let spare = spares.take().unwrap();
        let size = concurrent_mlflow::artifacts::fetch_reusing(&uri, &dest, None, Some(&spare)).await.unwrap();
        assert_eq!((size, std::fs::read_to_string(&dest).unwrap().as_str()), (3, "new"));
        assert_eq!(std::fs::metadata(&dest).unwrap().ino(), ino, "the spare's inode");
        assert!(!spare.exists());
    }
}
