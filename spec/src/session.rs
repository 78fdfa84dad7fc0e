//! The client session table that makes execution exactly-once, with a bounded size.
//!
//! Each client has at most one request outstanding, so one entry per client (its last applied
//! request and the answer) is enough to recognise and answer any retry. The table has a
//! replicated maximum, `capacity`: a new session beyond it retires the least recently used one
//! (the smallest last-applied slot, then the smallest client id). The rule reads only the
//! decided log, never a clock, so every replica retires the same sessions at the same slot.
//!
//! **Why a retired session can never execute a request twice.** Once a client's entry is gone,
//! the table cannot tell that client's retry from a new request. So a request names the
//! *incarnation* of the session it belongs to ([`SessionId`]), which the client learns from
//! opening the session ([`Operation::OpenSession`], whose only effect is the entry). Each
//! opening that creates an entry draws a new incarnation from a replicated counter, so an
//! incarnation is never reused. A request is executed only if its client's entry exists and
//! has the request's incarnation (and the request is newer than the entry's last one). A
//! request of a retired incarnation finds no entry, or an entry of a later incarnation, and is
//! answered [`SessionOutput::Expired`]: never executed.
//!
//! *Implicit sessions.* A request of incarnation [`IMPLICIT`] from a client without an entry is
//! executed (and creates the entry) only while the table has never retired a session: then a
//! missing entry proves that no request of the client was ever applied. The model's clients use
//! them (with an unbounded table, opening a session first would only add states); every
//! deployed client opens its session.

use crate::command::{ClientId, Operation, Output, Request, RequestNumber, Slot};
use crate::digest::{digest_of, Digest, SetDigest};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

/// The incarnation of a client's session: drawn from the table's counter when an
/// [`Operation::OpenSession`] creates the entry, never reused.
pub type SessionId = u64;

/// The incarnation of sessions created by a client's first request, without an opening; see
/// the module documentation.
pub const IMPLICIT: SessionId = 0;

/// What opening a session, or a request of an expired session, answers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SessionOutput {
    /// The session is open, with this incarnation: the client's later requests carry it.
    Opened(SessionId),
    /// The client's session was retired to keep the table within its maximum (or was never
    /// opened). The request was not executed now; whether an earlier copy of it was cannot be
    /// known any more, so its outcome is unknown to the client.
    Expired,
}

/// The last request applied for one client, and its cached answer.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Session {
    /// The incarnation the entry was created with.
    pub incarnation: SessionId,
    /// Number of the last applied request.
    pub number: RequestNumber,
    /// Slot at which it was applied: the session's last use, by which sessions are retired.
    pub slot: Slot,
    /// Its answer, returned again to a retry.
    pub output: Output,
}

/// What the table says about a decided request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Never applied: apply it and record it.
    Fresh,
    /// The client's last applied request again: answer it from the table.
    Duplicate,
    /// Older than the client's last applied request: the client has its answer; ignore it.
    Stale,
    /// Of a session that is no longer in the table: answer [`SessionOutput::Expired`].
    Expired,
}

/// The session table, with a digest maintained on every change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sessions {
    entries: BTreeMap<ClientId, Session>,
    /// The entries by last use, least recent first.
    by_use: BTreeSet<(Slot, ClientId)>,
    /// The most entries the table holds.
    capacity: usize,
    /// The last incarnation drawn.
    incarnations: SessionId,
    /// Sessions retired so far.
    retired: u64,
    digest: SetDigest,
}

impl Default for Sessions {
    /// An unbounded table.
    fn default() -> Self {
        Sessions::with_capacity(usize::MAX)
    }
}

impl Hash for Sessions {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.digest().hash(state);
    }
}

impl Sessions {
    /// An empty table of at most `capacity` sessions (at least 1).
    pub fn with_capacity(capacity: usize) -> Self {
        Sessions {
            entries: BTreeMap::new(),
            by_use: BTreeSet::new(),
            capacity: capacity.max(1),
            incarnations: IMPLICIT,
            retired: 0,
            digest: SetDigest::default(),
        }
    }

