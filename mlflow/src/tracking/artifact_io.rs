//! Run artifacts by URI: upload, list and download through the artifact proxy or, for
//! `s3://`/`gs://`/Azure/`file://` artifact roots, directly through the object store.

use std::path::{Path, PathBuf};

use futures::{StreamExt, TryStreamExt};

use super::MlflowClient;
use super::error::MlflowError;
use super::location::{ArtifactLocation, clean_path, join_artifact_uri, parse_artifact_uri, parse_runs_uri};
use super::types::ArtifactEntry;
use crate::artifacts::store::{self, TransferError};

impl MlflowClient {
    /// Uploads the local file `local` as `<artifact_uri>/<rel_path>`; returns its size.
    pub async fn upload_file(&self, artifact_uri: &str, rel_path: &str, local: &Path) -> Result<u64, MlflowError> {
        let root = self.resolve(artifact_uri).await?;
        let rel = clean_path(&root, rel_path)?;
        match parse_artifact_uri(&root)? {
            ArtifactLocation::Proxy { authority, path } => {
                self.proxy_upload(authority.as_deref(), &join(&path, &rel), local).await
            }
            ArtifactLocation::Store(url) => {
                let target = join_artifact_uri(&root, &rel)?;
                let (store, prefix) = store::open(&url).map_err(store_error(&root))?;
                store::upload(store, &child(&prefix, &rel), local).await.map_err(transfer_error(&target, local))
            }
        }
    }

    /// Uploads every file under `local_dir` to `<artifact_uri>/<prefix>/<its path>`, a few
    /// at a time; returns each file's path under `local_dir` and size, sorted by path.
    ///
    /// Symbolic links to files are uploaded as files; links to directories are not followed.
    pub async fn upload_dir(
        &self,
        artifact_uri: &str,
        prefix: &str,
        local_dir: &Path,
    ) -> Result<Vec<(String, u64)>, MlflowError> {
        let root = self.resolve(artifact_uri).await?;
        let prefix = clean_path(&root, prefix)?;
        let files = local_files(local_dir)?;
        let mut uploaded: Vec<(String, u64)> = futures::stream::iter(files)
            .map(|(rel, path)| {
                let (root, target) = (&root, join(&prefix, &rel));
                async move {
                    let size = self.upload_file(root, &target, &path).await?;
                    Ok::<_, MlflowError>((rel, size))
                }
            })
            .buffer_unordered(self.inner.transfer_concurrency)
            .try_collect()
            .await?;
        uploaded.sort();
        Ok(uploaded)
    }

    /// The entries directly under `<artifact_uri>/<path>`, paths relative to `artifact_uri`.
    pub async fn list_artifacts(&self, artifact_uri: &str, path: &str) -> Result<Vec<ArtifactEntry>, MlflowError> {
        let root = self.resolve(artifact_uri).await?;
        let rel = clean_path(&root, path)?;
        let mut entries: Vec<ArtifactEntry> = match parse_artifact_uri(&root)? {
            ArtifactLocation::Proxy { authority, path } => self
                .proxy_list(authority.as_deref(), &join(&path, &rel))
                .await?
                .into_iter()
                .map(|e| ArtifactEntry {
                    path: join(&rel, &e.path),
                    is_dir: e.is_dir,
                    // MLflow omits `file_size` when it is 0.
                    size: if e.is_dir { None } else { Some(e.file_size.unwrap_or(0)) },
                })
                .collect(),
            ArtifactLocation::Store(url) => {
                let (store, prefix) = store::open(&url).map_err(store_error(&root))?;
                let listed = store::list_level(store.as_ref(), &child(&prefix, &rel))
                    .await
                    .map_err(store_error(&join_artifact_uri(&root, &rel)?))?;
                let dirs = listed.common_prefixes.iter().map(|p| ArtifactEntry {
                    path: store::relative(&prefix, p),
                    is_dir: true,
                    size: None,
                });
                let files = listed.objects.iter().map(|o| ArtifactEntry {
                    path: store::relative(&prefix, &o.location),
                    is_dir: false,
                    size: Some(o.size),
                });
                dirs.chain(files).collect()
            }
        };
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(entries)
    }

