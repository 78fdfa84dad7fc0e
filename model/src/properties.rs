//! The model's properties: thin wrappers that gather the views `spec::properties` needs from a
//! model state. The same functions judge replayed traces in `conform`.

use crate::history::History;
use crate::{ModelState, SmrModel};
use smr::{Node, NodeState};
use spec::properties::{self, ReplicaView, Violation};
use spec::{RequestId, Slot};
use stateright::actor::Id;

/// A named safety property, with the explanation of its first violation in a state.
pub struct Invariant {
    pub name: &'static str,
    pub check: fn(&SmrModel, &ModelState) -> Result<(), Violation>,
}

/// Every safety property, in report order.
pub const INVARIANTS: &[Invariant] = &[
    Invariant {
        name: "agreement",
        check: agreement,
    },
    Invariant {
        name: "validity",
        check: validity,
    },
    Invariant {
        name: "prefix execution",
        check: prefix_execution,
    },
    Invariant {
        name: "exactly-once",
        check: exactly_once,
    },
    Invariant {
        name: "linearizability",
        check: linearizability,
    },
    Invariant {
        name: "durability",
        check: durability,
    },
];

/// The replicas of a state, as the property functions see them.
pub fn replica_views(state: &ModelState) -> Vec<ReplicaView<'_>> {
    state
        .actor_states
        .iter()
        .enumerate()
        .filter_map(|(index, node)| {
            node.replica().map(|replica| ReplicaView {
                id: Id::from(index),
                log: &replica.log,
                executed: replica.executed,
                service_digest: replica.service.digest(),
            })
        })
        .collect()
}

pub fn agreement(_: &SmrModel, state: &ModelState) -> Result<(), Violation> {
    let history = &state.history;
    properties::agreement(
        &replica_views(state),
        &history.chosen,
        history.chosen_conflict.as_deref(),
    )
}

pub fn validity(model: &SmrModel, state: &ModelState) -> Result<(), Violation> {
    let submitted = |request: &spec::Request| match model.actors.get(usize::from(request.client)) {
        Some(Node::Client(client)) => {
            client.request(request.client, request.number).as_ref() == Some(request)
        }
        _ => false,
    };
    let history = &state.history;
    properties::validity(
        history.chosen.iter().map(|(slot, command)| (*slot, command)),
        submitted,
    )?;
    for view in replica_views(state) {
        properties::validity(view.log.iter().map(|(s, c)| (*s, c)), submitted)?;
    }
    Ok(())
}

pub fn prefix_execution(_: &SmrModel, state: &ModelState) -> Result<(), Violation> {
    properties::prefix_execution(&replica_views(state), &state.history.reference)
}

pub fn exactly_once(_: &SmrModel, state: &ModelState) -> Result<(), Violation> {
    let history = &state.history;
    properties::exactly_once(
        &history.replies,
        history.reply_conflict.as_deref(),
        &history.reference,
    )
}

pub fn linearizability(_: &SmrModel, state: &ModelState) -> Result<(), Violation> {
    if state.history.linearizable {
        Ok(())
    } else {
        Err(format!(
            "the client history is not linearizable: {:?}",
            state.history.tester
        ))
    }
}

pub fn durability(model: &SmrModel, state: &ModelState) -> Result<(), Violation> {
    let replicas = model.cfg.replicas;
    let holders = |request: RequestId, slot: Slot| {
        (0..replicas)
            .filter(|&index| {
                state.actor_storages[index].as_ref().is_some_and(|storage| {
                    storage.accepted.get(&slot).is_some_and(|accepted| {
                        accepted
                            .command
                            .requests()
                            .iter()
                            .any(|r| r.id() == request)
                    })
                })
            })
            .count()
    };
    let quorum = replicas / 2 + 1;
    properties::durability(
        state.history.replies.iter().map(|(r, (slot, _))| (*r, *slot)),
        holders,
        quorum,
    )
}

// --- Sometimes properties: the model is not vacuous. ---

/// Some client request was decided.
pub fn value_decided(_: &SmrModel, state: &ModelState) -> bool {
    state
        .history
        .chosen
        .values()
        .any(|command| !command.requests().is_empty())
}

/// A value chosen in one ballot was chosen again in a later ballot, by the next leader: the
/// leader change preserved it (and the agreement property shows it is the same value).
pub fn leader_change_preserves_decision(_: &SmrModel, state: &ModelState) -> bool {
    state.history.chosen_in.values().any(|ballots| ballots.len() > 1)
}

/// A replica that crashed and recovered was among the quorum that chose a value.
pub fn recovered_replica_votes(_: &SmrModel, state: &ModelState) -> bool {
    let history: &History = &state.history;
    history.proposals.iter().any(|((slot, ballot), proposal)| {
        proposal.recovered_voter
            && history
                .chosen_in
                .get(slot)
                .is_some_and(|ballots| ballots.contains(ballot))
    })
}

/// Every client got an answer to every operation.
pub fn all_clients_answered(model: &SmrModel, state: &ModelState) -> bool {
    state
        .actor_states
        .iter()
        .zip(&model.actors)
        .all(|(node, actor)| match (&**node, actor) {
            (NodeState::Client(client_state), Node::Client(client)) => client.is_done(client_state),
            _ => true,
        })
}
