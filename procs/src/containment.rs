//! Every process an attempt starts, found and killed when the attempt ends, including those
//! that leave its process group, start a new session, double-fork or clear their environment.
//!
//! The first of three ways that applies:
//! - **Subreaper.** The worker is a child subreaper (`PR_SET_CHILD_SUBREAPER`), so an orphaned
//!   descendant is re-parented to it rather than to init: every process an attempt leaves is
//!   below the worker. At the attempt's end, when the worker has no child left (one `waitid`),
//!   nothing is left anywhere and nothing is read; otherwise every live process below it (by
//!   the parent links in `/proc`) is killed, a few rounds for processes forked meanwhile.
//! - **cgroup v2**, for a process that cannot be a subreaper: where its cgroup (in the cgroup2
//!   hierarchy, read from `/proc/self/mountinfo` and `/proc/self/cgroup`) lets it create a
//!   child cgroup, each attempt gets one; a POSIX shell moves itself into it before it becomes
//!   the command's shell (so everything it starts is born inside), and the attempt's end writes
//!   `cgroup.kill`, which kills every process in it at once, then removes it.
//! - **Mark**, always as well: every live process started with the attempt's environment
//!   [`Mark`] is killed.
//!
//! The processes killed are reaped by pid when they are this process's children (adopted
//! orphans); the entry point's own shell is left to whoever waits for it. An adopted orphan
//! that exited by itself is reaped by [`reap_exited_children`], which a worker calls between
//! attempts, when no child of its own is running.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::Pid;

use crate::scan::{Mark, descendants_of, marked_processes};
use crate::signal::kill_process;

/// Rounds of "find marked processes, kill them" at an attempt's end.
const KILL_ROUNDS: usize = 20;
/// How long the end of an attempt waits for its killed processes to be gone.
const GONE_WITHIN: Duration = Duration::from_secs(2);

