//! An attempt's log, capped: the first half of the cap is written as it comes, the last half
//! is kept in memory as it goes by, and at the end a line saying how many bytes were dropped
//! is written between the two. Output never waits on the cap. Pure over any `Write`.

use std::collections::VecDeque;
use std::io::Write;

/// A log capped at `limit` bytes of entry point output (plus one line when bytes are dropped).
#[derive(Debug)]
pub struct CappedLog<W: Write> {
    sink: W,
    limit: u64,
    /// Bytes written to the sink so far (the head).
    head: u64,
    /// The most recent bytes past the head, at most `limit - head_limit`.
    tail: VecDeque<u8>,
    /// Bytes that went by and are in neither the head nor the tail.
    dropped: u64,
}

impl<W: Write> CappedLog<W> {
    /// A log of at most `limit` bytes of output written to `sink`.
    pub fn new(sink: W, limit: u64) -> CappedLog<W> {
        CappedLog { sink, limit, head: 0, tail: VecDeque::new(), dropped: 0 }
    }

    fn head_limit(&self) -> u64 {
        self.limit / 2
    }

    fn tail_limit(&self) -> usize {
        usize::try_from(self.limit - self.head_limit()).unwrap_or(usize::MAX)
    }

    /// Takes the next bytes of output.
    pub fn write_output(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        let room = self.head_limit().saturating_sub(self.head);
        if room > 0 {
            let n = bytes.len().min(usize::try_from(room).unwrap_or(usize::MAX));
            self.sink.write_all(&bytes[..n])?;
            self.head += n as u64;
            bytes = &bytes[n..];
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let keep = self.tail_limit();
        if bytes.len() >= keep {
            self.dropped += (self.tail.len() + bytes.len() - keep) as u64;
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - keep..]);
            return Ok(());
        }
        let over = (self.tail.len() + bytes.len()).saturating_sub(keep);
        self.tail.drain(..over);
        self.dropped += over as u64;
        self.tail.extend(bytes);
        Ok(())
    }

    /// Bytes of output dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Writes the dropped-bytes line (when bytes were dropped) and the tail; returns the sink.
    pub fn finish(mut self) -> std::io::Result<W> {
        if self.dropped > 0 {
            let line = format!(
                "\n[concurrent-worker: {} bytes of output dropped here; the log keeps the first and the last {} \
                 bytes (log_limit {} bytes)]\n",
                self.dropped,
                self.head_limit(),
                self.limit
            );
            self.sink.write_all(line.as_bytes())?;
        }
        let (a, b) = self.tail.as_slices();
        self.sink.write_all(a)?;
        self.sink.write_all(b)?;
        self.sink.flush()?;
        Ok(self.sink)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capped(limit: u64, chunks: &[&[u8]]) -> (String, u64) {
        let mut log = CappedLog::new(Vec::new(), limit);
        for chunk in chunks {
            log.write_output(chunk).unwrap();
        }
        let dropped = log.dropped();
        (String::from_utf8(log.finish().unwrap()).unwrap(), dropped)
    }

    #[test]
    fn output_under_the_cap_is_kept_whole() {
        let (text, dropped) = capped(20, &[b"hello ", b"world\n"]);
        assert_eq!((text.as_str(), dropped), ("hello world\n", 0));
        let (text, _) = capped(20, &[&[b'x'; 20]]);
        assert_eq!(text, "x".repeat(20), "exactly the cap: nothing dropped");
    }

    #[test]
    fn output_over_the_cap_keeps_head_and_tail_and_says_how_much_was_dropped() {
        let output: Vec<u8> = (0..100u8).map(|i| b'a' + i % 26).collect();
        // In chunks of every size, the result is the same.
        for chunk in [1, 3, 7, 100] {
            let chunks: Vec<&[u8]> = output.chunks(chunk).collect();
            let (text, dropped) = capped(20, &chunks);
            assert_eq!(dropped, 80, "chunks of {chunk}");
            let (head, rest) = text.split_at(10);
            assert_eq!(head.as_bytes(), &output[..10]);
            assert!(rest.contains("80 bytes of output dropped here"), "{rest}");
            assert!(rest.ends_with(std::str::from_utf8(&output[90..]).unwrap()), "{rest}");
        }
    }
}
