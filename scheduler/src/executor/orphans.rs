//! The entry point a dead worker left running: its process group is killed only while one of
//! the group's live processes still carries the worker's `CONCURRENT_INPUT_DIR`, so a group id
//! the system has since handed to an unrelated program is never killed.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Kills process group `pgid` when it is still the entry point started with
/// `CONCURRENT_INPUT_DIR=<input_dir>`; returns whether it did.
pub fn kill_entry_point(pgid: u32, input_dir: &str) -> nix::Result<bool> {
    if pgid <= 1 || !group_runs_entry_point(pgid, input_dir) {
        return Ok(false);
    }
    match killpg(Pid::from_raw(pgid as i32), Signal::SIGKILL) {
        Ok(()) => Ok(true),
        Err(nix::errno::Errno::ESRCH) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Whether a live process of group `pgid` has `CONCURRENT_INPUT_DIR=<input_dir>` in the
/// environment it was started with.
pub fn group_runs_entry_point(pgid: u32, input_dir: &str) -> bool {
    let marker = format!("CONCURRENT_INPUT_DIR={input_dir}");
    let Ok(entries) = std::fs::read_dir("/proc") else { return false };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .any(|pid| live_group_of(pid) == Some(pgid) && started_with(pid, marker.as_bytes()))
}

/// The process group of `pid`, unless it is gone or a zombie.
fn live_group_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After `(comm)`: state, ppid, pgrp, …
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?;
    let pgrp = fields.nth(1)?.parse().ok()?;
    (state != "Z").then_some(pgrp)
}

/// Whether `pid`'s initial environment holds the entry `marker` (`NAME=value`).
fn started_with(pid: u32, marker: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| environ.split(|b| *b == 0).any(|e| e == marker))
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::Command;

    use super::*;

    #[test]
    fn only_a_group_started_with_the_worker_s_input_dir_is_killed() {
        let mut child = Command::new("sleep")
            .arg("30")
            .env("CONCURRENT_INPUT_DIR", "/work/r/s/w-1/in")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id();
        assert!(group_runs_entry_point(pgid, "/work/r/s/w-1/in"));
        assert!(!group_runs_entry_point(pgid, "/work/r/s/w-2/in"), "another worker's dir");

        assert_eq!(kill_entry_point(pgid, "/work/r/s/w-2/in"), Ok(false));
        assert_eq!(child.try_wait().unwrap(), None, "a group that is not the entry point lives on");

        assert_eq!(kill_entry_point(pgid, "/work/r/s/w-1/in"), Ok(true));
        assert_eq!(child.wait().unwrap().signal(), Some(Signal::SIGKILL as i32));
        assert!(!group_runs_entry_point(pgid, "/work/r/s/w-1/in"), "gone once reaped");
    }
}
