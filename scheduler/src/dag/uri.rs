//! Input URIs: which schemes are accepted, and how relative file paths are made absolute.
//!
//! A bare path (`data/raw`, `/data/raw`) and a relative `file:` URI (`file:data/raw`) are file
//! paths, resolved against a base directory (the DAG file's directory; the current directory
//! for `--input`) and returned as `file:///abs/path` (percent-encoded like `url` does).

use std::path::{Component, Path, PathBuf};

use url::Url;

use super::model::InputSource;
use super::quote::{named, quote};

/// Schemes an input URI may have.
pub const INPUT_SCHEMES: &[&str] = &["file", "s3", "gs", "az", "http", "https", "mlflow-artifacts", "runs"];

/// Parses an `input:` value: `none`, a URI, or a path relative to `base_dir`.
pub fn parse_input(text: &str, base_dir: &Path) -> Result<InputSource, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    if text == "none" {
        return Ok(InputSource::None);
    }
    let Some((scheme, rest)) = split_scheme(text) else {
        return file_uri(Path::new(text), base_dir).map(InputSource::Uri);
    };
    let scheme = scheme.to_ascii_lowercase();
    if !INPUT_SCHEMES.contains(&scheme.as_str()) {
        return Err(format!(
            "unsupported URI scheme {}; expected one of {} or `none`",
            named(&scheme),
            INPUT_SCHEMES.join(", ")
        ));
    }
    match scheme.as_str() {
        "file" => match rest.strip_prefix("//") {
            None => file_uri(Path::new(rest), base_dir).map(InputSource::Uri),
            Some(after) => {
                let path = after.strip_prefix("localhost").unwrap_or(after);
                if !path.starts_with('/') {
                    return Err(format!(
                        "a file URI needs an absolute path (file:///dir) or a relative one \
                         (file:dir), found {}",
                        quote(text)
                    ));
                }
                Url::parse(text).map_err(|e| format!("invalid URI {}: {e}", quote(text)))?;
                Ok(InputSource::Uri(text.to_string()))
            }
        },
        "runs" => {
            let run = rest.trim_start_matches('/').split('/').next().unwrap_or("");
            if !rest.starts_with('/') || run.is_empty() {
                return Err(format!("expected runs:/<run_id>/<path>, found {}", quote(text)));
            }
            Ok(InputSource::Uri(text.to_string()))
        }
        "mlflow-artifacts" => {
            Url::parse(text).map_err(|e| format!("invalid URI {}: {e}", quote(text)))?;
            Ok(InputSource::Uri(text.to_string()))
        }
        _ => {
            let url = Url::parse(text).map_err(|e| format!("invalid URI {}: {e}", quote(text)))?;
            if url.host_str().is_none_or(str::is_empty) {
                return Err(format!("{scheme} URI needs a bucket or host, found {}", quote(text)));
            }
            Ok(InputSource::Uri(text.to_string()))
        }
    }
}

/// `scheme` and the rest, when `text` starts with `scheme:` (at least two letters, so a
/// Windows drive letter is not a scheme).
fn split_scheme(text: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = text.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let ok = scheme.len() >= 2
        && first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    ok.then_some((scheme, rest))
}

/// `file:///…` for `path`, joined to `base_dir` when relative, with `.` and `..` removed.
fn file_uri(path: &Path, base_dir: &Path) -> Result<String, String> {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else if base_dir.is_absolute() {
        base_dir.join(path)
    } else {
        std::env::current_dir().map_err(|e| format!("cannot resolve a relative path: {e}"))?.join(base_dir).join(path)
    };
    let normal = normalize(&joined);
    Url::from_file_path(&normal).map(String::from).map_err(|()| format!("not a valid file path: {}", normal.display()))
}

/// Removes `.` and resolves `..` lexically.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(text: &str) -> Result<InputSource, String> {
        parse_input(text, Path::new("/dags/images"))
    }

    #[test]
    fn accepts_every_documented_scheme() {
        for ok in [
            "file:///data/raw",
            "s3://bucket/prefix",
            "gs://bucket/x",
            "az://container/x",
            "http://host/x",
            "https://host/x",
            "mlflow-artifacts:/1/abc/artifacts",
            "runs:/0123abc/outputs",
        ] {
            assert_eq!(uri(ok), Ok(InputSource::Uri(ok.into())), "{ok}");
        }
        assert_eq!(uri("none"), Ok(InputSource::None));
    }

    #[test]
    fn relative_paths_resolve_against_the_base_dir() {
        let want = InputSource::Uri("file:///dags/data/raw".into());
        assert_eq!(uri("../data/raw"), Ok(want.clone()));
        assert_eq!(uri("file:../data/raw"), Ok(want));
        assert_eq!(uri("/abs"), Ok(InputSource::Uri("file:///abs".into())));
        assert_eq!(uri("my data"), Ok(InputSource::Uri("file:///dags/images/my%20data".into())));
    }

    #[test]
    fn rejects_bad_uris() {
        assert_eq!(
            uri("ftp://host/x").unwrap_err(),
            "unsupported URI scheme `ftp`; expected one of file, s3, gs, az, http, https, \
             mlflow-artifacts, runs or `none`"
        );
        assert!(uri("s3://").is_err());
        assert!(uri("runs:/").is_err());
        assert!(uri("file://host/x").is_err());
        assert!(uri("").is_err());
    }
}
