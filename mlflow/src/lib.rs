//! What the scheduler and the worker share: reading MLproject files and rendering their
//! commands, talking to an MLflow tracking server over its REST API, and reading and writing
//! artifacts (`file://`, the MLflow artifact proxy, object stores); and the few conventions
//! both must keep alike: the one duration grammar (`duration`) and the one way to retry
//! (`retry`).

pub mod artifacts;
pub mod crypto;
pub mod duration;
pub mod environment;
pub mod nats_options;
pub mod object_path;
pub mod project;
pub mod retry;
pub mod tracking;
pub mod yaml_limits;
