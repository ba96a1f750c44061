//! `file://` URIs: converting between paths and URIs (exact: every byte of a UTF-8 name is
//! kept, percent-encoded in the URI), listing a directory tree, copying a file.

use std::path::{Path, PathBuf};

use url::Url;

use super::error::ArtifactError;
use super::{ListedObject, Listing};
use crate::object_path::{InvalidObjectPath, ObjectPath};

/// The `file://` URI of `path` (made absolute against the current directory), percent-encoded.
pub fn file_uri(path: &Path) -> String {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map_or_else(|_| path.to_path_buf(), |cwd| cwd.join(path))
    };
    // Each component encoded as an object path segment is, so that `:` and friends never
    // reach the URL parser raw (`url` reads a last segment ending in `:` as a drive letter).
    let mut uri = String::from("file://");
    for component in absolute.components() {
        if let std::path::Component::Normal(part) = component {
            uri.push('/');
            uri.push_str(&crate::object_path::url_segment::encode_bytes(part.as_encoded_bytes()));
        }
    }
    if uri.len() == "file://".len() {
        uri.push('/');
    }
    uri
}

/// The local path of a `file://` URI (percent-decoded; host empty or `localhost`).
pub fn file_path(uri: &str) -> Result<PathBuf, ArtifactError> {
    let url = Url::parse(uri).map_err(|e| ArtifactError::invalid(uri, e.to_string()))?;
    if url.scheme() != "file" {
        return Err(ArtifactError::invalid(uri, "not a file:// URI"));
    }
    local_path(&url).ok_or_else(|| ArtifactError::invalid(uri, "not a local path (a host other than localhost?)"))
}

/// The local path of a `file:` URL: its path's bytes percent-decoded, exactly what
/// [`file_uri`] encoded; `None` for a host other than `localhost`.
pub(crate) fn local_path(url: &Url) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    if !matches!(url.host_str(), None | Some("") | Some("localhost")) {
        return None;
    }
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(url.path()).collect();
    Some(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
}

/// A symbolic link under a listed `file://` root that was not followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLink {
    /// The link's path under the root.
    pub path: ObjectPath,
    /// Why it was not followed.
    pub reason: SkipReason,
}

/// Why a symbolic link was not followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    /// It resolves to something outside the listed root.
    #[error("leads outside the input root")]
    Outside,
    /// It resolves to nothing.
    #[error("leads nowhere")]
    Dangling,
    /// It leads to a directory that contains it.
    #[error("leads round in a loop")]
    Loop,
}

/// The files under `root` (or `root` itself if it is a file), with their paths under `root`.
///
/// Symbolic links are followed (to files and directories) when they resolve inside `root`;
/// links leading out of `root`, nowhere, or to a directory that contains them are not, and
/// are returned as [`SkippedLink`]s. A name that is not UTF-8 is an error naming the file.
pub(crate) fn list(uri: &str, root: &Path) -> Result<Listing, ArtifactError> {
    let meta = std::fs::metadata(root).map_err(|e| ArtifactError::io(uri, root, e))?;
    let mut listing = Listing::default();
    if meta.is_file() {
        let name = root.file_name().map(Path::new).unwrap_or(root);
        let path = ObjectPath::from_relative(name).map_err(|e| not_utf8(uri, root, e))?;
        listing.objects.push(ListedObject { path, uri: file_uri(root), size: Some(meta.len()) });
        return Ok(listing);
    }
    let real_root = root.canonicalize().map_err(|e| ArtifactError::io(uri, root, e))?;
    let mut walk = Walk { uri, root, real_root: &real_root, listing: &mut listing, open: vec![real_root.clone()] };
    walk.dir(root)?;
    listing.skipped_links.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(listing)
}

/// One listing's walk: the directories open on the way down (resolved), to see loops.
struct Walk<'a> {
    uri: &'a str,
    root: &'a Path,
    real_root: &'a Path,
    listing: &'a mut Listing,
    open: Vec<PathBuf>,
}

