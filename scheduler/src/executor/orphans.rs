//! The entry point a dead worker left running: its process group is killed only while one of
//! the group's live processes still carries the worker's `CONCURRENT_INPUT_DIR`, so a group id
//! the system has since handed to an unrelated program is never killed. Processes of that
//! entry point that left the group (a new session, a double fork) are found by the same mark
//! and killed too.

use concurrent_procs::{Mark, group_runs_mark, kill_group, kill_process, marked_processes};
use nix::sys::signal::Signal;

/// Kills the entry point started with `CONCURRENT_INPUT_DIR=<input_dir>` in process group
/// `pgid` while that group still runs it, and every other process carrying that mark;
/// returns whether it killed anything.
pub fn kill_entry_point(pgid: u32, input_dir: &str) -> nix::Result<bool> {
    let mark = Mark::input_dir(input_dir);
    let mut killed = pgid > 1 && group_runs_mark(pgid, &mark) && kill_group(pgid, Signal::SIGKILL)?;
    for pid in marked_processes(&mark) {
        killed |= kill_process(pid, Signal::SIGKILL)?;
    }
    Ok(killed)
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::Command;

    use super::*;

    fn group_runs_entry_point(pgid: u32, input_dir: &str) -> bool {
        group_runs_mark(pgid, &Mark::input_dir(input_dir))
    }

    #[test]
    fn only_a_group_started_with_the_worker_s_input_dir_is_killed() {
        // Marks unique to this test process: another run of this test must not match them.
        let ours = format!("/work/r/s/w-1-{}/in", std::process::id());
        let theirs = format!("/work/r/s/w-2-{}/in", std::process::id());
        let mut child =
            Command::new("sleep").arg("30").env("CONCURRENT_INPUT_DIR", &ours).process_group(0).spawn().unwrap();
        let pgid = child.id();
        // Until the child has exec'd, /proc shows the environment it was forked with.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !group_runs_entry_point(pgid, &ours) {
            assert!(std::time::Instant::now() < deadline, "the child never showed its environment");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!group_runs_entry_point(pgid, &theirs), "another worker's dir");

        assert_eq!(kill_entry_point(pgid, &theirs), Ok(false));
        assert_eq!(child.try_wait().unwrap(), None, "a group that is not the entry point lives on");

        assert_eq!(kill_entry_point(pgid, &ours), Ok(true));
        assert_eq!(child.wait().unwrap().signal(), Some(Signal::SIGKILL as i32));
        assert!(!group_runs_entry_point(pgid, &ours), "gone once reaped");
    }
}