    /// The session of `client`, if it has one.
    pub fn get(&self, client: ClientId) -> Option<&Session> {
        self.entries.get(&client)
    }

    /// What to do with `request`, decided in the log (see the module documentation).
    pub fn admit(&self, request: &Request) -> Admission {
        let by_number = |session: &Session| match request.number.cmp(&session.number) {
            std::cmp::Ordering::Greater => Admission::Fresh,
            std::cmp::Ordering::Equal => Admission::Duplicate,
            std::cmp::Ordering::Less => Admission::Stale,
        };
        match (self.entries.get(&request.client), &request.op) {
            // Opening is idempotent: a retry of it, or a reopening by a client whose requests
            // were refused, keeps the entry's incarnation.
            (Some(session), Operation::OpenSession) => by_number(session),
            (None, Operation::OpenSession) => Admission::Fresh,
            (Some(session), _) if session.incarnation == request.session => by_number(session),
            (Some(_), _) => Admission::Expired,
            (None, _) if request.session == IMPLICIT && self.retired == 0 => Admission::Fresh,
            (None, _) => Admission::Expired,
        }
    }

    /// The incarnation a fresh `request` is recorded under: the entry's, or for a new entry
    /// the next one drawn for an opening (and [`IMPLICIT`] otherwise).
    pub fn incarnation_for(&self, request: &Request) -> SessionId {
        match (self.entries.get(&request.client), &request.op) {
            (Some(session), _) => session.incarnation,
            (None, Operation::OpenSession) => self.incarnations + 1,
            (None, _) => IMPLICIT,
        }
    }

    /// Records the last applied request of `client`. A new entry in a full table retires the
    /// least recently used one, which is returned.
    pub fn record(&mut self, client: ClientId, session: Session) -> Option<ClientId> {
        let mut retired = None;
        self.incarnations = self.incarnations.max(session.incarnation);
        if let Some(old) = self.entries.remove(&client) {
            self.by_use.remove(&(old.slot, client));
            self.digest.remove(digest_of(&(client, &old)));
        } else if self.entries.len() >= self.capacity {
            let (_, oldest) = self.by_use.pop_first().expect("a full table has entries");
            let old = self.entries.remove(&oldest).expect("indexed entries exist");
            self.digest.remove(digest_of(&(oldest, &old)));
            self.retired += 1;
            retired = Some(oldest);
        }
        self.by_use.insert((session.slot, client));
        self.digest.add(digest_of(&(client, &session)));
        self.entries.insert(client, session);
        retired
    }

    /// Number of clients with a session.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no client has a session.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The most sessions the table holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sessions retired so far.
    pub fn retired(&self) -> u64 {
        self.retired
    }

    /// The last incarnation drawn.
    pub fn incarnations(&self) -> SessionId {
        self.incarnations
    }

    /// All sessions in client order.
    pub fn iter(&self) -> impl Iterator<Item = (&ClientId, &Session)> {
        self.entries.iter()
    }

    /// The digest of the table: its entries, its maximum and its counters.
    pub fn digest(&self) -> Digest {
        digest_of(&(
            self.digest.value(),
            self.capacity,
            self.incarnations,
            self.retired,
        ))
    }

    /// The table's serialized form.
    pub fn snapshot(&self) -> SessionsSnapshot {
        SessionsSnapshot {
            capacity: self.capacity,
            incarnations: self.incarnations,
            retired: self.retired,
            entries: self
                .iter()
                .map(|(client, session)| (*client, session.clone()))
                .collect(),
        }
    }

