//! An entry point's processes, found through `/proc` by the mark in the environment they were
//! started with: every process the entry point starts inherits it, whatever session or group
//! it moves to, and an unrelated program that reuses a pid or group id does not carry it.

/// An environment entry (`NAME=value`) that marks an attempt's processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark(String);

impl Mark {
    /// The variable holding the mark: the attempt's input dir, unique to a worker's slot.
    pub const VARIABLE: &'static str = "CONCURRENT_INPUT_DIR";

    /// The mark of the entry point given `CONCURRENT_INPUT_DIR=<input_dir>`.
    pub fn input_dir(input_dir: &str) -> Mark {
        Mark(format!("{}={input_dir}", Mark::VARIABLE))
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// The live processes (not zombies) started with `mark` in their environment.
pub fn marked_processes(mark: &Mark) -> Vec<u32> {
    live_processes().filter(|(pid, _)| started_with(*pid, mark)).map(|(pid, _)| pid).collect()
}

/// Whether a live process of group `pgid` was started with `mark` in its environment.
pub fn group_runs_mark(pgid: u32, mark: &Mark) -> bool {
    live_processes().any(|(pid, group)| group == pgid && started_with(pid, mark))
}

/// The live processes below `root` (its children, theirs, and so on), found through the
/// parent links in `/proc`. For a child subreaper that has reaped its attempt's shell this is
/// every process the attempt left, whatever its group, session or environment.
pub fn descendants_of(root: u32) -> Vec<u32> {
    let mut children: std::collections::HashMap<u32, Vec<(u32, bool)>> = std::collections::HashMap::new();
    for pid in all_pids() {
        if let Some(stat) = read_stat(pid) {
            children.entry(stat.ppid).or_default().push((pid, stat.live));
        }
    }
    let mut found = Vec::new();
    let mut next = vec![root];
    while let Some(parent) = next.pop() {
        for &(pid, live) in children.get(&parent).map(Vec::as_slice).unwrap_or_default() {
            if live {
                found.push(pid);
            }
            next.push(pid);
        }
    }
    found
}

/// What `/proc/<pid>/stat` says of a process.
struct Stat {
    /// Neither a zombie nor dead.
    live: bool,
    ppid: u32,
    pgrp: u32,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After `(comm)`: state, ppid, pgrp, …
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(Stat { live: state != "Z" && state != "X", ppid, pgrp })
}

fn all_pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
}

/// Every live process with its group.
fn live_processes() -> impl Iterator<Item = (u32, u32)> {
    all_pids().filter_map(|pid| read_stat(pid).filter(|stat| stat.live).map(|stat| (pid, stat.pgrp)))
}

/// Whether `pid`'s initial environment holds `mark`.
fn started_with(pid: u32, mark: &Mark) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|environ| environ.split(|b| *b == 0).any(|entry| entry == mark.bytes()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    use super::*;

    #[test]
    fn marked_processes_are_found_by_their_environment_only() {
        // A mark unique to this test process: another run of this test must not match it.
        let dir = format!("/work/r/s/w-scan-{}/in", std::process::id());
        let mark = Mark::input_dir(&dir);
        let mut child = Command::new("sleep").arg("30").env(Mark::VARIABLE, &dir).process_group(0).spawn().unwrap();
        let pid = child.id();
        // Until the child has exec'd, /proc shows the environment it was forked with.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while marked_processes(&mark).is_empty() {
            assert!(std::time::Instant::now() < deadline, "the child never showed its environment");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(marked_processes(&mark), vec![pid]);
        assert!(group_runs_mark(pid, &mark));
        assert!(!group_runs_mark(pid, &Mark::input_dir("/work/r/s/w-other/in")));
        assert!(marked_processes(&Mark::input_dir("/work/r/s/w-other/in")).is_empty());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(marked_processes(&mark).is_empty(), "gone once reaped");
    }
}
