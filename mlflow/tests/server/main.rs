//! Integration tests of the MLflow client against a real `mlflow server` (one per binary).

mod artifacts;
mod names;
mod runs;

use concurrent_mlflow::tracking::MlflowClient;

/// A client of the shared test server.
fn client() -> MlflowClient {
    let server = concurrent_tests::mlflow_server::shared();
    MlflowClient::new(&server.uri).expect("a client of the test server")
}

/// A name no other test uses.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{prefix}-{nanos}")
}
