//! Object stores reached through the `object_store` crate (`s3://`, `gs://`, Azure, `http(s)://`,
//! `file://`), configured from the environment the way their SDKs are.

use std::path::Path as LocalPath;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;
use url::Url;

use super::part_file::PartFile;

/// Environment variable prefixes passed to the store builders (lowercased, as their keys).
const ENV_PREFIXES: [&str; 3] = ["AWS_", "GOOGLE_", "AZURE_"];

/// A failure moving bytes between a store and a local file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransferError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] object_store::Error),
    /// The local file failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The store holding `url` and the path of `url` in it.
pub(crate) fn open(url: &Url) -> Result<(Arc<dyn ObjectStore>, Path), object_store::Error> {
    let mut options = env_options();
    if url.scheme() == "http" {
        // A plain `http://` URL is what the user asked for.
        options.push(("allow_http".into(), "true".into()));
    }
    let (store, path) = object_store::parse_url_opts(url, options)?;
    Ok((Arc::from(store), path))
}

/// Store options from the environment; `MLFLOW_S3_ENDPOINT_URL` (MinIO and friends, as MLflow
/// reads it) becomes the S3 endpoint when `AWS_ENDPOINT_URL` is unset; an `http://` endpoint
/// is allowed as given (boto3 allows it).
fn env_options() -> Vec<(String, String)> {
    let mut options: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| ENV_PREFIXES.iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let allow_http_set = std::env::var_os("AWS_ALLOW_HTTP").is_some();
    if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL")
        && endpoint.starts_with("http://")
        && !allow_http_set
    {
        options.push(("aws_allow_http".into(), "true".into()));
    }
    if let (None, Ok(endpoint)) = (std::env::var_os("AWS_ENDPOINT_URL"), std::env::var("MLFLOW_S3_ENDPOINT_URL")) {
        if endpoint.starts_with("http://") {
            options.push(("aws_allow_http".into(), "true".into()));
        }
        options.push(("aws_endpoint".into(), endpoint));
    }
    options
}

/// Every object under `prefix` (at any depth).
pub(crate) async fn list_recursive(
    store: &dyn ObjectStore,
    prefix: &Path,
) -> Result<Vec<ObjectMeta>, object_store::Error> {
    let prefix = (!prefix.as_ref().is_empty()).then_some(prefix);
    store.list(prefix).try_collect().await
}

/// Directories (common prefixes) and objects directly under `prefix`.
pub(crate) async fn list_level(
    store: &dyn ObjectStore,
    prefix: &Path,
) -> Result<object_store::ListResult, object_store::Error> {
    let prefix = (!prefix.as_ref().is_empty()).then_some(prefix);
    store.list_with_delimiter(prefix).await
}

/// Streams the object at `path` into `dest` through a part file; returns its size.
pub(crate) async fn download(store: &dyn ObjectStore, path: &Path, dest: &LocalPath) -> Result<u64, TransferError> {
    let mut stream = store.get(path).await?.into_stream();
    let mut part = PartFile::create(dest).await?;
    while let Some(chunk) = stream.try_next().await? {
        part.write(&chunk).await?;
    }
    Ok(part.commit().await?)
}

/// Streams the local file `local` to `path` (multipart for large files); returns its size.
pub(crate) async fn upload(store: Arc<dyn ObjectStore>, path: &Path, local: &LocalPath) -> Result<u64, TransferError> {
    let mut file = tokio::fs::File::open(local).await?;
    let mut writer = object_store::buffered::BufWriter::new(store, path.clone());
    let copied = tokio::io::copy(&mut file, &mut writer).await;
    match copied {
        Ok(n) => {
            writer.shutdown().await?;
            Ok(n)
        }
        Err(err) => {
            let _ = writer.abort().await;
            Err(err.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object_path::store_key::from_store_key;

    #[tokio::test]
    async fn file_store_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.txt");
        std::fs::write(&src, b"abc").unwrap();
        let root = Url::from_directory_path(dir.path().join("store")).unwrap();
        std::fs::create_dir_all(dir.path().join("store")).unwrap();
        let (store, prefix) = open(&root).unwrap();
        let target = prefix.clone().join("sub").join("a b.txt");
        assert_eq!(upload(store.clone(), &target, &src).await.unwrap(), 3);
        let listed = list_recursive(store.as_ref(), &prefix).await.unwrap();
        let rels: Vec<_> = listed.iter().filter_map(|m| from_store_key(&prefix, &m.location)).collect();
        assert_eq!(rels, [crate::object_path::ObjectPath::parse("sub/a b.txt").unwrap()]);
        let level = list_level(store.as_ref(), &prefix).await.unwrap();
        assert_eq!(level.common_prefixes.len(), 1);
        let dest = dir.path().join("out/x.txt");
        assert_eq!(download(store.as_ref(), &target, &dest).await.unwrap(), 3);
        assert_eq!(std::fs::read(dest).unwrap(), b"abc");
    }
}
