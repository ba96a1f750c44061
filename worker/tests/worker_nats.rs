//! Integration tests of `concurrent-worker` against a real nats-server, tracking off: shards
//! run and their outputs land under the output root, failures are retried then terminated,
//! garbage is terminated, and the worker exits on its own.

mod common;

use std::time::Duration;

use common::{Background, Harness, StageSetup, run_to_end, tree, wait_for_number};
use concurrent_proto::{AttemptRunning, ShardDecided, ShardStatus, WIRE_VERSION, names};
use futures::StreamExt;

async fn run_worker(harness: &Harness, deadline: Duration) -> anyhow::Result<(std::process::ExitStatus, String)> {
    let command = harness.worker();
    tokio::task::spawn_blocking(move || run_to_end(command, deadline)).await?
}

#[tokio::test]
async fn three_shards_succeed_and_the_worker_exits_when_idle() -> anyhow::Result<()> {
    let harness = Harness::start(StageSetup { shards: 3, max_attempts: 3, ..Default::default() }).await?;
    for shard in 0..3 {
        let inputs = harness.inputs(shard, &[("a.txt", &format!("a{shard}")), ("sub/b.txt", &format!("b{shard}"))])?;
        harness.publish_shard(shard, 3, inputs).await?;
    }
    let (status, stderr) = run_worker(&harness, Duration::from_secs(60)).await?;
    assert!(status.success(), "worker failed: {status}\n{stderr}");

    let mut results = harness.results().await?;
    results.sort_by_key(|r| r.shard);
    assert_eq!(results.len(), 3, "{results:#?}");
    for (shard, result) in results.iter().enumerate() {
        assert_eq!(result.status, ShardStatus::Succeeded, "{stderr}");
        assert_eq!(result.shard, shard as u32);
        assert_eq!((result.attempt, result.last_attempt), (1, true));
        assert_eq!(result.worker, "test-worker");
        assert_eq!(result.cluster, "local");
        assert_eq!((result.objects_in, result.bytes_in, result.bytes_out), (2, 4, 4));
        let paths: Vec<&str> = result.outputs.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(paths, vec!["a.txt", "sub/b.txt"]);
        for output in &result.outputs {
            let file = output.uri.strip_prefix("file://").expect("file URI");
            assert!(std::path::Path::new(file).is_file(), "{}", output.uri);
        }
        let on_disk = tree(&harness.output_root().join(shard.to_string()));
        assert_eq!(on_disk.get("a.txt").map(String::as_str), Some(format!("a{shard}").as_str()));
        assert_eq!(on_disk.get("sub/b.txt").map(String::as_str), Some(format!("b{shard}").as_str()));
        let log = harness.output_root().parent().unwrap().join(format!("logs/copy-{shard}-a1.log"));
        assert!(!log.exists(), "an attempt that printed nothing keeps no log: {}", log.display());
    }
    assert_eq!(harness.shards_left().await?, 0);
    let work = harness.dirs.path().join("work/r1/copy");
    assert_eq!(std::fs::read_dir(&work).map(|d| d.count()).unwrap_or(0), 0, "attempt dirs removed");
    Ok(())
}

#[tokio::test]
async fn quick_shards_are_reported_together_each_once() -> anyhow::Result<()> {
    let harness = Harness::start(StageSetup { command: "true", shards: 20, ..Default::default() }).await?;
    for shard in 0..20 {
        harness.publish_shard(shard, 20, vec![]).await?;
    }
    let mut command = harness.worker();
    // Held until the last shard queued is done, however slow the machine.
    command.args(["--result-hold", "10m"]);
    let (status, stderr) = tokio::task::spawn_blocking(move || run_to_end(command, Duration::from_secs(60))).await??;
    assert!(status.success(), "{stderr}");
    let results = harness.results().await?;
    let shards: Vec<u32> = results.iter().map(|r| r.shard).collect();
    assert_eq!(shards, (0..20).collect::<Vec<u32>>(), "{stderr}");
    assert!(results.iter().all(|r| r.status == ShardStatus::Succeeded && r.attempt == 1));
    let stream = harness.js.get_stream(names::RESULTS_STREAM).await?;
    assert_eq!(stream.get_info().await?.state.messages, 1, "twenty results in one message");
    assert_eq!(harness.shards_left().await?, 0, "every shard acked once its result was stored");
    Ok(())
}

