//! What the service says about a run: its status and, per stage, shards by state. Built from
//! the store when a run is looked up cold, then kept up to date by folding the run's events
//! ([`RunView::apply`], pure).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::driver::RunEvent;
use crate::run_state::{RunOutcome, ShardOutcome, StageStatus};
use crate::store::{RunRecord, RunStatus, Store, StoreError};

/// A run as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunView {
    pub run_id: String,
    pub dag: String,
    pub status: RunState,
    pub created_ms: i64,
    pub ended_ms: Option<i64>,
    pub mlflow_run_id: Option<String>,
    pub mlflow_experiment_id: Option<String>,
    /// The token name the run was submitted with (`local` for the CLI in-process).
    pub submitted_by: String,
    pub stages: Vec<StageView>,
}

/// A run's status as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunState {
    /// The API's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
        }
    }

    /// True once the run will not change again.
    pub fn is_ended(self) -> bool {
        self != RunState::Running
    }
}

impl From<RunStatus> for RunState {
    fn from(status: RunStatus) -> RunState {
        match status {
            RunStatus::Running => RunState::Running,
            RunStatus::Succeeded => RunState::Succeeded,
            RunStatus::Failed => RunState::Failed,
            RunStatus::Cancelled => RunState::Cancelled,
        }
    }
}

/// One stage as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageView {
    pub name: String,
    pub status: &'static str,
    pub shards_total: u32,
    /// Input objects of the stage, once it started.
    pub objects_in: u64,
    pub shards_pending: u32,
    pub shards_running: u32,
    pub shards_succeeded: u32,
    pub shards_failed: u32,
    pub mlflow_run_id: Option<String>,
    /// Workers alive now, per cluster.
    pub workers: BTreeMap<String, u32>,
}

/// The API's name for a stage status.
pub fn stage_status_name(status: StageStatus) -> &'static str {
    match status {
        StageStatus::Waiting => "waiting",
        StageStatus::Running => "running",
        StageStatus::Succeeded => "succeeded",
        StageStatus::Failed => "failed",
        StageStatus::Skipped => "skipped",
    }
}

impl StageView {
    fn new(name: &str) -> StageView {
        StageView {
            name: name.to_string(),
            status: stage_status_name(StageStatus::Waiting),
            shards_total: 0,
            objects_in: 0,
            shards_pending: 0,
            shards_running: 0,
            shards_succeeded: 0,
            shards_failed: 0,
            mlflow_run_id: None,
            workers: BTreeMap::new(),
        }
    }

    /// Counts one shard decided. The run's core decides each shard once (a later result for
    /// it is a duplicate, never a second decision), so every decision given here is new; the
    /// view keeps counts only, since it is copied to every watcher on every change.
    fn decide(&mut self, succeeded: bool) {
        match succeeded {
            true => self.shards_succeeded += 1,
            false => self.shards_failed += 1,
        }
    }

    /// Recounts the running and pending shards from the decided ones and the workers alive
    /// (in constant time: it runs on every result).
    fn recount(&mut self) {
        let undecided = self.shards_total.saturating_sub(self.shards_succeeded + self.shards_failed);
        let workers: u32 = self.workers.values().sum();
        self.shards_running = if self.status == "running" { undecided.min(workers) } else { 0 };
        self.shards_pending = undecided - self.shards_running;
    }
}

impl RunView {
    /// The run as the store knows it, stages in the DAG's order (`stages`).
    pub fn from_store(record: &RunRecord, stages: &[String], store: &Store) -> Result<RunView, StoreError> {
        let mut view = RunView {
            run_id: record.run_id.clone(),
            dag: record.dag_name.clone(),
            status: record.status.into(),
            created_ms: record.created_ms,
            ended_ms: record.ended_ms,
            mlflow_run_id: record.tracking.as_ref().map(|t| t.parent_run_id.clone()),
            mlflow_experiment_id: record.tracking.as_ref().map(|t| t.experiment_id.clone()),
            submitted_by: record.submitted_by.clone().unwrap_or_else(|| "local".into()),
            stages: stages.iter().map(|s| StageView::new(s)).collect(),
        };
        for stage in &mut view.stages {
            let Some(stage_record) = store.stage(&record.run_id, &stage.name)? else { continue };
            stage.status = stage_status_name(stage_record.status);
            stage.shards_total = stage_record.shards_total;
            stage.objects_in = stage_record.objects_in;
            stage.mlflow_run_id = stage_record.mlflow_run_id.clone();
            for (_, shard_record) in store.shards(&record.run_id, &stage.name)? {
                match shard_record.outcome {
                    ShardOutcome::Succeeded => stage.decide(true),
                    ShardOutcome::Failed => stage.decide(false),
                    ShardOutcome::Pending => {}
                }
            }
            stage.recount();
        }
        Ok(view)
    }

