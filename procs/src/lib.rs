//! Processes of Concurrent, shared by the scheduler and the worker.
//!
//! - [`signal`]: the one way to signal a process or a process group (a process already gone is
//!   not an error).
//! - [`scan`]: an entry point's processes found through `/proc` by the environment mark every
//!   one of them inherits (`CONCURRENT_INPUT_DIR=<the attempt's input dir>`).
//! - [`containment`]: every process an attempt starts, found and killed when the attempt ends,
//!   including those that start a new session or double-fork: a cgroup v2 per attempt where
//!   the cgroup filesystem is writable (`cgroup.kill`), else the worker as a child subreaper
//!   plus the environment mark.

pub mod containment;
pub mod scan;
pub mod signal;

pub use containment::Containment;
pub use scan::{Mark, group_runs_mark, marked_processes};
pub use signal::{kill_group, kill_process};