#[tokio::test]
async fn a_stopped_worker_reports_the_results_it_holds() -> anyhow::Result<()> {
    let marker = tempfile::tempdir()?;
    let started = marker.path().join("started");
    // The last shard's entry point runs until the worker is stopped.
    let command = format!("if [ \"$CONCURRENT_SHARD\" = 4 ]; then echo $$ > {}; sleep 300; fi", started.display());
    let harness =
        Harness::start(StageSetup { command: &command, shards: 5, max_attempts: 3, ..Default::default() }).await?;
    for shard in 0..5 {
        harness.publish_shard(shard, 5, vec![]).await?;
    }
    let mut worker = harness.worker();
    worker.args(["--result-hold", "10m"]).stderr(std::process::Stdio::null());
    let mut child = common::Running(worker.spawn()?);
    wait_for_number(&started, Duration::from_secs(30)).await?;
    let stream = harness.js.get_stream(names::RESULTS_STREAM).await?;
    assert_eq!(stream.get_info().await?.state.messages, 0, "the four results are held while more shards are queued");
    std::process::Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status()?;
    let status = tokio::task::spawn_blocking(move || child.0.wait()).await??;
    assert!(status.success(), "{status}");
    let results = harness.results().await?;
    let summary: Vec<(u32, bool)> = results.iter().map(|r| (r.shard, r.status == ShardStatus::Succeeded)).collect();
    assert_eq!(summary, vec![(0, true), (1, true), (2, true), (3, true), (4, false)]);
    assert_eq!(harness.shards_left().await?, 1, "only the stopped shard waits for another worker");
    Ok(())
}

#[tokio::test]
async fn a_worker_takes_no_shard_while_its_entry_point_runs() -> anyhow::Result<()> {
    let marker = tempfile::tempdir()?;
    let (started, release) = (marker.path().join("started"), marker.path().join("release"));
    // Shard 0 runs until released (or until the marker dir is gone, so that it never outlives
    // the test); shard 1 is quick.
    let command = format!(
        "if [ \"$CONCURRENT_SHARD\" = 0 ]; then echo $$ > {}; while [ ! -e {} ] && [ -d {} ]; do sleep 0.05; done; fi",
        started.display(),
        release.display(),
        marker.path().display()
    );
    let harness = Harness::start(StageSetup { command: &command, shards: 2, ..Default::default() }).await?;
    harness.publish_shard(0, 2, vec![]).await?;
    let mut first = harness.worker_named("first", "10s");
    first.stderr(std::process::Stdio::null());
    let first = common::Running(first.spawn()?);
    let entry_point = wait_for_number(&started, Duration::from_secs(30)).await?;
    // Shard 1 is queued while shard 0 runs: the first worker must leave it to the second.
    harness.publish_shard(1, 2, vec![]).await?;
    let mut second = harness.worker_named("second", "1s");
    second.stderr(std::process::Stdio::null());
    let second = common::Running(second.spawn()?);
    let until = std::time::Instant::now() + Duration::from_secs(30);
    let done = loop {
        let results = harness.results().await?;
        if let Some(result) = results.into_iter().find(|r| r.shard == 1) {
            break result;
        }
        anyhow::ensure!(std::time::Instant::now() < until, "shard 1 waited behind shard 0's running entry point");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((done.status, done.worker.as_str()), (ShardStatus::Succeeded, "second"));
    std::fs::write(&release, "")?;
    // Shard 0's entry point ends before its marker dir goes.
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while nix::sys::signal::kill(nix::unistd::Pid::from_raw(entry_point as i32), None).is_ok() {
        anyhow::ensure!(std::time::Instant::now() < until, "shard 0's entry point did not end once released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop((first, second));
    Ok(())
}

#[tokio::test]
async fn a_failing_entry_point_is_retried_then_terminated() -> anyhow::Result<()> {
    let setup = StageSetup { command: "echo failing >&2; exit 7", max_attempts: 2, ..Default::default() };
    let harness = Harness::start(setup).await?;
    harness.publish_shard(0, 1, vec![]).await?;
    let (status, stderr) = run_worker(&harness, Duration::from_secs(60)).await?;
    assert!(status.success(), "{stderr}");
    let results = harness.results().await?;
    let summary: Vec<(u32, bool, ShardStatus)> =
        results.iter().map(|r| (r.attempt, r.last_attempt, r.status.clone())).collect();
    let failed = ShardStatus::Failed { reason: "exit code 7".into() };
    assert_eq!(summary, vec![(1, false, failed.clone()), (2, true, failed)], "{stderr}");
    assert!(results.iter().all(|r| r.outputs.is_empty()));
    assert_eq!(harness.shards_left().await?, 0, "the terminated shard left the stream");
    let log = harness.output_root().parent().unwrap().join("logs/copy-0-a2.log");
    assert_eq!(std::fs::read_to_string(log)?, "failing\nconcurrent-worker: attempt failed: exit code 7\n");
    Ok(())
}

#[tokio::test]
async fn garbage_is_terminated_and_the_next_shard_runs() -> anyhow::Result<()> {
    let harness = Harness::start(StageSetup { shards: 1, ..Default::default() }).await?;
    harness.publish_raw(b"\xc1 not messagepack".to_vec(), "garbage").await?;
    let inputs = harness.inputs(0, &[("x.txt", "x")])?;
    harness.publish_shard(0, 1, inputs).await?;
    let (status, stderr) = run_worker(&harness, Duration::from_secs(60)).await?;
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("does not decode"), "{stderr}");
    let results = harness.results().await?;
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].status, ShardStatus::Succeeded);
    assert_eq!(harness.shards_left().await?, 0, "garbage terminated");
    Ok(())
}

