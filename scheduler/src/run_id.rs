//! Run ids: short, sortable by creation time, and safe in NATS subjects, consumer names,
//! KV keys and file names (`[0-9a-z]`).

use std::time::{SystemTime, UNIX_EPOCH};

const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// A new run id: milliseconds since the epoch and four random characters, in base 36.
pub fn new_run_id() -> String {
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let mut id = base36(millis);
    for _ in 0..4 {
        id.push(ALPHABET[rand::random_range(0..ALPHABET.len())] as char);
    }
    id
}

fn base36(mut n: u64) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(ALPHABET[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.reverse();
    String::from_utf8(digits).expect("ASCII digits")
}

/// True when `id` could be a run id (what `concurrent` accepts on its command line).
pub fn is_valid_run_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_safe_unique_and_sort_by_time() {
        let a = new_run_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_run_id();
        assert!(is_valid_run_id(&a) && is_valid_run_id(&b), "{a} {b}");
        assert_ne!(a, b);
        assert!(a[..a.len() - 4] < b[..b.len() - 4]);
        assert!(!is_valid_run_id("a.b") && !is_valid_run_id("") && !is_valid_run_id("A"));
    }

    #[test]
    fn base36_digits() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
    }
}
