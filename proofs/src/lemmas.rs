//! The invariants of the safety argument (`SAFETY.md`), as functions of a model state.
//!
//! The model's own properties (`model::properties::INVARIANTS`) state what safety *is*:
//! agreement, prefix execution, exactly-once, and so on. The lemmas here state *why* it holds,
//! the intermediate facts of the proof, each of which must hold in every reachable state too.
//! A lemma that fails points at the step of the argument that broke, which a property
//! violation many steps later does not. Each returns `Err` with an explanation.

use model::ModelState;
use smr::{Msg, NodeState};
use std::collections::BTreeMap;

/// A failed lemma, explained.
pub type Failure = String;

/// A named lemma.
pub struct Lemma {
    /// The lemma's number in `SAFETY.md`.
    pub number: &'static str,
    pub name: &'static str,
    pub check: fn(&ModelState) -> Result<(), Failure>,
}

/// Every lemma checked on model states.
pub const LEMMAS: &[Lemma] = &[
    Lemma {
        number: "L1",
        name: "an acceptor accepts nothing above its promise",
        check: accepted_at_most_promised,
    },
    Lemma {
        number: "L2",
        name: "a ballot proposes at most one value per slot",
        check: one_value_per_ballot_and_slot,
    },
    Lemma {
        number: "L3",
        name: "a proposal above a chosen ballot carries the chosen value",
        check: proposals_above_a_choice_carry_it,
    },
    Lemma {
        number: "L4",
        name: "what a live replica holds in memory is in its storage after every step",
        check: memory_is_durable,
    },
    Lemma {
        number: "L5",
        name: "a replica discards only slots it has executed and checkpointed",
        check: truncation_behind_execution_and_checkpoint,
    },
];

/// Every replica's durable state as the protocol sees it: in memory (if up) and in storage.
fn durables(state: &ModelState) -> impl Iterator<Item = (usize, &smr::Storage)> {
    let memory = state
        .actor_states
        .iter()
        .enumerate()
        .filter(|(i, _)| !state.crashed[*i])
        .filter_map(|(i, node)| node.replica().map(|r| (i, &r.durable)));
    let stored = state
        .actor_storages
        .iter()
        .enumerate()
        .filter_map(|(i, storage)| storage.as_ref().map(|s| (i, s)));
    memory.chain(stored)
}

/// L1 (Paxos Made Simple, P1a): an acceptor accepts a proposal in ballot `b` only if it has not
/// promised a higher ballot; so whatever it holds as accepted is at most its promise.
pub fn accepted_at_most_promised(state: &ModelState) -> Result<(), Failure> {
    for (index, durable) in durables(state) {
        if let Some((slot, accepted)) = durable
            .accepted
            .iter()
            .find(|(_, a)| a.ballot > durable.promised)
        {
            return Err(format!(
                "replica {index} accepted {:?} at slot {slot} above its promise {:?}",
                accepted.ballot, durable.promised
            ));
        }
    }
    Ok(())
}

/// L2: the leader of a ballot proposes at most one value for a slot, so every Accept in the
/// network and every value accepted for (slot, ballot) is the one first proposed there.
pub fn one_value_per_ballot_and_slot(state: &ModelState) -> Result<(), Failure> {
    let proposals = &state.history.proposals;
    for envelope in state.network.iter_all() {
        if let Msg::Accept {
            ballot,
            slot,
            command,
            ..
        } = envelope.msg
        {
            if let Some(first) = proposals.get(&(*slot, *ballot)) {
                if first.command != *command {
                    return Err(format!(
                        "two values proposed at slot {slot} in ballot {ballot:?}: {:?} and {command:?}",
                        first.command
                    ));
                }
            }
        }
    }
    for (index, durable) in durables(state) {
        for (slot, accepted) in &durable.accepted {
            if let Some(first) = proposals.get(&(*slot, accepted.ballot)) {
                if first.command != accepted.command {
                    return Err(format!(
                        "replica {index} accepted {:?} at slot {slot} in ballot {:?}, which proposed {:?}",
                        accepted.command, accepted.ballot, first.command
                    ));
                }
            }
        }
    }
    Ok(())
}

/// L3 (Paxos Made Simple, P2c, the heart of agreement): if a value was chosen at a slot in
/// ballot `b`, every proposal at that slot in a ballot above `b` carries the same value. So
/// every value chosen there later is that value too.
pub fn proposals_above_a_choice_carry_it(state: &ModelState) -> Result<(), Failure> {
    let history = &state.history;
    for (slot, ballots) in history.chosen_in.iter() {
        let Some(lowest) = ballots.iter().next() else {
            continue;
        };
        let Some(chosen) = history.chosen.get(slot) else {
            continue;
        };
        let later = history
            .proposals
            .range((*slot, *lowest)..)
            .take_while(|((s, _), _)| s == slot)
            .filter(|((_, ballot), _)| ballot > lowest);
        for ((_, ballot), proposal) in later {
            if proposal.command != *chosen {
                return Err(format!(
                    "slot {slot} was chosen in ballot {lowest:?} as {chosen:?}, but ballot {ballot:?} proposed {:?} there",
                    proposal.command
                ));
            }
        }
    }
    Ok(())
}

/// L4: every step that changes a replica's durable state saves it before its messages leave
/// (Paxos Made Simple, section 2.3: an acceptor remembers what it promised and accepted across
/// a crash). In the model a step's save is applied with the step, so after every step a live
/// replica's durable state in memory equals its storage.
pub fn memory_is_durable(state: &ModelState) -> Result<(), Failure> {
    for (index, node) in state.actor_states.iter().enumerate() {
        let NodeState::Replica(replica) = &**node else {
            continue;
        };
        if state.crashed[index] {
            continue;
        }
        match &state.actor_storages[index] {
            Some(storage) if *storage == replica.durable => {}
            Some(storage) => {
                let differs: BTreeMap<&str, bool> = [
                    ("promise", storage.promised != replica.durable.promised),
                    (
                        "accepted values",
                        storage.accepted != replica.durable.accepted,
                    ),
                    ("log start", storage.log_start != replica.durable.log_start),
                    (
                        "checkpoint",
                        storage.checkpoint != replica.durable.checkpoint,
                    ),
                ]
                .into_iter()
                .collect();
                return Err(format!(
                    "replica {index} holds durable state that is not in its storage ({differs:?})"
                ));
            }
            None => {
                return Err(format!(
                    "replica {index} runs without having saved its storage"
                ))
            }
        }
    }
    Ok(())
}

/// L5: a replica truncates its log only below a checkpoint it holds, and only below what it
/// has executed (nobody discards what it has not applied).
pub fn truncation_behind_execution_and_checkpoint(state: &ModelState) -> Result<(), Failure> {
    for (index, node) in state.actor_states.iter().enumerate() {
        let Some(replica) = node.replica() else {
            continue;
        };
        let durable = &replica.durable;
        if durable.log_start == 0 {
            continue;
        }
        let covered = durable
            .checkpoint
            .as_ref()
            .is_some_and(|c| c.slot >= durable.log_start);
        if !covered {
            return Err(format!(
                "replica {index} discarded the slots below {} without a checkpoint that covers them",
                durable.log_start
            ));
        }
        if !state.crashed[index] && replica.executed < durable.log_start {
            return Err(format!(
                "replica {index} discarded the slots below {} but executed only {}",
                durable.log_start, replica.executed
            ));
        }
    }
    Ok(())
}
