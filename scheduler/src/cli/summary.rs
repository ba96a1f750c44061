//! The summary printed when a run ends, and where to browse its runs.

use std::path::Path;

use super::services::Services;
use crate::driver::RunSummary;
use crate::run_state::{RunOutcome, StageStatus};

/// Prints the per-stage table, the outcome and where the runs and outputs are.
pub fn print_summary(summary: &RunSummary, services: &Services, state_dir: &Path) {
    let outcome = match summary.outcome {
        Some(RunOutcome::Succeeded) => "SUCCEEDED",
        Some(RunOutcome::Failed) => "FAILED",
        None => "CANCELLED",
    };
    println!();
    println!("run {} {outcome} in {:.1} s", summary.run_id, summary.wall_s);
    println!(
        "{:<20} {:<10} {:>7} {:>7} {:>7} {:>9} {:>11} {:>10} {:>11} {:>9}",
        "stage", "status", "shards", "ok", "failed", "attempts", "duplicates", "objects in", "objects out", "time (s)"
    );
    for stage in &summary.stages {
        let status = match stage.status {
            StageStatus::Waiting => "waiting",
            StageStatus::Running => "running",
            StageStatus::Succeeded => "succeeded",
            StageStatus::Failed => "FAILED",
            StageStatus::Skipped => "skipped",
        };
        println!(
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
            println!("MLflow: experiment {experiment}, DAG run {run}. Browse the runs with:");
            println!(
                "  mlflow ui --backend-store-uri sqlite:///{} --artifacts-destination {}",
                dir.join("mlflow.db").display(),
                dir.join("artifacts").display()
            );
        }
        (Some((experiment, run)), Some(uri), None) => {
            println!("MLflow: {}", crate::run_tree::run_page(uri, experiment, run));
        }
        _ => println!("outputs: {}", state_dir.join("outputs").join(&summary.run_id).display()),
    }
    println!("worker logs: {}", state_dir.join("logs").join(&summary.run_id).display());
}
