//! `project:` values: a local directory or `git: URL#subdir@rev`, and fetching git projects
//! into a cache directory with the `git` CLI.
//!
//! A clone lives in `<cache>/<sha256(url@commit)>` and is reused as is once complete. A branch
//! is resolved with `git ls-remote` at every use; a commit id whose clone is in the cache, and
//! a tag resolved once before, are used without the remote. Credentials in a URL
//! (`https://user:token@host/…`) never appear in an error, a log or a tag.

use std::path::{Component, Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::model::ProjectRef;
use super::quote::quote;

/// Parses `URL#subdir@rev` (both parts of the fragment optional).
pub fn parse_git(spec: &str) -> Result<ProjectRef, String> {
    let spec = spec.trim();
    let (url, fragment) = match spec.split_once('#') {
        Some((url, fragment)) => (url, Some(fragment)),
        None => (spec, None),
    };
    check_git_url(url)?;
    let (subdir, rev) = match fragment {
        None => (None, None),
        Some(f) => match f.split_once('@') {
            Some((s, r)) => (Some(s), Some(r)),
            None => (Some(f), None),
        },
    };
    let subdir = match subdir.map(|s| s.trim_matches('/')) {
        None | Some("") => None,
        Some(s) => {
            let safe = Path::new(s).components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
            if !safe {
                return Err(format!("the subdirectory {} must be a relative path inside the repository", quote(s)));
            }
            Some(s.to_string())
        }
    };
    let rev = match rev {
        None => None,
        Some("") => return Err("empty revision after `@`".into()),
        Some(r) if r.starts_with('-') || r.contains(char::is_whitespace) => {
            return Err(format!("invalid revision {}", quote(r)));
        }
        Some(r) => Some(r.to_string()),
    };
    Ok(ProjectRef::Git { url: url.to_string(), subdir, rev })
}

/// Accepts `https://`, `http://`, `ssh://`, `git://`, `file://` URLs and `user@host:path`.
fn check_git_url(url: &str) -> Result<(), String> {
    let expected = "expected a git URL like https://host/org/repo.git#subdir@ref";
    if url.is_empty() {
        return Err(expected.into());
    }
    if url.starts_with('-') || url.contains(char::is_whitespace) {
        return Err(format!("{expected}, found {}", quote(url)));
    }
    if let Ok(parsed) = url::Url::parse(url)
        && matches!(parsed.scheme(), "https" | "http" | "ssh" | "git" | "file")
    {
        return Ok(());
    }
    let scp_like =
        url.split_once(':').is_some_and(|(host, path)| host.contains('@') && !host.contains('/') && !path.is_empty());
    if scp_like { Ok(()) } else { Err(format!("{expected}, found {}", quote(url))) }
}

/// Why a git project could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The cache directory could not be prepared.
    #[error("cannot use the git cache {path}: {source}")]
    Cache {
        /// The directory.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// `git` could not be started.
    #[error("cannot run git: {source}")]
    Spawn {
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A git command failed.
    #[error("`git {args}` failed: {stderr}")]
    Git {
        /// The arguments.
        args: String,
        /// What git printed.
        stderr: String,
    },
}

/// A git project in the cache: the clone's root and the commit checked out there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedGit {
    /// The clone.
    pub root: PathBuf,
    /// The full commit id checked out.
    pub commit: String,
}

/// Clones `url` at `rev` into `cache_dir` (or finds the clone there). Branches (and the
/// default branch, when `rev` is `None`) move: the cache is keyed by the commit they name now
/// (`git ls-remote`), so a pushed commit is fetched while an unchanged one reuses its clone.
/// A commit id already cloned, or a tag resolved before, needs no remote.
pub fn fetch_git(url: &str, rev: Option<&str>, cache_dir: &Path) -> Result<FetchedGit, FetchError> {
    if let Some(commit) = rev.filter(|r| is_commit_id(r))
        && let Some(found) = cached(cache_dir, url, commit)
    {
        return Ok(found);
    }
    let tag_record = rev.map(|rev| cache_dir.join(format!("{}.tag", cache_name(&format!("{url}@tag:{rev}")))));
    let listing = match git_output(None, &["ls-remote", url, rev.unwrap_or("HEAD")]) {
        Ok(listing) => listing,
        Err(error) => {
            // A tag does not move: the commit it named last time, when its clone is here.
            let recorded = tag_record.as_ref().and_then(|r| std::fs::read_to_string(r).ok());
            return match recorded.and_then(|commit| cached(cache_dir, url, commit.trim())) {
                Some(found) => Ok(found),
                None => Err(error),
            };
        }
    };
    let resolved = commit_of(&listing, rev);
    if let (Some(record), Some(commit), true) = (&tag_record, &resolved, rev.is_some_and(|r| names_tag(&listing, r))) {
        let _ = std::fs::create_dir_all(cache_dir).and_then(|()| std::fs::write(record, commit));
    }
    let rev = resolved.or(rev.map(str::to_string));
    let rev = rev.as_deref();
    let name = cache_name(&format!("{url}@{}", rev.unwrap_or("")));
    let dest = cache_dir.join(&name);
    if dest.join(".git").is_dir() {
        return fetched(dest);
    }
    let cache_err = |source| FetchError::Cache { path: cache_dir.to_path_buf(), source };
    std::fs::create_dir_all(cache_dir).map_err(cache_err)?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let work = cache_dir.join(format!("{name}.tmp-{}-{nanos}", std::process::id()));
    let result = clone_into(url, rev, &work).and_then(|()| {
        match std::fs::rename(&work, &dest) {
            Ok(()) => Ok(dest.clone()),
            // Another process finished the same clone first: use theirs.
            Err(_) if dest.join(".git").is_dir() => Ok(dest.clone()),
            Err(source) => Err(cache_err(source)),
        }
    });
    if work.exists() {
        // Best effort: a leftover partial clone is only wasted space.
        let _ = std::fs::remove_dir_all(&work);
    }
    fetched(result?)
}

/// The clone of `url` at `commit` in the cache, if complete.
fn cached(cache_dir: &Path, url: &str, commit: &str) -> Option<FetchedGit> {
    let dest = cache_dir.join(cache_name(&format!("{url}@{commit}")));
    dest.join(".git").is_dir().then(|| fetched(dest).ok()).flatten()
}

fn fetched(root: PathBuf) -> Result<FetchedGit, FetchError> {
    let commit = git_output(Some(&root), &["rev-parse", "HEAD"])?.trim().to_string();
    Ok(FetchedGit { root, commit })
}

fn cache_name(key: &str) -> String {
    Sha256::digest(key.as_bytes()).iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// A full (40 hex digits) commit id.
fn is_commit_id(rev: &str) -> bool {
    rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `rev` is a tag (and not a branch) in `git ls-remote` output.
fn names_tag(listing: &str, rev: &str) -> bool {
    let names: Vec<&str> = listing.lines().filter_map(|l| l.split_once('\t')).map(|(_, r)| r.trim()).collect();
    !names.contains(&format!("refs/heads/{rev}").as_str()) && names.contains(&format!("refs/tags/{rev}").as_str())
}

/// `url` without the user name and password of an `https://user:token@host/…` URL, for
/// messages, logs and tags.
pub fn without_credentials(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

fn clone_into(url: &str, rev: Option<&str>, work: &Path) -> Result<(), FetchError> {
    git(None, &["clone", "--quiet", "--", url, &path_str(work)])?;
    if let Some(rev) = rev {
        git(Some(work), &["checkout", "--quiet", "--detach", rev])?;
    }
    Ok(())
}

/// The commit that `git ls-remote` output gives for `rev`: the default branch (`HEAD`) when
/// `rev` is `None`, else branch `rev`, else tag `rev` (the commit an annotated tag points to).
/// `None` when `rev` names no ref (a commit id, checked out as it is).
fn commit_of(listing: &str, rev: Option<&str>) -> Option<String> {
    let refs: Vec<(&str, &str)> = listing.lines().filter_map(|line| line.split_once('\t')).collect();
    let wanted = match rev {
        None => vec!["HEAD".to_string()],
        Some(rev) => vec![format!("refs/heads/{rev}"), format!("refs/tags/{rev}^{{}}"), format!("refs/tags/{rev}")],
    };
    wanted.iter().find_map(|name| refs.iter().find(|(_, r)| r.trim() == name).map(|(sha, _)| sha.trim().to_string()))
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn git(dir: Option<&Path>, args: &[&str]) -> Result<(), FetchError> {
    git_output(dir, args).map(|_| ())
}

/// Runs git (never prompting for credentials) and returns what it printed.
fn git_output(dir: Option<&Path>, args: &[&str]) -> Result<String, FetchError> {
    let mut cmd = Command::new("git");
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    cmd.args(args).env("GIT_TERMINAL_PROMPT", "0");
    let out = cmd.output().map_err(|source| FetchError::Spawn { source })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let args: Vec<String> = args.iter().map(|a| without_credentials(a)).collect();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(FetchError::Git { args: args.join(" "), stderr: redact_userinfo(&stderr) })
}

/// Text with the `user:password@` of every `scheme://user:password@host` in it removed.
fn redact_userinfo(text: &str) -> String {
    text.split(' ')
        .map(|word| match word.find("://") {
            Some(_) => without_credentials(word),
            None => word.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The default cache of git projects: `$XDG_CACHE_HOME/concurrent/git`,
/// `$HOME/.cache/concurrent/git`, or the temp dir.
pub fn default_git_cache() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("concurrent").join("git")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git_ref(url: &str, subdir: Option<&str>, rev: Option<&str>) -> ProjectRef {
        ProjectRef::Git { url: url.into(), subdir: subdir.map(Into::into), rev: rev.map(Into::into) }
    }

    #[test]
    fn parses_url_subdir_and_rev() {
        let url = "https://host/org/repo.git";
        assert_eq!(parse_git(url), Ok(git_ref(url, None, None)));
        assert_eq!(
            parse_git(&format!("{url}#projects/thumb@v1.2")),
            Ok(git_ref(url, Some("projects/thumb"), Some("v1.2")))
        );
        assert_eq!(parse_git(&format!("{url}#@main")), Ok(git_ref(url, None, Some("main"))));
        assert_eq!(
            parse_git("git@github.com:org/repo.git#sub"),
            Ok(git_ref("git@github.com:org/repo.git", Some("sub"), None))
        );
    }

    #[test]
    fn ls_remote_output_gives_the_commit_of_a_branch_tag_or_head() {
        let listing = "aaa\tHEAD\nbbb\trefs/heads/main\nccc\trefs/heads/dev\nddd\trefs/tags/v1\neee\trefs/tags/v1^{}\n\
                       fff\trefs/tags/v2\n";
        assert_eq!(commit_of(listing, None).as_deref(), Some("aaa"));
        assert_eq!(commit_of(listing, Some("dev")).as_deref(), Some("ccc"));
        assert_eq!(commit_of(listing, Some("v1")).as_deref(), Some("eee"), "an annotated tag's commit");
        assert_eq!(commit_of(listing, Some("v2")).as_deref(), Some("fff"));
        assert_eq!(commit_of(listing, Some("0123abc")), None, "a commit id is no ref");
        assert_eq!(commit_of("", None), None);
    }

    #[test]
    fn rejects_bad_specs() {
        assert!(parse_git("").is_err());
        assert!(parse_git("not a url").is_err());
        assert!(parse_git("ftp://host/x.git").is_err());
        assert!(parse_git("https://host/r.git#../up").is_err());
        assert!(parse_git("https://host/r.git#sub@").is_err());
        assert!(parse_git("https://host/r.git#sub@--upload-pack=x").is_err());
        assert_eq!(git_ref("https://h/r.git", Some("s"), Some("v1")).to_string(), "https://h/r.git#s@v1");
    }
}
