//! Include globs, gitignore-like: a glob without `/` matches the file name at any depth,
//! a glob with `/` is anchored at the input root (a leading `/` is dropped), `*` never crosses
//! a `/`, `**` does, and a glob that matches a directory matches everything under it.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use super::PartitionError;
use concurrent_proto::InputObject;

/// Compiled include globs; empty = every object.
#[derive(Debug, Clone)]
pub struct Include {
    set: Option<GlobSet>,
}

impl Include {
    /// Compiles `globs`; the error names the first glob that does not compile.
    pub fn new(globs: &[String]) -> Result<Include, PartitionError> {
        if globs.is_empty() {
            return Ok(Include { set: None });
        }
        let mut builder = GlobSetBuilder::new();
        for glob in globs {
            let err = |source| PartitionError::Glob { glob: glob.clone(), source };
            let trimmed = glob.trim_end_matches('/');
            let anchored = trimmed.contains('/');
            let base = trimmed.trim_start_matches('/');
            if base.is_empty() {
                return Err(PartitionError::EmptyGlob { glob: glob.clone() });
            }
            let rooted = if anchored { base.to_string() } else { format!("**/{base}") };
            for pattern in [rooted.clone(), format!("{rooted}/**")] {
                let compiled =
                    GlobBuilder::new(&pattern).literal_separator(true).backslash_escape(true).build().map_err(err)?;
                builder.add(compiled);
            }
        }
        let set = builder.build().map_err(|source| PartitionError::Glob { glob: globs.join(", "), source })?;
        Ok(Include { set: Some(set) })
    }

    /// Whether the relative `path` is included.
    pub fn matches(&self, path: &str) -> bool {
        self.set.as_ref().is_none_or(|set| set.is_match(path))
    }
}

/// Keeps the objects whose path an `include` glob matches (all of them when `include` is empty).
pub fn select(objects: Vec<InputObject>, include: &[String]) -> Result<Vec<InputObject>, PartitionError> {
    let include = Include::new(include)?;
    if include.set.is_none() {
        return Ok(objects);
    }
    Ok(objects.into_iter().filter(|o| include.matches(&o.path)).collect())
}