    /// Every file at any depth under `<artifact_uri>/<path>`, paths relative to `artifact_uri`,
    /// sorted.
    pub async fn list_artifacts_recursive(
        &self,
        artifact_uri: &str,
        path: &str,
    ) -> Result<Vec<ArtifactEntry>, MlflowError> {
        let root = self.resolve(artifact_uri).await?;
        let rel = clean_path(&root, path)?;
        let mut files = Vec::new();
        if let ArtifactLocation::Store(url) = parse_artifact_uri(&root)? {
            let (store, prefix) = store::open(&url).map_err(store_error(&root))?;
            let listed = store::list_recursive(store.as_ref(), &child(&prefix, &rel))
                .await
                .map_err(store_error(&join_artifact_uri(&root, &rel)?))?;
            files.extend(listed.iter().map(|o| ArtifactEntry {
                path: store::relative(&prefix, &o.location),
                is_dir: false,
                size: Some(o.size),
            }));
        } else {
            // The proxy lists one level per request: walk the tree level by level.
            let mut dirs = vec![rel];
            while !dirs.is_empty() {
                let levels: Vec<Vec<ArtifactEntry>> = futures::stream::iter(dirs)
                    .map(|dir| {
                        let root = &root;
                        async move { self.list_artifacts(root, &dir).await }
                    })
                    .buffer_unordered(self.inner.transfer_concurrency)
                    .try_collect()
                    .await?;
                let (sub, found): (Vec<_>, Vec<_>) = levels.into_iter().flatten().partition(|e| e.is_dir);
                files.extend(found);
                dirs = sub.into_iter().map(|e| e.path).collect();
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// Downloads one artifact (`mlflow-artifacts:/…`, `runs:/<run_id>/<path>`, or a path under
    /// an object-store artifact root) to `dest`, through a part file renamed when complete.
    pub async fn download(&self, uri: &str, dest: &Path) -> Result<u64, MlflowError> {
        let resolved = self.resolve(uri).await?;
        match parse_artifact_uri(&resolved)? {
            ArtifactLocation::Proxy { authority, path } => self.proxy_download(authority.as_deref(), &path, dest).await,
            ArtifactLocation::Store(url) => {
                let (store, path) = store::open(&url).map_err(store_error(&resolved))?;
                store::download(store.as_ref(), &path, dest).await.map_err(transfer_error(&resolved, dest))
            }
        }
    }

    /// `uri` itself, or for `runs:/<run_id>/<path>` the run's artifact URI joined with path.
    pub async fn resolve(&self, uri: &str) -> Result<String, MlflowError> {
        if !uri.starts_with("runs:") {
            return Ok(uri.to_owned());
        }
        let runs = parse_runs_uri(uri)?;
        let run = self.get_run(&runs.run_id).await?;
        if run.info.artifact_uri.is_empty() {
            return Err(MlflowError::invalid_uri(uri, "the run has no artifact URI"));
        }
        join_artifact_uri(&run.info.artifact_uri, &runs.path)
    }
}

/// `a/b` from `a` and `b`, either possibly empty.
fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a}/{b}"),
    }
}

fn child(prefix: &object_store::path::Path, rel: &str) -> object_store::path::Path {
    rel.split('/').filter(|s| !s.is_empty()).fold(prefix.clone(), |p, s| p.join(s))
}

/// Regular files (and links to them) under `dir`, as (`/`-separated relative path, path).
fn local_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, MlflowError> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir).follow_links(false).sort_by_file_name() {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(dir).to_path_buf();
            MlflowError::io(path, e.into())
        })?;
        let is_file = entry.file_type().is_file() || (entry.path_is_symlink() && entry.path().is_file());
        if !is_file {
            continue;
        }
        let rel = entry.path().strip_prefix(dir).unwrap_or(entry.path());
        let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
        let rel = parts.map(|p| p.join("/")).ok_or_else(|| {
            let err = std::io::Error::new(std::io::ErrorKind::InvalidData, "file name is not UTF-8");
            MlflowError::io(entry.path(), err)
        })?;
        files.push((rel, entry.into_path()));
    }
    Ok(files)
}

fn store_error(uri: &str) -> impl FnOnce(object_store::Error) -> MlflowError + '_ {
    move |source| MlflowError::Store { uri: uri.to_owned(), source }
}

fn transfer_error<'a>(uri: &'a str, local: &'a Path) -> impl FnOnce(TransferError) -> MlflowError + 'a {
    move |err| match err {
        TransferError::Store(source) => MlflowError::Store { uri: uri.to_owned(), source },
        TransferError::Io(source) => MlflowError::io(local, source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The object-store path (as for `s3://` roots), exercised with a `file://` root.
    #[tokio::test]
    async fn store_artifact_roots_upload_list_and_download() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("a/b")).unwrap();
        std::fs::write(src.join("a/b/x y.txt"), b"xy").unwrap();
        std::fs::write(src.join("top.txt"), b"top").unwrap();
        let store_dir = dir.path().join("store");
        std::fs::create_dir_all(&store_dir).unwrap();
        let root = url::Url::from_directory_path(&store_dir).unwrap().to_string();
        let client = MlflowClient::new("http://127.0.0.1:9").unwrap();

        let up = client.upload_dir(&root, "outputs", &src).await.unwrap();
        assert_eq!(up, [("a/b/x y.txt".to_owned(), 2), ("top.txt".to_owned(), 3)]);
        let level = client.list_artifacts(&root, "outputs").await.unwrap();
        let level: Vec<_> = level.iter().map(|e| (e.path.as_str(), e.is_dir)).collect();
        assert_eq!(level, [("outputs/a", true), ("outputs/top.txt", false)]);
        let all = client.list_artifacts_recursive(&root, "").await.unwrap();
        let all: Vec<_> = all.iter().map(|e| (e.path.as_str(), e.size)).collect();
        assert_eq!(all, [("outputs/a/b/x y.txt", Some(2)), ("outputs/top.txt", Some(3))]);
        let dest = dir.path().join("got/x.txt");
        let uri = join_artifact_uri(&root, "outputs/a/b/x y.txt").unwrap();
        assert_eq!(client.download(&uri, &dest).await.unwrap(), 2);
        assert_eq!(std::fs::read(dest).unwrap(), b"xy");
    }
}
