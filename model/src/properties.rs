//! The model's properties: thin wrappers that gather the views `spec::properties` needs from a
//! model state. The same functions judge replayed traces in `conform`.

use crate::history::History;
use crate::{ModelState, SmrModel};
use smr::replica::ReplicaState;
use smr::{Ballot, Node, NodeState};
use spec::properties::{self, ReplicaView, Violation};
use spec::reference::ReferenceExecution;
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
        name: "no step panics",
        check: no_step_panics,
    },
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
    Invariant {
        name: "checkpoint safety",
        check: checkpoint_safety,
    },
    Invariant {
        name: "audit digests agree",
        check: audit_digests_agree,
    },
    Invariant {
        name: "reconfiguration safety",
        check: reconfiguration_safety,
    },
];

/// No step of an actor panicked: a replica's own assertions (`impl/src/replica/invariants.rs`)
/// held after every step, and no handler hit a bug. A step that panics leads to the state
/// before it, marked with the panic, so the path to it is a counterexample like any other.
pub fn no_step_panics(_: &SmrModel, state: &ModelState) -> Result<(), Violation> {
    match &state.history.panic {
        Some(message) => Err(format!("the next step panics: {message}")),
        None => Ok(()),
    }
}

/// Reconfiguration safety (DESIGN.md): configurations form one chain (every replica's
/// configuration is the reference's after the slots it executed); every chosen slot was chosen
/// by a quorum of its own configuration (the electorate the leader counted is the reference
/// configuration of the slot); and only a replica whose state makes it a member votes (a joiner
/// only once it holds the state, a replica whose QUIT is in force never).
pub fn reconfiguration_safety(_: &SmrModel, state: &ModelState) -> Result<(), Violation> {
    let history = &state.history;
    let reference = &history.reference;
    for (index, node) in state.actor_states.iter().enumerate() {
        if let Some(replica) = node.replica() {
            configuration_in_chain(reference, index, replica)?;
        }
    }
    for (slot, ballots) in history.chosen_in.iter() {
        for ballot in ballots {
            let counted = history.proposals[&(*slot, *ballot)].electorate;
            electorate_of_slot(reference, *slot, *ballot, counted)?;
        }
    }
    match &history.vote_violation {
        Some(violation) => Err(violation.to_string()),
        None => Ok(()),
    }
}

// --- Judgements shared by the model's properties and history and by `conform`'s incremental
// checks, one item at a time. ---

/// Where replica `index` compared its state with another's, they agreed: the audit found its
/// checkpoint equal to a quorum's, and every state transfer assembled the snapshot its sender
/// announced (no correct replica sends a snapshot that does not match its digest, and the
/// model's network does not damage messages).
pub fn states_agree_where_compared(index: usize, replica: &ReplicaState) -> Result<(), Violation> {
    if replica.audit_failures > 0 {
        return Err(format!(
            "replica {index} found its state different from a quorum's"
        ));
    }
    if replica.snapshots_refused > 0 {
        return Err(format!(
            "replica {index} assembled a transferred snapshot that is not the one its sender announced"
        ));
    }
    Ok(())
}

/// A majority of the replicas in `electorate` (a bit per replica id).
pub fn majority(electorate: u64) -> usize {
    electorate.count_ones() as usize / 2 + 1
}

/// Configurations form one chain: replica `index`'s configuration is the chosen log's after
/// the slots it executed (nothing to judge while the reference has not applied that many).
pub fn configuration_in_chain(
    reference: &ReferenceExecution,
    index: usize,
    replica: &ReplicaState,
) -> Result<(), Violation> {
    match reference.configuration_after(replica.executed) {
        Some(expected) if *expected != replica.service.configuration => Err(format!(
            "replica {index} holds configuration {:?} after {} slots, but the chosen log gives {expected:?}",
            replica.service.configuration, replica.executed
        )),
        _ => Ok(()),
    }
}

