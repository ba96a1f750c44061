//! The summary printed when a run ends, and where to browse its runs.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use super::services::Services;
use crate::driver::RunSummary;
use crate::run_state::{RunOutcome, StageStatus};

/// Appends a formatted line to a `String` (writing to a `String` cannot fail).
macro_rules! push_line {
    ($text:expr, $($arg:tt)*) => {{
        let _ = writeln!($text, $($arg)*);
    }};
}

/// Prints the summary on stdout; when stdout is gone (a closed pipe), on stderr instead, so
/// it is never lost.
/// `stopped`: the run was stopped to be resumed rather than cancelled.
pub fn print_summary(summary: &RunSummary, services: &Services, state_dir: &Path, stopped: bool) {
    let text = summary_text(summary, services, state_dir, stopped);
    let written = {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush())
    };
    if written.is_err() {
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}

/// The per-stage table, the outcome and where the runs and outputs are.
fn summary_text(summary: &RunSummary, services: &Services, state_dir: &Path, stopped: bool) -> String {
    let mut text = String::new();
    let outcome = match summary.outcome {
        Some(RunOutcome::Succeeded) => "SUCCEEDED",
        Some(RunOutcome::Failed) => "FAILED",
        None if stopped => "STOPPED",
        None => "CANCELLED",
    };
    text.push('\n');
    push_line!(text, "run {} {outcome} in {:.1} s", summary.run_id, summary.wall_s);
    push_line!(
        text,
        "{:<20} {:<10} {:>7} {:>7} {:>7} {:>9} {:>11} {:>10} {:>11} {:>9}",
        "stage",
        "status",
        "shards",
        "ok",
        "failed",
        "attempts",
        "duplicates",
        "objects in",
        "objects out",
        "time (s)"
    );
    for stage in &summary.stages {
        let status = match stage.status {
            StageStatus::Waiting => "waiting",
            StageStatus::Running => "running",
            StageStatus::Succeeded => "succeeded",
            StageStatus::Failed => "FAILED",
            StageStatus::Skipped => "skipped",
        };
        push_line!(
            text,
            "{:<20} {:<10} {:>7} {:>7} {:>7} {:>9} {:>11} {:>10} {:>11} {:>9.1}",
            stage.stage,
            status,
            stage.shards_total,
            stage.shards_succeeded,
            stage.shards_failed,
            stage.attempts,
            stage.duplicates,
            stage.objects_in,
            stage.objects_out,
            stage.duration_s
        );
    }
    match (&summary.mlflow, &services.tracking_uri, &services.mlflow_dir) {
        (Some((experiment, run)), _, Some(dir)) => {
            push_line!(text, "MLflow: experiment {experiment}, DAG run {run}. Browse the runs with:");
            push_line!(
                text,
                "  mlflow ui --backend-store-uri sqlite:///{} --artifacts-destination {}",
                dir.join("mlflow.db").display(),
                dir.join("artifacts").display()
            );
        }
        (Some((experiment, run)), Some(uri), None) => {
            push_line!(text, "MLflow: {}/#/experiments/{experiment}/runs/{run}", uri.trim_end_matches('/'));
        }
        _ => push_line!(text, "outputs: {}", state_dir.join("outputs").join(&summary.run_id).display()),
    }
    push_line!(text, "worker logs: {}", state_dir.join("logs").join(&summary.run_id).display());
    text
}
