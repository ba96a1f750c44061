//! Wire types of Concurrent: the MessagePack messages that travel through NATS JetStream and
//! the names of the streams, subjects, consumers and buckets they travel through, and the lease
//! file a worker leaves for its local executor, and the timing constants both sides must agree
//! on (`timing`).
//!
//! This crate is a leaf: it depends on no other crate of the workspace and does no IO.

pub mod lease;
pub mod messages;
pub mod names;
pub mod nats_auth;
pub mod timing;

pub use messages::{
    AttemptRunning, DEFAULT_LOG_LIMIT, DecodeError, InputObject, OutputObject, ShardDecided, ShardMsg, ShardResult,
    ShardResults, ShardStatus, StageSpec, TrackingTarget, WIRE_VERSION, decode, decode_results, encode,
    speculative_attempt,
};

/// The gRPC service `concurrent.v1.Scheduler` and its messages, generated from
/// `concurrent/v1/scheduler.proto`.
#[cfg(feature = "grpc")]
pub mod grpc {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("concurrent.v1");

    /// The encoded file descriptor set, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("scheduler_descriptor");
}
