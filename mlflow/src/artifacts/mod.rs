//! Listing and fetching artifacts by URI: `file://`, `s3://`, `gs://`, `az://`, `http(s)://`
//! (through `object_store`), and `mlflow-artifacts:`/`runs:/` (through the tracking server).
//!
//! [`list`] gives every object under a URI with its path relative to that URI, sorted (and
//! the symbolic links it skipped); [`fetch`] copies one object to a local file (through a part
//! file renamed when complete).

mod error;
mod local;
pub(crate) mod part_file;
pub(crate) mod store;

use std::path::Path;
use std::sync::OnceLock;

use object_store::ObjectStoreExt;
use url::Url;

pub use error::ArtifactError;
pub(crate) use local::copy as copy_file;
pub(crate) use local::local_path;
pub use local::{SkipReason, SkippedLink, file_path, file_uri};

use crate::object_path::ObjectPath;
use crate::object_path::store_key::from_store_key;
use crate::tracking::{MlflowClient, join_artifact_uri};
use part_file::PartFile;

/// What is under a listed URI.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Listing {
    /// The objects, sorted by path.
    pub objects: Vec<ListedObject>,
    /// Symbolic links under a `file://` root that were not followed (they lead outside the
    /// root, nowhere, or round in a loop), sorted by path.
    pub skipped_links: Vec<SkippedLink>,
}

/// One object found under a listed URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// Path relative to the listed root (the file name when the root is a file).
    pub path: ObjectPath,
    /// Absolute URI of the object.
    pub uri: String,
    /// Size in bytes, when known.
    pub size: Option<u64>,
}

/// The kinds of URI this module understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Mlflow,
    Store,
    Http,
}

fn kind(uri: &str) -> Result<Kind, ArtifactError> {
    if uri.starts_with("mlflow-artifacts:") || uri.starts_with("runs:") {
        return Ok(Kind::Mlflow);
    }
    let scheme = uri.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("file") => Ok(Kind::File),
        Some("s3" | "s3a" | "gs" | "az" | "adl" | "azure" | "abfs" | "abfss") => Ok(Kind::Store),
        Some("http" | "https") => Ok(Kind::Http),
        _ => Err(ArtifactError::invalid(
            uri,
            "unsupported URI (expected file://, s3://, gs://, az://, http(s)://, mlflow-artifacts: or runs:/)",
        )),
    }
}

/// Every object under `uri` (a directory tree, prefix, or one object), sorted by path.
///
/// Object URIs under a `runs:/` URI are given as the run's artifact location (e.g.
/// `mlflow-artifacts:/…`), so that fetching them needs no further lookup.
///
/// `mlflow` is needed for `mlflow-artifacts:` and `runs:/` URIs.
pub async fn list(uri: &str, mlflow: Option<&MlflowClient>) -> Result<Listing, ArtifactError> {
    let mut objects = match kind(uri)? {
        Kind::File => {
            let root = file_path(uri)?;
            let owned = uri.to_owned();
            let mut listing = tokio::task::spawn_blocking(move || local::list(&owned, &root))
                .await
                .map_err(|e| ArtifactError::invalid(uri, format!("listing task failed: {e}")))??;
            listing.objects.sort_by(|a, b| a.path.cmp(&b.path));
            return Ok(listing);
        }
        Kind::Mlflow => {
            let client = mlflow.ok_or_else(|| ArtifactError::NeedsTracking { uri: uri.to_owned() })?;
            // Resolve `runs:/` once, so fetching each object needs no `runs/get`.
            let root = client.resolve(uri).await.map_err(|e| ArtifactError::mlflow(uri, e))?;
            let entries =
                client.list_artifacts_recursive(&root, None).await.map_err(|e| ArtifactError::mlflow(uri, e))?;
            let mut objects = Vec::with_capacity(entries.len());
            for entry in entries {
                let object_uri = join_artifact_uri(&root, &entry.path).map_err(|e| ArtifactError::mlflow(uri, e))?;
                objects.push(ListedObject { path: entry.path, uri: object_uri, size: entry.size });
            }
            objects
        }
        Kind::Store | Kind::Http => list_store(uri).await?,
    };
    objects.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Listing { objects, skipped_links: Vec::new() })
}