    /// Rebuilds a table, refusing one that breaks an invariant.
    pub fn restore(snapshot: SessionsSnapshot) -> Result<Self, String> {
        let SessionsSnapshot {
            capacity,
            incarnations,
            retired,
            entries,
        } = snapshot;
        if entries.len() > capacity {
            return Err(format!(
                "{} sessions, beyond the table's maximum of {capacity}",
                entries.len()
            ));
        }
        let mut sessions = Sessions::with_capacity(capacity);
        for (client, session) in entries {
            if sessions.get(client).is_some() {
                return Err(format!("client {client:?} has two sessions"));
            }
            if session.incarnation > incarnations {
                return Err(format!(
                    "client {client:?} has incarnation {}, beyond the last drawn ({incarnations})",
                    session.incarnation
                ));
            }
            sessions.record(client, session);
        }
        sessions.incarnations = incarnations;
        sessions.retired = retired;
        Ok(sessions)
    }
}

impl Sessions {
    /// What changed since `earlier`: the entries that differ (`None`: gone) and the counters.
    /// It compares the two tables entry by entry, which costs the table's bounded size.
    pub fn delta_since(&self, earlier: &Sessions) -> SessionsDelta {
        let mut changed: Vec<(ClientId, Option<Session>)> = self
            .entries
            .iter()
            .filter(|(client, session)| earlier.entries.get(client) != Some(session))
            .map(|(client, session)| (*client, Some(session.clone())))
            .collect();
        changed.extend(
            earlier
                .entries
                .keys()
                .filter(|client| !self.entries.contains_key(client))
                .map(|client| (*client, None)),
        );
        SessionsDelta {
            capacity: self.capacity,
            incarnations: self.incarnations,
            retired: self.retired,
            changed,
        }
    }

    /// This table with `delta` applied, refusing a result that breaks an invariant.
    pub fn with_delta(&self, delta: SessionsDelta) -> Result<Sessions, String> {
        let mut entries = self.entries.clone();
        for (client, session) in delta.changed {
            match session {
                Some(session) => entries.insert(client, session),
                None => entries.remove(&client),
            };
        }
        Sessions::restore(SessionsSnapshot {
            capacity: delta.capacity,
            incarnations: delta.incarnations,
            retired: delta.retired,
            entries: entries.into_iter().collect(),
        })
    }
}

/// The changes between two session tables (see [`Sessions::delta_since`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionsDelta {
    pub capacity: usize,
    pub incarnations: SessionId,
    pub retired: u64,
    pub changed: Vec<(ClientId, Option<Session>)>,
}

