//! The deterministic state machine that replicas agree to run (Schneider 1990, section 3).
//!
//! Replicas stay identical because every one of them applies the same commands in the same order
//! to the same deterministic machine. The machine therefore must not read clocks, randomness or
//! anything else from its environment: whatever such a value is needed, the leader decides it and
//! puts it into the command.

use crate::digest::Digest;
use serde::{de::DeserializeOwned, Serialize};
use std::fmt::Debug;

/// A deterministic state machine with digests and snapshots.
pub trait StateMachine: Clone + Debug + Default + PartialEq {
    /// What a client asks the machine to do.
    type Op: Clone + Debug;
    /// What the machine answers.
    type Output: Clone + Debug + PartialEq;
    /// A self-contained copy of the state, as carried by checkpoints and state transfer.
    type Snapshot: Clone + Debug + Serialize + DeserializeOwned;

    /// Applies one operation and returns its output. Must be a pure function of the state and
    /// the operation.
    fn apply(&mut self, op: &Self::Op) -> Self::Output;

    /// A digest of the whole state. Two machines with equal states have equal digests.
    fn digest(&self) -> Digest;

    /// A snapshot from which [`StateMachine::restore`] rebuilds an equal machine.
    fn snapshot(&self) -> Self::Snapshot;

    /// Rebuilds a machine from a snapshot, refusing snapshots that break the machine's
    /// invariants (a snapshot comes from the network or from disk, so it may be damaged).
    fn restore(snapshot: Self::Snapshot) -> Result<Self, RestoreError>;
}

/// Why a snapshot could not be restored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreError(pub String);

impl std::fmt::Display for RestoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid snapshot: {}", self.0)
    }
}

impl std::error::Error for RestoreError {}
