//! What the binaries share: the cluster configuration file, starting a replica on the runtime,
//! running client operations on the runtime, and the status report.
//!
//! - [`config`]: `cluster.toml`, checked with messages that say what is wrong.
//! - [`replica`]: a replica actor on its socket with its data directory.
//! - [`client`]: the client actor on its socket, with an overall deadline.
//! - [`status`]: what `smr status` shows, computed from a replica's state by its runtime.
//! - [`progress`]: what a replica's log says while it rebuilds lost storage.
//! - `stepping`: how the runtime steps [`crate::Node`] on a state it owns.

pub mod client;
pub mod config;
pub mod progress;
pub mod replica;
pub mod status;
mod stepping;

pub use client::{run_operations, ClientError, ClientOptions};
pub use config::{Cluster, ConfigError, Security, Want};
pub use replica::{spawn_replica_thread, start_replica, ReplicaOptions, StartError};
pub use status::{query_status, ReplicaStatus};

use crate::node::NodeState;

/// The digest a step observer records: the one the replica and client states maintain.
pub fn node_digest(state: &NodeState) -> u64 {
    match state {
        NodeState::Replica(state) => state.digest,
        NodeState::Client(state) => state.digest,
    }
}
