//! The Multi-Paxos protocol as sans-IO stateright actors.
//!
//! - [`replica`]: the replica actor (acceptor, leader, learner, executor).
//! - [`client`]: the client actor.
//! - [`node`]: the single actor type that wraps both, driven by the model and the runtime.
//! - [`message`]: every message; [`ballot`]: ballots.
//! - [`bugs`]: the catalogue of seeded bugs (switchable only with the `seeded-bugs` feature).

pub mod ballot;
pub mod bugs;
pub mod client;
mod effects;
pub mod message;
pub mod node;
pub mod replica;

pub use ballot::Ballot;
pub use bugs::SeededBug;
pub use client::{Client, ClientState};
pub use message::Msg;
pub use node::{Node, NodeState, Timer};
pub use replica::{Replica, ReplicaConfig, ReplicaState, Storage};
