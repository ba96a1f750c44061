//! Unit tests of `entry_point`: real `bash` children, no sockets.

use concurrent_procs::Mark;

use super::*;

const LIMIT: u64 = concurrent_proto::DEFAULT_LOG_LIMIT;

fn invocation<'a>(dir: &'a Path, command: &'a str, env: &'a EntryPointEnv, log: &'a Path) -> Invocation<'a> {
    Invocation {
        command,
        cwd: dir,
        env,
        log,
        timeout: None,
        input_dir: dir,
        log_limit: LIMIT,
        lease: None,
        exited: None,
    }
}

fn no_env() -> EntryPointEnv {
    EntryPointEnv { set: vec![], remove: vec![] }
}

async fn run_simple(dir: &Path, command: &str, env: &EntryPointEnv, timeout: Option<Duration>) -> Exit {
    let log = dir.join("log");
    let invocation = Invocation {
        command,
        cwd: dir,
        env,
        log: &log,
        timeout,
        input_dir: dir,
        log_limit: LIMIT,
        lease: None,
        exited: None,
    };
    run(invocation, &CancellationToken::new()).await.unwrap()
}

/// Live (non-zombie) processes whose process group is `pgid`.
fn group_members(pgid: u32) -> Vec<u32> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // Fields after the `(comm)`: state ppid pgrp ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string() {
            members.push(pid);
        }
    }
    members
}

#[tokio::test]
async fn exit_codes_and_signals_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(run_simple(dir.path(), "true", &no_env(), None).await, Exit::Code(0));
    assert_eq!(run_simple(dir.path(), "exit 3", &no_env(), None).await, Exit::Code(3));
    assert_eq!(run_simple(dir.path(), "kill -TERM $$", &no_env(), None).await, Exit::Signal(15));
    assert_eq!(Exit::Code(0).failure_reason(), None);
    assert_eq!(Exit::Code(3).failure_reason().as_deref(), Some("exit code 3"));
    assert_eq!(Exit::Signal(15).failure_reason().as_deref(), Some("killed by signal 15"));
    assert_eq!(Exit::TimedOut(Duration::from_secs(7)).failure_reason().as_deref(), Some("timed out after 7s"));
}

#[tokio::test]
async fn output_goes_to_the_log_and_env_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let env = EntryPointEnv { set: vec![("CONCURRENT_SHARD".into(), "4".into())], remove: vec!["HOME".into()] };
    let exit =
        run_simple(dir.path(), "echo shard=$CONCURRENT_SHARD home=${HOME-unset}; echo oops >&2; pwd", &env, None).await;
    assert_eq!(exit, Exit::Code(0));
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(log.contains("shard=4 home=unset"), "{log}");
    assert!(log.contains("oops"), "{log}");
    assert!(log.contains(&dir.path().canonicalize().unwrap().to_string_lossy().into_owned()), "{log}");
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let env = no_env();
    let pid_file = dir.path().join("pgid");
    let command = format!("echo $$ > {}; sleep 100 & sleep 100", pid_file.display());
    let invocation = Invocation {
        command: &command,
        cwd: dir.path(),
        env: &env,
        log: &log,
        timeout: Some(Duration::from_secs(1)),
        input_dir: dir.path(),
        log_limit: LIMIT,
        lease: None,
        exited: None,
    };
    let started = std::time::Instant::now();
    let exit = run(invocation, &CancellationToken::new()).await.unwrap();
    assert_eq!(exit, Exit::TimedOut(Duration::from_secs(1)));
    assert!(started.elapsed() < Duration::from_secs(10));
    let pgid: u32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    // Killed processes are reaped by init asynchronously: give it a moment, with a deadline.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !group_members(pgid).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(group_members(pgid), Vec::<u32>::new(), "both sleeps are gone");
}

#[tokio::test]
async fn background_children_do_not_outlive_a_successful_command() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pgid");
    let command = format!("echo $$ > {}; sleep 100 &", pid_file.display());
    assert_eq!(run_simple(dir.path(), &command, &no_env(), None).await, Exit::Code(0));
    let pgid: u32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !group_members(pgid).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(group_members(pgid).is_empty());
}

#[tokio::test]
async fn cancellation_kills_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let env = no_env();
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        trigger.cancel();
    });
    let invocation =
        Invocation { input_dir: dir.path(), log_limit: LIMIT, ..invocation(dir.path(), "sleep 100", &env, &log) };
    let exit = run(invocation, &cancel).await.unwrap();
    assert_eq!(exit, Exit::Interrupted);
}

