//! Fault tests of `concurrent-worker` (issue 3, "nothing lost, nothing done twice"): NATS
//! killed and restarted on the same port and store, MLflow killed and restarted, SIGTERM with
//! tracking on. Real servers; every wait has a deadline and every child is killed on drop.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Background, Harness, StageSetup, wait_for_number};
use concurrent_mlflow::tracking::{MlflowClient, RunStatus};
use concurrent_proto::{ShardResult, ShardStatus, TrackingTarget};
use concurrent_tests::mlflow_server::MlflowServer;

/// Waits until at least `n` results are stored, within `deadline`.
async fn wait_for_results(harness: &Harness, n: usize, deadline: Duration) -> anyhow::Result<Vec<ShardResult>> {
    let until = Instant::now() + deadline;
    loop {
        let results = harness.results_within(deadline).await?;
        if results.len() >= n {
            return Ok(results);
        }
        anyhow::ensure!(Instant::now() < until, "only {} of {n} results within {deadline:?}", results.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A stage run and experiment in `client`'s server, for a tracked stage.
async fn tracking_target(client: &MlflowClient, experiment: &str) -> anyhow::Result<TrackingTarget> {
    let experiment_id = client.get_or_create_experiment(experiment).await?;
    let stage_run = client.create_run(&experiment_id, "copy", &[]).await?;
    Ok(TrackingTarget { uri: client.tracking_uri().to_string(), experiment_id, stage_run_id: stage_run.run_id })
}

#[tokio::test]
async fn a_nats_restart_during_an_entry_point_loses_nothing() -> anyhow::Result<()> {
    let marker = tempfile::tempdir()?;
    let started = marker.path().join("started");
    let command = format!("echo 1 > {}; sleep 3; echo done > \"$CONCURRENT_OUTPUT_DIR/done.txt\"", started.display());
    let mut harness = Harness::start(StageSetup { command: &command, max_attempts: 3, ..Default::default() }).await?;
    harness.publish_shard(0, 1, vec![]).await?;
    let mut worker = Background::spawn(harness.worker())?;
    wait_for_number(&started, Duration::from_secs(30)).await?;

    harness.nats.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(worker.child.0.try_wait()?.is_none(), "the worker survives the outage:\n{}", worker.stderr());
    harness.nats.restart()?;

    let status = worker.wait(Duration::from_secs(60)).await?;
    let stderr = worker.stderr();
    assert!(status.success(), "{status}\n{stderr}");
    let results = harness.results_within(Duration::from_secs(20)).await?;
    assert_eq!(results.len(), 1, "{results:#?}\n{stderr}");
    assert_eq!(results[0].status, ShardStatus::Succeeded, "{stderr}");
    assert_eq!((results[0].attempt, results[0].last_attempt), (1, true));
    assert_eq!(results[0].outputs.len(), 1);
    assert_eq!(harness.shards_left().await?, 0, "the shard was acked after the restart");
    Ok(())
}

#[tokio::test]
async fn a_nats_outage_longer_than_the_idle_timeout_does_not_end_the_worker() -> anyhow::Result<()> {
    let mut harness = Harness::start(StageSetup { shards: 2, ..Default::default() }).await?;
    let inputs = harness.inputs(0, &[("a.txt", "a")])?;
    harness.publish_shard(0, 2, inputs).await?;
    let mut worker = Background::spawn(harness.worker_with_idle("4s"))?;
    wait_for_results(&harness, 1, Duration::from_secs(30)).await?;
    // The worker acks after its result is stored: kill the server only once that ack has landed,
    // or shard 0 would rightly come back after `ack_wait`, long after this worker's idle timeout.
    let acked = Instant::now() + Duration::from_secs(10);
    while harness.shards_left().await? > 0 {
        anyhow::ensure!(Instant::now() < acked, "shard 0 was never acked:\n{}", worker.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    harness.nats.kill();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(worker.child.0.try_wait()?.is_none(), "the worker waits out the outage:\n{}", worker.stderr());
    harness.nats.restart()?;
    // Published on a fresh connection as soon as the server is back.
    let js = harness.fresh_js().await?;
    let inputs = harness.inputs(1, &[("b.txt", "b")])?;
    let message = concurrent_proto::ShardMsg {
        v: concurrent_proto::WIRE_VERSION,
        run_id: harness.run_id.clone(),
        stage: harness.stage.clone(),
        shard: 1,
        shards: 2,
        inputs,
        speculative: false,
    };
    let publish = async_nats::jetstream::message::PublishMessage::build()
        .payload(concurrent_proto::encode(&message).into())
        .message_id(concurrent_proto::names::shard_msg_id(&harness.run_id, &harness.stage, 1));
    js.send_publish(concurrent_proto::names::shard_subject(&harness.run_id, &harness.stage), publish).await?.await?;

    let status = worker.wait(Duration::from_secs(60)).await?;
    let stderr = worker.stderr();
    assert!(status.success(), "{status}\n{stderr}");
    let mut results = harness.results_within(Duration::from_secs(20)).await?;
    results.sort_by_key(|r| r.shard);
    let summary: Vec<(u32, ShardStatus)> = results.iter().map(|r| (r.shard, r.status.clone())).collect();
    assert_eq!(summary, vec![(0, ShardStatus::Succeeded), (1, ShardStatus::Succeeded)], "{stderr}");
    assert_eq!(harness.shards_left().await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mlflow_outage_loses_no_shard_and_records_each_once() -> anyhow::Result<()> {
    const SHARDS: u32 = 6;
    let mut server = tokio::task::spawn_blocking(MlflowServer::start).await??;
    let client = MlflowClient::new(&server.uri)?;
    let target = tracking_target(&client, "worker-mlflow-outage").await?;
    let experiment_id = target.experiment_id.clone();
    let setup = StageSetup {
        command: "sleep 1; cp -r \"$CONCURRENT_INPUT_DIR\"/. \"$CONCURRENT_OUTPUT_DIR\"",
        shards: SHARDS,
        max_attempts: 3,
        tracking: Some(target),
        ..Default::default()
    };
    let harness = Harness::start(setup).await?;
    for shard in 0..SHARDS {
        let inputs = harness.inputs(shard, &[("x.txt", &format!("x{shard}"))])?;
        harness.publish_shard(shard, SHARDS, inputs).await?;
    }
    let mut worker = Background::spawn(harness.worker_with_idle("3s"))?;
    wait_for_results(&harness, 1, Duration::from_secs(60)).await?;

    let outage = Instant::now();
    tokio::task::block_in_place(|| server.kill())?;
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(worker.child.0.try_wait()?.is_none(), "the worker rides out the outage:\n{}", worker.stderr());
    tokio::task::block_in_place(|| server.restart())?;
    eprintln!("MLflow was down for {:?}", outage.elapsed());

    // Like the executor: another worker while shards are left (an attempt that could not be
    // recorded comes back after a delay).
    let mut stderr = String::new();
    for round in 0..4 {
        let status = worker.wait(Duration::from_secs(240)).await?;
        stderr.push_str(&worker.stderr());
        assert!(status.success(), "{status}\n{stderr}");
        if harness.shards_left().await? == 0 {
            break;
        }
        anyhow::ensure!(round < 3, "shards left after 4 workers:\n{stderr}");
        worker = Background::spawn(harness.worker_with_idle("15s"))?;
    }

    let results = harness.results_within(Duration::from_secs(20)).await?;
    let mut succeeded: BTreeMap<u32, Vec<&ShardResult>> = BTreeMap::new();
    for result in results.iter().filter(|r| r.status == ShardStatus::Succeeded) {
        succeeded.entry(result.shard).or_default().push(result);
    }
    for shard in 0..SHARDS {
        let ok = succeeded.get(&shard).map_or(0, Vec::len);
        assert_eq!(ok, 1, "shard {shard}: one Succeeded result\n{results:#?}\n{stderr}");
    }
    for result in results.iter().filter(|r| r.status != ShardStatus::Succeeded) {
        let ShardStatus::Failed { reason } = &result.status else { unreachable!() };
        assert!(reason.contains("MLflow unreachable") && !result.last_attempt, "{result:#?}");
    }
    assert_eq!(harness.shards_left().await?, 0, "every shard acked");

    let runs = client.search_runs(std::slice::from_ref(&experiment_id), "attributes.status = 'FINISHED'").await?;
    let mut finished: BTreeMap<String, usize> = BTreeMap::new();
    for run in &runs {
        if let Some(shard) = run.data.tags.get("concurrent.shard") {
            *finished.entry(shard.clone()).or_default() += 1;
        }
    }
    for shard in 0..SHARDS {
        assert_eq!(finished.get(&shard.to_string()), Some(&1), "shard {shard}: one FINISHED run; {finished:?}");
        let run_id = succeeded[&shard][0].mlflow_run_id.clone().expect("a shard run");
        assert_eq!(client.get_run(&run_id).await?.info.status, RunStatus::Finished);
    }
    Ok(())
}

#[tokio::test]
async fn sigterm_with_tracking_ends_the_run_killed_and_hands_the_shard_back() -> anyhow::Result<()> {
    a_stop_signal_ends_the_run_killed_and_hands_the_shard_back("-TERM", "worker-sigterm").await
}

/// A terminal's Ctrl-C reaches the workers too (they share `concurrent`'s process group):
/// SIGINT stops a worker exactly as SIGTERM does.
#[tokio::test]
async fn sigint_with_tracking_ends_the_run_killed_and_hands_the_shard_back() -> anyhow::Result<()> {
    a_stop_signal_ends_the_run_killed_and_hands_the_shard_back("-INT", "worker-sigint").await
}

async fn a_stop_signal_ends_the_run_killed_and_hands_the_shard_back(
    signal: &str,
    experiment: &str,
) -> anyhow::Result<()> {
    let server = tokio::task::spawn_blocking(concurrent_tests::mlflow_server::shared).await?;
    let client = MlflowClient::new(&server.uri)?;
    let target = tracking_target(&client, experiment).await?;
    let marker = tempfile::tempdir()?;
    let pgid_file = marker.path().join("pgid");
    let command = format!(
        "if [ \"$CONCURRENT_ATTEMPT\" = 1 ]; then echo $$ > {}; sleep 100 & sleep 100; fi; \
         echo ok > \"$CONCURRENT_OUTPUT_DIR/ok.txt\"",
        pgid_file.display()
    );
    let setup = StageSetup { command: &command, max_attempts: 3, tracking: Some(target), ..Default::default() };
    let harness = Harness::start(setup).await?;
    harness.publish_shard(0, 1, vec![]).await?;
    let mut worker = Background::spawn(harness.worker())?;
    let pgid = wait_for_number(&pgid_file, Duration::from_secs(60)).await?;

    let signalled = Instant::now();
    worker.signal(signal)?;
    let status = worker.wait(Duration::from_secs(30)).await?;
    let took = signalled.elapsed();
    let stderr = worker.stderr();
    assert!(status.success(), "{status}\n{stderr}");
    eprintln!("the worker exited {took:?} after {signal}");
    assert!(took < Duration::from_secs(5), "prompt exit, took {took:?}\n{stderr}");

    let results = harness.results().await?;
    assert_eq!(results.len(), 1, "{results:#?}");
    let ShardStatus::Failed { reason } = &results[0].status else { panic!("{:?}", results[0]) };
    assert!(reason.contains("worker stopped"), "{reason}");
    assert!(!results[0].last_attempt);
    let run_id = results[0].mlflow_run_id.clone().expect("the shard run");
    assert_eq!(client.get_run(&run_id).await?.info.status, RunStatus::Killed);
    let until = Instant::now() + Duration::from_secs(5);
    while !common::group_members(pgid).is_empty() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(common::group_members(pgid), Vec::<u32>::new(), "the entry point's process group is gone");
    assert_eq!(harness.shards_left().await?, 1, "the shard waits for another worker");

    // The next worker gets it at once (nak without delay) and finishes it.
    let mut next = Background::spawn(harness.worker())?;
    let status = next.wait(Duration::from_secs(60)).await?;
    assert!(status.success(), "{status}\n{}", next.stderr());
    let results = harness.results().await?;
    assert_eq!(results.len(), 2, "{results:#?}");
    assert_eq!((results[1].attempt, &results[1].status), (2, &ShardStatus::Succeeded));
    let run_id = results[1].mlflow_run_id.clone().expect("the second shard run");
    assert_eq!(client.get_run(&run_id).await?.info.status, RunStatus::Finished);
    assert_eq!(harness.shards_left().await?, 0);
    Ok(())
}
