//! Object paths through the MLflow artifact proxy (`/api/2.0/mlflow-artifacts/artifacts/…`).
//!
//! Each segment is percent-encoded into the URL (the `url` crate's path-segment set: `%`, `/`,
//! space, `#`, `?`, quotes, controls and every non-ASCII byte). The server (MLflow 3.x,
//! `validate_path_is_safe`) then percent-decodes the path again and again until it stops
//! changing, and passes it through `urlparse`, which drops tabs, carriage returns and newlines;
//! it escapes other control characters as `%xx` and refuses `#`. So the proxy cannot hold a
//! name with `#`, an ASCII control character, or `%` followed by two hex digits: those are
//! refused here, naming the object, before any request. Every other UTF-8 name passes as is.

use super::{ObjectPath, UnrepresentableName};

/// The store's name in errors.
const PROXY: &str = "the MLflow artifact proxy";

/// Checks that the proxy keeps `path` exactly.
pub fn check(path: &ObjectPath) -> Result<(), UnrepresentableName> {
    match refusal(path.as_str()) {
        None => Ok(()),
        Some(reason) => Err(UnrepresentableName { path: path.as_str().to_owned(), store: PROXY, reason }),
    }
}

/// Why the proxy would not keep `raw` exactly, if it would not.
pub(crate) fn refusal(raw: &str) -> Option<&'static str> {
    if raw.contains('#') {
        return Some("the server refuses `#` in artifact paths");
    }
    if raw.chars().any(|c| c.is_ascii_control()) {
        return Some("the server drops or rewrites ASCII control characters (newline, tab, …)");
    }
    if let Some(reason) = percent_escape(raw) {
        return Some(reason);
    }
    // The path and every directory above it: a directory is named alone when it is listed.
    let directories = raw.match_indices('/').map(|(end, _)| &raw[..end]);
    directories.chain(std::iter::once(raw)).find_map(dropped_mark)
}

/// Why `urlparse` would not give `path` back: it splits a query at the first `?` and URL
/// parameters at the first `;` of the last segment before it, and `urlunparse` drops either
/// mark when nothing follows it: `a?` would come back as `a`, and `a;` (or `a;?b`) without
/// its `;`.
fn dropped_mark(raw: &str) -> Option<&'static str> {
    let (path, query) = match raw.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (raw, None),
    };
    if query == Some("") {
        return Some("the server drops a first `?` that ends the path");
    }
    let last = path.rsplit('/').next().unwrap_or(path);
    if last.find(';').is_some_and(|i| i + 1 == last.len()) {
        return Some("the server drops a `;` that is the last segment's first and ends it (before any `?`)");
    }
    None
}

/// Whether `raw` holds `%` followed by two hex digits.
fn percent_escape(raw: &str) -> Option<&'static str> {
    let bytes = raw.as_bytes();
    let escape = bytes.windows(3).any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit());
    if escape {
        return Some("the server percent-decodes `%` followed by two hex digits");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_the_server_rewrites() {
        for bad in [
            "a#1",
            "new\nline",
            "tab\tx",
            "cr\rx",
            "ctl\u{1}x",
            "del\u{7f}x",
            "50%25",
            "x%C3%BCy",
            "%2F",
            "a;",
            ";",
            "d/x;",
            "q?",
            "?",
            "a;b?",
            "a;?b",
            "x/y?",
            "g;/h",
            "x?/y",
        ] {
            let err = check(&ObjectPath::parse(bad).unwrap()).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        for good in [
            "100%",
            "%zz",
            "a%4g",
            "%4",
            "q'\"u",
            "a b/ü é/😀",
            "?x=1&y",
            "-lead",
            "semi;p",
            "nel\u{85}x",
            ";a",
            "c;d;",
            ";;",
            "b;;",
            "?v",
            "r?s",
            "w??",
            "c?;d",
        ] {
            assert_eq!(check(&ObjectPath::parse(good).unwrap()), Ok(()), "{good}");
        }
    }
}
