//! The service's errors, and the one place they become HTTP statuses and gRPC codes.

use crate::dag::SpecErrors;
use crate::driver::DriverError;
use crate::plan::PlanError;
use crate::store::StoreError;

use super::projects::UploadError;

/// A request the host could not carry out.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The DAG does not validate; every error names its place.
    #[error("the DAG is not valid:\n  {}", .0.lines().join("\n  "))]
    Invalid(SpecErrors),
    /// A field of the request itself is wrong.
    #[error("{place}: {message}")]
    BadRequest { place: String, message: String },
    #[error("projects.{project}: no snapshot {snapshot} was uploaded (PUT /api/v1/projects/{snapshot} first)")]
    UnknownSnapshot { project: String, snapshot: String },
    #[error("stages.{stage}.input: reading MLflow artifacts needs a tracking server; this service runs without one")]
    NeedsTracking { stage: String },
    #[error("the inputs cannot be planned: {0}")]
    Plan(Box<PlanError>),
    #[error("no run {run_id}")]
    NotFound { run_id: String },
    #[error("run {run_id} has already ended ({status})")]
    AlreadyEnded { run_id: String, status: &'static str },
    #[error("no log for run {run_id}, stage {stage}, shard {shard}{}", attempt.map(|a| format!(", attempt {a}")).unwrap_or_default())]
    NoLog { run_id: String, stage: String, shard: u32, attempt: Option<u32> },
    #[error(transparent)]
    Upload(#[from] UploadError),
    #[error("MLflow: {0}")]
    Mlflow(#[from] concurrent_mlflow::tracking::MlflowError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Driver(Box<DriverError>),
    #[error("cannot write {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(transparent)]
    NoImage(#[from] crate::cli::NoImage),
}

impl From<PlanError> for HostError {
    fn from(error: PlanError) -> HostError {
        HostError::Plan(Box::new(error))
    }
}

impl From<DriverError> for HostError {
    fn from(error: DriverError) -> HostError {
        HostError::Driver(Box::new(error))
    }
}

/// How a failure is reported on both interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400 / InvalidArgument: the request is wrong; nothing was created.
    Invalid,
    /// 401 / Unauthenticated.
    Unauthenticated,
    /// 404 / NotFound.
    NotFound,
    /// 409 / FailedPrecondition.
    Conflict,
    /// 413 / ResourceExhausted: the body is over the limit.
    TooLarge,
    /// 503 / Unavailable: a service behind us failed; try again.
    Unavailable,
    /// 500 / Internal.
    Internal,
}

impl Refusal {
    /// The HTTP status.
    pub fn http_status(self) -> u16 {
        match self {
            Refusal::Invalid => 400,
            Refusal::Unauthenticated => 401,
            Refusal::NotFound => 404,
            Refusal::Conflict => 409,
            Refusal::TooLarge => 413,
            Refusal::Unavailable => 503,
            Refusal::Internal => 500,
        }
    }

    /// The gRPC code.
    pub fn grpc_code(self) -> tonic::Code {
        match self {
            Refusal::Invalid => tonic::Code::InvalidArgument,
            Refusal::Unauthenticated => tonic::Code::Unauthenticated,
            Refusal::NotFound => tonic::Code::NotFound,
            Refusal::Conflict => tonic::Code::FailedPrecondition,
            Refusal::TooLarge => tonic::Code::ResourceExhausted,
            Refusal::Unavailable => tonic::Code::Unavailable,
            Refusal::Internal => tonic::Code::Internal,
        }
    }
}

impl HostError {
    /// How this error is reported.
    pub fn refusal(&self) -> Refusal {
        match self {
            HostError::Invalid(_)
            | HostError::BadRequest { .. }
            | HostError::UnknownSnapshot { .. }
            | HostError::NeedsTracking { .. }
            | HostError::NoImage(_)
            | HostError::Plan(_) => Refusal::Invalid,
            HostError::Upload(UploadError::Io { .. }) => Refusal::Internal,
            HostError::Upload(_) => Refusal::Invalid,
            HostError::NotFound { .. } | HostError::NoLog { .. } => Refusal::NotFound,
            HostError::AlreadyEnded { .. } => Refusal::Conflict,
            HostError::Mlflow(_) => Refusal::Unavailable,
            HostError::Driver(error) if matches!(**error, DriverError::Queue(_) | DriverError::Mlflow(_)) => {
                Refusal::Unavailable
            }
            HostError::Store(_) | HostError::Driver(_) | HostError::Io { .. } => Refusal::Internal,
        }
    }

    /// Every error line, each naming its place (one line for most errors).
    pub fn lines(&self) -> Vec<String> {
        match self {
            HostError::Invalid(errors) => errors.lines(),
            other => vec![other.to_string()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_has_its_status_and_code() {
        let cases = [
            (HostError::NotFound { run_id: "x".into() }, 404, tonic::Code::NotFound),
            (HostError::AlreadyEnded { run_id: "x".into(), status: "succeeded" }, 409, tonic::Code::FailedPrecondition),
            (
                HostError::BadRequest { place: "parameters.x".into(), message: "expected `stage.param`".into() },
                400,
                tonic::Code::InvalidArgument,
            ),
        ];
        for (error, status, code) in cases {
            assert_eq!(error.refusal().http_status(), status, "{error}");
            assert_eq!(error.refusal().grpc_code(), code, "{error}");
        }
    }
}
