//! Bearer tokens of the service: a file of `name:token` lines. The name is who submitted a run
//! (logs, the `concurrent.submitted_by` tag); the token itself is never logged, stored or
//! echoed. Tokens are compared in constant time.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

/// Why a token file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read the token file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}, line {line}: expected `name:token` with a non-empty name and token")]
    Malformed { path: String, line: usize },
    #[error("{path}, line {line}: the name `{name}` is given twice")]
    DuplicateName { path: String, line: usize, name: String },
    #[error("{path}: holds no token")]
    Empty { path: String },
}

/// Who may call the API.
#[derive(Clone, Default)]
pub struct Tokens {
    /// sha256 of each token -> its name; only digests are kept in memory.
    by_digest: BTreeMap<[u8; 32], String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("names", &self.by_digest.values().collect::<Vec<_>>()).finish()
    }
}

impl Tokens {
    /// No token: every call is allowed (loopback only).
    pub fn none() -> Tokens {
        Tokens::default()
    }

    /// True when calls need a token.
    pub fn required(&self) -> bool {
        !self.by_digest.is_empty()
    }

    /// Reads a token file: one `name:token` per line; blank lines and `#` comments skipped.
    pub fn read(path: &Path) -> Result<Tokens, TokenFileError> {
        let shown = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| TokenFileError::Read { path: shown.clone(), source })?;
        Tokens::parse(&text, &shown)
    }

    /// Parses token file text (`place` names the file in errors).
    pub fn parse(text: &str, place: &str) -> Result<Tokens, TokenFileError> {
        let mut tokens = Tokens::default();
        let mut names = std::collections::BTreeSet::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let malformed = || TokenFileError::Malformed { path: place.to_string(), line: index + 1 };
            let (name, token) = line.split_once(':').ok_or_else(malformed)?;
            let (name, token) = (name.trim(), token.trim());
            if name.is_empty() || token.is_empty() {
                return Err(malformed());
            }
            if !names.insert(name.to_string()) {
                let name = name.to_string();
                return Err(TokenFileError::DuplicateName { path: place.to_string(), line: index + 1, name });
            }
            tokens.by_digest.insert(digest(token), name.to_string());
        }
        if tokens.by_digest.is_empty() {
            return Err(TokenFileError::Empty { path: place.to_string() });
        }
        Ok(tokens)
    }

    /// The caller's name for an `Authorization` header value, or `None` when refused. With no
    /// tokens configured every caller is `anonymous`.
    pub fn check(&self, authorization: Option<&str>) -> Option<String> {
        if !self.required() {
            return Some("anonymous".to_string());
        }
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        let presented = digest(token);
        // Compare against every digest, so the time taken does not tell which one matched.
        let mut found = None;
        for (known, name) in &self.by_digest {
            if constant_time_eq(known, &presented) {
                found = Some(name.clone());
            }
        }
        found
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_token_names_its_holder_and_others_are_refused() {
        let tokens = Tokens::parse("# team tokens\nalice: s3cret-a\n\nci:s3cret-b\n", "tokens").unwrap();
        assert_eq!(tokens.check(Some("Bearer s3cret-a")).as_deref(), Some("alice"));
        assert_eq!(tokens.check(Some("Bearer s3cret-b")).as_deref(), Some("ci"));
        assert_eq!(tokens.check(Some("Bearer nope")), None);
        assert_eq!(tokens.check(Some("s3cret-a")), None);
        assert_eq!(tokens.check(None), None);
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let tokens = Tokens::parse("alice:s3cret-a\n", "tokens").unwrap();
        let shown = format!("{tokens:?}");
        assert!(shown.contains("alice") && !shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn bad_token_files_name_the_line() {
        let error = Tokens::parse("alice:a\nbob\n", "/etc/t").unwrap_err();
        assert_eq!(error.to_string(), "/etc/t, line 2: expected `name:token` with a non-empty name and token");
        let error = Tokens::parse("alice:a\nalice:b\n", "/etc/t").unwrap_err();
        assert_eq!(error.to_string(), "/etc/t, line 2: the name `alice` is given twice");
        assert!(matches!(Tokens::parse("# nothing\n", "t"), Err(TokenFileError::Empty { .. })));
    }

    #[test]
    fn without_tokens_everyone_is_anonymous() {
        assert_eq!(Tokens::none().check(None).as_deref(), Some("anonymous"));
    }
}
