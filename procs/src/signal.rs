//! Signalling a process or a process group. A target that is already gone is not an error.

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// Sends `signal` to every process of group `pgid`; `Ok(false)` when the group is empty.
/// Group ids 0 and 1 (the caller's own group, init's) are never signalled.
pub fn kill_group(pgid: u32, signal: Signal) -> nix::Result<bool> {
    let Some(pid) = target(pgid) else { return Ok(false) };
    match nix::sys::signal::killpg(pid, signal) {
        Ok(()) => Ok(true),
        Err(Errno::ESRCH) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Sends `signal` to process `pid`; `Ok(false)` when it is gone. Pids 0 and 1 are never
/// signalled.
pub fn kill_process(pid: u32, signal: Signal) -> nix::Result<bool> {
    let Some(pid) = target(pid) else { return Ok(false) };
    match nix::sys::signal::kill(pid, signal) {
        Ok(()) => Ok(true),
        Err(Errno::ESRCH) => Ok(false),
        Err(error) => Err(error),
    }
}

/// A pid that names one real process or group (not 0, 1, or a negative number).
fn target(id: u32) -> Option<Pid> {
    i32::try_from(id).ok().filter(|id| *id > 1).map(Pid::from_raw)
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::Command;

    use super::*;

    #[test]
    fn a_group_is_killed_and_a_gone_one_is_not_an_error() {
        let mut child = Command::new("sleep").arg("30").process_group(0).spawn().unwrap();
        let pgid = child.id();
        assert_eq!(kill_group(pgid, Signal::SIGKILL), Ok(true));
        assert_eq!(child.wait().unwrap().signal(), Some(Signal::SIGKILL as i32));
        assert_eq!(kill_group(pgid, Signal::SIGKILL), Ok(false));
        assert_eq!(kill_process(pgid, Signal::SIGKILL), Ok(false));
    }

    #[test]
    fn the_caller_s_group_and_init_are_never_targets() {
        assert_eq!(kill_group(0, Signal::SIGKILL), Ok(false));
        assert_eq!(kill_group(1, Signal::SIGKILL), Ok(false));
        assert_eq!(kill_process(u32::MAX, Signal::SIGKILL), Ok(false));
    }
}