/// Set once [`become_subreaper`] succeeded: the flag stays for the process's life (nothing
/// here clears it), so it is not asked of the kernel at every attempt.
static SUBREAPER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes this process a child subreaper: orphans among its descendants are re-parented to it.
pub fn become_subreaper() -> nix::Result<()> {
    nix::sys::prctl::set_child_subreaper(true)?;
    SUBREAPER.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// How an attempt's processes are held.
#[derive(Debug)]
pub struct Containment {
    /// The attempt's cgroup directory, when one could be created.
    cgroup: Option<PathBuf>,
}

impl Containment {
    /// How an attempt of this process is held. A child subreaper finds every process its
    /// attempt leaves through the parent links, so it needs nothing more (and no shell to enter
    /// a cgroup before each command). Otherwise a fresh cgroup `name` under this process's own
    /// cgroup v2 when it can be created there, else the mark alone.
    pub fn for_attempt(name: &str) -> Containment {
        if is_subreaper() {
            return Containment { cgroup: None };
        }
        let cgroup = own_cgroup_dir().and_then(|parent| {
            let dir = parent.join(name);
            // A leftover of a killed worker with the same name: empty it and start again.
            if dir.is_dir() {
                kill_cgroup(&dir);
                let _ = std::fs::remove_dir(&dir);
            }
            match std::fs::create_dir(&dir) {
                Ok(()) => Some(dir),
                Err(error) => {
                    tracing::debug!(dir = %dir.display(), %error, "no cgroup for the attempt; using the mark");
                    None
                }
            }
        });
        Containment { cgroup }
    }

    /// `subreaper`, `cgroup` or `mark`, for logs and docs.
    pub fn kind(&self) -> &'static str {
        match (&self.cgroup, is_subreaper()) {
            (Some(_), _) => "cgroup",
            (None, true) => "subreaper",
            (None, false) => "mark",
        }
    }

    /// The attempt's cgroup directory, if any.
    pub fn cgroup(&self) -> Option<&Path> {
        self.cgroup.as_deref()
    }

    /// The program and arguments that run `command` with [`entry_point_shell`]` -c` inside the
    /// containment: with a cgroup, a POSIX `sh` (lighter to start than bash) first moves
    /// itself into it, then becomes the command's shell (its children are born there).
    pub fn command_line(&self, command: &str) -> (String, Vec<String>) {
        let shell = entry_point_shell();
        match &self.cgroup {
            Some(dir) => {
                let procs = dir.join("cgroup.procs").to_string_lossy().into_owned();
                let args = ["-c", ENTER_CGROUP, "concurrent-attempt", &procs, command, shell];
                (cgroup_entry_shell().to_string(), args.map(str::to_string).to_vec())
            }
            None => (shell.to_string(), vec!["-c".to_string(), command.to_string()]),
        }
    }

    /// Kills every process of the attempt: its cgroup, every live process below this one when
    /// it is a child subreaper, and every live process started with `mark`; waits (briefly)
    /// until they are gone and reaps those that were this process's children, except `leader`
    /// (the entry point's shell, waited for by its owner). Returns how many processes other
    /// than `leader` were found beside the cgroup's. Meant for a process that runs one attempt at a time (a
    /// worker): every other process below it would be taken as the attempt's.
    pub fn kill_all(&self, mark: &Mark, leader: Option<u32>) -> usize {
        let mut killed: Vec<u32> = Vec::new();
        if let Some(dir) = &self.cgroup {
            killed.extend(cgroup_procs(dir));
            kill_cgroup(dir);
        }
        if killed.is_empty() && has_no_descendants() {
            // The usual end of an attempt: its shell was reaped and nothing it started is
            // left anywhere, so there is nothing to look for in `/proc`.
            return 0;
        }
        let below_me = is_subreaper();
        let me = std::process::id();
        let left = || {
            let mut pids = marked_processes(mark);
            if below_me {
                pids.extend(descendants_of(me));
            }
            pids.retain(|pid| *pid != me);
            pids.sort_unstable();
            pids.dedup();
            pids
        };
        // A process killed in one round may still show in the next: each is counted once.
        let mut found = std::collections::BTreeSet::new();
        for _ in 0..KILL_ROUNDS {
            let pids = left();
            if pids.is_empty() {
                break;
            }
            for &pid in &pids {
                if let Err(error) = kill_process(pid, Signal::SIGKILL) {
                    tracing::warn!(pid, %error, "could not kill a process the entry point left");
                }
            }
            found.extend(pids.iter().copied().filter(|pid| Some(*pid) != leader));
            killed.extend(pids);
        }
        killed.sort_unstable();
        killed.dedup();
        killed.retain(|pid| Some(*pid) != leader);
        let deadline = Instant::now() + GONE_WITHIN;
        while Instant::now() < deadline && (self.populated() || !left().is_empty()) {
            std::thread::sleep(Duration::from_millis(5));
        }
        for pid in killed {
            reap(pid);
        }
        found.len()
    }

    /// Whether the cgroup still holds a live process.
    fn populated(&self) -> bool {
        self.cgroup.as_deref().is_some_and(cgroup_populated)
    }
}

impl Drop for Containment {
    fn drop(&mut self) {
        if let Some(dir) = &self.cgroup {
            kill_cgroup(dir);
            let deadline = Instant::now() + GONE_WITHIN;
            while cgroup_populated(dir) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if let Err(error) = std::fs::remove_dir(dir) {
                tracing::warn!(dir = %dir.display(), %error, "could not remove the attempt's cgroup");
            }
        }
    }
}

/// Whether this process is a child subreaper (see [`become_subreaper`]).
fn is_subreaper() -> bool {
    SUBREAPER.load(std::sync::atomic::Ordering::Relaxed) || nix::sys::prctl::get_child_subreaper().unwrap_or(false)
}

/// Whether no process below this one can be alive: this process is a child subreaper (an
/// orphan anywhere below it is re-parented to it, never to init) and has no child at all,
/// running or exited (one `waitid` that reaps nothing).
pub fn has_no_descendants() -> bool {
    let no_child = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    is_subreaper() && waitid(Id::All, no_child) == Err(Errno::ECHILD)
}

