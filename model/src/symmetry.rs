//! Symmetry reduction over interchangeable replicas (proofs/SAFETY.md, section 9a): where some
//! replicas cannot be told apart by the protocol, two states that differ only by a renaming of
//! them have the same futures up to the same renaming, and satisfy the same properties.
//! Stateright's depth-first checker then keeps one fingerprint per class
//! (`CheckerBuilder::symmetry_fn`) and explores the first state of each class it meets.
//!
//! The interchangeable replicas ([`interchangeable`]) are the first members except replica 0
//! (the bootstrap leader) and except any replica a membership change names, so that commands
//! and configurations map to themselves under a renaming (`smr::symmetry` copies them as they
//! are). They are interchangeable only under bounds that never let the protocol tell them
//! apart by their ids, which [`applies`] checks:
//! - at most one election besides the bootstrap, so that no two ballots of the same round
//!   exist (ballots of one round are ordered by their leader's id);
//! - no crash together with checkpoints (a restarted replica asks its *first* peer to catch it
//!   up), no retries (a client retries at the *next* replica), no storage loss (a rebuild is an
//!   election);
//! - no seeded bug, and at least two interchangeable replicas.
//!
//! The representative renames the followers so that they appear in the order of a digest of
//! each one's own state, storage, timers and crash flag (ties keep id order). Any renaming is a
//! sound choice; this one merges most of the states that differ by a renaming.

use crate::history::History;
use crate::{ModelConfig, ModelState};
use spec::digest::StableHasher;
use stateright::actor::Id;
use stateright::util::DenseNatMap;
use stateright::{Rewrite, RewritePlan};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Whether some replicas are interchangeable under `cfg`, and why not if they are not.
pub fn applies(cfg: &ModelConfig) -> Result<(), String> {
    let reasons = [
        (
            cfg.elections > 1,
            "more than one election (ballots of one round are ordered by id)",
        ),
        (
            cfg.checkpoint_interval.is_some() && cfg.crashes > 0,
            "crashes with checkpoints (a restarted replica asks its first peer)",
        ),
        (
            cfg.max_attempts > 1,
            "retries (a client retries at the next replica)",
        ),
        (cfg.storage_losses > 0, "storage losses"),
        (cfg.bug.is_some(), "a seeded bug"),
        (
            interchangeable(cfg).len() < 2,
            "fewer than two interchangeable replicas",
        ),
    ];
    let broken: Vec<&str> = reasons
        .iter()
        .filter(|(applies, _)| *applies)
        .map(|(_, why)| *why)
        .collect();
    if broken.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "--symmetry needs interchangeable replicas, which these bounds do not give: {}",
            broken.join(", ")
        ))
    }
}

/// The replicas that a renaming may permute under `cfg`: the first members but replica 0 and
/// those a membership change names.
pub fn interchangeable(cfg: &ModelConfig) -> Vec<usize> {
    let named: Vec<usize> = cfg
        .changes
        .iter()
        .map(|change| match change {
            spec::Change::Join(id) | spec::Change::Quit(id) => usize::from(*id),
        })
        .collect();
    (1..cfg.replicas).filter(|id| !named.contains(id)).collect()
}

/// The representative of `state`'s class: the interchangeable replicas (which the history
/// names, see `History::interchangeable`) renamed in the order of their digests.
pub fn representative(state: &ModelState) -> ModelState {
    let group = &state.history.interchangeable;
    let digest = |index: usize| {
        let mut hasher = StableHasher::new();
        state.actor_states[index].hash(&mut hasher);
        state.actor_storages[index].hash(&mut hasher);
        state.timers_set[index].hash(&mut hasher);
        state.crashed[index].hash(&mut hasher);
        hasher.finish()
    };
    let mut members: Vec<(u64, usize)> = group.iter().map(|&i| (digest(i), i)).collect();
    members.sort();
    // `renamed[old] = new`: the group's ids are handed out in digest order; every other actor
    // keeps its id.
    let mut renamed: Vec<usize> = (0..state.actor_states.len()).collect();
    for ((_, old), new) in members.iter().zip(group.iter()) {
        renamed[*old] = *new;
    }
    if renamed.iter().enumerate().all(|(old, new)| old == *new) {
        return state.clone();
    }
    rename(state, &renamed)
}

/// `state` with actor `old` renamed `renamed[old]` (a permutation of the actors).
pub fn rename(state: &ModelState, renamed: &[usize]) -> ModelState {
    let map: DenseNatMap<Id, Id> = renamed
        .iter()
        .copied()
        .map(Id::from)
        .collect::<Vec<_>>()
        .into();
    let plan = RewritePlan::new(map, |id, map| *map.get(*id).expect("every actor is mapped"));
    ModelState {
        actor_states: plan.reindex(&state.actor_states),
        network: state.network.rewrite(&plan),
        timers_set: plan.reindex(&state.timers_set),
        random_choices: plan.reindex(&state.random_choices),
        crashed: plan.reindex(&state.crashed),
        actor_storages: plan.reindex(&state.actor_storages),
        history: rename_history(&state.history, &plan),
    }
}

/// A bit set of replica ids, renamed.
fn rename_bits<S>(bits: u64, plan: &RewritePlan<Id, S>) -> u64 {
    (0..64)
        .filter(|i| bits & (1 << i) != 0)
        .map(|i| 1u64 << usize::from(Id::from(i).rewrite(plan)))
        .fold(0, |mask, bit| mask | bit)
}

/// The history with its replica ids renamed: the ballots and the voters and electorates of
/// the proposals. (Client ids, commands and the reference execution name no replica here.)
fn rename_history<S>(history: &History, plan: &RewritePlan<Id, S>) -> History {
    let proposals: BTreeMap<_, _> = history
        .proposals
        .iter()
        .map(|((slot, ballot), proposal)| {
            let mut proposal = proposal.clone();
            proposal.voters = rename_bits(proposal.voters, plan);
            proposal.electorate = rename_bits(proposal.electorate, plan);
            ((*slot, ballot.rewrite(plan)), proposal)
        })
        .collect();
    History {
        proposals: Arc::new(proposals),
        chosen_in: Arc::new(history.chosen_in.as_ref().rewrite(plan)),
        ballots: history.ballots.rewrite(plan),
        ..history.clone()
    }
    .refreshed()
}