#[tokio::test]
async fn parameters_are_quoted_and_filled() -> anyhow::Result<()> {
    let setup = StageSetup {
        command: "printf '%s\\n' {x} > {output_dir}/args.txt",
        parameters: &[("x", None), ("output_dir", None), ("input_dir", None)],
        given: [("x".to_string(), "x; rm -rf /nonexistent-concurrent-dir".to_string())].into(),
        ..Default::default()
    };
    let harness = Harness::start(setup).await?;
    harness.publish_shard(0, 1, vec![]).await?;
    let (status, stderr) = run_worker(&harness, Duration::from_secs(60)).await?;
    assert!(status.success(), "{stderr}");
    let results = harness.results().await?;
    assert_eq!(results[0].status, ShardStatus::Succeeded, "{stderr}");
    let on_disk = tree(&harness.output_root().join("0"));
    assert_eq!(
        on_disk.get("args.txt").map(String::as_str),
        Some("x; rm -rf /nonexistent-concurrent-dir\n"),
        "one argument"
    );
    Ok(())
}

#[tokio::test]
async fn a_timed_out_attempt_fails_with_its_reason() -> anyhow::Result<()> {
    let setup = StageSetup { command: "sleep 30", timeout_s: Some(1), ..Default::default() };
    let harness = Harness::start(setup).await?;
    harness.publish_shard(0, 1, vec![]).await?;
    let (status, stderr) = run_worker(&harness, Duration::from_secs(30)).await?;
    assert!(status.success(), "{stderr}");
    let results = harness.results().await?;
    assert_eq!(results[0].status, ShardStatus::Failed { reason: "timed out after 1s".into() });
    assert!(results[0].last_attempt);
    Ok(())
}

#[tokio::test]
async fn an_unsafe_input_path_fails_the_attempt() -> anyhow::Result<()> {
    let harness = Harness::start(StageSetup::default()).await?;
    let mut inputs = harness.inputs(0, &[("ok.txt", "ok")])?;
    inputs[0].path = "../../escape.txt".into();
    harness.publish_shard(0, 1, inputs).await?;
    let (status, stderr) = run_worker(&harness, Duration::from_secs(30)).await?;
    assert!(status.success(), "{stderr}");
    let results = harness.results().await?;
    let ShardStatus::Failed { reason } = &results[0].status else { panic!("{:?}", results[0]) };
    assert!(reason.contains("\"../../escape.txt\" has an empty, `.` or `..` segment"), "{reason}");
    Ok(())
}

