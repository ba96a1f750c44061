//! Shared set-up of the worker's integration tests: a real nats-server with the streams, KV
//! bucket, object store and consumer that the scheduler would create (DESIGN §5), a project
//! snapshot, and the built `concurrent-worker` binary run as a child with a deadline.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use async_nats::jetstream::{self, consumer, stream};
use concurrent_proto::{InputObject, ShardMsg, ShardResult, StageSpec, TrackingTarget, WIRE_VERSION, names};
use concurrent_tests::{NatsServer, workspace_bin};

/// A stage ready to be worked on: server, JetStream objects, dirs.
pub struct Harness {
    pub nats: NatsServer,
    pub js: jetstream::Context,
    pub run_id: String,
    pub stage: String,
    pub dirs: tempfile::TempDir,
}

/// How a test stage looks.
pub struct StageSetup<'a> {
    pub command: &'a str,
    /// Declared parameters `name -> default` (None = no default).
    pub parameters: &'a [(&'a str, Option<&'a str>)],
    pub given: BTreeMap<String, String>,
    pub max_attempts: u32,
    pub shards: u32,
    pub timeout_s: Option<u64>,
    pub tracking: Option<TrackingTarget>,
    pub log_limit: Option<u64>,
    /// The stage may get speculative copies: its workers send running notices and listen
    /// for decided shards.
    pub speculate: bool,
}

impl Default for StageSetup<'_> {
    fn default() -> Self {
        StageSetup {
            command: "cp -r \"$CONCURRENT_INPUT_DIR\"/. \"$CONCURRENT_OUTPUT_DIR\"",
            parameters: &[],
            given: BTreeMap::new(),
            max_attempts: 1,
            shards: 1,
            timeout_s: None,
            tracking: None,
            log_limit: None,
            speculate: false,
        }
    }
}

