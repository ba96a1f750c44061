//! Where artifacts live: parsing `mlflow-artifacts:`, `runs:/` and object-store URIs, and
//! joining relative artifact paths onto them.
//!
//! Paths inside `mlflow-artifacts:` and `runs:/` URIs are raw (not percent-encoded), as MLflow
//! writes them; they are encoded only when put into an HTTP request (see `object_path::proxy`).

use std::path::PathBuf;

use url::Url;

use super::error::MlflowError;
use crate::object_path::{ObjectPath, url_segment};

/// The store behind an artifact URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactLocation {
    /// The tracking server's artifact proxy (`mlflow-artifacts:[//host:port]/path`).
    Proxy {
        /// `host[:port]` when the URI names a server other than the tracking server.
        authority: Option<String>,
        /// Path under the proxy's root (`None` for the root itself).
        path: Option<ObjectPath>,
    },
    /// A local directory or file (`file://` or an absolute path), read and written as files.
    Local(PathBuf),
    /// An object store reached directly: `s3://`, `gs://`, Azure.
    Store(Url),
}

/// A `runs:/<run_id>/<path>` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunsUri {
    /// The run.
    pub run_id: String,
    /// Path under the run's artifact root (`None` for the root).
    pub path: Option<ObjectPath>,
}

/// Schemes of object stores reached through `object_store`.
pub(crate) const STORE_SCHEMES: [&str; 8] = ["s3", "s3a", "gs", "az", "adl", "azure", "abfs", "abfss"];

/// Parses a run's `artifact_uri` (or any URI under it).
pub fn parse_artifact_uri(uri: &str) -> Result<ArtifactLocation, MlflowError> {
    if let Some(rest) = uri.strip_prefix("mlflow-artifacts:") {
        let (authority, path) = match rest.strip_prefix("//") {
            Some(after) => {
                let (host, path) = after.split_once('/').unwrap_or((after, ""));
                let host = (!host.is_empty()).then(|| host.to_owned());
                (host, path)
            }
            None => (None, rest),
        };
        let path = artifact_path(uri, path)?;
        return Ok(ArtifactLocation::Proxy { authority, path });
    }
    if uri.starts_with('/') {
        return Ok(ArtifactLocation::Local(PathBuf::from(uri)));
    }
    let url = Url::parse(uri).map_err(|e| MlflowError::invalid_uri(uri, e.to_string()))?;
    if url.scheme() == "file" {
        let path = crate::artifacts::local_path(&url)
            .ok_or_else(|| MlflowError::invalid_uri(uri, "not a local path (a host other than localhost?)"))?;
        return Ok(ArtifactLocation::Local(path));
    }
    if STORE_SCHEMES.contains(&url.scheme()) {
        return Ok(ArtifactLocation::Store(url));
    }
    Err(MlflowError::invalid_uri(
        uri,
        "unsupported artifact URI (expected mlflow-artifacts:, s3://, gs://, az://, abfss:// or file://)",
    ))
}

/// Parses `runs:/<run_id>[/<path>]`.
pub fn parse_runs_uri(uri: &str) -> Result<RunsUri, MlflowError> {
    let rest =
        uri.strip_prefix("runs:/").ok_or_else(|| MlflowError::invalid_uri(uri, "expected runs:/<run_id>/<path>"))?;
    let rest = rest.trim_start_matches('/');
    let (run_id, path) = rest.split_once('/').unwrap_or((rest, ""));
    if run_id.is_empty() || !run_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(MlflowError::invalid_uri(uri, "missing or malformed run id"));
    }
    Ok(RunsUri { run_id: run_id.to_owned(), path: artifact_path(uri, path)? })
}

/// `root` + `/` + `rel`, for an artifact URI of any kind. Paths in `mlflow-artifacts:`,
/// `runs:/` URIs and absolute paths are raw, as MLflow writes them; in URLs (`file://`,
/// `s3://`, …) each segment is percent-encoded, and decoded again when the URL is read.
pub fn join_artifact_uri(root: &str, rel: &ObjectPath) -> Result<String, MlflowError> {
    if root.starts_with("mlflow-artifacts:") || root.starts_with("runs:/") || root.starts_with('/') {
        return Ok(format!("{}/{rel}", root.trim_end_matches('/')));
    }
    let url = Url::parse(root).map_err(|e| MlflowError::invalid_uri(root, e.to_string()))?;
    let joined = url_segment::with_segments(&url, rel.segments())
        .ok_or_else(|| MlflowError::invalid_uri(root, "cannot hold a path"))?;
    Ok(joined.into())
}

