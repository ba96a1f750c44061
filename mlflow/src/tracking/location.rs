//! Where artifacts live: parsing `mlflow-artifacts:`, `runs:/` and object-store URIs, and
//! joining relative artifact paths onto them.
//!
//! Paths inside `mlflow-artifacts:` and `runs:/` URIs are raw (not percent-encoded), as MLflow
//! writes them; they are encoded only when put into an HTTP request.

use url::Url;

use super::error::MlflowError;

/// The store behind an artifact URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactLocation {
    /// The tracking server's artifact proxy (`mlflow-artifacts:[//host:port]/path`).
    Proxy {
        /// `host[:port]` when the URI names a server other than the tracking server.
        authority: Option<String>,
        /// Path under the proxy's root, without leading or trailing `/`.
        path: String,
    },
    /// An object store reached directly: `s3://`, `gs://`, Azure, or `file://`.
    Store(Url),
}

/// A `runs:/<run_id>/<path>` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunsUri {
    /// The run.
    pub run_id: String,
    /// Path under the run's artifact root (may be empty).
    pub path: String,
}

/// Schemes of object stores reached through `object_store`.
pub(crate) const STORE_SCHEMES: [&str; 9] = ["s3", "s3a", "gs", "az", "adl", "azure", "abfs", "abfss", "file"];

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
        let path = clean_path(uri, path)?;
        return Ok(ArtifactLocation::Proxy { authority, path });
    }
    if uri.starts_with('/') {
        let url = Url::from_file_path(uri).map_err(|()| MlflowError::invalid_uri(uri, "not an absolute local path"))?;
        return Ok(ArtifactLocation::Store(url));
    }
    let url = Url::parse(uri).map_err(|e| MlflowError::invalid_uri(uri, e.to_string()))?;
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
    Ok(RunsUri { run_id: run_id.to_owned(), path: clean_path(uri, path)? })
}

/// `root` + `/` + `rel`, for an artifact URI of any kind (`rel` is a relative, raw path).
pub fn join_artifact_uri(root: &str, rel: &str) -> Result<String, MlflowError> {
    let rel = clean_path(root, rel)?;
    if rel.is_empty() {
        return Ok(root.trim_end_matches('/').to_owned());
    }
    if root.starts_with("mlflow-artifacts:") || root.starts_with("runs:/") || root.starts_with('/') {
        return Ok(format!("{}/{rel}", root.trim_end_matches('/')));
    }
    let mut url = Url::parse(root).map_err(|e| MlflowError::invalid_uri(root, e.to_string()))?;
    url.path_segments_mut()
        .map_err(|()| MlflowError::invalid_uri(root, "cannot hold a path"))?
        .pop_if_empty()
        .extend(rel.split('/'));
    Ok(url.into())
}

/// Trims `/` at both ends and rejects `..`, `.` and empty segments in between.
pub(crate) fn clean_path(uri: &str, path: &str) -> Result<String, MlflowError> {
    let path = path.trim_matches('/');
    if path.is_empty() {
        return Ok(String::new());
    }
    if path.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err(MlflowError::invalid_uri(uri, format!("artifact path '{path}' has an empty, '.' or '..' segment")));
    }
    Ok(path.to_owned())
}

/// The URL of `segments` (raw, each percent-encoded here) appended to `base`'s path.
pub(crate) fn url_with_segments<'a>(base: &Url, segments: impl IntoIterator<Item = &'a str>) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_uris() {
        assert_eq!(
            parse_artifact_uri("mlflow-artifacts:/1/abc/artifacts/").unwrap(),
            ArtifactLocation::Proxy { authority: None, path: "1/abc/artifacts".into() }
        );
        assert_eq!(
            parse_artifact_uri("mlflow-artifacts://h:5000/1/a b/ü").unwrap(),
            ArtifactLocation::Proxy { authority: Some("h:5000".into()), path: "1/a b/ü".into() }
        );
        assert!(parse_artifact_uri("mlflow-artifacts:/1/../x").is_err());
    }

    #[test]
    fn store_uris() {
        for uri in ["s3://b/p/artifacts", "gs://b/p", "az://c/p", "abfss://c@a.dfs.core.windows.net/p", "file:///tmp/a"]
        {
            assert!(matches!(parse_artifact_uri(uri).unwrap(), ArtifactLocation::Store(_)), "{uri}");
        }
        let ArtifactLocation::Store(url) = parse_artifact_uri("/tmp/my runs/a").unwrap() else {
            panic!("a local path is a store");
        };
        assert_eq!(url.as_str(), "file:///tmp/my%20runs/a");
        assert!(parse_artifact_uri("ftp://x/y").is_err());
        assert!(parse_artifact_uri("not a uri").is_err());
    }

    #[test]
    fn runs_uris() {
        assert_eq!(
            parse_runs_uri("runs:/abc123/outputs/a b.txt").unwrap(),
            RunsUri { run_id: "abc123".into(), path: "outputs/a b.txt".into() }
        );
        assert_eq!(parse_runs_uri("runs:/abc").unwrap().path, "");
        assert!(parse_runs_uri("runs:/").is_err());
        assert!(parse_runs_uri("runs:/a?b/x").is_err());
        assert!(parse_runs_uri("run:/a/x").is_err());
        assert!(parse_runs_uri("runs:/a/../x").is_err());
    }

    #[test]
    fn joining() {
        assert_eq!(
            join_artifact_uri("mlflow-artifacts:/1/r/artifacts", "a/b c").unwrap(),
            "mlflow-artifacts:/1/r/artifacts/a/b c"
        );
        assert_eq!(join_artifact_uri("s3://b/r/artifacts/", "x/y #1").unwrap(), "s3://b/r/artifacts/x/y%20%231");
        assert_eq!(join_artifact_uri("runs:/r", "").unwrap(), "runs:/r");
        assert!(join_artifact_uri("runs:/r", "../x").is_err());
    }

    #[test]
    fn segments_are_percent_encoded() {
        let base = Url::parse("http://h:1/prefix/").unwrap();
        let url = url_with_segments(&base, ["api", "a b#?", "ü%"]);
        assert_eq!(url.as_str(), "http://h:1/prefix/api/a%20b%23%3F/%C3%BC%25");
    }
}
