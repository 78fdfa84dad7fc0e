//! What the replicated log holds: client requests, identified by (client id, request number),
//! and the system commands that replicas propose themselves.

use crate::configuration::{Change, ChangeOutput};
use crate::digest::{digest_of, Digest};
use crate::kv::{KvOp, KvOutput};
use crate::session::{SessionId, SessionOutput};
use serde::{Deserialize, Serialize};
use stateright::actor::Id;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A position in the replicated log.
pub type Slot = u64;

/// A client's logical identity; the same [`Id`] that addresses the client actor.
pub type ClientId = Id;

/// A client numbers its requests 1, 2, 3, ...; a retry reuses the number. Together with the
/// client id it identifies a request for exactly-once execution.
pub type RequestNumber = u64;

/// The identity of one client request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestId {
    pub client: ClientId,
    pub number: RequestNumber,
}

/// What a client can ask of the replicated service.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Operation {
    /// An operation on the key-value machine.
    Kv(KvOp),
    /// A change of the cluster's membership (JOIN or QUIT), ordered through the log.
    Reconfigure(Change),
    /// Opens the client's session (see [`crate::session`]): its only effect is the session's
    /// entry, so executing it again is harmless.
    OpenSession,
}

/// What the replicated service answers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Output {
    /// The key-value machine's answer.
    Kv(KvOutput),
    /// The answer to a membership change.
    Reconfigure(ChangeOutput),
    /// The answer to opening a session, or to a request of an expired one.
    Session(SessionOutput),
}

/// A client request as it travels and as it is stored in the log.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Request {
    pub client: ClientId,
    /// The incarnation of the client's session that the request belongs to.
    pub session: SessionId,
    pub number: RequestNumber,
    pub op: Operation,
}

impl Request {
    /// The request's identity.
    pub fn id(&self) -> RequestId {
        RequestId {
            client: self.client,
            number: self.number,
        }
    }
}

/// Client requests ordered as one unit, so that one round of Phase 2 carries many of them.
///
/// Shared, because the same batch sits in messages, in the accepted log and in the decided log;
/// and digested once, when it is made, because model checking hashes it in every state.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Batch(Arc<BatchInner>);

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct BatchInner {
    requests: Vec<Request>,
    digest: Digest,
}

impl Batch {
    /// A batch of `requests`.
    pub fn new(requests: Vec<Request>) -> Self {
        let digest = digest_of(&requests);
        Batch(Arc::new(BatchInner { requests, digest }))
    }

    /// The requests, in order.
    pub fn requests(&self) -> &[Request] {
        &self.0.requests
    }

    /// The digest of the requests.
    pub fn digest(&self) -> Digest {
        self.0.digest
    }
}

impl Hash for Batch {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.digest.hash(state);
    }
}

impl Serialize for Batch {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.requests.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Batch {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<Request>::deserialize(deserializer).map(Batch::new)
    }
}

/// The value decided for one slot of the log.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Command {
    /// Fills a slot that a new leader found empty (Lamport, "Paxos Made Simple", section 3).
    Noop,
    /// Client requests.
    Batch(Batch),
    /// Every replica that executes this records a checkpoint: a snapshot of the service state
    /// after this slot.
    Checkpoint,
}

impl Command {
    /// A batch of client requests.
    pub fn batch(requests: Vec<Request>) -> Self {
        Command::Batch(Batch::new(requests))
    }

    /// The client requests the command carries (none for system commands).
    pub fn requests(&self) -> &[Request] {
        match self {
            Command::Batch(batch) => batch.requests(),
            Command::Noop | Command::Checkpoint => &[],
        }
    }

    /// Whether the command is proposed by replicas rather than submitted by clients.
    pub fn is_system(&self) -> bool {
        !matches!(self, Command::Batch(_))
    }
}