/// Whether `slot`, chosen in `ballot` by a quorum of `counted` (a bit per replica id), was
/// counted in its own configuration. Judged when the slot is chosen: a leader proposes slot `x`
/// only once it has executed every slot up to `x - α`, which were chosen before, so the
/// reference always knows the configuration of a slot that is chosen; a slot chosen beyond
/// that window is reported (its electorate was a guess).
pub fn electorate_of_slot(
    reference: &ReferenceExecution,
    slot: Slot,
    ballot: Ballot,
    counted: u64,
) -> Result<(), Violation> {
    let Some(members) = reference.electorate(slot) else {
        return Err(format!(
            "slot {slot} was chosen in ballot {ballot:?} before the slots that fix its configuration were (only {} slots are chosen in order)",
            reference.applied()
        ));
    };
    let expected = members
        .iter()
        .fold(0u64, |mask, id| mask | 1 << usize::from(*id));
    if counted == expected {
        Ok(())
    } else {
        Err(format!(
            "slot {slot} was chosen in ballot {ballot:?} by a quorum of replicas {counted:#b}, but its configuration is {members:?}"
        ))
    }
}

/// Only a member votes: the configuration the voter's state held (its epoch, and whether a
/// change was pending) came from executing chosen slots, so the reference went through it,
/// and it must include the voter.
pub fn vote_by_member(
    reference: &ReferenceExecution,
    voter: Id,
    slot: Slot,
    ballot: Ballot,
    epoch: u64,
    pending: bool,
) -> Result<(), Violation> {
    let member = reference
        .configurations()
        .iter()
        .any(|(_, c)| c.epoch == epoch && c.pending.is_some() == pending && c.includes(voter));
    if member {
        return Ok(());
    }
    Err(format!(
        "replica {} voted for slot {slot} in ballot {ballot:?} although the state it held (epoch {epoch}{}) does not make it a member",
        usize::from(voter),
        if pending { " with a change pending" } else { "" }
    ))
}

/// Checkpoint safety at a truncation point: the slots below `log_start` may go only once a
/// quorum of a configuration holds a checkpoint that covers them, counting only its members
/// (`holds(id)` says whether replica `id` does). The configuration is the one in force at
/// `log_start` or a later one: the leader counts the votes in the configuration in force where
/// it has executed, which a JOIN decided since `log_start` may have enlarged (a joiner in force
/// holds the state it joined with); a spare that is not a member yet counts in none of them.
pub fn truncation_covered(
    reference: &ReferenceExecution,
    index: usize,
    log_start: Slot,
    holds: impl Fn(Id) -> bool,
) -> Result<(), Violation> {
    if log_start == 0 {
        return Ok(());
    }
    let in_force_since = reference.configuration_after(log_start).into_iter().chain(
        reference
            .configurations()
            .iter()
            .filter(|(from, _)| *from > log_start)
            .map(|(_, configuration)| configuration),
    );
    let mut judged = Vec::new();
    for configuration in in_force_since {
        let holders = configuration
            .members
            .iter()
            .filter(|id| holds(**id))
            .count();
        if holders >= configuration.quorum() {
            return Ok(());
        }
        judged.push(format!(
            "{holders} of members {:?} (quorum {})",
            configuration
                .members
                .iter()
                .map(|id| usize::from(*id))
                .collect::<Vec<_>>(),
            configuration.quorum()
        ));
    }
    Err(format!(
        "replica {index} discarded the slots below {log_start} but no configuration in force since has a quorum holding a checkpoint that covers them: {}",
        judged.join("; ")
    ))
}

/// Every checkpoint a replica holds, in its storage or its memory, with the replica's index.
fn checkpoints(state: &ModelState) -> impl Iterator<Item = (usize, &smr::replica::Checkpoint)> {
    let stored = state
        .actor_storages
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            s.as_ref()
                .and_then(|s| s.checkpoint.as_ref())
                .map(|c| (i, c))
        });
    let held = state
        .actor_states
        .iter()
        .enumerate()
        .filter_map(|(i, node)| {
            node.replica()
                .and_then(|r| r.durable.checkpoint.as_ref())
                .map(|c| (i, c))
        });
    stored.chain(held)
}

