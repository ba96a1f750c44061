//! [`ArtifactError`]: why listing or fetching an input URI failed; always names the URI.

use std::path::PathBuf;

use crate::tracking::MlflowError;

/// Why an artifact URI could not be listed or fetched. Messages name the URI, never secrets.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The URI is malformed or of an unsupported kind.
    #[error("{uri}: {problem}")]
    InvalidUri {
        /// The URI.
        uri: String,
        /// What is wrong.
        problem: String,
    },
    /// A `mlflow-artifacts:` or `runs:/` URI, but no MLflow client was given.
    #[error("{uri}: needs an MLflow tracking server (set MLFLOW_TRACKING_URI)")]
    NeedsTracking {
        /// The URI.
        uri: String,
    },
    /// A local file could not be read or written.
    #[error("{uri}: {path}: {source}")]
    Io {
        /// The URI being listed or fetched.
        uri: String,
        /// The local path that failed.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The object store failed.
    #[error("{uri}: {source}")]
    Store {
        /// The URI.
        uri: String,
        /// The object store error.
        #[source]
        source: object_store::Error,
    },
    /// The MLflow tracking server or its artifact proxy failed.
    #[error("{uri}: {source}")]
    Mlflow {
        /// The URI.
        uri: String,
        /// The client error.
        #[source]
        source: MlflowError,
    },
    /// An `http(s)://` request failed.
    #[error("{uri}: {source}")]
    Http {
        /// The URI.
        uri: String,
        /// The reqwest error.
        #[source]
        source: reqwest::Error,
    },
    /// An `http(s)://` server answered with an error status.
    #[error("{uri}: HTTP {status}")]
    HttpStatus {
        /// The URI.
        uri: String,
        /// The status code.
        status: u16,
    },
}

impl ArtifactError {
    /// The URI the error is about.
    pub fn uri(&self) -> &str {
        match self {
            ArtifactError::InvalidUri { uri, .. }
            | ArtifactError::NeedsTracking { uri }
            | ArtifactError::Io { uri, .. }
            | ArtifactError::Store { uri, .. }
            | ArtifactError::Mlflow { uri, .. }
            | ArtifactError::Http { uri, .. }
            | ArtifactError::HttpStatus { uri, .. } => uri,
        }
    }

    /// Whether trying again may succeed (network trouble, 429, 5xx).
    pub fn is_retryable(&self) -> bool {
        match self {
            ArtifactError::Mlflow { source, .. } => source.is_retryable(),
            ArtifactError::Http { source, .. } => source.is_connect() || source.is_timeout(),
            ArtifactError::HttpStatus { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// Whether the object does not exist (any more): a missing file, a 404, an object store's
    /// "not found". Trying again will not bring it back.
    pub fn is_gone(&self) -> bool {
        match self {
            ArtifactError::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            ArtifactError::Store { source, .. } => matches!(source, object_store::Error::NotFound { .. }),
            ArtifactError::Mlflow { source, .. } => {
                matches!(source, MlflowError::Api { status: 404, .. })
                    || matches!(source, MlflowError::Api { error_code, .. } if error_code == "RESOURCE_DOES_NOT_EXIST")
            }
            ArtifactError::HttpStatus { status, .. } => *status == 404 || *status == 410,
            _ => false,
        }
    }

    pub(crate) fn invalid(uri: &str, problem: impl Into<String>) -> ArtifactError {
        ArtifactError::InvalidUri { uri: uri.to_owned(), problem: problem.into() }
    }

    pub(crate) fn io(uri: &str, path: impl Into<PathBuf>, source: std::io::Error) -> ArtifactError {
        ArtifactError::Io { uri: uri.to_owned(), path: path.into(), source }
    }

    pub(crate) fn mlflow(uri: &str, source: MlflowError) -> ArtifactError {
        ArtifactError::Mlflow { uri: uri.to_owned(), source }
    }

    pub(crate) fn store(uri: &str, source: object_store::Error) -> ArtifactError {
        ArtifactError::Store { uri: uri.to_owned(), source }
    }
}
