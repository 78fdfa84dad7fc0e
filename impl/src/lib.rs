//! The Multi-Paxos protocol as sans-IO stateright actors.
//!
//! - [`replica`]: the replica actor (acceptor, leader, learner, executor).
//! - [`client`]: the client actor.
//! - [`node`]: the single actor type that wraps both, driven by the model and the runtime.
//! - [`message`]: every message; [`ballot`]: ballots.
//! - [`bugs`]: the catalogue of seeded bugs (switchable only with the `seeded-bugs` feature).
//! - [`runtime`]: the tokio UDP runtime that drives these actors for real, with durable
//!   storage; [`codec`]: the wire format; [`deploy`]: cluster configuration files and the
//!   status report shared by the binaries; [`trace`]: traces of real runs for conformance.

pub mod ballot;
pub mod bugs;
pub mod client;
pub mod codec;
pub mod deploy;
mod effects;
pub mod message;
pub mod node;
pub mod replica;
pub mod runtime;
pub mod trace;

pub mod marks;
pub mod symmetry;

pub use ballot::Ballot;
pub use bugs::SeededBug;
pub use client::{Client, ClientState};
pub use message::Msg;
pub use node::{Node, NodeState, Timer};
pub use replica::{Limits, Replica, ReplicaConfig, ReplicaState, Storage};
