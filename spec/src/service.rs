//! The replicated service state: the key-value machine, the client session table that makes
//! execution exactly-once, and the configuration. All three are part of every snapshot: a
//! replica that installed a snapshot without the sessions would apply a retried request a second
//! time, and one without the configuration would count votes in the wrong quorum.

use crate::command::{ClientId, Operation, Output, RequestNumber, Slot};
pub use crate::configuration::Configuration;
use crate::digest::{digest_of, Digest, SetDigest};
use crate::kv::KvStore;
use crate::state_machine::{RestoreError, StateMachine};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

/// The last request applied for one client, and its cached answer. Clients have at most one
/// request outstanding, so one entry per client is enough to answer any retry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Session {
    /// Number of the last applied request.
    pub number: RequestNumber,
    /// Slot at which it was applied.
    pub slot: Slot,
    /// Its answer, returned again to a retry.
    pub output: Output,
}

/// The session table, with a digest maintained on every change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sessions {
    entries: BTreeMap<ClientId, Session>,
    digest: SetDigest,
}

impl Hash for Sessions {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.digest.hash(state);
    }
}

impl Sessions {
    /// The session of `client`, if it has one.
    pub fn get(&self, client: ClientId) -> Option<&Session> {
        self.entries.get(&client)
    }

    /// Records the last applied request of `client`.
    pub fn record(&mut self, client: ClientId, session: Session) {
        self.digest.add(digest_of(&(client, &session)));
        if let Some(old) = self.entries.insert(client, session) {
            self.digest.remove(digest_of(&(client, &old)));
        }
    }

    /// Number of clients with a session.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no client has a session.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All sessions in client order.
    pub fn iter(&self) -> impl Iterator<Item = (&ClientId, &Session)> {
        self.entries.iter()
    }

    /// The digest of the table.
    pub fn digest(&self) -> Digest {
        self.digest.value()
    }
}

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
    /// The state of a new cluster whose members are `configuration`.
    pub fn new(configuration: Configuration) -> Self {
        ServiceState {
            configuration,
            ..ServiceState::default()
        }
    }

    /// Called before executing the command at `slot`: a configuration change whose first slot
    /// has come takes effect.
    pub fn begin_slot(&mut self, slot: Slot) {
        debug_assert_eq!(self.applied, slot, "slots are applied in order");
        self.applied = slot + 1;
        self.configuration.begin_slot(slot);
    }

    /// Applies one client operation decided at `slot` (no session bookkeeping: that is the
    /// caller's, so that exactly-once stays visible where it is decided).
    pub fn apply(&mut self, slot: Slot, op: &Operation) -> Output {
        match op {
            Operation::Kv(op) => Output::Kv(self.machine.apply(op)),
            Operation::Reconfigure(change) => {
                Output::Reconfigure(self.configuration.apply(slot, *change))
            }
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
            sessions: self
                .sessions
                .iter()
                .map(|(client, session)| (*client, session.clone()))
                .collect(),
            configuration: self.configuration.clone(),
            applied: self.applied,
        }
    }

    /// Rebuilds the state from a snapshot, refusing one that breaks an invariant.
    pub fn restore(snapshot: ServiceSnapshot) -> Result<Self, RestoreError> {
        let machine = KvStore::restore(snapshot.entries)?;
        let mut sessions = Sessions::default();
        for (client, session) in snapshot.sessions {
            if sessions.get(client).is_some() {
                return Err(RestoreError(format!("client {client:?} has two sessions")));
            }
            sessions.record(client, session);
        }
        let configuration = &snapshot.configuration;
        if configuration.members.is_empty() || configuration.alpha == 0 {
            return Err(RestoreError(
                "the configuration has no members or no α".into(),
            ));
        }
        Ok(ServiceState {
            machine,
            sessions,
            configuration: snapshot.configuration,
            applied: snapshot.applied,
        })
    }
}

/// The serialized form of a [`ServiceState`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSnapshot {
    pub entries: <KvStore as StateMachine>::Snapshot,
    pub sessions: Vec<(ClientId, Session)>,
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
