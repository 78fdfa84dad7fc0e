//! Configurations: which replicas decide which slots, and how JOIN and QUIT change that.
//!
//! The method is Lamport's α-window ("Paxos Made Simple", section 3, the last paragraphs, and
//! Lamport, Malkhi and Zhou, "Reconfiguring a State Machine", 2010, the "R_α" algorithm): a
//! change decided at slot `s` governs the slots from `s + α` on, where α is the leader's
//! pipeline window. A leader proposes slot `x` only after it has executed every slot up to
//! `x - α`, so when it proposes `x` it already knows, from decided commands alone, the
//! configuration that must decide `x`. Every replica that executes the same log computes the
//! same configuration for every slot; no configuration is ever guessed from an undecided
//! command (which is what went wrong in Raft's single-server changes, see `proofs/`).
//!
//! The configuration is part of the replicated service state, so it travels in checkpoints and
//! snapshots, and a joining replica learns it by state transfer.
//!
//! One change at a time: a change is refused while another is decided but not yet in force.
//! With the α-window several pending changes would still be safe; the rule keeps every
//! configuration one step from the previous one, which is what operators can reason about.

use crate::command::Slot;
use serde::{Deserialize, Serialize};
use stateright::actor::Id;
use std::collections::BTreeSet;

/// The fewest members a configuration may have after a QUIT.
pub const MIN_MEMBERS: usize = 2;

/// Replica ids must be below this (votes are kept in 64-bit sets).
pub const MAX_REPLICA_ID: usize = 64;

/// A change of membership, submitted by an administrator or by a replica that quits itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Change {
    /// Add replica `id`. It starts as an observer, gets a checkpoint by state transfer, and
    /// votes once the change is in force and it holds that state.
    Join(Id),
    /// Remove replica `id`. Once the change is in force it takes no further part.
    Quit(Id),
}

/// The answer to a change.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ChangeOutput {
    /// Accepted: `epoch` with `members` governs the slots from `from` on.
    Accepted {
        epoch: u64,
        members: BTreeSet<Id>,
        from: Slot,
    },
    /// Refused, and why.
    Refused(String),
}

/// A decided change that is not in force yet.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pending {
    /// The first slot it governs.
    pub from: Slot,
    pub members: BTreeSet<Id>,
}

/// The set of replicas that decides slots, numbered by epoch; each change makes the next epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Configuration {
    pub epoch: u64,
    pub members: BTreeSet<Id>,
    /// A decided change waiting for its first slot.
    pub pending: Option<Pending>,
    /// α: a change decided at slot `s` governs slots from `s + alpha`. The same on every
    /// replica of a cluster (it is part of the digest, so the audit notices a mismatch).
    pub alpha: u64,
}

impl Configuration {
    /// The first configuration of a cluster.
    pub fn initial(members: impl IntoIterator<Item = Id>, alpha: u64) -> Self {
        Configuration {
            epoch: 0,
            members: members.into_iter().collect(),
            pending: None,
            alpha: alpha.max(1),
        }
    }

    /// A majority of `members`: any two quorums of one configuration intersect.
    pub fn quorum_of(members: &BTreeSet<Id>) -> usize {
        members.len() / 2 + 1
    }

    /// A majority of the members in force.
    pub fn quorum(&self) -> usize {
        Self::quorum_of(&self.members)
    }

    /// Whether `id` is a member in force.
    pub fn contains(&self, id: Id) -> bool {
        self.members.contains(&id)
    }

    /// Whether `id` takes part: a member in force, or of the pending configuration (a joiner
    /// that holds this state). A replica for which this is false casts no vote.
    pub fn includes(&self, id: Id) -> bool {
        self.contains(id)
            || self
                .pending
                .as_ref()
                .is_some_and(|p| p.members.contains(&id))
    }

    /// The members that decide `slot`, for any slot below `executed + alpha`, where this is
    /// the configuration after executing the slots below `executed`.
    pub fn members_at(&self, slot: Slot) -> &BTreeSet<Id> {
        match &self.pending {
            Some(pending) if slot >= pending.from => &pending.members,
            _ => &self.members,
        }
    }

