//! What the scheduler and the worker share: reading MLproject files and rendering their
//! commands, talking to an MLflow tracking server over its REST API, and reading and writing
//! artifacts (`file://`, the MLflow artifact proxy, object stores).

pub mod artifacts;
pub mod environment;
pub mod object_path;
pub mod project;
pub mod tracking;
pub mod yaml_limits;
