//! [`ObjectPath`]: where an object sits under its root (an input URI, a run's artifacts, an
//! input or output directory), the same bytes everywhere. Strings become an `ObjectPath` only
//! through [`ObjectPath::parse`] or [`ObjectPath::from_relative`] (a filesystem path), and
//! leave it only through the conversions of the stores: [`ObjectPath::to_fs_path`] here,
//! [`store_key`] for `object_store` keys, [`proxy`] for the MLflow artifact proxy, [`url_segment`] for
//! URLs (`file://`, `s3://`, proxy requests). A store that cannot hold a name exactly refuses it
//! with [`UnrepresentableName`], naming the object; nothing is ever renamed on the way.

pub mod proxy;
pub mod store_key;
pub mod url_segment;

use std::fmt;
use std::path::{Component, Path, PathBuf};

/// A relative object path: UTF-8 segments separated by `/`, none empty, `.` or `..`, no NUL.
/// Any other character (spaces, quotes, `%`, `#`, newlines, any script) is part of the name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectPath(String);

/// A string or filesystem path that is not an object path. Messages quote the path with its
/// special characters escaped (`"a\nb"`), so that every name can be read in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidObjectPath {
    /// The path is empty.
    #[error("an object path is empty")]
    Empty,
    /// The path starts with `/`.
    #[error("object path {0:?} is absolute")]
    Absolute(String),
    /// The path has an empty, `.` or `..` segment (`a//b`, `./a`, `a/..`, `a/`).
    #[error("object path {0:?} has an empty, `.` or `..` segment")]
    BadSegment(String),
    /// The path holds a NUL byte, which no filesystem takes.
    #[error("object path {0:?} contains a NUL byte")]
    Nul(String),
    /// A file's name is not UTF-8.
    #[error("{} has a name that is not UTF-8", .0.display())]
    NotUtf8(PathBuf),
}

/// A store that cannot hold a name exactly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("object {path:?} cannot be stored under its exact name in {store}: {reason}")]
pub struct UnrepresentableName {
    /// The object's path.
    pub path: String,
    /// The store, e.g. `the MLflow artifact proxy`.
    pub store: &'static str,
    /// Which characters it cannot hold.
    pub reason: &'static str,
}

impl ObjectPath {
    /// Checks `path` (`/`-separated, relative) and takes it as it is: no normalisation.
    pub fn parse(path: &str) -> Result<ObjectPath, InvalidObjectPath> {
        if path.is_empty() {
            return Err(InvalidObjectPath::Empty);
        }
        if path.starts_with('/') {
            return Err(InvalidObjectPath::Absolute(path.to_owned()));
        }
        if path.contains('\0') {
            return Err(InvalidObjectPath::Nul(path.to_owned()));
        }
        if path.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
            return Err(InvalidObjectPath::BadSegment(path.to_owned()));
        }
        Ok(ObjectPath(path.to_owned()))
    }

    /// A path written in the code (`"outputs"`, `"logs/entry_point.log"`).
    ///
    /// # Panics
    /// When `path` is not an object path: a mistake in the code, caught by any test using it.
    pub fn literal(path: &'static str) -> ObjectPath {
        match ObjectPath::parse(path) {
            Ok(path) => path,
            Err(e) => panic!("{e}"),
        }
    }

    /// The object path of the relative filesystem path `relative` (its components joined by
    /// `/`). The filesystem edge, with [`ObjectPath::to_fs_path`].
    pub fn from_relative(relative: &Path) -> Result<ObjectPath, InvalidObjectPath> {
        let mut parts = Vec::new();
        for component in relative.components() {
            match component {
                Component::Normal(part) => {
                    parts.push(part.to_str().ok_or_else(|| InvalidObjectPath::NotUtf8(relative.to_path_buf()))?)
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(InvalidObjectPath::Absolute(relative.to_string_lossy().into_owned()));
                }
                Component::CurDir | Component::ParentDir => {
                    return Err(InvalidObjectPath::BadSegment(relative.to_string_lossy().into_owned()));
                }
            }
        }
        ObjectPath::parse(&parts.join("/"))
    }

    /// The object path of `path` below `dir` (`None` when `path` is not below `dir`).
    pub fn below(dir: &Path, path: &Path) -> Option<Result<ObjectPath, InvalidObjectPath>> {
        let relative = path.strip_prefix(dir).ok()?;
        Some(ObjectPath::from_relative(relative).map_err(|e| match e {
            InvalidObjectPath::NotUtf8(_) => InvalidObjectPath::NotUtf8(path.to_path_buf()),
            other => other,
        }))
    }

    /// Where the object is under the directory `dir`: one filesystem component per segment,
    /// the same bytes (a segment never holds `/`, `.`, `..` or NUL, so it stays inside `dir`).
    pub fn to_fs_path(&self, dir: &Path) -> PathBuf {
        let mut path = dir.to_path_buf();
        path.extend(self.segments());
        path
    }

    /// The path as written, `/`-separated.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path as written, `/`-separated.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The segments, in order.
    pub fn segments(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }

    /// The last segment.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// `self/rest`.
    pub fn join(&self, rest: &ObjectPath) -> ObjectPath {
        ObjectPath(format!("{}/{}", self.0, rest.0))
    }

    /// `self` below `prefix` (`None` when `self` is not strictly below it).
    pub fn strip_prefix(&self, prefix: &ObjectPath) -> Option<ObjectPath> {
        let rest = self.0.strip_prefix(&prefix.0)?.strip_prefix('/')?;
        Some(ObjectPath(rest.to_owned()))
    }
}

/// `a/b` of two optional object paths (`None` when both are).
pub fn join_optional(a: Option<&ObjectPath>, b: Option<&ObjectPath>) -> Option<ObjectPath> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.join(b)),
        (Some(one), None) | (None, Some(one)) => Some(one.clone()),
        (None, None) => None,
    }
}

impl fmt::Display for ObjectPath {
    /// The path as written (use `{:?}` of [`ObjectPath::as_str`] in messages).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ObjectPath {
    type Err = InvalidObjectPath;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ObjectPath::parse(s)
    }
}

impl TryFrom<String> for ObjectPath {
    type Error = InvalidObjectPath;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        ObjectPath::parse(&s)
    }
}

impl From<ObjectPath> for String {
    fn from(path: ObjectPath) -> String {
        path.0
    }
}

impl AsRef<str> for ObjectPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests;