    /// The view after `event`.
    pub fn apply(&mut self, event: &RunEvent) {
        match event {
            RunEvent::StageStarted { stage, shards, objects } => {
                if let Some(view) = self.stage_mut(stage) {
                    view.status = stage_status_name(StageStatus::Running);
                    view.shards_total = *shards;
                    view.objects_in = *objects;
                    view.recount();
                }
            }
            RunEvent::ShardsCut { stage, shards } => {
                if let Some(view) = self.stage_mut(stage) {
                    view.shards_total = *shards;
                    view.recount();
                }
            }
            RunEvent::StageFailedToStart { stage, .. } => self.set_stage_status(stage, StageStatus::Failed),
            RunEvent::AttemptFailed { .. } => {}
            RunEvent::ShardDecided { stage, succeeded, .. } => {
                if let Some(view) = self.stage_mut(stage) {
                    view.decide(*succeeded);
                    view.recount();
                }
            }
            RunEvent::StageEnded { stage, status } => self.set_stage_status(stage, *status),
            RunEvent::StageSkipped { stage } => self.set_stage_status(stage, StageStatus::Skipped),
            RunEvent::RunEnded { outcome } => {
                self.status = match outcome {
                    RunOutcome::Succeeded => RunState::Succeeded,
                    RunOutcome::Failed => RunState::Failed,
                };
            }
        }
    }

    /// Workers alive now per stage and cluster; stages not named have none.
    pub fn set_workers(&mut self, workers: &BTreeMap<String, BTreeMap<String, u32>>) {
        for stage in &mut self.stages {
            stage.workers = workers.get(&stage.name).cloned().unwrap_or_default();
            stage.recount();
        }
    }

    /// Marks the run ended with `state` at `ended_ms`; its stages stop counting workers.
    pub fn end(&mut self, state: RunState, ended_ms: i64) {
        self.status = state;
        self.ended_ms.get_or_insert(ended_ms);
        for stage in &mut self.stages {
            stage.workers.clear();
            if state == RunState::Cancelled && stage.status == "running" {
                stage.status = "failed";
            }
            stage.recount();
        }
    }

    /// The names of stages whose status is `status`.
    pub fn stages_in(&self, status: &str) -> BTreeSet<&str> {
        self.stages.iter().filter(|s| s.status == status).map(|s| s.name.as_str()).collect()
    }

    fn stage_mut(&mut self, stage: &str) -> Option<&mut StageView> {
        self.stages.iter_mut().find(|s| s.name == stage)
    }

    fn set_stage_status(&mut self, stage: &str, status: StageStatus) {
        if let Some(view) = self.stage_mut(stage) {
            view.status = stage_status_name(status);
            view.recount();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(stages: &[&str]) -> RunView {
        RunView {
            run_id: "r".into(),
            dag: "d".into(),
            status: RunState::Running,
            created_ms: 0,
            ended_ms: None,
            mlflow_run_id: None,
            mlflow_experiment_id: None,
            submitted_by: "local".into(),
            stages: stages.iter().map(|s| StageView::new(s)).collect(),
        }
    }

    #[test]
    fn shards_move_from_pending_to_running_to_decided() {
        let mut run = view(&["a", "b"]);
        run.apply(&RunEvent::StageStarted { stage: "a".into(), shards: 4, objects: 40 });
        let workers = BTreeMap::from([("a".to_string(), BTreeMap::from([("local".to_string(), 2)]))]);
        run.set_workers(&workers);
        let a = &run.stages[0];
        assert_eq!((a.status, a.shards_pending, a.shards_running, a.shards_succeeded), ("running", 2, 2, 0));
        run.apply(&RunEvent::ShardDecided { stage: "a".into(), shard: 0, succeeded: true });
        run.apply(&RunEvent::ShardDecided { stage: "a".into(), shard: 1, succeeded: false });
        let a = &run.stages[0];
        assert_eq!((a.shards_pending, a.shards_running, a.shards_succeeded, a.shards_failed), (0, 2, 1, 1));
        assert_eq!(run.stages[1].status, "waiting");
    }

    #[test]
    fn the_run_ends_with_its_outcome_and_skipped_stages_show() {
        let mut run = view(&["a", "b"]);
        run.apply(&RunEvent::StageStarted { stage: "a".into(), shards: 1, objects: 1 });
        run.apply(&RunEvent::ShardDecided { stage: "a".into(), shard: 0, succeeded: false });
        run.apply(&RunEvent::StageEnded { stage: "a".into(), status: StageStatus::Failed });
        run.apply(&RunEvent::StageSkipped { stage: "b".into() });
        run.apply(&RunEvent::RunEnded { outcome: RunOutcome::Failed });
        assert_eq!(run.status, RunState::Failed);
        assert_eq!(run.stages_in("skipped"), BTreeSet::from(["b"]));
    }

    #[test]
    fn a_cancelled_run_leaves_no_stage_running() {
        let mut run = view(&["a"]);
        run.apply(&RunEvent::StageStarted { stage: "a".into(), shards: 3, objects: 3 });
        run.end(RunState::Cancelled, 5);
        assert_eq!(run.stages[0].status, "failed");
        assert_eq!(run.stages[0].shards_running, 0);
        assert_eq!(run.ended_ms, Some(5));
    }
}
