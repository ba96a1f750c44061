//! The services a `concurrent run` uses: those named by the environment, or children.

use std::path::Path;

use concurrent_mlflow::tracking::MlflowClient;

use super::EXIT_SERVICE;
use crate::nats_probe::probe_nats;
use crate::services::{ChildService, ServiceError, log_tail, start_mlflow, start_nats};

/// `NATS_URL`, when set and not empty.
pub fn nats_url_from_env() -> Option<String> {
    std::env::var("NATS_URL").ok().filter(|url| !url.is_empty())
}

/// Checks the services the environment or the flags name, before anything is created: a
/// `NATS_URL` that does not resolve, refuses or is not NATS, and a tracking URI that is not an
/// MLflow server, exit 3 naming the URL and the cause.
pub async fn check_named_services(tracking: &TrackingChoice, experiment: &str) -> Result<(), u8> {
    let nats = async {
        match nats_url_from_env() {
            Some(url) => probe_nats(&url).await.map_err(|error| error.to_string()),
            None => Ok(()),
        }
    };
    let mlflow = async {
        let TrackingChoice::Server(uri) = tracking else { return Ok(()) };
        let client = MlflowClient::new(uri).map_err(|error| format!("tracking URI {error}"))?;
        client.check_server(experiment).await.map_err(|error| {
            if error.is_not_mlflow() {
                format!("tracking URI {} is not an MLflow tracking server ({error})", client.tracking_uri())
            } else {
                format!("tracking URI {}: {error}", client.tracking_uri())
            }
        })
    };
    let (nats, mlflow) = tokio::join!(nats, mlflow);
    let errors: Vec<String> = [nats, mlflow].into_iter().filter_map(Result::err).collect();
    for error in &errors {
        say!("error: {error}");
    }
    if errors.is_empty() { Ok(()) } else { Err(EXIT_SERVICE) }
}

/// How MLflow is used by a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackingChoice {
    /// `--tracking none`.
    Off,
    /// A running server (`--tracking URI` or `MLFLOW_TRACKING_URI`).
    Server(String),
    /// An `mlflow server` started for the run.
    Child,
}

impl TrackingChoice {
    /// From the `--tracking` flag and the environment.
    pub fn from_flag(flag: Option<&str>) -> TrackingChoice {
        match flag {
            Some("none") => TrackingChoice::Off,
            Some(uri) => TrackingChoice::Server(uri.to_string()),
            None => match std::env::var("MLFLOW_TRACKING_URI") {
                Ok(uri) if !uri.is_empty() => TrackingChoice::Server(uri),
                _ => TrackingChoice::Child,
            },
        }
    }
}

/// NATS and MLflow for one run, with the children to stop at the end.
pub struct Services {
    pub nats_url: String,
    pub tracking_uri: Option<String>,
    /// Where a child MLflow keeps its runs (to print how to browse them).
    pub mlflow_dir: Option<std::path::PathBuf>,
    children: Vec<ChildService>,
    /// `<state dir>/services.json`: where `concurrent cancel` finds the NATS server.
    record: std::path::PathBuf,
}

/// What `<state dir>/services.json` holds while a scheduler runs.
#[derive(serde::Serialize, serde::Deserialize)]
struct ServicesRecord {
    nats_url: String,
    pid: u32,
}

/// The NATS URL of the scheduler running on `state_dir`, if one recorded it.
pub fn recorded_nats_url(state_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(state_dir.join("services.json")).ok()?;
    serde_json::from_str::<ServicesRecord>(&text).ok().map(|record| record.nats_url)
}

impl Services {
    /// Uses `NATS_URL` or starts `nats-server`; uses or starts MLflow as chosen; both at once.
    pub async fn start(state_dir: &Path, tracking: &TrackingChoice) -> Result<Services, ServiceError> {
        let nats = async {
            match nats_url_from_env() {
                Some(url) => Ok((url, None)),
                None => start_nats(&state_dir.join("nats")).await.map(|child| (child.url.clone(), Some(child))),
            }
        };
        let mlflow_dir = state_dir.join("mlflow");
        let mlflow = async {
            match tracking {
                TrackingChoice::Off => Ok((None, None)),
                TrackingChoice::Server(uri) => Ok((Some(uri.clone()), None)),
                TrackingChoice::Child => start_mlflow(&mlflow_dir).await.map(|c| (Some(c.url.clone()), Some(c))),
            }
        };
        let (nats, mlflow) = tokio::join!(nats, mlflow);
        let mut children = Vec::new();
        let (nats_url, nats_child) = match nats {
            Ok(started) => started,
            Err(error) => {
                if let Ok((_, Some(child))) = mlflow {
                    child.stop().await;
                }
                return Err(error);
            }
        };
        children.extend(nats_child);
        let (tracking_uri, mlflow_child) = match mlflow {
            Ok(started) => started,
            Err(error) => {
                for child in children {
                    child.stop().await;
                }
                return Err(error);
            }
        };
        let mlflow_dir = mlflow_child.is_some().then_some(mlflow_dir);
        children.extend(mlflow_child);
        let record = state_dir.join("services.json");
        let text = serde_json::to_string(&ServicesRecord { nats_url: nats_url.clone(), pid: std::process::id() })
            .expect("plain data");
        if let Err(error) = std::fs::create_dir_all(state_dir).and_then(|()| std::fs::write(&record, text)) {
            tracing::warn!(%error, "cannot write {}", record.display());
        }
        Ok(Services { nats_url, tracking_uri, mlflow_dir, children, record })
    }

    /// Shows the end of each child's log: what nats-server or MLflow said often explains why
    /// a run could not go on.
    pub fn explain_failure(&self) {
        for child in &self.children {
            say!("the end of {}:\n{}", child.log.display(), log_tail(&child.log));
        }
    }

    /// Stops the children this run started.
    pub async fn stop(self) {
        let _ = std::fs::remove_file(&self.record);
        for child in self.children {
            child.stop().await;
        }
    }
}
