//! `file://` URIs: converting between paths and URIs, listing a directory tree, copying a file.

use std::path::{Path, PathBuf};

use url::Url;

use super::ListedObject;
use super::error::ArtifactError;

/// The `file://` URI of `path` (made absolute against the current directory), percent-encoded.
pub fn file_uri(path: &Path) -> String {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map_or_else(|_| path.to_path_buf(), |cwd| cwd.join(path))
    };
    match Url::from_file_path(&absolute) {
        Ok(url) => url.into(),
        // Only a relative path fails, and the current directory is always absolute.
        Err(()) => format!("file://{}", absolute.display()),
    }
}

/// The local path of a `file://` URI (percent-decoded; host empty or `localhost`).
pub fn file_path(uri: &str) -> Result<PathBuf, ArtifactError> {
    let url = Url::parse(uri).map_err(|e| ArtifactError::invalid(uri, e.to_string()))?;
    if url.scheme() != "file" {
        return Err(ArtifactError::invalid(uri, "not a file:// URI"));
    }
    url.to_file_path().map_err(|()| ArtifactError::invalid(uri, "not a local path (a host other than localhost?)"))
}

/// The files under `root` (or `root` itself if it is a file), sorted by relative path.
///
/// Symbolic links are followed only when they resolve to a file inside `root`; links leading
/// out of `root`, and links to directories, are skipped.
pub(crate) fn list(uri: &str, root: &Path) -> Result<Vec<ListedObject>, ArtifactError> {
    let meta = std::fs::metadata(root).map_err(|e| ArtifactError::io(uri, root, e))?;
    if meta.is_file() {
        let name = root.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        return Ok(vec![ListedObject { path: name, uri: file_uri(root), size: Some(meta.len()) }]);
    }
    let real_root = root.canonicalize().map_err(|e| ArtifactError::io(uri, root, e))?;
    let mut objects = Vec::new();
    for entry in walkdir::WalkDir::new(root).follow_links(false) {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            ArtifactError::io(uri, path, e.into())
        })?;
        let size = if entry.file_type().is_file() {
            entry.metadata().map_err(|e| ArtifactError::io(uri, entry.path(), e.into()))?.len()
        } else if entry.path_is_symlink() {
            match symlinked_file_inside(entry.path(), &real_root) {
                Some(size) => size,
                None => {
                    tracing::debug!(path = %entry.path().display(), "skipping a symlink");
                    continue;
                }
            }
        } else {
            continue;
        };
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
        let Some(parts) = parts else {
            let err = std::io::Error::new(std::io::ErrorKind::InvalidData, "file name is not UTF-8");
            return Err(ArtifactError::io(uri, entry.path(), err));
        };
        objects.push(ListedObject { path: parts.join("/"), uri: file_uri(entry.path()), size: Some(size) });
    }
    objects.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(objects)
}

/// The size of the file `link` points to, if that file is inside `real_root`.
fn symlinked_file_inside(link: &Path, real_root: &Path) -> Option<u64> {
    let target = link.canonicalize().ok()?;
    let meta = std::fs::metadata(&target).ok()?;
    (meta.is_file() && target.starts_with(real_root)).then_some(meta.len())
}

/// Files up to this size are copied in place; larger ones on the blocking pool, so that a long
/// copy never stalls the caller's other tasks.
const INLINE_COPY_MAX: u64 = 4 << 20;

/// Copies the file `src` to `dest` (creating its parents) through a part file beside it
/// (`std::fs::copy` uses the kernel's copy); returns its size.
pub(crate) async fn copy(uri: &str, src: &Path, dest: &Path) -> Result<u64, ArtifactError> {
    let size = std::fs::metadata(src).map_err(|e| ArtifactError::io(uri, src, e))?.len();
    if size <= INLINE_COPY_MAX {
        return copy_blocking(uri, src, dest);
    }
    let (src, dest) = (src.to_path_buf(), dest.to_path_buf());
    let task_uri = uri.to_string();
    tokio::task::spawn_blocking(move || copy_blocking(&task_uri, &src, &dest))
        .await
        .map_err(|e| ArtifactError::io(uri, Path::new(""), std::io::Error::other(e)))?
}

fn copy_blocking(uri: &str, src: &Path, dest: &Path) -> Result<u64, ArtifactError> {
    let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| ArtifactError::io(uri, parent, e))?;
    let name = dest.file_name().map_or_else(|| "download".into(), |n| n.to_string_lossy().into_owned());
    let part = parent.join(format!(".{name}.part-{:016x}", rand::random::<u64>()));
    let copied = std::fs::copy(src, &part).map_err(|e| ArtifactError::io(uri, src, e));
    let renamed = copied
        .and_then(|size| std::fs::rename(&part, dest).map(|()| size).map_err(|e| ArtifactError::io(uri, dest, e)));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    renamed
}
