//! Project snapshots uploaded to the service (`PUT /api/v1/projects/sha256:<hex>`): checked
//! against their hash, unpacked safely (no absolute paths, no `..`, no links) under
//! `<state dir>/uploads/<hex>/`, and named by submitted DAGs through their `projects` map.

use std::path::{Path, PathBuf};

use concurrent_mlflow::project::snapshot::{self, SnapshotError};

/// Why an uploaded snapshot was refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("`{0}` is not a snapshot name: expected sha256:<64 lowercase hex digits>")]
    BadName(String),
    #[error("the body's sha256 is {actual}, not the {expected} it was put under")]
    HashMismatch { expected: String, actual: String },
    #[error("the snapshot does not unpack: {0}")]
    Unpack(#[source] SnapshotError),
    #[error("cannot store the snapshot at {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// The uploaded snapshots of a state dir.
#[derive(Debug, Clone)]
pub struct UploadedProjects {
    root: PathBuf,
}

impl UploadedProjects {
    /// Snapshots kept under `<state_dir>/uploads`.
    pub fn new(state_dir: &Path) -> UploadedProjects {
        UploadedProjects { root: state_dir.join("uploads") }
    }

    /// The hex digest of a `sha256:<hex>` name.
    pub fn digest(name: &str) -> Result<&str, UploadError> {
        name.strip_prefix("sha256:")
            .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            .ok_or_else(|| UploadError::BadName(name.to_string()))
    }

    /// Where the snapshot named `name` is unpacked, if it was uploaded.
    pub fn dir(&self, name: &str) -> Option<PathBuf> {
        let dir = self.root.join(Self::digest(name).ok()?);
        dir.is_dir().then_some(dir)
    }

    /// Stores `bytes` as the snapshot `name`; `Ok(false)` when it was there already.
    pub fn put(&self, name: &str, bytes: &[u8]) -> Result<bool, UploadError> {
        let digest = Self::digest(name)?;
        let actual = snapshot::sha256_hex(bytes);
        if actual != digest {
            return Err(UploadError::HashMismatch { expected: name.to_string(), actual: format!("sha256:{actual}") });
        }
        let dir = self.root.join(digest);
        if dir.is_dir() {
            return Ok(false);
        }
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| UploadError::Io { path, source }
        };
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        let part = tempfile::Builder::new().prefix(".part-").tempdir_in(&self.root).map_err(io(&self.root))?;
        snapshot::unpack(bytes, part.path()).map_err(UploadError::Unpack)?;
        let part = part.keep();
        if let Err(source) = std::fs::rename(&part, &dir) {
            let _ = std::fs::remove_dir_all(&part);
            if !dir.is_dir() {
                return Err(UploadError::Io { path: dir.display().to_string(), source });
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project_snapshot() -> snapshot::Snapshot {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("MLproject"), "name: p\nentry_points:\n  main:\n    command: true\n").unwrap();
        snapshot::pack(dir.path()).unwrap()
    }

    #[test]
    fn a_snapshot_is_stored_once_under_its_hash() {
        let state = tempfile::tempdir().unwrap();
        let uploads = UploadedProjects::new(state.path());
        let snap = project_snapshot();
        let name = format!("sha256:{}", snap.hash);
        assert!(uploads.dir(&name).is_none());
        assert!(uploads.put(&name, &snap.bytes).unwrap());
        assert!(!uploads.put(&name, &snap.bytes).unwrap());
        assert!(uploads.dir(&name).unwrap().join("MLproject").is_file());
    }

    #[test]
    fn a_body_that_does_not_match_its_name_is_refused_and_nothing_is_stored() {
        let state = tempfile::tempdir().unwrap();
        let uploads = UploadedProjects::new(state.path());
        let snap = project_snapshot();
        let wrong = format!("sha256:{}", "0".repeat(64));
        let error = uploads.put(&wrong, &snap.bytes).unwrap_err();
        assert!(matches!(error, UploadError::HashMismatch { .. }), "{error}");
        assert!(uploads.dir(&wrong).is_none());
        assert!(matches!(uploads.put("md5:abc", &snap.bytes), Err(UploadError::BadName(_))));
    }

    #[test]
    fn a_tarball_escaping_its_tree_is_refused() {
        let mut header = tar::Header::new_gnu();
        let body = b"x";
        header.set_size(1);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        let mut bytes = Vec::new();
        {
            let mut builder = tar::Builder::new(&mut bytes);
            // `append_data` refuses `..`; write the raw name as an attacker would.
            header.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../evil\0\0");
            header.set_cksum();
            builder.append(&header, &body[..]).unwrap();
            builder.finish().unwrap();
        }
        let state = tempfile::tempdir().unwrap();
        let uploads = UploadedProjects::new(state.path());
        let name = format!("sha256:{}", snapshot::sha256_hex(&bytes));
        assert!(matches!(uploads.put(&name, &bytes), Err(UploadError::Unpack(_))));
        assert!(!state.path().join("evil").exists());
        assert!(uploads.dir(&name).is_none());
    }
}
