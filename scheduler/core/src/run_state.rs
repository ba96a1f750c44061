//! The run state machine: which stages may start, what a shard result changes, and when stages
//! and the whole run end. Pure: the driver feeds it events and carries out the [`Transition`]s.

use std::collections::BTreeMap;

/// Where a stage is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StageStatus {
    /// Some upstream stage has not succeeded yet.
    Waiting,
    /// Started: its shards are being published or worked on.
    Running,
    Succeeded,
    Failed,
    /// Never started because an upstream stage failed.
    Skipped,
}

impl StageStatus {
    /// True once the stage will not change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, StageStatus::Succeeded | StageStatus::Failed | StageStatus::Skipped)
    }
}

/// Where a shard is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ShardOutcome {
    Pending,
    Succeeded,
    Failed,
}

/// How a whole run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RunOutcome {
    Succeeded,
    Failed,
}

/// A change of the run's stages that the driver carries out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// List the stage's inputs, publish its shards, then call [`RunState::stage_published`].
    StartStage(String),
    /// Every shard of the stage is decided: end its MLflow run, clean up its consumer.
    EndStage { stage: String, status: StageStatus },
    /// A stage that will never run because an upstream stage failed.
    SkipStage(String),
    /// Every stage is decided.
    EndRun(RunOutcome),
}

/// One attempt's result, as far as the run's state is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// The attempt succeeded with this many outputs.
    Succeeded { outputs: u64 },
    /// The attempt failed; no attempt follows after the last one or a permanent failure.
    Failed { last_attempt: bool, permanent: bool },
}

/// What a shard result meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A failed attempt with attempts left: the shard stays pending.
    AttemptFailed,
    /// The result decided the shard.
    Decided(ShardOutcome),
    /// The shard was already decided: this result changes nothing.
    Duplicate,
    /// The result names a stage that is not running or a shard it does not have.
    Unknown,
}

#[derive(Debug, Clone)]
struct StageProgress {
    status: StageStatus,
    after: Vec<String>,
    shards: Vec<ShardOutcome>,
    pending: u32,
    failed: u32,
    /// Input objects of the stage, and outputs of its decided shards.
    objects_in: u64,
    outputs: u64,
    /// Whether no output from a non-empty input fails the stage.
    fail_on_empty: bool,
    /// Objects of a stage cut in waves that are in no shard yet: it is not done before they are.
    uncut: u64,
}

impl StageProgress {
    /// Every object is in a shard and every shard is decided.
    fn is_done(&self) -> bool {
        self.pending == 0 && self.uncut == 0
    }
}

/// The state of one DAG run's stages and shards.
#[derive(Debug, Clone)]
pub struct RunState {
    stages: BTreeMap<String, StageProgress>,
    ended: bool,
}

