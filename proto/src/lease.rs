//! The lease a worker keeps on disk while its entry point runs: the shard message's ack subject
//! and the entry point's process group. Whoever sees the worker die (the local executor) reads
//! it, kills the orphaned group and naks the shard, so it is handed out again at once rather
//! than after `ack_wait`. A text file of three lines, `ack <subject>`, `pgid <n>` and
//! `input <dir>` (the entry point's `CONCURRENT_INPUT_DIR`, by which the executor tells that
//! group is still that entry point's); this module only writes and reads the text.

use std::path::{Path, PathBuf};

/// What a worker holds while its entry point runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The reply subject of the shard message: publishing `-NAK` there hands the shard back.
    pub ack_subject: String,
    /// The entry point's process group.
    pub pgid: u32,
    /// The entry point's `CONCURRENT_INPUT_DIR`, unique to the worker.
    pub input_dir: String,
}

impl Lease {
    /// The file's text.
    pub fn to_text(&self) -> String {
        format!("ack {}\npgid {}\ninput {}\n", self.ack_subject, self.pgid, self.input_dir)
    }

    /// Reads the file's text; `None` for an empty (released) or damaged lease.
    pub fn parse(text: &str) -> Option<Lease> {
        let mut lines = text.lines();
        let ack_subject = lines.next()?.strip_prefix("ack ")?.trim();
        let pgid: u32 = lines.next()?.strip_prefix("pgid ")?.trim().parse().ok()?;
        let input_dir = lines.next()?.strip_prefix("input ")?;
        let plausible = ack_subject.starts_with("$JS.ACK.") && !ack_subject.contains(char::is_whitespace);
        (plausible && pgid > 1 && !input_dir.is_empty()).then(|| Lease {
            ack_subject: ack_subject.to_string(),
            pgid,
            input_dir: input_dir.to_string(),
        })
    }
}

/// The text of a released lease. Never empty: overwriting a lease in place keeps the file's
/// block, where emptying it frees the block on every attempt (a synchronous discard on some
/// filesystems).
pub const RELEASED: &str = "released\n";

/// The lease file of worker `worker`: beside its slot `<work-dir>/<run>/<stage>/<worker>`.
pub fn lease_path(work_dir: &Path, run_id: &str, stage: &str, worker: &str) -> PathBuf {
    work_dir.join(run_id).join(stage).join(format!("{worker}.lease"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_reads_back_what_was_written() {
        let lease = Lease {
            ack_subject: "$JS.ACK.CONCURRENT_SHARDS.c.1.7.7.1700000000.0".into(),
            pgid: 4242,
            input_dir: "/w/r1/thumbs/local-1-2/in dir".into(),
        };
        assert_eq!(Lease::parse(&lease.to_text()), Some(lease));
    }

    #[test]
    fn released_or_damaged_leases_read_as_none() {
        for text in [
            "",
            RELEASED,
            "ack $JS.ACK.x\n",
            "ack $JS.ACK.x\npgid nope\n",
            "ack inbox.1\npgid 10\n",
            "ack $JS.ACK.x\npgid 1\n",
        ] {
            assert_eq!(Lease::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn the_lease_sits_beside_the_worker_slot() {
        let path = lease_path(Path::new("/w"), "r1", "thumbs", "local-1-2");
        assert_eq!(path, PathBuf::from("/w/r1/thumbs/local-1-2.lease"));
    }
}