    /// Every replica that decides some slot in the window: the members in force and pending.
    pub fn audience(&self) -> BTreeSet<Id> {
        let mut all = self.members.clone();
        if let Some(pending) = &self.pending {
            all.extend(pending.members.iter().copied());
        }
        all
    }

    /// Called before executing `slot`: a pending change whose first slot has come is in force.
    pub fn begin_slot(&mut self, slot: Slot) {
        if self.pending.as_ref().is_some_and(|p| p.from <= slot) {
            let pending = self.pending.take().expect("checked above");
            self.members = pending.members;
            self.epoch += 1;
        }
    }

    /// Executes `change`, decided at `slot`: accepted changes govern slots from `slot + alpha`.
    pub fn apply(&mut self, slot: Slot, change: Change) -> ChangeOutput {
        match self.check(change) {
            Err(reason) => ChangeOutput::Refused(reason),
            Ok(members) => {
                let from = slot + self.alpha;
                self.pending = Some(Pending {
                    from,
                    members: members.clone(),
                });
                ChangeOutput::Accepted {
                    epoch: self.epoch + 1,
                    members,
                    from,
                }
            }
        }
    }

    /// The members after `change`, or why it is refused.
    fn check(&self, change: Change) -> Result<BTreeSet<Id>, String> {
        if let Some(pending) = &self.pending {
            return Err(format!(
                "another change is in progress (epoch {} takes effect at slot {}); retry after it",
                self.epoch + 1,
                pending.from
            ));
        }
        let mut members = self.members.clone();
        match change {
            Change::Join(id) => {
                if usize::from(id) >= MAX_REPLICA_ID {
                    return Err(format!(
                        "replica id {} is too large: ids must be below {MAX_REPLICA_ID}",
                        usize::from(id)
                    ));
                }
                if !members.insert(id) {
                    return Err(format!("replica {} is already a member", usize::from(id)));
                }
            }
            Change::Quit(id) => {
                if !members.remove(&id) {
                    return Err(format!("replica {} is not a member", usize::from(id)));
                }
                if members.len() < MIN_MEMBERS {
                    return Err(format!(
                        "removing replica {} would leave {} member(s); the minimum is {MIN_MEMBERS}",
                        usize::from(id),
                        members.len()
                    ));
                }
            }
        }
        Ok(members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[usize]) -> BTreeSet<Id> {
        list.iter().copied().map(Id::from).collect()
    }

    #[test]
    fn a_change_governs_slots_from_alpha_after_its_own() {
        let mut c = Configuration::initial(ids(&[0, 1, 2]), 2);
        let out = c.apply(5, Change::Join(Id::from(3)));
        assert_eq!(
            out,
            ChangeOutput::Accepted {
                epoch: 1,
                members: ids(&[0, 1, 2, 3]),
                from: 7
            }
        );
        assert_eq!(c.members_at(6), &ids(&[0, 1, 2]));
        assert_eq!(c.members_at(7), &ids(&[0, 1, 2, 3]));
        assert!(c.includes(Id::from(3)) && !c.contains(Id::from(3)));
        c.begin_slot(6);
        assert_eq!(c.epoch, 0);
        c.begin_slot(7);
        assert_eq!(
            (c.epoch, &c.members, &c.pending),
            (1, &ids(&[0, 1, 2, 3]), &None)
        );
    }

    #[test]
    fn unsafe_or_meaningless_changes_are_refused_with_a_reason() {
        let mut c = Configuration::initial(ids(&[0, 1, 2]), 1);
        let refused = |out: ChangeOutput| match out {
            ChangeOutput::Refused(reason) => reason,
            other => panic!("accepted: {other:?}"),
        };
        assert!(refused(c.apply(0, Change::Join(Id::from(1)))).contains("already a member"));
        assert!(refused(c.apply(0, Change::Quit(Id::from(7)))).contains("not a member"));
        assert!(refused(c.apply(0, Change::Join(Id::from(64)))).contains("too large"));
        assert!(matches!(
            c.apply(0, Change::Quit(Id::from(2))),
            ChangeOutput::Accepted { .. }
        ));
        assert!(refused(c.apply(0, Change::Join(Id::from(3)))).contains("in progress"));
        c.begin_slot(1);
        assert!(refused(c.apply(1, Change::Quit(Id::from(1)))).contains("minimum"));
    }
}
