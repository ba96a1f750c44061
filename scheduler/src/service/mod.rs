//! `concurrent serve`: the scheduler as a long-lived service hosting any number of runs at
//! once (DESIGN §5). [`host::RunHost`] drives the runs over shared services and a fairly shared
//! worker pool; [`rest`] and [`grpc`] are its two faces on one port ([`server`]); [`auth`]
//! admits callers by bearer token; [`metrics`] exports what Prometheus scrapes.

pub mod auth;
pub mod error;
pub mod grpc;
pub mod host;
mod logs;
pub mod metrics;
pub mod projects;
pub mod rest;
pub mod server;
pub mod tls;
pub mod view;

pub use error::{HostError, Refusal};
pub use host::{HostConfig, PodWorkers, RunControl, RunHost, SubmitRequest, Submitted};