#[tokio::test]
async fn a_missing_consumer_means_nothing_to_do() -> anyhow::Result<()> {
    let harness = Harness::start(StageSetup::default()).await?;
    harness
        .js
        .delete_consumer_from_stream(
            concurrent_proto::names::shard_consumer(&harness.run_id, &harness.stage),
            concurrent_proto::names::SHARDS_STREAM,
        )
        .await?;
    let (status, stderr) = run_worker(&harness, Duration::from_secs(30)).await?;
    assert!(status.success(), "{stderr}");
    assert!(harness.results().await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn an_unreachable_nats_exits_3() -> anyhow::Result<()> {
    let mut harness = Harness::start(StageSetup::default()).await?;
    harness.nats.kill();
    let mut command = harness.worker();
    command.args(["--connect-timeout", "2s"]);
    let started = std::time::Instant::now();
    let (status, stderr) = tokio::task::spawn_blocking(move || run_to_end(command, Duration::from_secs(30))).await??;
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(started.elapsed() >= Duration::from_secs(2), "it waited for NATS first");
    assert!(stderr.contains("cannot connect to NATS"), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn sigterm_kills_the_entry_point_and_hands_the_shard_back() -> anyhow::Result<()> {
    let marker = tempfile::tempdir()?;
    let pgid_file = marker.path().join("pgid");
    let command = format!("echo $$ > {}; sleep 100 & sleep 100", pgid_file.display());
    let setup = StageSetup { command: &command, max_attempts: 3, ..Default::default() };
    let harness = Harness::start(setup).await?;
    harness.publish_shard(0, 1, vec![]).await?;
    let mut worker = harness.worker();
    worker.stderr(std::process::Stdio::null());
    let mut child = common::Running(worker.spawn()?);

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let pgid = loop {
        if let Some(pgid) = std::fs::read_to_string(&pgid_file).ok().and_then(|t| t.trim().parse::<u32>().ok()) {
            break pgid;
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "the entry point never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    std::process::Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status()?;
    let status = tokio::task::spawn_blocking(move || -> anyhow::Result<std::process::ExitStatus> {
        let until = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.0.try_wait()? {
                return Ok(status);
            }
            anyhow::ensure!(std::time::Instant::now() < until, "the worker did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await??;
    assert!(status.success(), "{status}");

    let results = harness.results().await?;
    assert_eq!(results.len(), 1);
    let ShardStatus::Failed { reason } = &results[0].status else { panic!("{:?}", results[0]) };
    assert!(reason.contains("SIGTERM"), "{reason}");
    assert!(!results[0].last_attempt);
    assert_eq!(harness.shards_left().await?, 1, "the shard waits for another worker");
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while !common::group_members(pgid).is_empty() && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(common::group_members(pgid), Vec::<u32>::new(), "the entry point's process group is gone");
    Ok(())
}

#[tokio::test]
async fn a_vanished_input_fails_its_shard_once_and_terminates_it() -> anyhow::Result<()> {
    let harness = Harness::start(StageSetup { max_attempts: 3, ..Default::default() }).await?;
    let inputs = harness.inputs(0, &[("a.txt", "a")])?;
    std::fs::remove_file(harness.dirs.path().join("inputs/0/a.txt"))?;
    harness.publish_shard(0, 1, inputs).await?;
    let (status, stderr) = run_worker(&harness, Duration::from_secs(60)).await?;
    assert!(status.success(), "{stderr}");
    let results = harness.results().await?;
    assert_eq!(results.len(), 1, "one attempt of three: {results:#?}");
    let result = &results[0];
    assert!(result.permanent && result.last_attempt, "{result:?}");
    let ShardStatus::Failed { reason } = &result.status else { panic!("{result:?}") };
    assert!(
        reason.starts_with("permanent failure (not retried): materializing the inputs: fetching input"),
        "{reason}"
    );
    assert_eq!(harness.shards_left().await?, 0, "terminated, not handed back");
    Ok(())
}

#[tokio::test]
async fn a_chatty_entry_point_s_log_keeps_its_head_and_tail() -> anyhow::Result<()> {
    let setup =
        StageSetup { command: "echo FIRST; seq 1 50000; echo LAST", log_limit: Some(2048), ..Default::default() };
    let harness = Harness::start(setup).await?;
    harness.publish_shard(0, 1, vec![]).await?;
    let (status, stderr) = run_worker(&harness, Duration::from_secs(60)).await?;
    assert!(status.success(), "{stderr}");
    let log = std::fs::read_to_string(harness.output_root().parent().unwrap().join("logs/copy-0-a1.log"))?;
    assert!(log.starts_with("FIRST\n1\n2\n"), "{log}");
    assert!(log.ends_with("50000\nLAST\n"), "{log}");
    assert!(log.contains("bytes of output dropped here"), "{log}");
    assert!(log.len() < 2048 + 200, "{} bytes", log.len());
    Ok(())
}

/// Tells the stage's workers, as the scheduler does, that attempt `attempt` decided `shard`.
async fn announce_decided(harness: &Harness, shard: u32, attempt: u32) -> anyhow::Result<()> {
    let decided =
        ShardDecided { v: WIRE_VERSION, run_id: harness.run_id.clone(), stage: harness.stage.clone(), shard, attempt };
    let client = harness.js.client();
    client
        .publish(names::decided_subject(&harness.run_id, &harness.stage), concurrent_proto::encode(&decided).into())
        .await?;
    client.flush().await?;
    Ok(())
}

#[tokio::test]
async fn an_attempt_another_decided_stops_and_a_shard_already_decided_is_not_run() -> anyhow::Result<()> {
    // Each attempt writes its shell's pid to `<marks>/<shard>`, then sleeps.
    let setup = StageSetup {
        command: "echo $$ > \"$MARKS/$CONCURRENT_SHARD\"; sleep 60",
        speculate: true,
        max_attempts: 3,
        shards: 2,
        ..Default::default()
    };
    let harness = Harness::start(setup).await?;
    let marks = harness.dirs.path().join("marks");
    std::fs::create_dir_all(&marks)?;
    let mut notices = harness.js.client().subscribe(names::running_subject(&harness.run_id, &harness.stage)).await?;
    harness.publish_shard(0, 2, harness.inputs(0, &[("a.txt", "a")])?).await?;
    let mut command = harness.worker_with_idle("2s");
    command.env("MARKS", &marks);
    let mut worker = Background::spawn(command)?;

    // The attempt says it runs long, with the message a copy would be made from.
    let notice = tokio::time::timeout(Duration::from_secs(20), notices.next()).await?.expect("a running notice");
    let notice: AttemptRunning = concurrent_proto::decode(&notice.payload)?;
    assert_eq!((notice.shard, notice.attempt, notice.stream_sequence), (0, 1, 1), "{notice:?}");
    assert!(notice.elapsed_ms >= 1000, "{notice:?}");
    let pid = wait_for_number(&marks.join("0"), Duration::from_secs(10)).await?;

    // A copy (attempt 4) decided shard 0: the running attempt stops at once.
    announce_decided(&harness, 0, 4).await?;
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        anyhow::ensure!(std::time::Instant::now() < until, "the superseded entry point still runs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Shard 1 is decided before any worker takes it: it is settled without running.
    announce_decided(&harness, 1, 4).await?;
    harness.publish_shard(1, 2, harness.inputs(1, &[("b.txt", "b")])?).await?;

    let status = worker.wait(Duration::from_secs(30)).await?;
    let stderr = worker.stderr();
    assert!(status.success(), "{status}\n{stderr}");
    assert!(stderr.contains("another attempt decided the shard first"), "{stderr}");
    assert!(stderr.contains("the shard is already decided: settled without running it"), "{stderr}");
    assert!(!marks.join("1").exists(), "shard 1 never ran");
    assert!(harness.results().await?.is_empty(), "a superseded attempt publishes no result");
    assert_eq!(harness.shards_left().await?, 0, "both shard messages are settled");
    Ok(())
}

#[tokio::test]
async fn a_pull_given_up_on_is_answered_before_the_worker_leaves() -> anyhow::Result<()> {
    // A pull the worker stopped waiting for (the attempt it overlapped ended first) still
    // stands at the server: a shard published meanwhile goes to it. Read before leaving, that
    // shard is in hand on its first delivery instead of waiting out `ack_wait`.
    use concurrent_worker::queue::{Pulled, StageQueue};
    let harness = Harness::start(StageSetup { shards: 2, ..Default::default() }).await?;
    let queue = StageQueue::bind(&harness.js, &harness.run_id, &harness.stage).await?.expect("the consumer exists");
    let given_up = tokio::time::timeout(Duration::from_millis(50), queue.pull(Duration::from_secs(3))).await;
    assert!(given_up.is_err(), "the queue is empty: the pull is still waiting");
    harness.publish_shard(0, 2, harness.inputs(0, &[("a.txt", "a")])?).await?;
    let Pulled::Message(message) = queue.answer_to_waiting_pull().await? else {
        panic!("the shard published after the pull was given up on is its answer");
    };
    let shard: concurrent_proto::ShardMsg = concurrent_proto::decode(&message.payload)?;
    assert_eq!((shard.shard, concurrent_worker::queue::attempt(&message)), (0, Some(1)));
    // With no pull waiting, nothing is asked for: the next shard stays queued for others.
    assert!(matches!(queue.answer_to_waiting_pull().await?, Pulled::Nothing));
    harness.publish_shard(1, 2, harness.inputs(1, &[("b.txt", "b")])?).await?;
    assert!(matches!(queue.answer_to_waiting_pull().await?, Pulled::Nothing));
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = harness
        .js
        .get_consumer_from_stream(names::shard_consumer(&harness.run_id, &harness.stage), names::SHARDS_STREAM)
        .await?;
    let info = consumer.info().await?;
    assert_eq!((info.num_pending, info.num_ack_pending), (1, 1), "shard 1 still queued, shard 0 in hand");
    Ok(())
}
