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
    for note in stage_notes(summary) {
        push_line!(text, "{note}");
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
            push_line!(text, "MLflow: {}", crate::run_tree::run_page(uri, experiment, run));
        }
        _ => push_line!(text, "outputs: {}", state_dir.join("outputs").join(&summary.run_id).display()),
    }
    push_line!(text, "worker logs: {}", state_dir.join("logs").join(&summary.run_id).display());
    text
}

/// Permanent failures shown per stage before the rest are counted.
const PERMANENT_SHOWN: usize = 5;

/// What the table does not say: stages that produced nothing from their inputs, and shards
/// that failed permanently (not retried) with their reasons.
pub fn stage_notes(summary: &RunSummary) -> Vec<String> {
    let mut notes = Vec::new();
    for stage in &summary.stages {
        if let Some(objects) = stage.empty_output {
            let what = format!("0 outputs from {objects} input object{}", if objects == 1 { "" } else { "s" });
            notes.push(match stage.status {
                StageStatus::Failed => format!("stage {} FAILED: {what} (fail_on_empty: true)", stage.stage),
                _ => format!("warning: stage {} succeeded with {what}", stage.stage),
            });
        }
        let permanent = &stage.permanent_failures;
        for (shard, reason) in permanent.iter().take(PERMANENT_SHOWN) {
            notes.push(format!("stage {} shard {shard} failed permanently (not retried): {reason}", stage.stage));
        }
        if permanent.len() > PERMANENT_SHOWN {
            let more = permanent.len() - PERMANENT_SHOWN;
            notes.push(format!("stage {}: {more} more shards failed permanently", stage.stage));
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::StageSummary;

    fn stage(name: &str, status: StageStatus) -> StageSummary {
        StageSummary {
            stage: name.into(),
            status,
            shards_total: 1,
            shards_succeeded: 1,
            shards_failed: 0,
            attempts: 1,
            duplicates: 0,
            objects_in: 3,
            objects_out: 0,
            duration_s: 1.0,
            mlflow_run_id: None,
            permanent_failures: Vec::new(),
            empty_output: None,
        }
    }

    fn summary(stages: Vec<StageSummary>) -> RunSummary {
        RunSummary { run_id: "r".into(), outcome: None, stages, wall_s: 1.0, mlflow: None }
    }

    #[test]
    fn empty_outputs_and_permanent_failures_are_said() {
        let mut warned = stage("thumbs", StageStatus::Succeeded);
        warned.empty_output = Some(3);
        let mut failed = stage("hist", StageStatus::Failed);
        failed.empty_output = Some(1);
        let mut permanent = stage("copy", StageStatus::Failed);
        permanent.permanent_failures = (0..7).map(|i| (i, format!("reason {i}"))).collect();
        let notes = stage_notes(&summary(vec![warned, failed, permanent, stage("quiet", StageStatus::Succeeded)]));
        assert_eq!(notes[0], "warning: stage thumbs succeeded with 0 outputs from 3 input objects");
        assert_eq!(notes[1], "stage hist FAILED: 0 outputs from 1 input object (fail_on_empty: true)");
        assert_eq!(notes[2], "stage copy shard 0 failed permanently (not retried): reason 0");
        assert_eq!(notes[7], "stage copy: 2 more shards failed permanently");
        assert_eq!(notes.len(), 8, "{notes:#?}");
    }
}