/// `root` + `/` + `rel` when there is a `rel`.
pub fn join_optional_uri(root: &str, rel: Option<&ObjectPath>) -> Result<String, MlflowError> {
    match rel {
        Some(rel) => join_artifact_uri(root, rel),
        None => Ok(root.trim_end_matches('/').to_owned()),
    }
}

/// The raw artifact path in a URI: `/` trimmed at both ends, `None` when nothing is left;
/// an empty, `.` or `..` segment in between is an error naming the URI.
pub(crate) fn artifact_path(uri: &str, path: &str) -> Result<Option<ObjectPath>, MlflowError> {
    let path = path.trim_matches('/');
    if path.is_empty() {
        return Ok(None);
    }
    ObjectPath::parse(path).map(Some).map_err(|e| MlflowError::invalid_uri(uri, e.to_string()))
}

/// The URL of `segments` (raw, each percent-encoded here) appended to `base`'s path.
pub(crate) fn url_with_segments<'a>(base: &Url, segments: impl IntoIterator<Item = &'a str>) -> Url {
    url_segment::with_segments(base, segments).unwrap_or_else(|| base.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(path: &str) -> ObjectPath {
        ObjectPath::parse(path).unwrap()
    }

    #[test]
    fn proxy_uris() {
        assert_eq!(
            parse_artifact_uri("mlflow-artifacts:/1/abc/artifacts/").unwrap(),
            ArtifactLocation::Proxy { authority: None, path: Some(op("1/abc/artifacts")) }
        );
        assert_eq!(
            parse_artifact_uri("mlflow-artifacts://h:5000/1/a b/ü").unwrap(),
            ArtifactLocation::Proxy { authority: Some("h:5000".into()), path: Some(op("1/a b/ü")) }
        );
        assert!(parse_artifact_uri("mlflow-artifacts:/1/../x").is_err());
    }

    #[test]
    fn store_uris() {
        for uri in ["s3://b/p/artifacts", "gs://b/p", "az://c/p", "abfss://c@a.dfs.core.windows.net/p"] {
            assert!(matches!(parse_artifact_uri(uri).unwrap(), ArtifactLocation::Store(_)), "{uri}");
        }
        assert_eq!(parse_artifact_uri("/tmp/my runs/a").unwrap(), ArtifactLocation::Local("/tmp/my runs/a".into()));
        assert_eq!(
            parse_artifact_uri("file:///tmp/my%20runs/a%0Ab%23").unwrap(),
            ArtifactLocation::Local("/tmp/my runs/a\nb#".into())
        );
        assert!(parse_artifact_uri("ftp://x/y").is_err());
        assert!(parse_artifact_uri("not a uri").is_err());
    }

    #[test]
    fn runs_uris() {
        assert_eq!(
            parse_runs_uri("runs:/abc123/outputs/a b.txt").unwrap(),
            RunsUri { run_id: "abc123".into(), path: Some(op("outputs/a b.txt")) }
        );
        assert_eq!(parse_runs_uri("runs:/abc").unwrap().path, None);
        assert!(parse_runs_uri("runs:/").is_err());
        assert!(parse_runs_uri("runs:/a?b/x").is_err());
        assert!(parse_runs_uri("run:/a/x").is_err());
        assert!(parse_runs_uri("runs:/a/../x").is_err());
    }

    #[test]
    fn joining() {
        assert_eq!(
            join_artifact_uri("mlflow-artifacts:/1/r/artifacts", &op("a/b c")).unwrap(),
            "mlflow-artifacts:/1/r/artifacts/a/b c"
        );
        assert_eq!(join_artifact_uri("s3://b/r/artifacts/", &op("x/y #1")).unwrap(), "s3://b/r/artifacts/x/y%20%231");
        let file = join_artifact_uri("file:///a%20b/r", &op("n\nl/%41 #?")).unwrap();
        assert_eq!(file, "file:///a%20b/r/n%0Al/%2541%20%23%3F");
        assert_eq!(parse_artifact_uri(&file).unwrap(), ArtifactLocation::Local("/a b/r/n\nl/%41 #?".into()));
        assert_eq!(join_optional_uri("runs:/r/", None).unwrap(), "runs:/r");
    }

    #[test]
    fn segments_are_percent_encoded() {
        let base = Url::parse("http://h:1/prefix/").unwrap();
        let url = url_with_segments(&base, ["api", "a b#?", "ü%"]);
        assert_eq!(url.as_str(), "http://h:1/prefix/api/a%20b%23%3F/%C3%BC%25");
    }
}
