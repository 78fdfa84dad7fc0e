//! The replicated service state: the key-value machine, the client session table that makes
//! execution exactly-once, and the configuration. All three are part of every snapshot: a
//! replica that installed a snapshot without the sessions would apply a retried request a second
//! time, and one without the configuration would count votes in the wrong quorum.

use crate::command::{Operation, Output, Request, Slot};
pub use crate::configuration::Configuration;
use crate::digest::{digest_of, Digest};
use crate::kv::{Key, KvStore, Value};
use crate::session::{SessionOutput, Sessions, SessionsDelta, SessionsSnapshot};
use crate::state_machine::{RestoreError, StateMachine};
use serde::{Deserialize, Serialize};

/// Everything the replicas replicate: the machine, the sessions, and the configuration, with
/// the number of slots applied to reach them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceState {
    pub machine: KvStore,
    pub sessions: Sessions,
    pub configuration: Configuration,
    /// Slots `0..applied` have been applied. Part of the digest, so that the state after `s`
    /// slots differs from the state after `s + 1` even when slot `s` changed nothing else (a
    /// no-op or a checkpoint): a checkpoint labelled with the wrong slot cannot pass for a
    /// correct one, and replicas audit each other at equal slots only.
    pub applied: Slot,
}

impl ServiceState {
    /// The state of a new cluster whose members are `configuration`, with an unbounded
    /// session table.
    pub fn new(configuration: Configuration) -> Self {
        ServiceState {
            configuration,
            ..ServiceState::default()
        }
    }

    /// The same with a session table of at most `max_sessions` entries.
    pub fn with_max_sessions(self, max_sessions: usize) -> Self {
        ServiceState {
            sessions: Sessions::with_capacity(max_sessions),
            ..self
        }
    }

    /// Called before executing the command at `slot`: a configuration change whose first slot
    /// has come takes effect.
    pub fn begin_slot(&mut self, slot: Slot) {
        debug_assert_eq!(self.applied, slot, "slots are applied in order");
        self.applied = slot + 1;
        self.configuration.begin_slot(slot);
    }

    /// Applies one client request decided at `slot` and admitted as fresh (no session
    /// bookkeeping: that is the caller's, so that exactly-once stays visible where it is
    /// decided). Opening a session changes nothing here: its answer is the incarnation the
    /// caller records.
    pub fn apply(&mut self, slot: Slot, request: &Request) -> Output {
        match &request.op {
            Operation::Kv(op) => Output::Kv(self.machine.apply(op)),
            Operation::Reconfigure(change) => {
                Output::Reconfigure(self.configuration.apply(slot, *change))
            }
            Operation::OpenSession => Output::Session(SessionOutput::Opened(
                self.sessions.incarnation_for(request),
            )),
        }
    }

    /// The digest that replicas compare: equal states at equal slots must have equal digests.
    pub fn digest(&self) -> Digest {
        digest_of(&(
            self.machine.digest(),
            self.sessions.digest(),
            &self.configuration,
            self.applied,
        ))
    }

    /// A self-contained copy of the state, for a checkpoint or a state transfer.
    pub fn snapshot(&self) -> ServiceSnapshot {
        ServiceSnapshot {
            entries: self.machine.snapshot(),
            sessions: self.sessions.snapshot(),
            configuration: self.configuration.clone(),
            applied: self.applied,
        }
    }

    /// Rebuilds the state from a snapshot, refusing one that breaks an invariant.
    pub fn restore(snapshot: ServiceSnapshot) -> Result<Self, RestoreError> {
        let machine = KvStore::restore(snapshot.entries)?;
        let sessions = Sessions::restore(snapshot.sessions).map_err(RestoreError)?;
        check_configuration(&snapshot.configuration)?;
        Ok(ServiceState {
            machine,
            sessions,
            configuration: snapshot.configuration,
            applied: snapshot.applied,
        })
    }
}

/// What changed in a service state since an earlier one (see [`ServiceState::delta_since`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDelta {
    /// The machine's entries written since (`None`: removed).
    pub entries: Vec<(Key, Option<Value>)>,
    pub sessions: SessionsDelta,
    pub configuration: Configuration,
    pub applied: Slot,
}

impl ServiceState {
    /// What changed since `earlier`, costing what was written since rather than the size of
    /// the state (see [`KvStore::changes_since`]): how a checkpoint is saved after the first.
    pub fn delta_since(&self, earlier: &ServiceState) -> ServiceDelta {
        ServiceDelta {
            entries: self.machine.changes_since(&earlier.machine),
            sessions: self.sessions.delta_since(&earlier.sessions),
            configuration: self.configuration.clone(),
            applied: self.applied,
        }
    }

    /// This state with `delta` applied, refusing a result that breaks an invariant.
    pub fn with_delta(&self, delta: ServiceDelta) -> Result<ServiceState, RestoreError> {
        check_configuration(&delta.configuration)?;
        let mut machine = self.machine.clone();
        machine.apply_changes(delta.entries);
        Ok(ServiceState {
            machine,
            sessions: self
                .sessions
                .with_delta(delta.sessions)
                .map_err(RestoreError)?,
            configuration: delta.configuration,
            applied: delta.applied,
        })
    }
}

fn check_configuration(configuration: &Configuration) -> Result<(), RestoreError> {
    if configuration.members.is_empty() || configuration.alpha == 0 {
        return Err(RestoreError(
            "the configuration has no members or no α".into(),
        ));
    }
    Ok(())
}

/// The serialized form of a [`ServiceState`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSnapshot {
    pub entries: <KvStore as StateMachine>::Snapshot,
    pub sessions: SessionsSnapshot,
    pub configuration: Configuration,
    pub applied: Slot,
}

impl Serialize for ServiceState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.snapshot().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ServiceState {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let snapshot = ServiceSnapshot::deserialize(deserializer)?;
        ServiceState::restore(snapshot).map_err(serde::de::Error::custom)
    }
}
