//! The Concurrent scheduler: reads a DAG of MLprojects, partitions each stage's input into
//! shards, publishes them on NATS JetStream, asks an executor for workers, and follows every
//! shard to the end, recording the run in sled and in MLflow.

pub mod cli;
pub mod clusters;
pub mod dag;
pub mod disk;
pub mod driver;
pub mod executor;
pub mod images;
pub mod inputs;
pub mod nats_probe;
pub mod partition;
pub mod plan;
pub mod queue;
pub mod run_id;
pub mod run_tree;
pub mod service;
pub mod services;
pub mod store;

pub use concurrent_core::{autoscale, fair_share, placement, run_core, run_state, sizing};