/// Checkpoint safety: a checkpoint at slot `s` holds exactly the state after executing the
/// decided slots below `s` (its digest is the reference's, and its state has that digest); and
/// a replica truncates below `s` only when a quorum holds such a checkpoint durably, so no
/// replica ever needs a discarded slot that it cannot get by state transfer.
pub fn checkpoint_safety(model: &SmrModel, state: &ModelState) -> Result<(), Violation> {
    let reference = &state.history.reference;
    for (index, checkpoint) in checkpoints(state) {
        if checkpoint.state.digest() != checkpoint.digest {
            return Err(format!(
                "replica {index} holds a checkpoint at slot {} whose state does not match its digest",
                checkpoint.slot
            ));
        }
        match reference.digest_after(checkpoint.slot) {
            Some(expected) if expected == checkpoint.digest => {}
            Some(expected) => {
                return Err(format!(
                    "replica {index} holds a checkpoint at slot {} with digest {:#018x}, but executing the chosen slots below it gives {expected:#018x}",
                    checkpoint.slot, checkpoint.digest
                ))
            }
            None => {
                return Err(format!(
                    "replica {index} holds a checkpoint at slot {} but the slots below it have not all been chosen",
                    checkpoint.slot
                ))
            }
        }
    }
    let _ = model;
    for (index, storage) in state.actor_storages.iter().enumerate() {
        let Some(storage) = storage else { continue };
        if storage.log_start == 0 {
            continue;
        }
        let holds = |id: Id| {
            state
                .actor_storages
                .get(usize::from(id))
                .and_then(Option::as_ref)
                .is_some_and(|s| covers_truncation(s, storage.log_start))
        };
        truncation_covered(reference, index, storage.log_start, holds)?;
    }
    Ok(())
}

/// The audit: replicas' checkpoints at the same slot have the same digest.
pub fn audit_digests_agree(_: &SmrModel, state: &ModelState) -> Result<(), Violation> {
    let mut seen: std::collections::BTreeMap<Slot, (usize, spec::Digest)> = Default::default();
    for (index, checkpoint) in checkpoints(state) {
        match seen.get(&checkpoint.slot) {
            Some((other, digest)) if *digest != checkpoint.digest => {
                return Err(format!(
                "replicas {other} and {index} hold checkpoints at slot {} with different digests",
                checkpoint.slot
            ))
            }
            Some(_) => {}
            None => {
                seen.insert(checkpoint.slot, (index, checkpoint.digest));
            }
        }
    }
    for (index, node) in state.actor_states.iter().enumerate() {
        if let Some(replica) = node.replica() {
            states_agree_where_compared(index, replica)?;
        }
    }
    Ok(())
}

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
        history
            .ballot_conflict
            .as_deref()
            .or(history.chosen_conflict.as_deref()),
    )
}

