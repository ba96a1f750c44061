//! Writing a download next to its destination and renaming it into place only when complete.
//! Downloads land in scratch directories that are redone after a crash, so a reader must
//! never see a half-written file, but nothing is forced to disk (no fsync).

use std::path::{Path, PathBuf};

use rand::Rng;
use tokio::io::AsyncWriteExt;

/// A `.<name>.part-<random>` file beside `dest`; removed on drop unless committed.
pub(crate) struct PartFile {
    path: PathBuf,
    dest: PathBuf,
    file: Option<tokio::fs::File>,
    written: u64,
}

impl PartFile {
    /// Creates the part file (and `dest`'s missing parent directories).
    pub(crate) async fn create(dest: &Path) -> std::io::Result<PartFile> {
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        tokio::fs::create_dir_all(&parent).await?;
        let path = part_path(&parent, dest);
        let file = tokio::fs::File::create(&path).await?;
        Ok(PartFile { path, dest: dest.to_path_buf(), file: Some(file), written: 0 })
    }

    /// Appends `bytes`.
    pub(crate) async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.file {
            Some(file) => file.write_all(bytes).await?,
            None => return Err(std::io::Error::other("part file already committed")),
        }
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Flushes, renames onto the destination, and returns the bytes written.
    pub(crate) async fn commit(mut self) -> std::io::Result<u64> {
        if let Some(mut file) = self.file.take() {
            file.flush().await?;
        }
        tokio::fs::rename(&self.path, &self.dest).await?;
        self.path = PathBuf::new();
        Ok(self.written)
    }
}

/// Longest stem of `dest`'s name kept in a part file's name (a file name holds 255 bytes).
const PART_STEM_MAX: usize = 64;

/// `<parent>/.<start of dest's name>.part-<random>`: beside `dest`, never too long a name.
pub(crate) fn part_path(parent: &Path, dest: &Path) -> PathBuf {
    let name = dest.file_name().map_or_else(|| "download".into(), |n| n.to_string_lossy().into_owned());
    let mut end = name.len().min(PART_STEM_MAX);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let suffix: u64 = rand::rng().random();
    parent.join(format!(".{}.part-{suffix:016x}", &name[..end]))
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commits_or_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a/b/file.bin");
        let mut part = PartFile::create(&dest).await.unwrap();
        part.write(b"hello").await.unwrap();
        assert_eq!(part.commit().await.unwrap(), 5);
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello");

        let other = dir.path().join("a/b/other.bin");
        let mut part = PartFile::create(&other).await.unwrap();
        part.write(b"x").await.unwrap();
        drop(part);
        let left: Vec<_> = std::fs::read_dir(dir.path().join("a/b")).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "only the committed file remains");

        let long = dir.path().join(format!("{}ü", "x".repeat(253)));
        let mut part = PartFile::create(&long).await.unwrap();
        part.write(b"long").await.unwrap();
        assert_eq!(part.commit().await.unwrap(), 4, "a 255-byte name has a part file too");
    }
}