impl Walk<'_> {
    fn dir(&mut self, dir: &Path) -> Result<(), ArtifactError> {
        let io = |path: &Path| {
            let (uri, path) = (self.uri.to_owned(), path.to_path_buf());
            move |source| ArtifactError::Io { uri, path, source }
        };
        let mut entries: Vec<std::fs::DirEntry> =
            std::fs::read_dir(dir).map_err(io(dir))?.collect::<Result<_, _>>().map_err(io(dir))?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let path = entry.path();
            let file_type = entry.file_type().map_err(io(&path))?;
            if file_type.is_file() {
                let size = entry.metadata().map_err(io(&path))?.len();
                self.object(&path, size)?;
            } else if file_type.is_dir() {
                let real = path.canonicalize().map_err(io(&path))?;
                self.open.push(real);
                self.dir(&path)?;
                self.open.pop();
            } else if file_type.is_symlink() {
                self.link(&path)?;
            }
        }
        Ok(())
    }

    fn link(&mut self, link: &Path) -> Result<(), ArtifactError> {
        let target = link.canonicalize().ok();
        let meta = target.as_deref().and_then(|t| std::fs::metadata(t).ok());
        let reason = match (&target, &meta) {
            (Some(target), Some(_)) if !target.starts_with(self.real_root) => Some(SkipReason::Outside),
            (Some(target), Some(meta)) if meta.is_dir() && self.open.contains(target) => Some(SkipReason::Loop),
            (Some(_), Some(_)) => None,
            _ => Some(SkipReason::Dangling),
        };
        if let Some(reason) = reason {
            let path = self.path_of(link)?;
            tracing::debug!(path = %link.display(), %reason, "skipping a symlink");
            self.listing.skipped_links.push(SkippedLink { path, reason });
            return Ok(());
        }
        let (Some(target), Some(meta)) = (target, meta) else { return Ok(()) };
        if meta.is_dir() {
            self.open.push(target);
            self.dir(link)?;
            self.open.pop();
        } else if meta.is_file() {
            self.object(link, meta.len())?;
        }
        Ok(())
    }

    fn object(&mut self, file: &Path, size: u64) -> Result<(), ArtifactError> {
        let path = self.path_of(file)?;
        self.listing.objects.push(ListedObject { path, uri: file_uri(file), size: Some(size) });
        Ok(())
    }

    fn path_of(&self, file: &Path) -> Result<ObjectPath, ArtifactError> {
        match ObjectPath::below(self.root, file) {
            Some(Ok(path)) => Ok(path),
            Some(Err(e)) => Err(not_utf8(self.uri, file, e)),
            None => Err(ArtifactError::io(self.uri, file, std::io::Error::other("not under the listed root"))),
        }
    }
}

/// A file whose name is not an object path (not UTF-8), named.
fn not_utf8(uri: &str, path: &Path, error: InvalidObjectPath) -> ArtifactError {
    let problem = match error {
        InvalidObjectPath::NotUtf8(_) => "file name is not UTF-8".to_owned(),
        other => other.to_string(),
    };
    ArtifactError::io(uri, path, std::io::Error::new(std::io::ErrorKind::InvalidData, problem))
}

/// Files up to this size are copied in place; larger ones on the blocking pool, so that a long
/// copy never stalls the caller's other tasks.
const INLINE_COPY_MAX: u64 = 4 << 20;

/// Copies the file `src` to `dest` (creating its parents) through a part file beside it
/// (`std::fs::copy` uses the kernel's copy); returns its size. `reuse`, a file of no more
/// use on the same filesystem, is the part file when given (`std::fs::copy` truncates and
/// writes an existing file in place), then renamed to `dest`.
pub(crate) async fn copy(uri: &str, src: &Path, dest: &Path, reuse: Option<&Path>) -> Result<u64, ArtifactError> {
    let size = std::fs::metadata(src).map_err(|e| ArtifactError::io(uri, src, e))?.len();
    if size <= INLINE_COPY_MAX {
        return copy_blocking(uri, src, dest, reuse);
    }
    let (src, dest, reuse) = (src.to_path_buf(), dest.to_path_buf(), reuse.map(Path::to_path_buf));
    let task_uri = uri.to_string();
    tokio::task::spawn_blocking(move || copy_blocking(&task_uri, &src, &dest, reuse.as_deref()))
        .await
        .map_err(|e| ArtifactError::io(uri, Path::new(""), std::io::Error::other(e)))?
}

fn copy_blocking(uri: &str, src: &Path, dest: &Path, reuse: Option<&Path>) -> Result<u64, ArtifactError> {
    let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        std::fs::create_dir_all(parent).map_err(|e| ArtifactError::io(uri, parent, e))?;
    }
    // A file to write again is itself the part file: it only takes `dest`'s name once written.
    let fresh = || super::part_file::part_path(parent, dest);
    let mut part = reuse.map_or_else(fresh, Path::to_path_buf);
    let mut copied = std::fs::copy(src, &part);
    if copied.is_err() && reuse.is_some() {
        let _ = std::fs::remove_file(&part);
        part = fresh();
        copied = std::fs::copy(src, &part);
    }
    let copied = copied.map_err(|e| ArtifactError::io(uri, src, e));
    let renamed = copied
        .and_then(|size| std::fs::rename(&part, dest).map(|()| size).map_err(|e| ArtifactError::io(uri, dest, e)));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    renamed
}
#[cfg(test)]
mod uri_tests {
    use super::*;

    #[test]
    fn a_path_comes_back_from_its_uri_byte_for_byte() {
        for path in ["/tmp/in/a:", "/tmp/in/-ß_s:", "/d/a b#?%41\n\t/x", "/", "/C:/x"] {
            let uri = file_uri(Path::new(path));
            assert_eq!(file_path(&uri).unwrap(), Path::new(path), "{uri}");
        }
        assert_eq!(file_uri(Path::new("/tmp/in/a:")), "file:///tmp/in/a%3A");
        assert!(file_path("file://otherhost/x").is_err());
        assert_eq!(file_path("file://localhost/x%20y").unwrap(), Path::new("/x y"));
    }
}
