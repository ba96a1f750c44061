//! Wire types of Concurrent: the MessagePack messages that travel through NATS JetStream and
//! the names of the streams, subjects, consumers and buckets they travel through, and the lease
//! file a worker leaves for its local executor.
//!
//! This crate is a leaf: it depends on no other crate of the workspace and does no IO.

pub mod lease;
pub mod messages;
pub mod names;

pub use messages::{
    DEFAULT_LOG_LIMIT, DecodeError, InputObject, OutputObject, ShardMsg, ShardResult, ShardStatus, StageSpec,
    TrackingTarget, WIRE_VERSION, decode, encode,
};
