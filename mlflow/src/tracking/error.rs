//! [`MlflowError`]: every way a call to the tracking server can fail, and whether to retry it.

use std::path::PathBuf;

use crate::object_path::{InvalidObjectPath, UnrepresentableName};

/// Why a call to the MLflow tracking server (or to a run's artifact store) failed.
///
/// Messages name the request or the URI, never credentials.
#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    /// A tracking, artifact or `runs:/` URI that cannot be used.
    #[error("{uri}: {problem}")]
    InvalidUri {
        /// The URI, as given (without credentials).
        uri: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The HTTP client could not be built (e.g. TLS setup).
    #[error("cannot build the HTTP client: {source}")]
    Client {
        /// The reqwest error.
        #[source]
        source: reqwest::Error,
    },
    /// The request did not complete: connection refused or reset, timeout, broken body.
    #[error("{what}: {source}")]
    Transport {
        /// The request, e.g. `POST /api/2.0/mlflow/runs/create`.
        what: String,
        /// The reqwest error.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("{what}: HTTP {status}: {error_code}: {message}")]
    Api {
        /// The request, e.g. `GET /api/2.0/mlflow/runs/get`.
        what: String,
        /// The HTTP status code.
        status: u16,
        /// MLflow's `error_code` (e.g. `RESOURCE_DOES_NOT_EXIST`), or `HTTP_<status>` when the
        /// body is not an MLflow error.
        error_code: String,
        /// MLflow's `message`, or the start of the body.
        message: String,
    },
    /// The server at the tracking URI answered an API request the way no MLflow tracking
    /// server does: an HTTP 404, 405 or 501 without MLflow's JSON error body, or a 2xx answer
    /// that is not JSON (a web page). Never retried.
    #[error("{what}: HTTP {status}, not an MLflow answer: {answer}")]
    NotMlflow {
        /// The request.
        what: String,
        /// The HTTP status code.
        status: u16,
        /// The start of the answer.
        answer: String,
    },
    /// The server answered 2xx with a body that is not what the API promises.
    #[error("{what}: unexpected response: {source}")]
    Decode {
        /// The request.
        what: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A local file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The local path.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// An object store (`s3://`, `gs://`, `az://`, `file://` artifact URIs) failed.
    #[error("{uri}: {source}")]
    Store {
        /// The URI of the object or prefix.
        uri: String,
        /// The object store error.
        #[source]
        source: object_store::Error,
    },
    /// The experiment exists but is deleted, so runs cannot be created in it.
    #[error("experiment '{name}' is deleted; restore it in MLflow or use another name")]
    DeletedExperiment {
        /// The experiment's name.
        name: String,
    },
    /// A store cannot hold an object's name exactly (nothing was written).
    #[error(transparent)]
    Unrepresentable(#[from] UnrepresentableName),
    /// A listing gave a name that is not an object path.
    #[error("{what}: {source}")]
    BadName {
        /// The listing.
        what: String,
        /// What is wrong with the name.
        #[source]
        source: InvalidObjectPath,
    },
    /// A retryable failure persisted through the whole retry budget.
    #[error("{what}: gave up after {attempts} attempts: {source}")]
    GaveUp {
        /// The request.
        what: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last failure.
        #[source]
        source: Box<MlflowError>,
    },
}

impl MlflowError {
    /// Whether trying the same request again may succeed: connection failures, timeouts,
    /// HTTP 429 and 5xx other than 501 (Not Implemented never changes). An exhausted retry
    /// budget ([`MlflowError::GaveUp`]) and a server that is not MLflow are not retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            MlflowError::Transport { source, .. } => !(source.is_builder() || source.is_redirect()),
            MlflowError::Api { status, .. } => *status == 429 || (*status >= 500 && *status != 501),
            _ => false,
        }
    }

    /// An API answer no MLflow server gives becomes [`MlflowError::NotMlflow`]: HTTP 404,
    /// 405 or 501 without MLflow's JSON error body (MLflow answers an unknown run or
    /// experiment with `RESOURCE_DOES_NOT_EXIST`, never with a bare 404 page).
    pub(crate) fn into_not_mlflow_if_foreign(self) -> MlflowError {
        match self {
            MlflowError::Api { what, status, error_code, message }
                if matches!(status, 404 | 405 | 501) && error_code == format!("HTTP_{status}") =>
            {
                MlflowError::NotMlflow { what, status, answer: one_line(&message) }
            }
            other => other,
        }
    }

    /// Whether the server was found not to be an MLflow tracking server (looking through
    /// retries).
    pub fn is_not_mlflow(&self) -> bool {
        match self {
            MlflowError::NotMlflow { .. } => true,
            MlflowError::GaveUp { source, .. } => source.is_not_mlflow(),
            _ => false,
        }
    }

    /// Whether the request surely never reached the server (so even a non-idempotent request
    /// may be sent again): a failed connection, or HTTP 429 (rejected before processing).
    pub fn surely_not_processed(&self) -> bool {
        match self {
            MlflowError::Transport { source, .. } => source.is_connect(),
            MlflowError::Api { status, .. } => *status == 429,
            _ => false,
        }
    }

    /// MLflow's `error_code` if the server answered with an error (looking through retries).
    pub fn error_code(&self) -> Option<&str> {
        match self {
            MlflowError::Api { error_code, .. } => Some(error_code),
            MlflowError::GaveUp { source, .. } => source.error_code(),
            _ => None,
        }
    }

    /// The HTTP status if the server answered with an error (looking through retries).
    pub fn status(&self) -> Option<u16> {
        match self {
            MlflowError::Api { status, .. } => Some(*status),
            MlflowError::GaveUp { source, .. } => source.status(),
            _ => None,
        }
    }

    /// Whether this is MLflow's `RESOURCE_DOES_NOT_EXIST` (or a plain 404).
    pub fn is_not_found(&self) -> bool {
        self.error_code() == Some("RESOURCE_DOES_NOT_EXIST") || self.status() == Some(404)
    }

    /// Whether MLflow refused the request's values (`INVALID_PARAMETER_VALUE`), such as a param
    /// logged again with another value.
    pub fn is_invalid_parameter(&self) -> bool {
        self.error_code() == Some("INVALID_PARAMETER_VALUE")
    }

    pub(crate) fn invalid_uri(uri: &str, problem: impl Into<String>) -> MlflowError {
        MlflowError::InvalidUri { uri: uri.to_owned(), problem: problem.into() }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> MlflowError {
        MlflowError::Io { path: path.into(), source }
    }
}

/// The start of an answer on one line, for an error message.
pub(crate) fn one_line(text: &str) -> String {
    const KEEP: usize = 120;
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(KEEP) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None => flat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, error_code: &str) -> MlflowError {
        MlflowError::Api { what: "GET /x".into(), status, error_code: error_code.into(), message: "<html>".into() }
    }

    #[test]
    fn bare_404_405_and_501_answers_are_not_mlflow() {
        for status in [404, 405, 501] {
            let error = api(status, &format!("HTTP_{status}")).into_not_mlflow_if_foreign();
            assert!(error.is_not_mlflow(), "{error}");
            assert!(!error.is_retryable() && !error.is_not_found(), "{error}");
            assert!(error.to_string().ends_with("not an MLflow answer: <html>"), "{error}");
        }
        assert!(!api(404, "RESOURCE_DOES_NOT_EXIST").into_not_mlflow_if_foreign().is_not_mlflow());
        assert!(!api(503, "HTTP_503").into_not_mlflow_if_foreign().is_not_mlflow());
    }
}
