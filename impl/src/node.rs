//! The one actor type of the system. A stateright actor system has a single actor type, so
//! replicas and clients are the two variants of [`Node`]; the model checker and the runtime both
//! drive this very type.

use crate::client::{Client, ClientState};
use crate::message::Msg;
use crate::replica::storage::Storage;
use crate::replica::{Replica, ReplicaState};
use stateright::actor::{Actor, Id, Out};
use std::borrow::Cow;

/// Timers of replicas and clients.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Timer {
    /// A follower or candidate heard from no leader for too long: start Phase 1.
    Election,
    /// A leader shows its followers that it is alive.
    Heartbeat,
    /// A client got no answer: send the request again.
    Retry,
}

/// A replica or a client.
#[derive(Clone, Debug)]
pub enum Node {
    Replica(Replica),
    Client(Client),
}

/// The state of a replica or a client.
// Boxing the replica state would add an allocation to every actor step; the model keeps each
// actor's state behind an `Arc` already, so the size difference costs nothing there.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NodeState {
    Replica(ReplicaState),
    Client(ClientState),
}

impl NodeState {
    /// The replica state, if this is a replica.
    pub fn replica(&self) -> Option<&ReplicaState> {
        match self {
            NodeState::Replica(state) => Some(state),
            NodeState::Client(_) => None,
        }
    }

    /// The client state, if this is a client.
    pub fn client(&self) -> Option<&ClientState> {
        match self {
            NodeState::Client(state) => Some(state),
            NodeState::Replica(_) => None,
        }
    }
}

/// Runs `handler` on the inner state of a [`NodeState`] variant, keeping the state borrowed
/// (and so the step recognisable as a no-op) unless the handler changes it.
macro_rules! dispatch {
    ($state:ident, $variant:ident, $inner:ident, |$cow:ident| $body:expr) => {{
        let mut $cow = Cow::Borrowed($inner);
        $body;
        if let Cow::Owned(next) = $cow {
            *$state = Cow::Owned(NodeState::$variant(next));
        }
    }};
}

impl Actor for Node {
    type Msg = Msg;
    type State = NodeState;
    type Timer = Timer;
    type Random = ();
    type Storage = Storage;

    fn name(&self) -> String {
        match self {
            Node::Replica(_) => "replica".to_string(),
            Node::Client(_) => "client".to_string(),
        }
    }

    fn on_start(&self, id: Id, storage: &Option<Storage>, o: &mut Out<Self>) -> NodeState {
        match self {
            Node::Replica(replica) => NodeState::Replica(replica.on_start(id, storage.as_ref(), o)),
            Node::Client(client) => NodeState::Client(client.on_start(id, o)),
        }
    }

    fn on_msg(&self, id: Id, state: &mut Cow<NodeState>, src: Id, msg: Msg, o: &mut Out<Self>) {
        match (self, &**state) {
            (Node::Replica(replica), NodeState::Replica(inner)) => {
                dispatch!(state, Replica, inner, |cow| replica
                    .on_msg(id, &mut cow, src, msg, o))
            }
            (Node::Client(client), NodeState::Client(inner)) => {
                dispatch!(state, Client, inner, |cow| client
                    .on_msg(id, &mut cow, src, msg, o))
            }
            _ => unreachable!("an actor's state always matches its kind"),
        }
    }

    fn on_timeout(&self, id: Id, state: &mut Cow<NodeState>, timer: &Timer, o: &mut Out<Self>) {
        match (self, &**state) {
            (Node::Replica(replica), NodeState::Replica(inner)) => {
                dispatch!(state, Replica, inner, |cow| replica
                    .on_timeout(id, &mut cow, *timer, o))
            }
            (Node::Client(client), NodeState::Client(inner)) => {
                dispatch!(state, Client, inner, |cow| client
                    .on_timeout(id, &mut cow, *timer, o))
            }
            _ => unreachable!("an actor's state always matches its kind"),
        }
    }
}