pub fn validity(model: &SmrModel, state: &ModelState) -> Result<(), Violation> {
    let submitted = |request: &spec::Request| match model.actors.get(usize::from(request.client)) {
        Some(Node::Client(client)) => client.sends(request),
        _ => false,
    };
    let history = &state.history;
    properties::validity(
        history
            .chosen
            .iter()
            .map(|(slot, command)| (*slot, command)),
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
        history.replies.iter(),
        history.reply_conflict.as_deref(),
        &history.reference,
    )?;
    for (request, slot, output) in history.other_replies.iter() {
        properties::judge_reply(*request, *slot, output, &history.reference)?;
    }
    Ok(())
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

/// Whether `storage` holds request `request`, decided at `slot`, durably: it accepted it there
/// in the ballot it was first chosen in or a later one (an acceptance in an earlier ballot is
/// not what a later leader's Phase 1 is sure to see first), or holds a checkpoint that covers
/// the slot and agrees with the reference execution. `chosen_in` is the first ballot the slot
/// was chosen in, if it was.
pub fn holds_durably(
    storage: &smr::Storage,
    reference: &spec::reference::ReferenceExecution,
    request: RequestId,
    slot: Slot,
    chosen_in: Option<Ballot>,
) -> bool {
    let accepted = storage.accepted.get(&slot).is_some_and(|accepted| {
        chosen_in.is_none_or(|ballot| accepted.ballot >= ballot)
            && accepted
                .command
                .requests()
                .iter()
                .any(|r| r.id() == request)
    });
    let checkpointed = storage
        .checkpoint
        .as_ref()
        .is_some_and(|c| c.slot > slot && reference.digest_after(c.slot) == Some(c.digest));
    accepted || checkpointed
}

/// Whether `storage` counts towards the quorum that must hold request `request`, decided at
/// `slot`: it holds it durably, or it is being rebuilt after a loss (its rebuild must restore
/// the request, proofs/RECOVERY.md, RC4; once it completes, the storage counts only if it does).
pub fn counts_as_holder(
    storage: &smr::Storage,
    reference: &spec::reference::ReferenceExecution,
    request: RequestId,
    slot: Slot,
    chosen_in: Option<Ballot>,
) -> bool {
    storage.rebuilding || holds_durably(storage, reference, request, slot, chosen_in)
}

/// The members of the configuration that decides `slot`, as far as the reference knows: the
/// slot's own, or, for a slot beyond what it can place yet, the latest configuration it has.
pub fn deciders(
    reference: &spec::reference::ReferenceExecution,
    slot: Slot,
) -> std::collections::BTreeSet<Id> {
    match reference.electorate(slot) {
        Some(members) => members.clone(),
        None => reference
            .configuration_after(reference.applied())
            .map(|c| c.audience())
            .unwrap_or_default(),
    }
}

/// Whether `storage` counts towards the quorum that must hold a checkpoint covering a
/// truncation at `log_start`: it holds one, or it is being rebuilt (a rebuild completes only
/// once it holds a checkpoint as recent as those of the replicas it rebuilt from).
pub fn covers_truncation(storage: &smr::Storage, log_start: Slot) -> bool {
    storage.rebuilding
        || storage
            .checkpoint
            .as_ref()
            .is_some_and(|c| c.slot >= log_start)
}

/// Durability: every acknowledged write is held durably by a quorum of the configuration that
/// decided its slot. A replica whose storage was lost and is being rebuilt counts as holding
/// it: its rebuild must restore it (proofs/RECOVERY.md, RC4), and once the rebuild completes
/// it counts only if it does hold it.
pub fn durability(model: &SmrModel, state: &ModelState) -> Result<(), Violation> {
    let _ = model;
    let reference = &state.history.reference;
    let first_chosen = |slot: Slot| {
        state
            .history
            .chosen_in
            .get(&slot)
            .and_then(|ballots| ballots.first().copied())
    };
    // Holders among the members that decide the slot only: a spare or a replica that quit
    // holding the write does not make it durable.
    let holders = |request: RequestId, slot: Slot| {
        deciders(reference, slot)
            .iter()
            .filter(|id| {
                state
                    .actor_storages
                    .get(usize::from(**id))
                    .and_then(Option::as_ref)
                    .is_some_and(|storage| {
                        counts_as_holder(storage, reference, request, slot, first_chosen(slot))
                    })
            })
            .count()
    };
    // A quorum of the configuration that decides the slot; for a slot the reference cannot
    // place yet (never chosen, or beyond a gap), of the latest configuration it knows.
    let quorum = |slot: Slot| spec::Configuration::quorum_of(&deciders(reference, slot));
    properties::durability(
        state
            .history
            .replies
            .iter()
            .map(|(r, (slot, _))| (*r, *slot)),
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
    state
        .history
        .chosen_in
        .values()
        .any(|ballots| ballots.len() > 1)
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

/// A replica discarded part of its log, and a replica (lagging or restarted) caught up by
/// installing a snapshot.
pub fn state_transfer_after_truncation(_: &SmrModel, state: &ModelState) -> bool {
    let truncated = state
        .actor_storages
        .iter()
        .flatten()
        .any(|s| s.log_start > 0);
    truncated
        && state
            .actor_states
            .iter()
            .any(|node| node.replica().is_some_and(|r| r.snapshots_installed > 0))
}

/// A replica installed a transferred snapshot, and holds a checkpoint of at least 3 chunks
/// (the one installed, or a later one of the same state size).
pub fn multi_chunk_transfer(model: &SmrModel, state: &ModelState) -> bool {
    let chunk = model.cfg.limits.max_chunk_bytes;
    state.actor_states.iter().any(|node| {
        node.replica().is_some_and(|r| {
            r.snapshots_installed > 0
                && r.durable
                    .checkpoint
                    .as_ref()
                    .is_some_and(|c| c.index().total() > 2 * chunk as u64)
        })
    })
}

/// A leader that won an election had a value chosen at or above a slot where some replica has
/// already truncated its log.
pub fn elected_leader_decides_above_truncation(_: &SmrModel, state: &ModelState) -> bool {
    let Some(log_start) = state
        .actor_storages
        .iter()
        .flatten()
        .map(|s| s.log_start)
        .filter(|start| *start > 0)
        .min()
    else {
        return false;
    };
    state
        .history
        .chosen_in
        .range(log_start..)
        .any(|(_, ballots)| {
            ballots
                .iter()
                .any(|ballot| state.history.ballots.contains(ballot))
        })
}

/// A replica that joined voted for a value that was chosen.
pub fn joiner_votes_in_decision(model: &SmrModel, state: &ModelState) -> bool {
    let _ = model;
    let history: &History = &state.history;
    history.proposals.iter().any(|((slot, ballot), proposal)| {
        proposal.joiner_voted
            && history
                .chosen_in
                .get(slot)
                .is_some_and(|ballots| ballots.contains(ballot))
    })
}

/// The first leader (replica 0) left the configuration, and a leader elected afterwards had a
/// value chosen in a slot that the new configuration decides.
pub fn new_leader_decides_after_leader_quits(_: &SmrModel, state: &ModelState) -> bool {
    let history = &state.history;
    let reference = &history.reference;
    history.chosen_in.iter().any(|(slot, ballots)| {
        reference
            .electorate(*slot)
            .is_some_and(|members| !members.contains(&Id::from(0)))
            && ballots.iter().any(|b| b.leader != Id::from(0))
    })
}

/// A replica that lost its storage rebuilt it, and then voted for a value that was chosen.
pub fn rebuilt_replica_votes(model: &SmrModel, state: &ModelState) -> bool {
    let history = &state.history;
    (0..model.cfg.replica_actors()).any(|index| {
        let Some(storage) = state.actor_storages[index].as_ref() else {
            return false;
        };
        let id = Id::from(index);
        let Some(life) = storage.rebuilt.get(&id).filter(|_| !storage.rebuilding) else {
            return false;
        };
        history.proposals.iter().any(|((slot, ballot), proposal)| {
            ballot >= life
                && proposal.voters & (1 << index) != 0
                && history
                    .chosen_in
                    .get(slot)
                    .is_some_and(|ballots| ballots.contains(ballot))
        })
    })
}

/// A request applied earlier was decided again after its session was retired, and answered
/// "expired" (the exactly-once property shows it was not applied again).
pub fn retry_after_session_retired(_: &SmrModel, state: &ModelState) -> bool {
    let history = &state.history;
    let expired = spec::Output::Session(spec::SessionOutput::Expired);
    history.other_replies.iter().any(|(request, slot, output)| {
        *output == expired
            && history
                .reference
                .application(*request)
                .is_some_and(|(applied, _)| applied < *slot)
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