/// Run by the shell's `-c` with `$1` = the cgroup's `cgroup.procs`, `$2` = the command and `$3`
/// = the shell: the shell moves itself into the cgroup, then becomes the command's shell (same
/// pid and group).
const ENTER_CGROUP: &str =
    r#"echo $$ > "$1" || echo "concurrent-worker: could not enter the attempt's cgroup $1" >&2; exec "$3" -c "$2""#;

/// The shell that runs entry point commands: `bash` when it is on `PATH` (MLflow runs commands
/// with `bash -c`), else `sh`, so an image with only a POSIX shell (busybox, Alpine) still runs
/// them. Looked up once per process and named by its full path, so that starting it does not
/// try every directory of `PATH` again on every attempt.
pub fn entry_point_shell() -> &'static str {
    static SHELL: OnceLock<String> = OnceLock::new();
    SHELL.get_or_init(|| on_path("bash").or_else(|| on_path("sh")).unwrap_or_else(|| "sh".to_string()))
}

/// The shell that moves an attempt into its cgroup before the command's shell replaces it:
/// `sh` when it is on `PATH`, else the entry point's shell.
fn cgroup_entry_shell() -> &'static str {
    static SHELL: OnceLock<String> = OnceLock::new();
    SHELL.get_or_init(|| on_path("sh").unwrap_or_else(|| entry_point_shell().to_string()))
}

/// The full path of `program` in the first directory of `PATH` that holds it as an executable.
fn on_path(program: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .filter(|candidate| candidate.is_absolute() && is_executable(candidate))
        .find_map(|found| found.to_str().map(str::to_string))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Kills every process in cgroup `dir`: `cgroup.kill` (Linux 5.14+), else each listed pid.
fn kill_cgroup(dir: &Path) {
    if std::fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    for _ in 0..KILL_ROUNDS {
        let pids = cgroup_procs(dir);
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            let _ = kill_process(pid, Signal::SIGKILL);
        }
    }
}

/// Whether cgroup `dir` holds a live process (`cgroup.events`: `populated 1`).
fn cgroup_populated(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events")).is_ok_and(|events| events.lines().any(|l| l == "populated 1"))
}

/// The pids in cgroup `dir`.
fn cgroup_procs(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|procs| procs.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Reaps `pid` if it is an exited child of this process; anything else is left alone.
fn reap(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
    }
}

/// Reaps every child of this process that has exited (orphans this subreaper adopted), without
/// blocking. Only for a process that has no child of its own that something else waits for
/// (a worker between attempts): it would take that child's exit status.
pub fn reap_exited_children() {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// This process's cgroup directory in the cgroup2 hierarchy, if there is one.
fn own_cgroup_dir() -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let (mount, root) = cgroup2_mount(&mountinfo)?;
    let own = unified_path(&cgroup)?;
    // The mount shows the hierarchy from `root` on; the own path is from the hierarchy's top.
    let relative = own.strip_prefix(root.as_str()).unwrap_or(own).trim_start_matches('/');
    let dir = if relative.is_empty() { PathBuf::from(mount) } else { Path::new(&mount).join(relative) };
    dir.is_dir().then_some(dir)
}

/// The mount point and root of the first cgroup2 mount in `mountinfo` text.
fn cgroup2_mount(mountinfo: &str) -> Option<(String, String)> {
    mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        let fstype = after.split_whitespace().next()?;
        if fstype != "cgroup2" {
            return None;
        }
        let fields: Vec<&str> = before.split_whitespace().collect();
        Some((fields.get(4)?.to_string(), fields.get(3)?.to_string()))
    })
}

