//! What correct means for the replicated key-value service.
//!
//! - [`state_machine`]: the deterministic state machine trait; [`kv`]: the key-value machine.
//! - [`command`]: requests, identified by (client id, request number), and log commands.
//! - [`configuration`]: membership, JOIN and QUIT through the log (the α-window).
//! - [`service`]: the replicated state: machine, session table and configuration.
//! - [`session`]: the bounded exactly-once session table.
//! - [`sequential`]: the sequential spec for stateright's linearizability tester.
//! - [`reference`]: the reference execution of a decided log.
//! - [`properties`]: the safety properties as pure functions.
//! - [`digest`]: stable digests, equal across processes.

pub mod command;
pub mod configuration;
pub mod digest;
pub mod kv;
pub mod properties;
pub mod reference;
pub mod sequential;
pub mod service;
pub mod session;
pub mod state_machine;

pub use command::{
    Batch, ClientId, Command, Operation, Output, Request, RequestId, RequestNumber, Slot,
};
pub use configuration::{Change, ChangeOutput, Configuration};
pub use digest::{digest_of, Digest};
pub use kv::{Key, KvOp, KvOutput, KvStore, Value};
pub use service::{ServiceDelta, ServiceSnapshot, ServiceState};
pub use session::{
    Admission, Session, SessionId, SessionOutput, Sessions, SessionsDelta, IMPLICIT,
};
pub use state_machine::StateMachine;
