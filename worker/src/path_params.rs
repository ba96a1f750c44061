//! `path` parameters given as URIs, downloaded before the entry point runs, as `mlflow run`
//! does: each into `<attempt>/params/param_<i>/` (its position among the declared
//! parameters), the parameter then naming the downloaded file or directory. Local paths
//! were made absolute when the DAG was checked.

use std::collections::BTreeMap;
use std::path::Path;

use concurrent_mlflow::artifacts::{self, ArtifactError};
use concurrent_mlflow::project::{EntryPoint, ParamType, local_path};
use concurrent_mlflow::tracking::MlflowClient;

/// A `path` parameter's URI could not be downloaded.
#[derive(Debug, thiserror::Error)]
pub enum PathParamError {
    /// Listing or fetching failed.
    #[error("downloading path parameter '{name}' from {uri}")]
    Fetch {
        /// The parameter.
        name: String,
        /// Its URI.
        uri: String,
        /// The cause.
        #[source]
        source: Box<ArtifactError>,
    },
    /// Nothing is at the URI.
    #[error("path parameter '{name}': nothing found at {uri}")]
    Nothing {
        /// The parameter.
        name: String,
        /// Its URI.
        uri: String,
    },
}

impl PathParamError {
    /// Whether another attempt would fail the same way (nothing there, or it vanished).
    pub fn is_permanent(&self) -> bool {
        match self {
            PathParamError::Nothing { .. } => true,
            PathParamError::Fetch { source, .. } => source.is_gone(),
        }
    }
}

/// Downloads every declared `path` parameter of `params` that is a URI under `dir`, and
/// replaces its value with the local path.
pub async fn download(
    entry: &EntryPoint,
    params: &mut BTreeMap<String, String>,
    dir: &Path,
    mlflow: Option<&MlflowClient>,
) -> Result<(), PathParamError> {
    for (position, (name, param)) in entry.parameters.iter().enumerate() {
        if param.kind != ParamType::Path {
            continue;
        }
        let Some(uri) = params.get(name).cloned() else { continue };
        if local_path(&uri).is_some() {
            continue;
        }
        let fetch_err =
            |source| PathParamError::Fetch { name: name.clone(), uri: uri.clone(), source: Box::new(source) };
        let listing = artifacts::list(&uri, mlflow).await.map_err(fetch_err)?;
        if listing.objects.is_empty() {
            return Err(PathParamError::Nothing { name: name.clone(), uri });
        }
        let base = uri.trim_end_matches('/').rsplit('/').next().unwrap_or("").to_owned();
        let target = dir.join(format!("param_{position}")).join(if base.is_empty() { "artifact" } else { &base });
        let single = listing.objects.len() == 1 && listing.objects[0].uri == uri;
        for object in &listing.objects {
            let dest = if single { target.clone() } else { object.path.to_fs_path(&target) };
            artifacts::fetch(&object.uri, &dest, mlflow).await.map_err(fetch_err)?;
        }
        params.insert(name.clone(), target.display().to_string());
    }
    Ok(())
}
