//! Puts a shard's inputs in place: every `InputObject` fetched to `in/<path>` (paths that would
//! leave `in/` are refused), then the manifest JSON the entry point reads.

use std::path::{Path, PathBuf};

use concurrent_mlflow::object_path::{InvalidObjectPath, ObjectPath};
use concurrent_mlflow::tracking::MlflowClient;
use concurrent_proto::InputObject;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::spares::Spares;

/// How many inputs are fetched at once.
const FETCH_CONCURRENCY: usize = 8;

/// One line of the manifest (`CONCURRENT_MANIFEST`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManifestEntry {
    /// Relative path under the input directory.
    pub path: String,
    /// Where it was fetched from.
    pub uri: String,
    /// Size in bytes as fetched.
    pub size: u64,
    /// The upstream shard run that produced it, if any.
    pub upstream_run: Option<String>,
}

impl MaterializeError {
    /// Whether another attempt would fail the same way: an input path that is unsafe or
    /// taken twice, or an input that no longer exists.
    pub fn is_permanent(&self) -> bool {
        match self {
            MaterializeError::UnsafePath { .. } | MaterializeError::Duplicate(_) => true,
            MaterializeError::Fetch { source, .. } => source.is_gone(),
            MaterializeError::Io { .. } => false,
        }
    }
}

/// The inputs could not be put in place.
#[derive(Debug, thiserror::Error)]
pub enum MaterializeError {
    /// An input's path is not an object path (it would leave the input directory).
    #[error("input `{uri}` has an unsafe path")]
    UnsafePath {
        /// The input's URI.
        uri: String,
        /// Why the path is unsafe.
        #[source]
        source: InvalidObjectPath,
    },
    /// Two inputs have the same path.
    #[error("two inputs have the path {0:?}")]
    Duplicate(String),
    /// Fetching an input failed.
    #[error("fetching input `{uri}`")]
    Fetch {
        /// The input's URI.
        uri: String,
        /// The cause.
        #[source]
        source: Box<concurrent_mlflow::artifacts::ArtifactError>,
    },
    /// A filesystem operation failed.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Checks every input's path and returns where each goes under `input_dir`. Pure.
pub fn destinations(inputs: &[InputObject], input_dir: &Path) -> Result<Vec<PathBuf>, MaterializeError> {
    let mut seen = std::collections::HashSet::new();
    inputs
        .iter()
        .map(|input| {
            let path = ObjectPath::parse(&input.path)
                .map_err(|source| MaterializeError::UnsafePath { uri: input.uri.clone(), source })?;
            let dest = path.to_fs_path(input_dir);
            if !seen.insert(path) {
                return Err(MaterializeError::Duplicate(input.path.clone()));
            }
            Ok(dest)
        })
        .collect()
}

/// Fetches the inputs into `input_dir` and writes the manifest to `manifest`; returns the
/// manifest entries (their sizes are the bytes fetched).
pub async fn materialize(
    inputs: &[InputObject],
    input_dir: &Path,
    manifest: &Path,
    mlflow: Option<&MlflowClient>,
    spares: &Spares,
) -> Result<Vec<ManifestEntry>, MaterializeError> {
    let dests = destinations(inputs, input_dir)?;
    // A local file is copied into a spare file of the slot when there is one.
    let reuse = inputs.iter().map(|input| input.uri.starts_with("file:").then(|| spares.take()).flatten());
    let entries: Vec<ManifestEntry> = futures::stream::iter(inputs.iter().zip(dests).zip(reuse))
        .map(|((input, dest), reuse)| fetch_one(input, dest, mlflow, reuse))
        .buffered(FETCH_CONCURRENCY)
        .try_collect()
        .await?;
    let json = serde_json::to_vec_pretty(&entries).map_err(|e| MaterializeError::Io {
        what: "encoding",
        path: manifest.to_path_buf(),
        source: e.into(),
    })?;
    // A small file: written in place rather than through the blocking pool.
    crate::in_place::overwrite(manifest, &json).map_err(|source| MaterializeError::Io {
        what: "writing",
        path: manifest.to_path_buf(),
        source,
    })?;
    Ok(entries)
}

/// Fetches one input (the fetch creates the parent directories and reports the bytes).
async fn fetch_one(
    input: &InputObject,
    dest: PathBuf,
    mlflow: Option<&MlflowClient>,
    reuse: Option<PathBuf>,
) -> Result<ManifestEntry, MaterializeError> {
    let size = concurrent_mlflow::artifacts::fetch_reusing(&input.uri, &dest, mlflow, reuse.as_deref())
        .await
        .map_err(|source| MaterializeError::Fetch { uri: input.uri.clone(), source: Box::new(source) })?;
    Ok(ManifestEntry {
        path: input.path.clone(),
        uri: input.uri.clone(),
        size,
        upstream_run: input.upstream_run.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(path: &str) -> InputObject {
        InputObject { path: path.into(), uri: format!("file:///src/{path}"), size: None, upstream_run: None }
    }

    #[test]
    fn inputs_go_under_the_input_dir_under_their_exact_names() {
        let dests = destinations(&[input("a/b.jpg"), input("c #1\n%41.jpg")], Path::new("/w/in")).unwrap();
        assert_eq!(dests, vec![PathBuf::from("/w/in/a/b.jpg"), PathBuf::from("/w/in/c #1\n%41.jpg")]);
    }

    #[test]
    fn unsafe_and_duplicate_input_paths_are_refused() {
        for bad in ["../x", "/etc/passwd", "a/../../x", "", "./a", "a//b", "a\0b"] {
            let err = destinations(&[input(bad)], Path::new("/w/in")).unwrap_err();
            assert!(matches!(err, MaterializeError::UnsafePath { .. }), "{bad}: {err}");
        }
        let err = destinations(&[input("a"), input("a")], Path::new("/w/in")).unwrap_err();
        assert!(matches!(err, MaterializeError::Duplicate(_)), "{err}");
    }
}
