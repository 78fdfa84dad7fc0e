//! One replica actor stepped by hand, for the tests that pin a protocol behaviour as the few
//! steps of one replica that show it.

#![allow(dead_code)]

use smr::replica::{ReplicaConfig, Role, Storage};
use smr::{Msg, Node, NodeState, Replica, Timer};
use stateright::actor::{Actor, Command, Id, Out};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// What a step outputs.
pub type Output = Command<Msg, Timer, (), Storage>;

/// One replica actor and its state, stepped by hand.
pub struct Stepped {
    pub node: Node,
    pub id: Id,
    pub state: NodeState,
}

impl Stepped {
    pub fn start(config: ReplicaConfig, id: Id, storage: Storage) -> (Stepped, Vec<Output>) {
        let node = Node::Replica(Replica::new(config));
        let mut out = Out::new();
        let state = node.on_start(id, &Some(storage), &mut out);
        (Stepped { node, id, state }, out.into_iter().collect())
    }

    pub fn deliver(&mut self, src: Id, msg: Msg) -> Vec<Output> {
        let mut out = Out::new();
        let mut state = Cow::Borrowed(&self.state);
        self.node.on_msg(self.id, &mut state, src, msg, &mut out);
        self.state = state.into_owned();
        out.into_iter().collect()
    }

    pub fn fire(&mut self, timer: Timer) -> Vec<Output> {
        let mut out = Out::new();
        let mut state = Cow::Borrowed(&self.state);
        self.node.on_timeout(self.id, &mut state, &timer, &mut out);
        self.state = state.into_owned();
        out.into_iter().collect()
    }

    /// Replica `id`, elected in its first ballot with the promise of `peer` (of 3 replicas).
    pub fn elected(config: ReplicaConfig, id: Id, peer: Id) -> Stepped {
        let (mut replica, _) = Stepped::start(config, id, Storage::default());
        // The timeout starts a pre-vote for the next ballot; the peer grants it.
        replica.fire(Timer::Election);
        let ballot = replica.replica().ballot().next_for(id);
        replica.deliver(peer, Msg::PreVoteGranted { ballot });
        assert_eq!(replica.replica().ballot(), ballot, "campaigns");
        replica.deliver(
            peer,
            Msg::Promise {
                ballot,
                log_start: 0,
                accepted: Vec::new(),
                complete: true,
                checkpoint: 0,
                rebuilt: BTreeMap::new(),
            },
        );
        assert!(matches!(replica.replica().role, Role::Leader(_)), "elected");
        replica
    }

    pub fn replica(&self) -> &smr::ReplicaState {
        self.state.replica().expect("a replica")
    }
}
