//! The sans-IO core of the Concurrent scheduler. Every decision a run takes lives here as plain
//! data in, data out: the run's state machine ([`run_state`]), the run's decisions as events in
//! and effects out ([`run_core`]: stages started and ended, results applied, redelivered and
//! duplicate results, shards lost with their workers, cancel, how many workers go where),
//! how many workers each stage gets ([`autoscale`]) and on which cluster ([`placement`]), and
//! how worker slots are shared between runs ([`fair_share`]), and how stages without a fixed
//! shard size are cut in waves ([`sizing`]). [`simulation`] replays traces of
//! clusters whose capacity changes through the run core on a simulated clock and measures
//! placement against baseline policies.
//!
//! This crate depends on no IO crate (no tokio, NATS, sled, HTTP or processes), so the compiler
//! keeps it pure; time comes in with the events, so its tests run on a simulated clock. The
//! scheduler's adapters (JetStream, sled, MLflow, executors) feed it and carry out its effects.

pub mod autoscale;
pub mod fair_share;
pub mod placement;
pub mod run_core;
pub mod run_state;
pub mod simulation;
pub mod sizing;