/// Lists a prefix of an object store; a URI naming one object gives that object.
async fn list_store(uri: &str) -> Result<Vec<ListedObject>, ArtifactError> {
    let url = Url::parse(uri).map_err(|e| ArtifactError::invalid(uri, e.to_string()))?;
    let (store, prefix) = store::open(&url).map_err(|e| ArtifactError::store(uri, e))?;
    let listed = store::list_recursive(store.as_ref(), &prefix).await;
    let listed = match listed {
        Ok(listed) => listed,
        // Plain HTTP servers rarely support listing (WebDAV): treat the URI as one object.
        Err(_) if url.scheme().starts_with("http") => Vec::new(),
        Err(e) => return Err(ArtifactError::store(uri, e)),
    };
    if listed.is_empty() {
        // Not a prefix of anything: maybe the URI names a single object.
        let name = prefix.filename().and_then(|name| ObjectPath::parse(name).ok());
        return match store.head(&prefix).await {
            Ok(meta) => Ok(name
                .map(|path| ListedObject { path, uri: uri.to_owned(), size: Some(meta.size) })
                .into_iter()
                .collect()),
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(ArtifactError::store(uri, e)),
        };
    }
    let mut objects = Vec::with_capacity(listed.len());
    for meta in listed {
        let Some(path) = from_store_key(&prefix, &meta.location) else {
            continue;
        };
        let object_uri = join_artifact_uri(uri, &path).map_err(|e| ArtifactError::mlflow(uri, e))?;
        objects.push(ListedObject { path, uri: object_uri, size: Some(meta.size) });
    }
    Ok(objects)
}

/// Copies the object at `uri` to `dest` (creating parent directories); returns its size.
///
/// `mlflow` is needed for `mlflow-artifacts:` and `runs:/` URIs.
pub async fn fetch(uri: &str, dest: &Path, mlflow: Option<&MlflowClient>) -> Result<u64, ArtifactError> {
    fetch_reusing(uri, dest, mlflow, None).await
}

/// [`fetch`], writing a `file://` object into `reuse` (a file of no more use on `dest`'s
/// filesystem, which is moved into place) rather than into a new file. Creating and removing
/// a file per object costs some filesystems (ext4 without a journal) an inode search that
/// grows with every file removed recently; a file written again costs none. `reuse` is left
/// alone for other objects.
pub async fn fetch_reusing(
    uri: &str,
    dest: &Path,
    mlflow: Option<&MlflowClient>,
    reuse: Option<&Path>,
) -> Result<u64, ArtifactError> {
    match kind(uri)? {
        Kind::File => local::copy(uri, &file_path(uri)?, dest, reuse).await,
        Kind::Mlflow => {
            let client = mlflow.ok_or_else(|| ArtifactError::NeedsTracking { uri: uri.to_owned() })?;
            client.download(uri, dest).await.map_err(|e| ArtifactError::mlflow(uri, e))
        }
        Kind::Store => {
            let url = Url::parse(uri).map_err(|e| ArtifactError::invalid(uri, e.to_string()))?;
            let (store, path) = store::open(&url).map_err(|e| ArtifactError::store(uri, e))?;
            store::download(store.as_ref(), &path, dest).await.map_err(|e| match e {
                store::TransferError::Store(e) => ArtifactError::store(uri, e),
                store::TransferError::Io(e) => ArtifactError::io(uri, dest, e),
            })
        }
        Kind::Http => fetch_http(uri, dest).await,
    }
}

/// GETs `uri` into `dest`.
async fn fetch_http(uri: &str, dest: &Path) -> Result<u64, ArtifactError> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    let client = CLIENT.get_or_init(reqwest::Client::new);
    let http_err = |source: reqwest::Error| ArtifactError::Http { uri: uri.to_owned(), source: source.without_url() };
    let mut response = client.get(uri).send().await.map_err(http_err)?;
    if !response.status().is_success() {
        return Err(ArtifactError::HttpStatus { uri: uri.to_owned(), status: response.status().as_u16() });
    }
    let mut part = PartFile::create(dest).await.map_err(|e| ArtifactError::io(uri, dest, e))?;
    while let Some(chunk) = response.chunk().await.map_err(http_err)? {
        part.write(&chunk).await.map_err(|e| ArtifactError::io(uri, dest, e))?;
    }
    part.commit().await.map_err(|e| ArtifactError::io(uri, dest, e))
}

#[cfg(test)]
mod names_tests;
#[cfg(test)]
mod tests;
