//! The replica's durable state: what an acceptor has promised and accepted (Paxos Made Simple,
//! section 2.3: "an acceptor must remember this information even if it fails and then
//! restarts"). It is saved in the same step as, and so before, any message that depends on it.

use crate::ballot::Ballot;
use serde::{Deserialize, Serialize};
use spec::{Command, Slot};
use std::collections::BTreeMap;

/// A value an acceptor accepted for a slot, with the ballot it was accepted in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Accepted {
    pub ballot: Ballot,
    pub command: Command,
}

/// Durable acceptor state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Storage {
    /// The highest ballot promised: ballots below it are refused.
    pub promised: Ballot,
    /// The last value accepted for each slot.
    pub accepted: BTreeMap<Slot, Accepted>,
    /// How many times the replica has restarted from this storage.
    pub incarnation: u32,
}

/// Durable state that can be written incrementally: the runtime appends the changes between
/// the last saved value and the new one to a log instead of rewriting everything on each step.
pub trait Durable: Clone + Serialize + for<'de> Deserialize<'de> {
    /// One change.
    type Change: Clone + std::fmt::Debug + Serialize + for<'de> Deserialize<'de>;

    /// The changes that turn `earlier` into `self`, in order.
    fn changes_since(&self, earlier: &Self) -> Vec<Self::Change>;

    /// Applies one change.
    fn apply(&mut self, change: Self::Change);
}

/// A change to a replica's [`Storage`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StorageChange {
    Promised(Ballot),
    Incarnation(u32),
    Accepted(Slot, Accepted),
    /// The accepted value of a slot was discarded (truncated below a stable checkpoint).
    Discarded(Slot),
}

impl Durable for Storage {
    type Change = StorageChange;

    fn changes_since(&self, earlier: &Self) -> Vec<StorageChange> {
        let mut changes = Vec::new();
        if self.promised != earlier.promised {
            changes.push(StorageChange::Promised(self.promised));
        }
        if self.incarnation != earlier.incarnation {
            changes.push(StorageChange::Incarnation(self.incarnation));
        }
        for slot in earlier.accepted.keys() {
            if !self.accepted.contains_key(slot) {
                changes.push(StorageChange::Discarded(*slot));
            }
        }
        for (slot, accepted) in &self.accepted {
            // Commands are shared, so an unchanged entry compares by pointer first.
            if earlier.accepted.get(slot) != Some(accepted) {
                changes.push(StorageChange::Accepted(*slot, accepted.clone()));
            }
        }
        changes
    }

    fn apply(&mut self, change: StorageChange) {
        match change {
            StorageChange::Promised(ballot) => self.promised = ballot,
            StorageChange::Incarnation(incarnation) => self.incarnation = incarnation,
            StorageChange::Accepted(slot, accepted) => {
                self.accepted.insert(slot, accepted);
            }
            StorageChange::Discarded(slot) => {
                self.accepted.remove(&slot);
            }
        }
    }
}

/// Clients keep nothing durable.
impl Durable for () {
    type Change = ();
    fn changes_since(&self, _: &Self) -> Vec<()> {
        Vec::new()
    }
    fn apply(&mut self, _: ()) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use spec::Command;
    use stateright::actor::Id;

    #[test]
    fn applying_the_changes_since_an_earlier_storage_reproduces_the_later_one() {
        let ballot = |round| Ballot {
            round,
            leader: Id::from(1),
        };
        let mut earlier = Storage::default();
        earlier.accepted.insert(
            0,
            Accepted {
                ballot: ballot(1),
                command: Command::Noop,
            },
        );
        earlier.accepted.insert(
            1,
            Accepted {
                ballot: ballot(1),
                command: Command::Noop,
            },
        );
        let mut later = earlier.clone();
        later.promised = ballot(3);
        later.incarnation = 2;
        later.accepted.remove(&0);
        later.accepted.insert(
            1,
            Accepted {
                ballot: ballot(3),
                command: Command::Noop,
            },
        );
        later.accepted.insert(
            5,
            Accepted {
                ballot: ballot(3),
                command: Command::Noop,
            },
        );
        let changes = later.changes_since(&earlier);
        assert_eq!(changes.len(), 5);
        let mut replayed = earlier.clone();
        for change in changes {
            replayed.apply(change);
        }
        assert_eq!(replayed, later);
        assert!(later.changes_since(&later).is_empty());
    }
}
