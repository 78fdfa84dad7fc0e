//! The deployable runtime: drives any stateright [`Actor`] unchanged over UDP with real
//! timers and durable storage.
//!
//! - [`core`]: the actor and its state, one function call per step, and the step observer.
//! - [`event_loop`]: sockets, timers, group commit and sending.
//! - [`storage`]: the checksummed snapshot and log on disk.
//! - [`auth`]: signing every datagram and checking what arrives (keys, credentials, replays).
//! - [`identity`]: which cluster and replica a data directory belongs to, and whether it is
//!   new or lost its state.
//! - [`peers`]: ids to addresses, and whose datagrams to believe.
//! - [`timers`], [`random`], [`counters`], [`bounded`]: small parts of the loop.
//! - [`faults`]: injected loss, duplication, delay and partitions, for tests.
//! - [`seeded`]: deliberate runtime bugs that trace conformance must catch (test-only).
//!
//! Concurrency: each runtime is one tokio task that owns its actor, timers, socket and trace.
//! The only other thread it uses is tokio's blocking pool for a group commit, and the store
//! moves into that job and back out with its result (no shared state, no locks). The trace
//! sink's mutex is shared only by runtimes on the same thread (the bench's client lanes).
//!
//! The runtime knows nothing about the protocol: it moves bytes, fires timers and persists
//! storage. The only rule it enforces is the one the protocol's safety rests on: no message of
//! a step leaves the process before the storage saved by that step (and by every step before
//! it) is on disk.
//!
//! [`Actor`]: stateright::actor::Actor

pub mod auth;
pub mod bounded;
pub mod core;
pub mod counters;
pub mod event_loop;
pub mod faults;
pub mod identity;
pub mod peers;
pub mod random;
pub mod seeded;
pub mod storage;
pub mod timers;

pub use self::core::{Core, DigestFn, Input, NoObserver, StepObserver, Stepper};
pub use auth::{Auth, Credential, Key, Keyring, Role};
pub use counters::Counters;
pub use event_loop::{Hooks, NoHooks, Runtime, RuntimeError, StatusFn, Stopped};
pub use faults::{NetworkFaults, Partition};
pub use identity::{Creation, Genesis, Identity, IdentityRecord};
pub use peers::{
    AddressBook, Admitted, FIRST_CLIENT_ID, FIRST_LOGICAL_CLIENT_ID, MAX_CLIENT_ADDRESSES,
};
pub use random::SplitMix64;
pub use seeded::RuntimeBug;
pub use storage::{DurableStore, OpenMode, Opened, StorageError, SyncPolicy};

use serde::{Deserialize, Serialize};

/// The runtime's answer to a status request: who answers, its drop counters, and what the
/// caller-provided [`StatusFn`] says about the actor's state (encoded by that function).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReply {
    /// The nonce of the request this answers.
    pub nonce: u64,
    /// The answering actor's id.
    pub id: u64,
    pub counters: Counters,
    /// Opaque to the runtime.
    pub node: Vec<u8>,
}