/// The cgroup v2 path in `/proc/self/cgroup` text (the `0::<path>` line).
fn unified_path(cgroup: &str) -> Option<&str> {
    cgroup.lines().find_map(|line| line.strip_prefix("0::"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cgroup2_mount_and_own_path_are_read() {
        let mountinfo = "\
25 30 0:23 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755
35 25 0:30 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
36 25 0:31 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu";
        assert_eq!(cgroup2_mount(mountinfo), Some(("/sys/fs/cgroup/unified".into(), "/".into())));
        assert_eq!(unified_path("4:memory:/x\n0::/user.slice/w.scope\n"), Some("/user.slice/w.scope"));
        assert_eq!(cgroup2_mount("36 25 0:31 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu"), None);
    }

    #[test]
    fn without_a_cgroup_the_command_runs_as_is() {
        let containment = Containment { cgroup: None };
        let (program, args) = containment.command_line("echo hi");
        assert!(program.starts_with('/') && program.ends_with("/bash"), "bash by its full path: {program}");
        assert_eq!(args, ["-c", "echo hi"]);
        assert_eq!(containment.kind(), "mark", "this test process is not a subreaper");
    }

    #[test]
    fn with_a_cgroup_a_posix_shell_enters_it_then_becomes_the_command_s_shell() {
        let containment = Containment { cgroup: Some(PathBuf::from("/sys/fs/cgroup/w/a1")) };
        let (program, args) = containment.command_line("echo hi");
        assert!(program.ends_with("/sh"), "{program}");
        assert_eq!(args[0], "-c");
        assert_eq!(&args[2..5], ["concurrent-attempt", "/sys/fs/cgroup/w/a1/cgroup.procs", "echo hi"]);
        assert!(args[5].ends_with("/bash"), "then the entry point's shell: {}", args[5]);
        std::mem::forget(containment);
    }

    /// Starts `script` with `bash -c` as `containment` runs it, with `env` set; waits for the
    /// shell, returns the pids its daemons wrote to `pids`.
    fn daemons(containment: &Containment, env: &[(&str, &str)], pids: &Path) -> Vec<u32> {
        let script = format!("setsid sleep 300 & echo $! >> {p}; (sleep 300 & echo $! >> {p})", p = pids.display());
        let (program, args) = containment.command_line(&script);
        let status = std::process::Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::read_to_string(pids).unwrap().lines().map(|l| l.trim().parse().unwrap()).collect()
    }

    fn alive(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
    }

    #[test]
    fn the_mark_finds_and_kills_daemons_without_a_cgroup() {
        let dir = tempfile::tempdir().unwrap();
        let input_dir = dir.path().join("in").to_string_lossy().into_owned();
        let containment = Containment { cgroup: None };
        let started = daemons(&containment, &[(Mark::VARIABLE, &input_dir)], &dir.path().join("pids"));
        assert_eq!(started.len(), 2);
        assert!(started.iter().all(|pid| alive(*pid)), "the daemons run after their shell exited");
        assert_eq!(containment.kill_all(&Mark::input_dir(&input_dir), None), 2);
        // SIGKILL is delivered asynchronously: gone within a deadline, not at the next line.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while started.iter().any(|pid| alive(*pid)) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(started.iter().all(|pid| !alive(*pid)), "{started:?} survived");
        assert!(marked_processes(&Mark::input_dir(&input_dir)).is_empty());
    }

    #[test]
    fn a_cgroup_kills_daemons_that_carry_no_mark() {
        let containment = Containment::for_attempt(&format!("concurrent-procs-test-{}", std::process::id()));
        let Some(cgroup) = containment.cgroup().map(Path::to_path_buf) else {
            eprintln!("no writable cgroup v2 here: only the mark is tested");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let started = daemons(&containment, &[], &dir.path().join("pids"));
        assert!(started.iter().all(|pid| alive(*pid)));
        let unmarked = Mark::input_dir("/nowhere");
        containment.kill_all(&unmarked, None);
        assert!(started.iter().all(|pid| !alive(*pid)), "{started:?} survived");
        drop(containment);
        assert!(!cgroup.exists(), "the attempt's cgroup is removed");
    }
}
