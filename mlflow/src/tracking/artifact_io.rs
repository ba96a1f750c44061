//! Run artifacts by URI: upload, list and download through the artifact proxy, as files for
//! `file://` artifact roots (the same bytes as the object's name, as MLflow lays them out),
//! or directly through the object store for `s3://`/`gs://`/Azure roots.

use std::path::{Path, PathBuf};

use futures::{StreamExt, TryStreamExt};

use super::MlflowClient;
use super::error::MlflowError;
use super::location::{ArtifactLocation, join_optional_uri, parse_artifact_uri, parse_runs_uri};
use super::types::ArtifactEntry;
use crate::artifacts::store::{self, TransferError};
use crate::artifacts::{ArtifactError, copy_file};
use crate::object_path::store_key::{from_store_key, to_store_key};
use crate::object_path::{InvalidObjectPath, ObjectPath, join_optional};

impl MlflowClient {
    /// Uploads the local file `local` as `<artifact_uri>/<rel>`; returns its size. A name the
    /// artifact store cannot hold exactly is refused ([`MlflowError::Unrepresentable`]).
    pub async fn upload_file(&self, artifact_uri: &str, rel: &ObjectPath, local: &Path) -> Result<u64, MlflowError> {
        let root = self.resolve(artifact_uri).await?;
        match parse_artifact_uri(&root)? {
            ArtifactLocation::Proxy { authority, path } => {
                let target = join_optional(path.as_ref(), Some(rel)).unwrap_or_else(|| rel.clone());
                self.proxy_upload(authority.as_deref(), &target, local).await
            }
            ArtifactLocation::Local(dir) => {
                copy_file(&root, local, &rel.to_fs_path(&dir), None).await.map_err(local_error)
            }
            ArtifactLocation::Store(url) => {
                let (store, prefix) = store::open(&url).map_err(store_error(&root))?;
                let key = to_store_key(&prefix, rel)?;
                let target = join_optional_uri(&root, Some(rel))?;
                store::upload(store, &key, local).await.map_err(transfer_error(&target, local))
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
        prefix: Option<&ObjectPath>,
        local_dir: &Path,
    ) -> Result<Vec<(ObjectPath, u64)>, MlflowError> {
        let root = self.resolve(artifact_uri).await?;
        let files = local_files(local_dir)?;
        let mut uploaded: Vec<(ObjectPath, u64)> = futures::stream::iter(files)
            .map(|(rel, path)| {
                let root = &root;
                async move {
                    let target = join_optional(prefix, Some(&rel)).unwrap_or_else(|| rel.clone());
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
    pub async fn list_artifacts(
        &self,
        artifact_uri: &str,
        path: Option<&ObjectPath>,
    ) -> Result<Vec<ArtifactEntry>, MlflowError> {
        let root = self.resolve(artifact_uri).await?;
        let mut entries: Vec<ArtifactEntry> = match parse_artifact_uri(&root)? {
            ArtifactLocation::Proxy { authority, path: root_path } => {
                let dir = join_optional(root_path.as_ref(), path);
                let listed = self.proxy_list(authority.as_deref(), dir.as_ref()).await?;
                let what = format!("listing {}", join_optional_uri(&root, path)?);
                let mut entries = Vec::with_capacity(listed.len());
                for e in listed {
                    let name = ObjectPath::parse(&e.path)
                        .map_err(|source| MlflowError::BadName { what: what.clone(), source })?;
                    entries.push(ArtifactEntry {
                        path: join_optional(path, Some(&name)).unwrap_or(name),
                        is_dir: e.is_dir,
                        // MLflow omits `file_size` when it is 0.
                        size: if e.is_dir { None } else { Some(e.file_size.unwrap_or(0)) },
                    });
                }
                entries
            }
            ArtifactLocation::Local(dir) => local_level(&dir, path)?,
            ArtifactLocation::Store(url) => {
                let (store, prefix) = store::open(&url).map_err(store_error(&root))?;
                let level = match path {
                    Some(path) => to_store_key(&prefix, path)?,
                    None => prefix.clone(),
                };
                let listed = store::list_level(store.as_ref(), &level)
                    .await
                    .map_err(store_error(&join_optional_uri(&root, path)?))?;
                let dirs = listed.common_prefixes.iter().map(|p| (p, true, None));
                let files = listed.objects.iter().map(|o| (&o.location, false, Some(o.size)));
                dirs.chain(files)
                    .filter_map(|(key, is_dir, size)| {
                        from_store_key(&prefix, key).map(|path| ArtifactEntry { path, is_dir, size })
                    })
                    .collect()
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
        path: Option<&ObjectPath>,
    ) -> Result<Vec<ArtifactEntry>, MlflowError> {
        let root = self.resolve(artifact_uri).await?;
        let mut files = Vec::new();
        match parse_artifact_uri(&root)? {
            ArtifactLocation::Store(url) => {
                let (store, prefix) = store::open(&url).map_err(store_error(&root))?;
                let under = match path {
                    Some(path) => to_store_key(&prefix, path)?,
                    None => prefix.clone(),
                };
                let listed = store::list_recursive(store.as_ref(), &under)
                    .await
                    .map_err(store_error(&join_optional_uri(&root, path)?))?;
                files.extend(listed.iter().filter_map(|o| {
                    from_store_key(&prefix, &o.location).map(|path| ArtifactEntry {
                        path,
                        is_dir: false,
                        size: Some(o.size),
                    })
                }));
            }
            ArtifactLocation::Local(dir) => {
                let under = path.map_or_else(|| dir.clone(), |p| p.to_fs_path(&dir));
                if under.exists() {
                    for (rel, file) in local_files(&under)? {
                        let size = std::fs::metadata(&file).map_err(|e| MlflowError::io(&file, e))?.len();
                        let path = join_optional(path, Some(&rel)).unwrap_or(rel);
                        files.push(ArtifactEntry { path, is_dir: false, size: Some(size) });
                    }
                }
            }
            ArtifactLocation::Proxy { .. } => {
                // The proxy lists one level per request: walk the tree level by level.
                let mut dirs = vec![path.cloned()];
                while !dirs.is_empty() {
                    let levels: Vec<Vec<ArtifactEntry>> = futures::stream::iter(dirs)
                        .map(|dir| {
                            let root = &root;
                            async move { self.list_artifacts(root, dir.as_ref()).await }
                        })
                        .buffer_unordered(self.inner.transfer_concurrency)
                        .try_collect()
                        .await?;
                    let (sub, found): (Vec<_>, Vec<_>) = levels.into_iter().flatten().partition(|e| e.is_dir);
                    files.extend(found);
                    dirs = sub.into_iter().map(|e| Some(e.path)).collect();
                }
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// Downloads one artifact (`mlflow-artifacts:/…`, `runs:/<run_id>/<path>`, or a path under
    /// a `file://` or object-store artifact root) to `dest`, through a part file renamed when
    /// complete.
    pub async fn download(&self, uri: &str, dest: &Path) -> Result<u64, MlflowError> {
        let resolved = self.resolve(uri).await?;
        match parse_artifact_uri(&resolved)? {
            ArtifactLocation::Proxy { authority, path } => {
                let path = path.ok_or_else(|| MlflowError::invalid_uri(uri, "names the artifact root, not a file"))?;
                self.proxy_download(authority.as_deref(), &path, dest).await
            }
            ArtifactLocation::Local(path) => copy_file(&resolved, &path, dest, None).await.map_err(local_error),
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
        join_optional_uri(&run.info.artifact_uri, runs.path.as_ref())
    }
}

/// The entries directly under `<dir>/<path>` (a missing directory has none).
fn local_level(dir: &Path, path: Option<&ObjectPath>) -> Result<Vec<ArtifactEntry>, MlflowError> {
    let under = path.map_or_else(|| dir.to_path_buf(), |p| p.to_fs_path(dir));
    let read = match std::fs::read_dir(&under) {
        Ok(read) => read,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(MlflowError::io(&under, e)),
    };
    let mut entries = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| MlflowError::io(&under, e))?;
        let file = entry.path();
        let name = match ObjectPath::below(&under, &file) {
            Some(Ok(name)) => name,
            Some(Err(source)) => {
                return Err(MlflowError::BadName { what: format!("listing {}", under.display()), source });
            }
            None => continue,
        };
        let meta = std::fs::metadata(&file).map_err(|e| MlflowError::io(&file, e))?;
        let path = join_optional(path, Some(&name)).unwrap_or(name);
        entries.push(ArtifactEntry { path, is_dir: meta.is_dir(), size: (!meta.is_dir()).then_some(meta.len()) });
    }
    Ok(entries)
}

/// Regular files (and links to them) under `dir`, as (path under `dir`, file), by name.
fn local_files(dir: &Path) -> Result<Vec<(ObjectPath, PathBuf)>, MlflowError> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir).min_depth(1).follow_links(false).sort_by_file_name() {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(dir).to_path_buf();
            MlflowError::io(path, e.into())
        })?;
        let is_file = entry.file_type().is_file() || (entry.path_is_symlink() && entry.path().is_file());
        if !is_file {
            continue;
        }
        let rel = match ObjectPath::below(dir, entry.path()) {
            Some(Ok(rel)) => rel,
            Some(Err(source)) => return Err(not_utf8(entry.path(), source)),
            None => continue,
        };
        files.push((rel, entry.into_path()));
    }
    Ok(files)
}

/// A local name that is not an object path (not UTF-8): an IO error naming the file.
fn not_utf8(path: &Path, source: InvalidObjectPath) -> MlflowError {
    MlflowError::io(path, std::io::Error::new(std::io::ErrorKind::InvalidData, source))
}

/// A local copy failed.
fn local_error(error: ArtifactError) -> MlflowError {
    match error {
        ArtifactError::Io { path, source, .. } => MlflowError::io(path, source),
        other => MlflowError::io(PathBuf::new(), std::io::Error::other(other)),
    }
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
    use crate::tracking::join_artifact_uri;

    fn op(path: &str) -> ObjectPath {
        ObjectPath::parse(path).unwrap()
    }

    /// A `file://` artifact root holds every name as a file of that name, as MLflow's own
    /// local artifact repository lays them out.
    #[tokio::test]
    async fn file_artifact_roots_hold_files_under_their_exact_names() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("a #1/b")).unwrap();
        std::fs::write(src.join("a #1/b/x\ny %41.txt"), b"xy").unwrap();
        std::fs::write(src.join("ü.txt"), b"top").unwrap();
        let store_dir = dir.path().join("store");
        std::fs::create_dir_all(&store_dir).unwrap();
        let root = url::Url::from_directory_path(&store_dir).unwrap().to_string();
        let client = MlflowClient::new("http://127.0.0.1:9").unwrap();

        let up = client.upload_dir(&root, Some(&op("outputs")), &src).await.unwrap();
        assert_eq!(up, [(op("a #1/b/x\ny %41.txt"), 2), (op("ü.txt"), 3)]);
        assert!(store_dir.join("outputs/a #1/b/x\ny %41.txt").is_file(), "the file has the object's name");
        let level = client.list_artifacts(&root, Some(&op("outputs"))).await.unwrap();
        let level: Vec<_> = level.iter().map(|e| (e.path.as_str(), e.is_dir)).collect();
        assert_eq!(level, [("outputs/a #1", true), ("outputs/ü.txt", false)]);
        let all = client.list_artifacts_recursive(&root, None).await.unwrap();
        let all: Vec<_> = all.iter().map(|e| (e.path.as_str(), e.size)).collect();
        assert_eq!(all, [("outputs/a #1/b/x\ny %41.txt", Some(2)), ("outputs/ü.txt", Some(3))]);
        let dest = dir.path().join("got/x.txt");
        let uri = join_artifact_uri(&root, &op("outputs/a #1/b/x\ny %41.txt")).unwrap();
        assert_eq!(client.download(&uri, &dest).await.unwrap(), 2);
        assert_eq!(std::fs::read(dest).unwrap(), b"xy");
        assert!(client.list_artifacts(&root, Some(&op("missing"))).await.unwrap().is_empty());
    }
}
