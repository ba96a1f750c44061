//! Files a worker rewrites on every attempt (the manifest), overwritten in place:
//! opened without truncation, written from the start and cut to the new length. A file cut to
//! nothing and written again gives its block back and takes a new one each time, which some
//! filesystems pay for with a synchronous discard; one rewritten in place keeps its block.

use std::os::unix::fs::FileExt as _;
use std::path::Path;

/// Makes `path` hold exactly `bytes`, creating it if needed. A reader that races the write may
/// see the new text followed by the end of the old one, never an empty file.
pub fn overwrite(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
    let before = file.metadata()?.len();
    file.write_all_at(bytes, 0)?;
    // Cutting a file is not free even to its own length; only a longer one is cut.
    match before > bytes.len() as u64 {
        true => file.set_len(bytes.len() as u64),
        false => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_holds_exactly_the_last_text_written_longer_or_shorter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        for text in ["a longer first text\n", "short\n", "a longer text again, longer than the first\n"] {
            overwrite(&path, text.as_bytes()).unwrap();
            assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        }
    }
}
