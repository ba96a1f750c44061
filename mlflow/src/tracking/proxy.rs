//! The tracking server's artifact proxy: `PUT`/`GET /api/2.0/mlflow-artifacts/artifacts/<path>`
//! and `GET /api/2.0/mlflow-artifacts/artifacts?path=<dir>`. Every path goes through
//! [`object_path::proxy::check`] first: a name the server would rewrite is refused.

use std::path::Path;

use bytes::BytesMut;
use reqwest::Method;
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use url::Url;

use super::MlflowClient;
use super::error::MlflowError;
use super::http::{send, transport};
use super::location::url_with_segments;
use super::retry::{Idempotency, with_retries};
use crate::artifacts::part_file::PartFile;
use crate::object_path::{self, ObjectPath};

/// Bytes read from a file per chunk of an upload body.
const UPLOAD_CHUNK: usize = 256 * 1024;

/// One entry of a proxy listing.
#[derive(Debug, Deserialize)]
pub(crate) struct ProxyEntry {
    /// Base name.
    pub(crate) path: String,
    #[serde(default)]
    pub(crate) is_dir: bool,
    #[serde(default, deserialize_with = "de_opt_u64")]
    pub(crate) file_size: Option<u64>,
}

#[derive(Deserialize)]
struct ListResponse {
    #[serde(default)]
    files: Vec<ProxyEntry>,
}

impl MlflowClient {
    /// The server the proxy path lives on: the tracking server, or `authority` with its scheme.
    fn proxy_base(&self, authority: Option<&str>) -> Result<Url, MlflowError> {
        match authority {
            None => Ok(self.inner.base.clone()),
            Some(host) => {
                let uri = format!("{}://{host}/", self.inner.base.scheme());
                Url::parse(&uri).map_err(|e| MlflowError::invalid_uri(&uri, e.to_string()))
            }
        }
    }

    /// The URL of `path` (each segment percent-encoded), once the proxy is known to keep it.
    fn proxy_url(&self, authority: Option<&str>, path: Option<&ObjectPath>) -> Result<Url, MlflowError> {
        if let Some(path) = path {
            object_path::proxy::check(path)?;
        }
        let base = self.proxy_base(authority)?;
        let segments = ["api", "2.0", "mlflow-artifacts", "artifacts"]
            .into_iter()
            .chain(path.into_iter().flat_map(|p| p.segments()));
        Ok(url_with_segments(&base, segments))
    }

    /// Streams `local` to the proxy path `path`; returns its size.
    pub(crate) async fn proxy_upload(
        &self,
        authority: Option<&str>,
        path: &ObjectPath,
        local: &Path,
    ) -> Result<u64, MlflowError> {
        let url = self.proxy_url(authority, Some(path))?;
        let what = format!("PUT {url}");
        with_retries(&self.inner.retry, &what, Idempotency::Idempotent, || async {
            let file = tokio::fs::File::open(local).await.map_err(|e| MlflowError::io(local, e))?;
            let len = file.metadata().await.map_err(|e| MlflowError::io(local, e))?.len();
            let body = reqwest::Body::wrap_stream(file_chunks(file));
            let request = self
                .request(Method::PUT, url.clone())
                .header(reqwest::header::CONTENT_LENGTH, len)
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(body);
            send(request, &what).await?;
            Ok(len)
        })
        .await
    }

    /// The entries directly under the proxy path `path` (base names).
    pub(crate) async fn proxy_list(
        &self,
        authority: Option<&str>,
        path: Option<&ObjectPath>,
    ) -> Result<Vec<ProxyEntry>, MlflowError> {
        if let Some(path) = path {
            object_path::proxy::check(path)?;
        }
        let url = self.proxy_url(authority, None)?;
        let path = path.map_or("", ObjectPath::as_str);
        let what = format!("GET {url}?path={path:?}");
        let text = with_retries(&self.inner.retry, &what, Idempotency::Idempotent, || async {
            let request =
                self.request(Method::GET, url.clone()).query(&[("path", path)]).timeout(self.inner.request_timeout);
            let response = send(request, &what).await?;
            response.text().await.map_err(|e| transport(&what, e))
        })
        .await?;
        let text = if text.trim().is_empty() { "{}" } else { &text };
        let listed: ListResponse = serde_json::from_str(text).map_err(|source| MlflowError::Decode { what, source })?;
        Ok(listed.files)
    }

    /// Streams the proxy path `path` into `dest` (through a part file); returns its size.
    pub(crate) async fn proxy_download(
        &self,
        authority: Option<&str>,
        path: &ObjectPath,
        dest: &Path,
    ) -> Result<u64, MlflowError> {
        let url = self.proxy_url(authority, Some(path))?;
        let what = format!("GET {url}");
        with_retries(&self.inner.retry, &what, Idempotency::Idempotent, || async {
            let mut response = send(self.request(Method::GET, url.clone()), &what).await?;
            let mut part = PartFile::create(dest).await.map_err(|e| MlflowError::io(dest, e))?;
            while let Some(chunk) = response.chunk().await.map_err(|e| transport(&what, e))? {
                part.write(&chunk).await.map_err(|e| MlflowError::io(dest, e))?;
            }
            part.commit().await.map_err(|e| MlflowError::io(dest, e))
        })
        .await
    }
}

/// The file's bytes as a stream of chunks.
fn file_chunks(file: tokio::fs::File) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    futures::stream::try_unfold(file, |mut file| async move {
        let mut buf = BytesMut::with_capacity(UPLOAD_CHUNK);
        let n = file.read_buf(&mut buf).await?;
        Ok((n > 0).then(|| (buf.freeze(), file)))
    })
}

fn de_opt_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Num(u64),
        Text(String),
    }
    Ok(match Option::<Size>::deserialize(d)? {
        Some(Size::Num(n)) => Some(n),
        Some(Size::Text(s)) => s.parse().ok(),
        None => None,
    })
}
