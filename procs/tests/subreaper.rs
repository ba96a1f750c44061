//! A child subreaper's containment: its own test binary, since being a subreaper changes where
//! every orphan of the process goes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use concurrent_procs::Containment;
use concurrent_procs::containment::{become_subreaper, has_no_descendants};
use concurrent_procs::scan::Mark;

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
}

/// Runs `script` as the containment runs a command and waits for its shell; returns the pids
/// the script wrote to `pids`.
fn run(containment: &Containment, script: &str, pids: &Path) -> Vec<u32> {
    let (program, args) = containment.command_line(script);
    let status = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read_to_string(pids).unwrap().lines().map(|l| l.trim().parse().unwrap()).collect()
}

#[test]
fn a_subreaper_kills_what_an_attempt_left_without_a_mark_or_a_cgroup_and_then_sees_nothing_below_it() {
    become_subreaper().unwrap();
    let containment = Containment::for_attempt("unused");
    assert_eq!(containment.kind(), "subreaper");
    assert!(containment.cgroup().is_none(), "a subreaper needs no cgroup");
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    // A new session, a double fork, and a daemon whose environment was cleared: none of them
    // stays in the shell's group or carries a mark.
    let script = format!(
        "setsid sleep 300 & echo $! >> {p}; (sleep 300 & echo $! >> {p}); (env -i sleep 300 & echo $! >> {p})",
        p = pids.display()
    );
    let started = run(&containment, &script, &pids);
    assert_eq!(started.len(), 3);
    assert!(started.iter().all(|pid| alive(*pid)), "the daemons outlive their shell");
    assert!(!has_no_descendants(), "the daemons are below this process");
    let found = containment.kill_all(&Mark::input_dir("/nowhere"), None);
    assert_eq!(found, 3, "each daemon found once");
    let deadline = Instant::now() + Duration::from_secs(5);
    while started.iter().any(|pid| alive(*pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(started.iter().all(|pid| !alive(*pid)), "{started:?} survived");
    concurrent_procs::containment::reap_exited_children();
    assert!(has_no_descendants(), "nothing is left below this process once they are reaped");
    // The usual end of an attempt: nothing left, nothing found.
    let quiet = run(&containment, &format!("echo $$ > {}", dir.path().join("q").display()), &dir.path().join("q"));
    assert_eq!(quiet.len(), 1);
    assert_eq!(containment.kill_all(&Mark::input_dir("/nowhere"), None), 0);
}