#[tokio::test]
async fn a_hostile_parameter_reaches_the_command_as_one_argument() {
    let dir = tempfile::tempdir().unwrap();
    let project = concurrent_mlflow::project::MlProject::parse(
        "name: t\nentry_points:\n  main:\n    parameters: {x: string}\n    command: \"printf '%s|' {x} > args\"\n",
        "MLproject",
    )
    .unwrap();
    let entry = project.entry_point(dir.path(), "main").unwrap();
    let command = entry.render_command(&[("x".to_string(), "x; rm -rf /".to_string())].into()).unwrap();
    assert_eq!(run_simple(dir.path(), &command, &no_env(), None).await, Exit::Code(0));
    assert_eq!(std::fs::read_to_string(dir.path().join("args")).unwrap(), "x; rm -rf /|");
}

#[tokio::test]
async fn the_lease_names_the_shard_and_group_while_the_command_runs_and_is_released_after() {
    let dir = tempfile::tempdir().unwrap();
    let env = no_env();
    let log = dir.path().join("log");
    let lease = dir.path().join("w.lease");
    let seen = dir.path().join("seen");
    // The lease is written just after the spawn (it names the group): wait for it, 10 s at most.
    let command = format!(
        "i=0; while [ ! -s {l} ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done; cat {l} > {s}; echo $$ >> {s}",
        l = lease.display(),
        s = seen.display()
    );
    let file = crate::lease_file::LeaseFile::new(lease.clone());
    let slot = LeaseSlot { file: &file, ack_subject: "$JS.ACK.S.c.1.5.5.1.0", input_dir: Path::new("/w/in") };
    let invocation = Invocation { lease: Some(slot), ..invocation(dir.path(), &command, &env, &log) };
    assert_eq!(run(invocation, &CancellationToken::new()).await.unwrap(), Exit::Code(0));
    let seen = std::fs::read_to_string(&seen).unwrap();
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines.len(), 4, "the lease's three lines, then the shell's pid: {seen}");
    assert_eq!(lines[0], "ack $JS.ACK.S.c.1.5.5.1.0");
    assert_eq!(lines[1], format!("pgid {}", lines[3]), "the lease names the command's group");
    assert_eq!(lines[2], "input /w/in");
    let released = std::fs::read_to_string(&lease).unwrap();
    assert_eq!(released.trim_end(), concurrent_proto::lease::RELEASED.trim_end(), "released once the command is over");
    assert_eq!(concurrent_proto::lease::Lease::parse(&released), None);
}

/// Waits (with a deadline that only catches a hang) until no live process carries `mark`.
fn marked_after_end(mark: &Mark) -> Vec<u32> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let marked = concurrent_procs::marked_processes(mark);
        if marked.is_empty() || std::time::Instant::now() > deadline {
            return marked;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn a_daemon_started_with_setsid_does_not_outlive_the_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let env = no_env();
    let pids = dir.path().join("pids");
    // A new session (setsid) and a double fork: neither stays in the entry point's group.
    let command = format!("setsid sleep 300 & echo $! >> {p}; (sleep 300 & echo $! >> {p})", p = pids.display());
    let exit = run(invocation(dir.path(), &command, &env, &log), &CancellationToken::new()).await.unwrap();
    assert_eq!(exit, Exit::Code(0));
    let started: Vec<u32> =
        std::fs::read_to_string(&pids).unwrap().lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(started.len(), 2, "both daemons started");
    let mark = Mark::input_dir(&dir.path().to_string_lossy());
    assert_eq!(marked_after_end(&mark), Vec::<u32>::new(), "no process of the attempt survives it");
}

#[tokio::test]
async fn a_chatty_command_s_log_keeps_its_head_and_tail() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let env = no_env();
    let command = "echo FIRST; seq 1 100000; echo LAST >&2";
    let invocation = Invocation { log_limit: 4096, ..invocation(dir.path(), command, &env, &log) };
    assert_eq!(run(invocation, &CancellationToken::new()).await.unwrap(), Exit::Code(0));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("FIRST\n1\n2\n"), "{}", &text[..100]);
    assert!(text.ends_with("100000\nLAST\n"), "{}", &text[text.len() - 100..]);
    let total = "FIRST\n".len() + (1..=100000).map(|i: u32| i.to_string().len() + 1).sum::<usize>() + "LAST\n".len();
    let dropped = total - 4096;
    assert!(text.contains(&format!("[concurrent-worker: {dropped} bytes of output dropped here;")), "{text}");
    assert!(text.len() < 4096 + 200, "{} bytes", text.len());
}