impl Harness {
    /// Starts nats-server and creates everything the scheduler would for one stage.
    pub async fn start(stage_setup: StageSetup<'_>) -> anyhow::Result<Harness> {
        let nats = NatsServer::start()?;
        let client = async_nats::connect(&nats.url).await?;
        let js = jetstream::new(client);
        let dirs = tempfile::tempdir()?;
        let run_id = "r1".to_string();
        let stage = "copy".to_string();
        js.create_stream(stream::Config {
            name: names::SHARDS_STREAM.into(),
            subjects: vec![names::SHARDS_SUBJECTS.into()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
        js.create_stream(stream::Config {
            name: names::RESULTS_STREAM.into(),
            subjects: vec![names::RESULTS_SUBJECTS.into()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
        let kv = js
            .create_key_value(jetstream::kv::Config { bucket: names::STAGES_BUCKET.into(), ..Default::default() })
            .await?;
        let store = js
            .create_object_store(jetstream::object_store::Config {
                bucket: names::PROJECTS_STORE.into(),
                ..Default::default()
            })
            .await?;

        let project = dirs.path().join("project");
        std::fs::create_dir_all(&project)?;
        std::fs::write(project.join("MLproject"), mlproject(stage_setup.command, stage_setup.parameters))?;
        let snapshot = concurrent_mlflow::project::snapshot::pack(&project)?;
        store.put(snapshot.hash.as_str(), &mut snapshot.bytes.as_slice()).await?;

        let spec = StageSpec {
            v: WIRE_VERSION,
            dag: "test-dag".into(),
            run_id: run_id.clone(),
            stage: stage.clone(),
            project_snapshot: snapshot.hash.clone(),
            project_source: project.display().to_string(),
            entry_point: "main".into(),
            parameters: stage_setup.given,
            output_root: Some(format!("file://{}", dirs.path().join("outputs").join(&stage).display())),
            tracking: stage_setup.tracking,
            timeout_s: stage_setup.timeout_s,
            max_attempts: stage_setup.max_attempts,
            shards: stage_setup.shards,
            log_limit: stage_setup.log_limit,
            env_manager: None,
            parameter_order: Vec::new(),
            speculate: stage_setup.speculate,
        };
        kv.put(names::stage_key(&run_id, &stage), concurrent_proto::encode(&spec).into()).await?;

        js.create_consumer_on_stream(
            consumer::pull::Config {
                durable_name: Some(names::shard_consumer(&run_id, &stage)),
                filter_subject: names::shard_subject(&run_id, &stage),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                max_deliver: i64::from(stage_setup.max_attempts),
                ..Default::default()
            },
            names::SHARDS_STREAM,
        )
        .await?;
        Ok(Harness { nats, js, run_id, stage, dirs })
    }

    /// The output root of the stage (tracking off).
    pub fn output_root(&self) -> PathBuf {
        self.dirs.path().join("outputs").join(&self.stage)
    }

    /// Writes input files under `inputs/<shard>/` and returns their `InputObject`s.
    pub fn inputs(&self, shard: u32, files: &[(&str, &str)]) -> anyhow::Result<Vec<InputObject>> {
        let base = self.dirs.path().join("inputs").join(shard.to_string());
        files
            .iter()
            .map(|(path, text)| {
                let file = base.join(path);
                std::fs::create_dir_all(file.parent().context("parent")?)?;
                std::fs::write(&file, text)?;
                Ok(InputObject {
                    path: path.to_string(),
                    uri: format!("file://{}", file.display()),
                    size: Some(text.len() as u64),
                    upstream_run: None,
                })
            })
            .collect()
    }

    /// Publishes a shard as the scheduler would.
    pub async fn publish_shard(&self, shard: u32, shards: u32, inputs: Vec<InputObject>) -> anyhow::Result<()> {
        let message = ShardMsg {
            v: WIRE_VERSION,
            run_id: self.run_id.clone(),
            stage: self.stage.clone(),
            shard,
            shards,
            inputs,
            speculative: false,
        };
        self.publish_raw(concurrent_proto::encode(&message), &names::shard_msg_id(&self.run_id, &self.stage, shard))
            .await
    }

    /// Publishes raw bytes on the stage's shard subject.
    pub async fn publish_raw(&self, bytes: Vec<u8>, msg_id: &str) -> anyhow::Result<()> {
        let publish = jetstream::message::PublishMessage::build().payload(bytes.into()).message_id(msg_id);
        self.js.send_publish(names::shard_subject(&self.run_id, &self.stage), publish).await?.await?;
        Ok(())
    }

    /// A fresh JetStream context on a new connection (after a restart, without waiting for
    /// the harness's own client to reconnect).
    pub async fn fresh_js(&self) -> anyhow::Result<jetstream::Context> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .connect(&self.nats.url)
            .await?;
        Ok(jetstream::new(client))
    }

    /// Every result published so far (retried for up to `deadline` while NATS recovers).
    pub async fn results_within(&self, deadline: Duration) -> anyhow::Result<Vec<ShardResult>> {
        let until = Instant::now() + deadline;
        loop {
            match self.results().await {
                Ok(results) => return Ok(results),
                Err(error) if Instant::now() < until => {
                    eprintln!("reading results: {error:#}; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Every result published so far, in order.
    pub async fn results(&self) -> anyhow::Result<Vec<ShardResult>> {
        let stream = self.js.get_stream(names::RESULTS_STREAM).await?;
        let count = stream.get_info().await?.state.messages;
        let mut results = Vec::new();
        for seq in 1..=count {
            let message = stream.get_raw_message(seq).await?;
            results.extend(concurrent_proto::decode_results(&message.payload)?);
        }
        Ok(results)
    }

    /// Messages still in the shards stream.
    pub async fn shards_left(&self) -> anyhow::Result<u64> {
        Ok(self.js.get_stream(names::SHARDS_STREAM).await?.get_info().await?.state.messages)
    }

    /// The worker command for this stage, with a 1 s idle timeout.
    pub fn worker(&self) -> Command {
        self.worker_with_idle("1s")
    }

    /// The worker command for this stage, with idle timeout `idle` (e.g. `3s`).
    pub fn worker_with_idle(&self, idle: &str) -> Command {
        self.worker_named("test-worker", idle)
    }

    /// The worker command for this stage as worker `id` (its own slot), idle timeout `idle`.
    pub fn worker_named(&self, id: &str, idle: &str) -> Command {
        let mut command = Command::new(workspace_bin("concurrent-worker"));
        command
            .args(["--nats-url", &self.nats.url, "--run", &self.run_id, "--stage", &self.stage])
            .args(["--idle-timeout", idle, "--worker-id", id])
            .arg("--work-dir")
            .arg(self.dirs.path().join("work"))
            .arg("--cache-dir")
            .arg(self.dirs.path().join("cache"))
            .env_remove("NATS_URL")
            .stdin(Stdio::null());
        command
    }
}

/// An MLproject with one entry point `main`.
pub fn mlproject(command: &str, parameters: &[(&str, Option<&str>)]) -> String {
    let mut text = String::from("name: test\nentry_points:\n  main:\n");
    if !parameters.is_empty() {
        text.push_str("    parameters:\n");
        for (name, default) in parameters {
            match default {
                Some(d) => text.push_str(&format!("      {name}: {{type: string, default: {d:?}}}\n")),
                None => text.push_str(&format!("      {name}: string\n")),
            }
        }
    }
    text.push_str(&format!("    command: {command:?}\n"));
    text
}

/// A child that is killed if the test ends before it does.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A worker running in the background, its stderr going to a temp file; killed on drop.
pub struct Background {
    pub child: Running,
    stderr: tempfile::NamedTempFile,
}

impl Background {
    /// Starts `command` with stderr captured.
    pub fn spawn(mut command: Command) -> anyhow::Result<Background> {
        let stderr = tempfile::NamedTempFile::new()?;
        command.stderr(stderr.reopen()?).stdout(Stdio::null());
        Ok(Background { child: Running(command.spawn()?), stderr })
    }

    /// The stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }

    /// Sends `signal` (e.g. `-TERM`) to the process.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill").args([signal, &self.child.0.id().to_string()]).status()?;
        anyhow::ensure!(status.success(), "kill {signal} failed");
        Ok(())
    }

    /// Waits (polling, async) for the process to exit within `deadline`.
    pub async fn wait(&mut self, deadline: Duration) -> anyhow::Result<ExitStatus> {
        let until = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.0.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > until {
                bail!("the worker did not exit within {deadline:?}; stderr:\n{}", self.stderr());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Waits until `file` holds a number (written by an entry point), within `deadline`.
pub async fn wait_for_number(file: &Path, deadline: Duration) -> anyhow::Result<u32> {
    let until = Instant::now() + deadline;
    loop {
        if let Some(n) = std::fs::read_to_string(file).ok().and_then(|t| t.trim().parse::<u32>().ok()) {
            return Ok(n);
        }
        anyhow::ensure!(Instant::now() < until, "{} was not written within {deadline:?}", file.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `command` to its end within `deadline`; returns its status and stderr.
pub fn run_to_end(mut command: Command, deadline: Duration) -> anyhow::Result<(ExitStatus, String)> {
    let stderr_file = tempfile::NamedTempFile::new()?;
    command.stderr(stderr_file.reopen()?).stdout(Stdio::null());
    let mut child = Running(command.spawn()?);
    let until = Instant::now() + deadline;
    loop {
        if let Some(status) = child.0.try_wait()? {
            let stderr = std::fs::read_to_string(stderr_file.path())?;
            return Ok((status, stderr));
        }
        if Instant::now() > until {
            let stderr = std::fs::read_to_string(stderr_file.path()).unwrap_or_default();
            bail!("the worker did not exit within {deadline:?}; stderr:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Files under `dir` with their contents, by relative path.
pub fn tree(dir: &Path) -> BTreeMap<String, String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(dir).map(|p| p.display().to_string()).unwrap_or_default();
            (rel, std::fs::read_to_string(e.path()).unwrap_or_default())
        })
        .collect()
}

/// Live (non-zombie) processes of process group `pgid`, from `/proc`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // After `(comm)`: state ppid pgrp ...
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string() {
            members.push(pid);
        }
    }
    members
}
