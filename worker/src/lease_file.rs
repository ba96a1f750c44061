//! The worker's lease file ([`concurrent_proto::lease`]), opened once and written in place at
//! every attempt: held while an entry point runs, released after. A shorter text is padded
//! with newlines to the file's length rather than the file cut: the lease reads its first
//! three lines only, and a released one reads as no lease at all.

use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One worker's lease file.
#[derive(Debug)]
pub struct LeaseFile {
    path: PathBuf,
    /// The file, once opened, and its length.
    open: Mutex<Option<(std::fs::File, usize)>>,
}

impl LeaseFile {
    /// The lease file at `path`, opened (or created) at its first write.
    pub fn new(path: PathBuf) -> LeaseFile {
        LeaseFile { path, open: Mutex::new(None) }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the file read as `text` (followed by blank lines when it was longer).
    pub fn write(&self, text: &str) -> std::io::Result<()> {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if open.is_none() {
            let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&self.path)?;
            let len = usize::try_from(file.metadata()?.len()).unwrap_or(usize::MAX);
            *open = Some((file, len));
        }
        let Some((file, len)) = open.as_mut() else { unreachable!("opened above") };
        let mut bytes = text.as_bytes().to_vec();
        if bytes.len() < *len {
            bytes.resize(*len, b'\n');
        }
        let written = file.write_all_at(&bytes, 0);
        if written.is_err() {
            // Opened again at the next write.
            *open = None;
            return written;
        }
        *len = bytes.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concurrent_proto::lease::{Lease, RELEASED};

    fn lease(pgid: u32, input_dir: &str) -> Lease {
        Lease {
            ack_subject: "$JS.ACK.CONCURRENT_SHARDS.c.1.7.7.1700000000.0".into(),
            pgid,
            input_dir: input_dir.into(),
        }
    }

    #[test]
    fn the_file_reads_as_the_last_lease_written_or_as_released() {
        let dir = tempfile::tempdir().unwrap();
        let file = LeaseFile::new(dir.path().join("w.lease"));
        let long = lease(4242, "/a/rather/long/input/dir/of/the/slot/in");
        let short = lease(77, "/in");
        file.write(&long.to_text()).unwrap();
        assert_eq!(Lease::parse(&std::fs::read_to_string(file.path()).unwrap()), Some(long));
        file.write(RELEASED).unwrap();
        let released = std::fs::read_to_string(file.path()).unwrap();
        assert_eq!(Lease::parse(&released), None);
        assert_eq!(released.trim_end(), RELEASED.trim_end(), "nothing of the old lease is left: {released:?}");
        file.write(&short.to_text()).unwrap();
        assert_eq!(Lease::parse(&std::fs::read_to_string(file.path()).unwrap()), Some(short));
    }

    #[test]
    fn a_file_left_by_an_earlier_worker_is_overwritten_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.lease");
        std::fs::write(&path, lease(4242, "/an/earlier/workers/input/dir").to_text()).unwrap();
        LeaseFile::new(path.clone()).write(RELEASED).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim_end(), RELEASED.trim_end());
    }
}
