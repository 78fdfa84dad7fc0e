//! The replicated service state: the key-value machine plus the client session table that makes
//! execution exactly-once. Both are part of every snapshot, because a replica that installs a
//! snapshot without the sessions would apply a retried request a second time.

use crate::command::{ClientId, Output, RequestNumber, Slot};
use crate::digest::{digest_of, Digest, SetDigest};
use crate::kv::KvStore;
use crate::state_machine::StateMachine;
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

/// Everything the replicas replicate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceState {
    pub machine: KvStore,
    pub sessions: Sessions,
}

impl ServiceState {
    /// The digest that replicas compare: equal states at equal slots must have equal digests.
    pub fn digest(&self) -> Digest {
        digest_of(&(self.machine.digest(), self.sessions.digest()))
    }
}
