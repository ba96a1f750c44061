//! A progress bar per stage while a run goes; plain lines when stderr is not a terminal.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;

use crate::dag::Dag;
use crate::driver::{RunEvent, objects_and_shards};
use crate::run_state::StageStatus;

/// The task that draws progress from run events.
pub struct Progress {
    task: JoinHandle<()>,
}

impl Progress {
    /// Starts drawing; the returned sender feeds it.
    pub fn start(dag: &Dag) -> (UnboundedSender<RunEvent>, Progress) {
        let (sender, mut events) = unbounded_channel();
        let width = dag.stages.keys().map(String::len).max().unwrap_or(8);
        let terminal = std::io::stderr().is_terminal();
        let task = tokio::spawn(async move {
            let multi = MultiProgress::new();
            let style = ProgressStyle::with_template(&format!(
                "{{prefix:>{width}}} [{{bar:30.cyan/blue}}] {{pos}}/{{len}} shards {{msg}} {{elapsed}}"
            ))
            .expect("a valid template")
            .progress_chars("=> ");
            let mut bars: BTreeMap<String, (ProgressBar, u32)> = BTreeMap::new();
            while let Some(event) = events.recv().await {
                match event {
                    RunEvent::StageStarted { stage, shards, objects } => {
                        if !terminal {
                            say!("{stage}: started, {}", objects_and_shards(shards, objects));
                        }
                        let bar = multi.add(ProgressBar::new(u64::from(shards)));
                        bar.set_style(style.clone());
                        bar.set_prefix(stage.clone());
                        bars.insert(stage, (bar, 0));
                    }
                    RunEvent::ShardsCut { stage, shards } => {
                        if let Some((bar, _)) = bars.get(&stage) {
                            bar.set_length(u64::from(shards));
                        }
                    }
                    RunEvent::ShardDecided { stage, succeeded, .. } => {
                        if let Some((bar, failed)) = bars.get_mut(&stage) {
                            bar.inc(1);
                            if !succeeded {
                                *failed += 1;
                                bar.set_message(format!("({failed} failed)"));
                            }
                        }
                    }
                    RunEvent::StageFailedToStart { stage, reason } => {
                        let _ = multi.println(format!("{stage}: cannot start: {reason}"));
                        if !terminal {
                            say!("{stage}: cannot start: {reason}");
                        }
                    }
                    RunEvent::AttemptFailed { stage, shard, attempt, reason } => {
                        let line = format!("{stage}: shard {shard} attempt {attempt} failed: {reason}");
                        match bars.get(&stage) {
                            Some((bar, _)) if terminal => bar.println(line),
                            _ => say!("{line}"),
                        }
                    }
                    RunEvent::StageEnded { stage, status } => {
                        let word = if status == StageStatus::Succeeded { "succeeded" } else { "FAILED" };
                        if let Some((bar, _)) = bars.get(&stage) {
                            bar.finish_with_message(word);
                        }
                        if !terminal {
                            say!("{stage}: {word}");
                        }
                    }
                    RunEvent::StageSkipped { stage } => {
                        let _ = multi.println(format!("{stage}: skipped (an upstream stage failed)"));
                        if !terminal {
                            say!("{stage}: skipped (an upstream stage failed)");
                        }
                    }
                    RunEvent::RunEnded { .. } => {}
                }
            }
        });
        (sender, Progress { task })
    }

    /// Waits until every event sent has been drawn (the senders must be dropped).
    pub async fn finish(self) {
        let _ = self.task.await;
    }
}