impl RunState {
    /// A run whose stages (name, upstream names) are all waiting.
    pub fn new<'a>(stages: impl IntoIterator<Item = (&'a str, &'a [String])>) -> RunState {
        let stages = stages
            .into_iter()
            .map(|(name, after)| {
                let progress = StageProgress {
                    status: StageStatus::Waiting,
                    after: after.to_vec(),
                    shards: Vec::new(),
                    pending: 0,
                    failed: 0,
                    objects_in: 0,
                    outputs: 0,
                    fail_on_empty: false,
                    uncut: 0,
                };
                (name.to_string(), progress)
            })
            .collect();
        RunState { stages, ended: false }
    }

    /// Makes a stage fail when all its shards succeed with no output from a non-empty input.
    pub fn set_fail_on_empty(&mut self, stage: &str) {
        if let Some(progress) = self.stages.get_mut(stage) {
            progress.fail_on_empty = true;
        }
    }

    /// Starts the run: the stages with no upstream stage start.
    pub fn start(&mut self) -> Vec<Transition> {
        self.advance()
    }

    /// Records that a started stage published `shards` shards holding `objects` input objects.
    /// A stage restored with its shards keeps their outcomes.
    pub fn stage_published(&mut self, stage: &str, shards: u32, objects: u64) -> Vec<Transition> {
        self.stage_listed(stage, shards, objects, 0)
    }

    /// Records that a started stage cut in waves holds `objects` input objects, of which `uncut`
    /// are in no shard yet, and has `shards` shards so far; more come with
    /// [`RunState::shards_cut`]. The stage is done only once every object is in a decided shard.
    pub fn stage_listed(&mut self, stage: &str, shards: u32, objects: u64, uncut: u64) -> Vec<Transition> {
        let Some(progress) = self.stages.get_mut(stage) else { return Vec::new() };
        if progress.status != StageStatus::Running {
            return Vec::new();
        }
        progress.objects_in = objects;
        progress.uncut = uncut;
        if progress.shards.len() != shards as usize {
            progress.shards = vec![ShardOutcome::Pending; shards as usize];
            progress.pending = shards;
            progress.failed = 0;
            progress.outputs = 0;
        }
        if progress.is_done() {
            return self.end_stage(stage);
        }
        Vec::new()
    }

    /// Adds `shards` pending shards holding `objects` of the stage's uncut objects.
    pub fn shards_cut(&mut self, stage: &str, shards: u32, objects: u64) {
        let Some(progress) = self.stages.get_mut(stage) else { return };
        progress.shards.extend(std::iter::repeat_n(ShardOutcome::Pending, shards as usize));
        progress.pending += shards;
        progress.uncut = progress.uncut.saturating_sub(objects);
    }

    /// After restoring: ends running stages with no shard left, starts or skips what follows.
    pub fn resume(&mut self) -> Vec<Transition> {
        let done: Vec<String> = self
            .stages
            .iter()
            .filter(|(_, p)| p.status == StageStatus::Running && p.is_done())
            .map(|(name, _)| name.clone())
            .collect();
        let mut effects = Vec::new();
        for stage in done {
            if self.stages[&stage].status == StageStatus::Running {
                effects.extend(self.end_stage(&stage));
            }
        }
        effects.extend(self.advance());
        effects
    }

    /// Restores a stage's state (when resuming a run from the store): its status, its shards'
    /// outcomes, its input objects and the outputs of its succeeded shards.
    pub fn restore_stage(
        &mut self,
        stage: &str,
        status: StageStatus,
        shards: Vec<ShardOutcome>,
        objects_in: u64,
        outputs: u64,
    ) {
        if let Some(progress) = self.stages.get_mut(stage) {
            progress.objects_in = objects_in;
            progress.outputs = outputs;
            progress.pending = shards.iter().filter(|s| **s == ShardOutcome::Pending).count() as u32;
            progress.failed = shards.iter().filter(|s| **s == ShardOutcome::Failed).count() as u32;
            progress.shards = shards;
            progress.status = status;
        }
    }

    /// Fails a started stage that could not publish its shards.
    pub fn stage_aborted(&mut self, stage: &str) -> Vec<Transition> {
        let Some(progress) = self.stages.get_mut(stage) else { return Vec::new() };
        progress.shards.clear();
        progress.pending = 0;
        progress.uncut = 0;
        progress.failed = 1;
        self.end_stage(stage)
    }

    /// Applies one shard attempt's result. A failure is final on the last attempt or when it
    /// is permanent (its cause cannot change): the shard is decided FAILED at once.
    pub fn apply_result(&mut self, stage: &str, shard: u32, result: AttemptResult) -> (Verdict, Vec<Transition>) {
        let Some(progress) = self.stages.get_mut(stage) else { return (Verdict::Unknown, Vec::new()) };
        if progress.status == StageStatus::Waiting || progress.status == StageStatus::Skipped {
            return (Verdict::Unknown, Vec::new());
        }
        let Some(slot) = progress.shards.get_mut(shard as usize) else { return (Verdict::Unknown, Vec::new()) };
        if *slot != ShardOutcome::Pending {
            return (Verdict::Duplicate, Vec::new());
        }
        let outcome = match result {
            AttemptResult::Succeeded { outputs } => {
                progress.outputs += outputs;
                ShardOutcome::Succeeded
            }
            AttemptResult::Failed { last_attempt, permanent } if last_attempt || permanent => ShardOutcome::Failed,
            AttemptResult::Failed { .. } => return (Verdict::AttemptFailed, Vec::new()),
        };
        *slot = outcome;
        progress.pending -= 1;
        if outcome == ShardOutcome::Failed {
            progress.failed += 1;
        }
        let effects = if progress.is_done() { self.end_stage(stage) } else { Vec::new() };
        (Verdict::Decided(outcome), effects)
    }

    /// The indexes of a stage's shards not decided yet.
    pub fn pending_shards(&self, stage: &str) -> Vec<u32> {
        self.shards(stage)
            .iter()
            .enumerate()
            .filter(|(_, outcome)| **outcome == ShardOutcome::Pending)
            .map(|(index, _)| index as u32)
            .collect()
    }

    /// Shards of a stage not decided yet, and at most one per object not cut yet.
    pub fn backlog(&self, stage: &str) -> u32 {
        let uncut = |p: &StageProgress| u32::try_from(p.uncut).unwrap_or(u32::MAX);
        self.stages
            .get(stage)
            .filter(|p| p.status == StageStatus::Running)
            .map_or(0, |p| p.pending.saturating_add(uncut(p)))
    }

    /// Objects of a stage cut in waves that are in no shard yet.
    pub fn uncut(&self, stage: &str) -> u64 {
        self.stages.get(stage).map_or(0, |p| p.uncut)
    }

    /// Status of a stage.
    pub fn status(&self, stage: &str) -> Option<StageStatus> {
        self.stages.get(stage).map(|p| p.status)
    }

    /// Outcomes of a stage's shards, by index.
    pub fn shards(&self, stage: &str) -> &[ShardOutcome] {
        self.stages.get(stage).map_or(&[], |p| &p.shards)
    }

    /// Stages currently running.
    pub fn running_stages(&self) -> impl Iterator<Item = &str> {
        self.stages.iter().filter(|(_, p)| p.status == StageStatus::Running).map(|(n, _)| n.as_str())
    }

    /// The stage's input objects when it ended with no shard failed, no output, and a
    /// non-empty input: a success that produced nothing (or a failure with `fail_on_empty`).
    pub fn empty_output(&self, stage: &str) -> Option<u64> {
        let p = self.stages.get(stage)?;
        let decided = p.status.is_terminal() && p.pending == 0 && !p.shards.is_empty();
        (decided && p.failed == 0 && p.outputs == 0 && p.objects_in > 0).then_some(p.objects_in)
    }

    /// True once the run has ended.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    fn end_stage(&mut self, stage: &str) -> Vec<Transition> {
        let progress = self.stages.get_mut(stage).expect("ending a known stage");
        let empty = progress.fail_on_empty && progress.outputs == 0 && progress.objects_in > 0;
        progress.status = if progress.failed > 0 || empty { StageStatus::Failed } else { StageStatus::Succeeded };
        let mut effects = vec![Transition::EndStage { stage: stage.to_string(), status: progress.status }];
        effects.extend(self.advance());
        effects
    }

    /// Skips stages below a failure, starts stages whose upstreams succeeded, ends the run.
    fn advance(&mut self) -> Vec<Transition> {
        let mut effects = Vec::new();
        loop {
            let mut changed = false;
            let names: Vec<String> = self.stages.keys().cloned().collect();
            for name in names {
                if self.stages[&name].status != StageStatus::Waiting {
                    continue;
                }
                let upstream: Vec<StageStatus> = self.stages[&name]
                    .after
                    .iter()
                    .map(|u| self.stages.get(u).map_or(StageStatus::Failed, |p| p.status))
                    .collect();
                let progress = self.stages.get_mut(&name).expect("known stage");
                if upstream.iter().any(|s| matches!(s, StageStatus::Failed | StageStatus::Skipped)) {
                    progress.status = StageStatus::Skipped;
                    effects.push(Transition::SkipStage(name));
                    changed = true;
                } else if upstream.iter().all(|s| *s == StageStatus::Succeeded) {
                    progress.status = StageStatus::Running;
                    effects.push(Transition::StartStage(name));
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        if !self.ended && self.stages.values().all(|p| p.status.is_terminal()) {
            self.ended = true;
            let failed = self.stages.values().any(|p| p.status != StageStatus::Succeeded);
            effects.push(Transition::EndRun(if failed { RunOutcome::Failed } else { RunOutcome::Succeeded }));
        }
        effects
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(outputs: u64) -> AttemptResult {
        AttemptResult::Succeeded { outputs }
    }

    fn failed(last_attempt: bool) -> AttemptResult {
        AttemptResult::Failed { last_attempt, permanent: false }
    }

    fn chain() -> RunState {
        let none: Vec<String> = vec![];
        let a = vec!["a".to_string()];
        let b = vec!["b".to_string()];
        RunState::new([("a", none.as_slice()), ("b", a.as_slice()), ("c", b.as_slice())])
    }

    #[test]
    fn root_stages_start_first() {
        let mut run = chain();
        assert_eq!(run.start(), vec![Transition::StartStage("a".into())]);
        assert_eq!(run.status("b"), Some(StageStatus::Waiting));
    }

    #[test]
    fn a_stage_ends_when_every_shard_is_decided_and_its_successor_starts() {
        let mut run = chain();
        run.start();
        assert!(run.stage_published("a", 2, 2).is_empty());
        assert_eq!(run.backlog("a"), 2);
        let (verdict, effects) = run.apply_result("a", 0, ok(1));
        assert_eq!(verdict, Verdict::Decided(ShardOutcome::Succeeded));
        assert!(effects.is_empty());
        let (_, effects) = run.apply_result("a", 1, ok(1));
        assert_eq!(
            effects,
            vec![
                Transition::EndStage { stage: "a".into(), status: StageStatus::Succeeded },
                Transition::StartStage("b".into())
            ]
        );
    }

    #[test]
    fn a_failed_attempt_with_attempts_left_keeps_the_shard_pending() {
        let mut run = chain();
        run.start();
        run.stage_published("a", 1, 1);
        assert_eq!(run.apply_result("a", 0, failed(false)).0, Verdict::AttemptFailed);
        assert_eq!(run.backlog("a"), 1);
        assert_eq!(run.apply_result("a", 0, ok(1)).0, Verdict::Decided(ShardOutcome::Succeeded));
    }

    #[test]
    fn a_failed_stage_skips_everything_downstream_and_fails_the_run() {
        let mut run = chain();
        run.start();
        run.stage_published("a", 1, 1);
        let (verdict, effects) = run.apply_result("a", 0, failed(true));
        assert_eq!(verdict, Verdict::Decided(ShardOutcome::Failed));
        assert_eq!(
            effects,
            vec![
                Transition::EndStage { stage: "a".into(), status: StageStatus::Failed },
                Transition::SkipStage("b".into()),
                Transition::SkipStage("c".into()),
                Transition::EndRun(RunOutcome::Failed),
            ]
        );
        assert!(run.is_ended());
    }

    #[test]
    fn the_first_decision_wins_and_later_results_are_duplicates() {
        let mut run = chain();
        run.start();
        run.stage_published("a", 2, 2);
        run.apply_result("a", 0, ok(1));
        assert_eq!(run.apply_result("a", 0, failed(true)).0, Verdict::Duplicate);
        assert_eq!(run.apply_result("a", 0, ok(1)).0, Verdict::Duplicate);
        assert_eq!(run.backlog("a"), 1);
    }

    #[test]
    fn results_for_unknown_stages_or_shards_are_refused() {
        let mut run = chain();
        run.start();
        run.stage_published("a", 1, 1);
        assert_eq!(run.apply_result("a", 5, ok(1)).0, Verdict::Unknown);
        assert_eq!(run.apply_result("b", 0, ok(1)).0, Verdict::Unknown);
        assert_eq!(run.apply_result("zzz", 0, ok(1)).0, Verdict::Unknown);
    }

    #[test]
    fn a_stage_without_shards_succeeds_at_once() {
        let mut run = chain();
        run.start();
        let effects = run.stage_published("a", 0, 0);
        assert_eq!(
            effects,
            vec![
                Transition::EndStage { stage: "a".into(), status: StageStatus::Succeeded },
                Transition::StartStage("b".into())
            ]
        );
    }

    #[test]
    fn a_whole_chain_ends_the_run_succeeded() {
        let mut run = chain();
        run.start();
        for stage in ["a", "b", "c"] {
            run.stage_published(stage, 1, 1);
            let (_, effects) = run.apply_result(stage, 0, ok(1));
            if stage == "c" {
                assert_eq!(effects.last(), Some(&Transition::EndRun(RunOutcome::Succeeded)));
            }
        }
        assert!(run.is_ended());
    }

    #[test]
    fn independent_branches_keep_going_when_one_fails() {
        let none: Vec<String> = vec![];
        let x = vec!["x".to_string()];
        let mut run = RunState::new([("x", none.as_slice()), ("y", none.as_slice()), ("z", x.as_slice())]);
        assert_eq!(run.start(), vec![Transition::StartStage("x".into()), Transition::StartStage("y".into())]);
        run.stage_published("x", 1, 1);
        run.stage_published("y", 1, 1);
        let (_, effects) = run.apply_result("x", 0, failed(true));
        assert_eq!(
            effects,
            vec![
                Transition::EndStage { stage: "x".into(), status: StageStatus::Failed },
                Transition::SkipStage("z".into())
            ]
        );
        let (_, effects) = run.apply_result("y", 0, ok(1));
        assert_eq!(
            effects,
            vec![
                Transition::EndStage { stage: "y".into(), status: StageStatus::Succeeded },
                Transition::EndRun(RunOutcome::Failed)
            ]
        );
    }

    #[test]
    fn a_diamond_starts_the_join_only_after_both_sides() {
        let none: Vec<String> = vec![];
        let a = vec!["a".to_string()];
        let bc = vec!["b".to_string(), "c".to_string()];
        let mut run =
            RunState::new([("a", none.as_slice()), ("b", a.as_slice()), ("c", a.as_slice()), ("d", bc.as_slice())]);
        run.start();
        run.stage_published("a", 1, 1);
        let (_, effects) = run.apply_result("a", 0, ok(1));
        assert!(
            effects.contains(&Transition::StartStage("b".into()))
                && effects.contains(&Transition::StartStage("c".into()))
        );
        run.stage_published("b", 1, 1);
        run.stage_published("c", 1, 1);
        let (_, effects) = run.apply_result("b", 0, ok(1));
        assert!(!effects.contains(&Transition::StartStage("d".into())));
        let (_, effects) = run.apply_result("c", 0, ok(1));
        assert!(effects.contains(&Transition::StartStage("d".into())));
    }

    #[test]
    fn a_restored_run_ends_stages_whose_shards_were_all_decided_and_starts_the_next() {
        let mut run = chain();
        run.restore_stage("a", StageStatus::Running, vec![ShardOutcome::Succeeded, ShardOutcome::Succeeded], 1, 1);
        let effects = run.resume();
        assert_eq!(
            effects,
            vec![
                Transition::EndStage { stage: "a".into(), status: StageStatus::Succeeded },
                Transition::StartStage("b".into())
            ]
        );
    }

    #[test]
    fn a_restored_stage_keeps_its_decided_shards_when_publishing_resumes() {
        let mut run = chain();
        run.restore_stage("a", StageStatus::Running, vec![ShardOutcome::Succeeded, ShardOutcome::Pending], 1, 1);
        assert!(run.resume().is_empty());
        assert!(run.stage_published("a", 2, 2).is_empty());
        assert_eq!(run.backlog("a"), 1, "the shard decided before the restart stays decided");
        assert_eq!(run.apply_result("a", 0, ok(1)).0, Verdict::Duplicate);
    }

    #[test]
    fn a_restored_run_whose_stages_all_ended_ends() {
        let mut run = chain();
        run.restore_stage("a", StageStatus::Succeeded, vec![ShardOutcome::Succeeded], 1, 1);
        run.restore_stage("b", StageStatus::Failed, vec![ShardOutcome::Failed], 1, 1);
        assert_eq!(run.resume(), vec![Transition::SkipStage("c".into()), Transition::EndRun(RunOutcome::Failed)]);
    }

    #[test]
    fn an_aborted_stage_fails() {
        let mut run = chain();
        run.start();
        let effects = run.stage_aborted("a");
        assert_eq!(effects[0], Transition::EndStage { stage: "a".into(), status: StageStatus::Failed });
        assert_eq!(effects.last(), Some(&Transition::EndRun(RunOutcome::Failed)));
    }

    #[test]
    fn a_permanent_failure_decides_the_shard_at_once() {
        let mut run = chain();
        run.start();
        run.stage_published("a", 2, 2);
        let permanent = AttemptResult::Failed { last_attempt: false, permanent: true };
        let (verdict, effects) = run.apply_result("a", 0, permanent);
        assert_eq!(verdict, Verdict::Decided(ShardOutcome::Failed));
        assert!(effects.is_empty(), "the other shard is still pending");
        assert_eq!(run.backlog("a"), 1);
        let (_, effects) = run.apply_result("a", 1, ok(1));
        assert_eq!(effects[0], Transition::EndStage { stage: "a".into(), status: StageStatus::Failed });
        assert_eq!(run.apply_result("a", 0, ok(1)).0, Verdict::Duplicate, "a late success changes nothing");
    }

    #[test]
    fn a_stage_with_no_output_from_its_inputs_succeeds_with_a_warning() {
        let mut run = chain();
        run.start();
        run.stage_published("a", 2, 5);
        run.apply_result("a", 0, ok(0));
        let (_, effects) = run.apply_result("a", 1, ok(0));
        assert_eq!(effects[0], Transition::EndStage { stage: "a".into(), status: StageStatus::Succeeded });
        assert_eq!(run.empty_output("a"), Some(5));
    }

    #[test]
    fn fail_on_empty_fails_a_stage_with_no_output_and_skips_what_follows() {
        let mut run = chain();
        run.set_fail_on_empty("a");
        run.start();
        run.stage_published("a", 1, 3);
        let (_, effects) = run.apply_result("a", 0, ok(0));
        assert_eq!(
            effects,
            vec![
                Transition::EndStage { stage: "a".into(), status: StageStatus::Failed },
                Transition::SkipStage("b".into()),
                Transition::SkipStage("c".into()),
                Transition::EndRun(RunOutcome::Failed),
            ]
        );
        assert_eq!(run.empty_output("a"), Some(3));
    }

    #[test]
    fn fail_on_empty_lets_outputs_and_empty_inputs_through() {
        let mut run = chain();
        run.set_fail_on_empty("a");
        run.set_fail_on_empty("b");
        run.start();
        run.stage_published("a", 2, 2);
        run.apply_result("a", 0, ok(0));
        let (_, effects) = run.apply_result("a", 1, ok(1));
        assert_eq!(effects[0], Transition::EndStage { stage: "a".into(), status: StageStatus::Succeeded });
        assert_eq!(run.empty_output("a"), None);
        // `input: none`: one shard, no input objects: nothing was expected out of it.
        run.stage_published("b", 1, 0);
        let (_, effects) = run.apply_result("b", 0, ok(0));
        assert_eq!(effects[0], Transition::EndStage { stage: "b".into(), status: StageStatus::Succeeded });
    }

    #[test]
    fn a_stage_cut_in_waves_ends_only_once_every_object_is_cut_and_decided() {
        let mut run = chain();
        run.start();
        assert!(run.stage_listed("a", 0, 10, 10).is_empty(), "objects left to cut: not done");
        run.shards_cut("a", 2, 3);
        assert_eq!((run.backlog("a"), run.uncut("a")), (2 + 7, 7));
        assert!(run.apply_result("a", 0, ok(1)).1.is_empty());
        assert!(run.apply_result("a", 1, ok(1)).1.is_empty(), "every shard decided, 7 objects uncut");
        run.shards_cut("a", 1, 7);
        let (verdict, effects) = run.apply_result("a", 2, ok(1));
        assert_eq!(verdict, Verdict::Decided(ShardOutcome::Succeeded));
        assert_eq!(effects[0], Transition::EndStage { stage: "a".into(), status: StageStatus::Succeeded });
        assert_eq!(run.shards("a").len(), 3);
    }

    #[test]
    fn a_restored_stage_cut_in_waves_waits_for_its_uncut_objects() {
        let mut run = chain();
        run.restore_stage("a", StageStatus::Running, vec![ShardOutcome::Succeeded], 5, 1);
        assert!(run.stage_listed("a", 1, 5, 4).is_empty());
        assert!(run.resume().is_empty(), "decided shards but uncut objects: the stage goes on");
        assert_eq!(run.apply_result("a", 0, ok(1)).0, Verdict::Duplicate);
        assert!(run.stage_listed("b", 0, 0, 0).is_empty(), "a waiting stage is not listed");
    }

    #[test]
    fn a_restored_stage_keeps_its_outputs_for_fail_on_empty() {
        let mut run = chain();
        run.set_fail_on_empty("a");
        run.restore_stage("a", StageStatus::Running, vec![ShardOutcome::Succeeded, ShardOutcome::Pending], 4, 0);
        assert!(run.resume().is_empty());
        let (_, effects) = run.apply_result("a", 1, ok(0));
        assert_eq!(effects[0], Transition::EndStage { stage: "a".into(), status: StageStatus::Failed });
    }
}