/// The serialized form of [`Sessions`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionsSnapshot {
    pub capacity: usize,
    pub incarnations: SessionId,
    pub retired: u64,
    pub entries: Vec<(ClientId, Session)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{KvOp, KvOutput};
    use stateright::actor::Id;

    fn request(client: usize, session: SessionId, number: RequestNumber, op: Operation) -> Request {
        Request {
            client: Id::from(client),
            session,
            number,
            op,
        }
    }

    fn put(client: usize, session: SessionId, number: RequestNumber) -> Request {
        let op = Operation::Kv(KvOp::Put {
            key: "k".into(),
            value: "v".into(),
        });
        request(client, session, number, op)
    }

    /// Applies `request` at `slot` as the replicas do, returning what the table said.
    fn execute(sessions: &mut Sessions, slot: Slot, request: &Request) -> Admission {
        let admission = sessions.admit(request);
        if admission == Admission::Fresh {
            let incarnation = sessions.incarnation_for(request);
            let output = match request.op {
                Operation::OpenSession => Output::Session(SessionOutput::Opened(incarnation)),
                _ => Output::Kv(KvOutput::Written),
            };
            let session = Session {
                incarnation,
                number: request.number,
                slot,
                output,
            };
            sessions.record(request.client, session);
        }
        admission
    }

    #[test]
    fn the_least_recently_used_session_is_retired_and_its_retry_expires() {
        let mut sessions = Sessions::with_capacity(2);
        let open = |client| request(client, IMPLICIT, 1, Operation::OpenSession);
        assert_eq!(execute(&mut sessions, 0, &open(10)), Admission::Fresh);
        assert_eq!(execute(&mut sessions, 1, &open(11)), Admission::Fresh);
        let ten = sessions.get(Id::from(10)).unwrap().incarnation;
        assert_eq!(
            execute(&mut sessions, 2, &put(10, ten, 2)),
            Admission::Fresh
        );
        // Client 11 is now the least recently used: client 12's opening retires it.
        assert_eq!(execute(&mut sessions, 3, &open(12)), Admission::Fresh);
        assert_eq!(sessions.len(), 2);
        assert_eq!(sessions.retired(), 1);
        assert!(sessions.get(Id::from(11)).is_none());
        // Client 10's retry is answered from the table; client 11's requests expire.
        assert_eq!(sessions.admit(&put(10, ten, 2)), Admission::Duplicate);
        assert_eq!(sessions.admit(&put(11, 2, 2)), Admission::Expired);
        assert_eq!(sessions.admit(&put(11, IMPLICIT, 2)), Admission::Expired);
    }

    #[test]
    fn a_reopened_session_never_accepts_a_request_of_the_retired_incarnation() {
        let mut sessions = Sessions::with_capacity(1);
        let open = |client, number| request(client, IMPLICIT, number, Operation::OpenSession);
        execute(&mut sessions, 0, &open(10, 1));
        let first = sessions.get(Id::from(10)).unwrap().incarnation;
        assert_eq!(
            execute(&mut sessions, 1, &put(10, first, 2)),
            Admission::Fresh
        );
        execute(&mut sessions, 2, &open(11, 1)); // Retires client 10.
                                                 // A delayed copy of client 10's opening is decided again: it creates a new
                                                 // incarnation, under which the applied request 2 is not accepted again.
        assert_eq!(execute(&mut sessions, 3, &open(10, 1)), Admission::Fresh);
        let second = sessions.get(Id::from(10)).unwrap().incarnation;
        assert_ne!(first, second);
        assert_eq!(sessions.admit(&put(10, first, 2)), Admission::Expired);
        // The client reopens (a newer number) and keeps the entry's incarnation.
        assert_eq!(execute(&mut sessions, 4, &open(10, 3)), Admission::Fresh);
        assert_eq!(sessions.get(Id::from(10)).unwrap().incarnation, second);
        assert_eq!(
            execute(&mut sessions, 5, &put(10, second, 4)),
            Admission::Fresh
        );
    }

    #[test]
    fn implicit_sessions_are_created_only_before_any_retirement() {
        let mut sessions = Sessions::with_capacity(1);
        assert_eq!(
            execute(&mut sessions, 0, &put(10, IMPLICIT, 1)),
            Admission::Fresh
        );
        // The table is full: client 11's first request retires client 10's session.
        assert_eq!(
            execute(&mut sessions, 1, &put(11, IMPLICIT, 1)),
            Admission::Fresh
        );
        assert_eq!(sessions.retired(), 1);
        // From now on a missing entry proves nothing: client 10's retry cannot be told from
        // a new request, and a new client must open its session.
        assert_eq!(sessions.admit(&put(10, IMPLICIT, 1)), Admission::Expired);
        assert_eq!(
            execute(&mut sessions, 2, &put(12, IMPLICIT, 1)),
            Admission::Expired
        );
        let open = request(12, IMPLICIT, 2, Operation::OpenSession);
        assert_eq!(execute(&mut sessions, 3, &open), Admission::Fresh);
    }

    #[test]
    fn the_table_never_exceeds_its_maximum_and_round_trips() {
        let mut sessions = Sessions::with_capacity(3);
        for client in 0..10 {
            let open = request(10 + client, IMPLICIT, 1, Operation::OpenSession);
            execute(&mut sessions, client as Slot, &open);
            assert!(sessions.len() <= 3);
        }
        assert_eq!(sessions.retired(), 7);
        let restored = Sessions::restore(sessions.snapshot()).unwrap();
        assert_eq!(restored, sessions);
        assert_eq!(restored.digest(), sessions.digest());
        let mut too_many = sessions.snapshot();
        too_many.capacity = 2;
        assert!(Sessions::restore(too_many)
            .unwrap_err()
            .contains("maximum of 2"));
    }
}
