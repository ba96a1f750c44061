//! Validation errors: each names the place in the DAG file (or the command line) it is about.

use std::fmt;

/// One problem in a DAG file, e.g. `stages.thumbnails.partition.shard_size: must be at least 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// Dotted path of the field (`stages.a.parallelism`), `-P a.b`, `--input` or `line L, column C`.
    pub place: String,
    /// What is wrong.
    pub message: String,
}

impl SpecError {
    /// An error at `place`.
    pub fn new(place: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError { place: place.into(), message: message.into() }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

impl std::error::Error for SpecError {}

/// Every problem found in a DAG file, in the order found; displayed one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecErrors(pub Vec<SpecError>);

impl SpecErrors {
    /// Whether any error has this exact `place` and `message`.
    pub fn contains(&self, place: &str, message: &str) -> bool {
        self.0.iter().any(|e| e.place == place && e.message == message)
    }

    /// The errors as `place: message` lines.
    pub fn lines(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

impl From<SpecError> for SpecErrors {
    fn from(e: SpecError) -> Self {
        SpecErrors(vec![e])
    }
}

/// Collects errors while a DAG is read.
#[derive(Debug, Default)]
pub(crate) struct Errors(pub(crate) Vec<SpecError>);

impl Errors {
    /// Records an error at `place`.
    pub(crate) fn push(&mut self, place: impl Into<String>, message: impl Into<String>) {
        self.0.push(SpecError::new(place, message));
    }
}
