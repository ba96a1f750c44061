//! The static `concurrent-worker` (built by `scripts/build-static-worker.sh` into
//! `target/static/bin/`) completes a shard inside a bare image-like root: an empty directory
//! holding only busybox's static `sh` (no bash, no libc, no Python) and the worker, entered
//! with `chroot` in a mount namespace of its own (with `/proc` and the default devices, as a
//! container runtime gives), against a real nats-server and a real MLflow server; NATS is named by a host
//! name only the root's own `/etc/hosts` knows. This is what a worker Pod whose image has only a shell gets from the init container.
//!
//! Needs root (chroot, mount) and Debian's `busybox-static` (`scripts/setup.sh` installs it).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use common::{Harness, StageSetup, run_to_end};
use concurrent_mlflow::object_path::ObjectPath;
use concurrent_mlflow::tracking::{MlflowClient, RunStatus, join_artifact_uri};
use concurrent_proto::{ShardStatus, TrackingTarget};
use concurrent_tests::workspace_dir;

/// A host name the bare root resolves through its own `/etc/hosts` only.
const NATS_HOST: &str = "nats.concurrent.test";

#[tokio::test]
async fn the_static_worker_completes_a_shard_in_a_root_with_only_a_shell() -> anyhow::Result<()> {
    let Some(tools) = BareRootTools::find()? else { return Ok(()) };
    let server = tokio::task::spawn_blocking(concurrent_tests::mlflow_server::shared).await?;
    let client = MlflowClient::new(&server.uri)?;
    let experiment_id = client.get_or_create_experiment("worker-static").await?;
    let stage_run = client.create_run(&experiment_id, "copy", &[]).await?;

    // The input lives in MLflow (the bare root has no view of this machine's files).
    let scratch = tempfile::tempdir()?;
    let local_input = scratch.path().join("a.txt");
    std::fs::write(&local_input, "hello from the host")?;
    let input_path = ObjectPath::parse("inputs/pics/a.txt")?;
    client.upload_file(&stage_run.artifact_uri, &input_path, &local_input).await?;
    let input_uri = join_artifact_uri(&stage_run.artifact_uri, &input_path)?;

    let tracking_uri = format!("http://localhost:{}", server.port);
    let setup = StageSetup {
        command: "cp -r \"$CONCURRENT_INPUT_DIR\"/. \"$CONCURRENT_OUTPUT_DIR\"; \
                  ls / > \"$CONCURRENT_OUTPUT_DIR/root.txt\"; \
                  if command -v bash >/dev/null; then echo bash; else echo 'no bash here'; fi",
        tracking: Some(TrackingTarget {
            uri: tracking_uri,
            experiment_id: experiment_id.clone(),
            stage_run_id: stage_run.run_id.clone(),
        }),
        ..Default::default()
    };
    let harness = Harness::start(setup).await?;
    let inputs = vec![concurrent_proto::InputObject {
        path: "pics/a.txt".into(),
        uri: input_uri,
        size: Some(19),
        upstream_run: None,
    }];
    harness.publish_shard(0, 1, inputs).await?;

    let root = tempfile::tempdir()?;
    tools.lay_out(root.path())?;
    let nats_url = format!("nats://{NATS_HOST}:{}", harness.nats.port);
    let command = tools.worker_in(root.path(), &nats_url, &harness.run_id, &harness.stage);
    let (status, stderr) = tokio::task::spawn_blocking(move || run_to_end(command, Duration::from_secs(120))).await??;
    assert!(status.success(), "the worker in the bare root failed: {status}\n{stderr}");

    let results = harness.results().await?;
    assert_eq!(results.len(), 1, "{stderr}");
    let result = &results[0];
    assert_eq!(result.status, ShardStatus::Succeeded, "{stderr}");
    assert_eq!(result.worker, "bare-worker");
    let run_id = result.mlflow_run_id.clone().context("a shard run")?;
    let run = client.get_run(&run_id).await?;
    assert_eq!(run.info.status, RunStatus::Finished);
    assert_eq!(run.data.tags.get("mlflow.parentRunId"), Some(&stage_run.run_id));

    let paths: Vec<&str> = result.outputs.iter().map(|o| o.path.as_str()).collect();
    assert_eq!(paths, vec!["pics/a.txt", "root.txt"]);
    let fetched = scratch.path().join("fetched");
    concurrent_mlflow::artifacts::fetch(&result.outputs[0].uri, &fetched, Some(&client)).await?;
    assert_eq!(std::fs::read_to_string(&fetched)?, "hello from the host");
    concurrent_mlflow::artifacts::fetch(&result.outputs[1].uri, &fetched, Some(&client)).await?;
    let listing = std::fs::read_to_string(&fetched)?;
    let entries: Vec<&str> = listing.lines().collect();
    assert_eq!(
        entries,
        ["bin", "concurrent", "dev", "etc", "proc", "tmp", "work"],
        "the entry point ran in the bare root"
    );
    let log_uri = format!("{}/logs/entry_point.log", run.info.artifact_uri);
    concurrent_mlflow::artifacts::fetch(&log_uri, &fetched, Some(&client)).await?;
    assert_eq!(std::fs::read_to_string(&fetched)?, "no bash here\n", "the command ran under busybox sh");
    Ok(())
}

/// What the bare root is made of, found on this machine.
struct BareRootTools {
    worker: PathBuf,
    busybox: PathBuf,
    unshare: PathBuf,
    chroot: PathBuf,
}

impl BareRootTools {
    /// The tools, or `None` (with a note) where this test cannot run outside CI: not root.
    /// Anything missing in CI is an error.
    fn find() -> anyhow::Result<Option<BareRootTools>> {
        let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
        if !effective_uid_is_root()? {
            if in_ci {
                bail!("this test needs root (chroot and mount)");
            }
            eprintln!("skipped: the bare-root test needs root (chroot and mount)");
            return Ok(None);
        }
        let worker = workspace_dir().join("target/static/bin/concurrent-worker");
        if !worker.is_file() {
            bail!("{} is missing: run scripts/build-static-worker.sh", worker.display());
        }
        let busybox = PathBuf::from("/bin/busybox");
        if !busybox.is_file() {
            bail!("/bin/busybox is missing: run scripts/setup.sh (Debian package busybox-static)");
        }
        Ok(Some(BareRootTools {
            worker,
            busybox,
            unshare: concurrent_tests::find_tool("unshare")?,
            chroot: concurrent_tests::find_tool("chroot")
                .or_else(|_| Ok::<_, anyhow::Error>("/usr/sbin/chroot".into()))?,
        }))
    }

    /// Fills `root` with `bin/` (busybox and its applets: `sh`, `cp`, `ls`, …),
    /// `concurrent/bin/concurrent-worker`, `etc/hosts`, `dev/` (mount points of [`DEVICES`]), and empty
    /// `proc/`, `tmp/`, `work/`.
    fn lay_out(&self, root: &Path) -> anyhow::Result<()> {
        for dir in ["bin", "concurrent/bin", "dev", "etc", "proc", "tmp", "work"] {
            std::fs::create_dir_all(root.join(dir))?;
        }
        for device in DEVICES {
            std::fs::write(root.join("dev").join(device), "")?;
        }
        std::fs::copy(&self.busybox, root.join("bin/busybox"))?;
        let applets = Command::new(&self.busybox).arg("--list").stderr(Stdio::inherit()).output()?;
        for applet in String::from_utf8(applets.stdout)?.lines().filter(|a| !a.is_empty() && *a != "busybox") {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))?;
        }
        assert!(!root.join("bin/bash").exists(), "busybox has no bash: the worker must fall back to sh");
        // As the init container of a worker Pod does: the worker installs itself.
        let installed = Command::new(&self.worker)
            .arg("--install-into")
            .arg(root.join("concurrent/bin"))
            // A Pod's containers may all get the worker's environment.
            .env("NATS_URL", "nats://unused:4222")
            .output()?;
        anyhow::ensure!(installed.status.success(), "--install-into: {}", String::from_utf8_lossy(&installed.stderr));
        anyhow::ensure!(
            std::fs::read(root.join("concurrent/bin/concurrent-worker"))? == std::fs::read(&self.worker)?,
            "the installed worker is a copy of the static one"
        );
        std::fs::write(root.join("etc/hosts"), format!("127.0.0.1 localhost {NATS_HOST}\n"))?;
        Ok(())
    }

    /// `concurrent-worker` for the stage, run as `/concurrent/bin/concurrent-worker` inside
    /// `root` with a bare environment, in a mount namespace of its own where, as a container
    /// runtime does, `/proc` is mounted and the default devices are bound in.
    fn worker_in(&self, root: &Path, nats_url: &str, run_id: &str, stage: &str) -> Command {
        let mut command = Command::new(&self.unshare);
        command
            .args(["--mount", "--fork", "/bin/sh", "-c", ENTER_ROOT, "enter-root"])
            .arg(root)
            .arg(&self.chroot)
            .arg("/concurrent/bin/concurrent-worker")
            .args(["--nats-url", nats_url, "--run", run_id, "--stage", stage])
            .args(["--idle-timeout", "1s", "--worker-id", "bare-worker"])
            .args(["--work-dir", "/work", "--cache-dir", "/tmp/cache"])
            .env_clear()
            .env("PATH", "/bin:/concurrent/bin")
            .env("HOME", "/tmp")
            .stdin(Stdio::null());
        command
    }
}

/// The devices every container gets (the OCI runtime specification's default devices).
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Run by the host's `sh` in the new mount namespace: `$1` = the root, `$2` = `chroot`, then
/// the command to run inside. Binds the default devices and mounts `/proc`, as a runtime does.
const ENTER_ROOT: &str = r#"root="$1"; chroot="$2"; shift 2
for device in null zero full random urandom tty; do
  mount --bind "/dev/$device" "$root/dev/$device" || exit 1
done
mount -t proc proc "$root/proc" && exec "$chroot" "$root" "$@""#;

/// Whether this process runs as root (the effective uid in `/proc/self/status`).
fn effective_uid_is_root() -> anyhow::Result<bool> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:")).context("no Uid line in /proc/self/status")?;
    Ok(uids.split_whitespace().nth(1) == Some("0"))
}
