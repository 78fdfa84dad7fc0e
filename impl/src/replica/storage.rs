//! The replica's durable state: what an acceptor has promised and accepted (Paxos Made Simple,
//! section 2.3: "an acceptor must remember this information even if it fails and then
//! restarts"). It is saved in the same step as, and so before, any message that depends on it.

use super::snapshot::{IndexCache, SnapshotIndex};
use crate::ballot::Ballot;
use serde::{Deserialize, Serialize};
use spec::{Command, Digest, ServiceDelta, ServiceState, Slot};
use stateright::actor::Id;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A value an acceptor accepted for a slot, with the ballot it was accepted in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Accepted {
    pub ballot: Ballot,
    pub command: Command,
}

/// A checkpoint: the service state after executing every slot below `slot`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The first slot the checkpoint does not cover.
    pub slot: Slot,
    /// `state.digest()`, which replicas compare in the audit.
    pub digest: Digest,
    /// Shared: a checkpoint sits in the replica's state and in its storage.
    pub state: Arc<ServiceState>,
    /// The state indexed for transfer (`snapshot::SnapshotIndex`), made the first time a
    /// transfer needs it and shared by every copy of this checkpoint: each chunk of each
    /// transfer costs the encoding of the ranges it overlaps, never an encoding of the whole
    /// state. Never saved (it is derived from `state`).
    #[serde(skip)]
    pub index: IndexCache,
}

impl Hash for Checkpoint {
    fn hash<H: Hasher>(&self, hasher: &mut H) {
        // The digest stands for the state.
        self.slot.hash(hasher);
        self.digest.hash(hasher);
    }
}

impl Checkpoint {
    /// The checkpoint of `state` after executing the slots below `slot`.
    pub fn of(slot: Slot, state: &ServiceState) -> Self {
        Checkpoint {
            slot,
            digest: state.digest(),
            state: Arc::new(state.clone()),
            index: IndexCache::default(),
        }
    }

    /// The state indexed for transfer, indexed at the first call.
    pub fn index(&self) -> Arc<SnapshotIndex> {
        self.index.get_or_index(&self.state)
    }
}

/// Durable replica state: the acceptor's promise and accepted values, and the latest checkpoint
/// with the truncation point of the log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Storage {
    /// The highest ballot promised: ballots below it are refused.
    pub promised: Ballot,
    /// The last value accepted for each slot at or above `log_start`.
    pub accepted: BTreeMap<Slot, Accepted>,
    /// How many times the replica has restarted from this storage.
    pub incarnation: u32,
    /// Slots below this are covered by a stable checkpoint (one a quorum holds durably), and
    /// their accepted values have been discarded.
    pub log_start: Slot,
    /// The latest checkpoint this replica made or installed; recovery starts from it.
    pub checkpoint: Option<Checkpoint>,
    /// Set when this replica's storage was lost or damaged and is being rebuilt from the other
    /// replicas: until the rebuild completes it casts no vote (see `replica::rebuild`).
    pub rebuilding: bool,
    /// Each replica's *life*, as far as this replica knows: the ballot of its latest storage
    /// rebuild (absent: never rebuilt). A promise from an earlier life of a replica is void
    /// (proofs/RECOVERY.md, RC2). The crash vector of Michael et al. (DISC 2017), counting
    /// storage losses only.
    pub rebuilt: BTreeMap<Id, Ballot>,
}

/// Durable state that can be written incrementally: the runtime appends the changes between
/// the last saved value and the new one to a log instead of rewriting everything on each step.
pub trait Durable: Clone + Send + 'static + Serialize + for<'de> Deserialize<'de> {
    /// One change.
    type Change: Clone + std::fmt::Debug + Serialize + for<'de> Deserialize<'de>;

    /// The changes that turn `earlier` into `self`, in order.
    fn changes_since(&self, earlier: &Self) -> Vec<Self::Change>;

    /// Applies one change, or says why it cannot apply here (a damaged or misplaced record).
    fn apply(&mut self, change: Self::Change) -> Result<(), String>;
}

/// A change to a replica's [`Storage`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StorageChange {
    Promised(Ballot),
    Incarnation(u32),
    Accepted(Slot, Accepted),
    /// The accepted value of a slot was discarded (truncated below a stable checkpoint).
    Discarded(Slot),
    LogStart(Slot),
    Checkpoint(Checkpoint),
    Rebuilding(bool),
    Rebuilt(Id, Ballot),
    // New variants go last: a variant's position is its encoding in the logs of existing
    // data directories.
    /// A checkpoint saved as what changed since the one held (`base`, by slot and digest):
    /// a checkpoint every `checkpoint_interval` slots costs the writes since the previous one,
    /// not the size of the state.
    CheckpointDelta {
        slot: Slot,
        digest: Digest,
        base: (Slot, Digest),
        delta: ServiceDelta,
    },
}

impl Storage {
    /// What a replica whose storage was lost or damaged starts from: nothing, marked as
    /// rebuilding. The runtime writes it for `--recover`; the model's `LoseStorage` action
    /// leaves it behind.
    pub fn lost() -> Self {
        Storage {
            rebuilding: true,
            ..Storage::default()
        }
    }

    /// Whether this is the storage [`Storage::lost`] leaves, before the replica started on it.
    pub fn is_lost(&self) -> bool {
        *self == Storage::lost()
    }

    /// The life of `id` as this storage records it (`Ballot::default()`: never rebuilt).
    pub fn life(&self, id: Id) -> Ballot {
        self.rebuilt.get(&id).copied().unwrap_or_default()
    }

    /// The slot of the latest checkpoint held (0: none).
    pub fn checkpoint_slot(&self) -> Slot {
        self.checkpoint.as_ref().map_or(0, |c| c.slot)
    }

    /// Records what `rebuilt` says of other replicas' lives where it is newer; returns whether
    /// anything changed.
    pub fn learn_lives(&mut self, rebuilt: &BTreeMap<Id, Ballot>) -> bool {
        let mut changed = false;
        for (id, life) in rebuilt {
            if self.life(*id) < *life {
                self.rebuilt.insert(*id, *life);
                changed = true;
            }
        }
        changed
    }

    /// The stable checkpoint this replica announces when it leads: the one it truncated its
    /// log at (it truncates only at a checkpoint a quorum holds).
    pub fn stable_checkpoint(&self) -> Option<(Slot, Digest)> {
        self.checkpoint
            .as_ref()
            .filter(|c| c.slot == self.log_start && c.slot > 0)
            .map(|c| (c.slot, c.digest))
    }
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
        if self.log_start != earlier.log_start {
            changes.push(StorageChange::LogStart(self.log_start));
        }
        if self.rebuilding != earlier.rebuilding {
            changes.push(StorageChange::Rebuilding(self.rebuilding));
        }
        for (id, life) in &self.rebuilt {
            if earlier.rebuilt.get(id) != Some(life) {
                changes.push(StorageChange::Rebuilt(*id, *life));
            }
        }
        if let Some(checkpoint) = &self.checkpoint {
            match &earlier.checkpoint {
                Some(base) if base == checkpoint => {}
                Some(base) => changes.push(StorageChange::CheckpointDelta {
                    slot: checkpoint.slot,
                    digest: checkpoint.digest,
                    base: (base.slot, base.digest),
                    delta: checkpoint.state.delta_since(&base.state),
                }),
                None => changes.push(StorageChange::Checkpoint(checkpoint.clone())),
            }
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

    fn apply(&mut self, change: StorageChange) -> Result<(), String> {
        match change {
            StorageChange::Promised(ballot) => self.promised = ballot,
            StorageChange::Incarnation(incarnation) => self.incarnation = incarnation,
            StorageChange::Accepted(slot, accepted) => {
                self.accepted.insert(slot, accepted);
            }
            StorageChange::Discarded(slot) => {
                self.accepted.remove(&slot);
            }
            StorageChange::LogStart(slot) => self.log_start = slot,
            StorageChange::Checkpoint(checkpoint) => self.checkpoint = Some(checkpoint),
            StorageChange::CheckpointDelta {
                slot,
                digest,
                base,
                delta,
            } => {
                let held = self.checkpoint.as_ref().map(|c| (c.slot, c.digest));
                let Some(checkpoint) = self.checkpoint.as_ref().filter(|_| held == Some(base))
                else {
                    return Err(format!(
                        "a checkpoint of slot {slot} saved as changes to the one of slot {} \
                         (digest {:x}), but the one held is {held:x?}",
                        base.0, base.1
                    ));
                };
                let state = checkpoint
                    .state
                    .with_delta(delta)
                    .map_err(|e| e.to_string())?;
                if state.digest() != digest || state.applied != slot {
                    return Err(format!(
                        "the checkpoint of slot {slot} rebuilt from its changes does not have \
                         the digest saved with it"
                    ));
                }
                self.checkpoint = Some(Checkpoint {
                    slot,
                    digest,
                    state: Arc::new(state),
                    index: IndexCache::default(),
                });
            }
            StorageChange::Rebuilding(rebuilding) => self.rebuilding = rebuilding,
            StorageChange::Rebuilt(id, life) => {
                self.rebuilt.insert(id, life);
            }
        }
        Ok(())
    }
}

/// Clients keep nothing durable.
impl Durable for () {
    type Change = ();
    fn changes_since(&self, _: &Self) -> Vec<()> {
        Vec::new()
    }
    fn apply(&mut self, _: ()) -> Result<(), String> {
        Ok(())
    }
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
        later.log_start = 1;
        later.checkpoint = Some(Checkpoint::of(1, &ServiceState::default()));
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
        later.rebuilding = true;
        later.rebuilt.insert(Id::from(2), ballot(2));
        let changes = later.changes_since(&earlier);
        assert_eq!(changes.len(), 9);
        let mut replayed = earlier.clone();
        for change in changes {
            replayed.apply(change).unwrap();
        }
        assert_eq!(replayed, later);
        assert!(later.changes_since(&later).is_empty());
    }

    /// A checkpoint of a large state that differs from the previous one in a few keys is saved
    /// as those keys, not as the whole state again: a checkpoint every `checkpoint_interval`
    /// slots must cost the writes since the last one, or a large state stalls its replica.
    #[test]
    fn a_new_checkpoint_is_saved_as_what_changed_since_the_previous_one() {
        use spec::{KvOp, Operation, Request};
        let put = |state: &mut ServiceState, key: String| {
            let slot = state.applied;
            state.begin_slot(slot);
            let request = Request {
                client: Id::from(9),
                session: 0,
                number: 1,
                op: Operation::Kv(KvOp::Put {
                    key: key.into(),
                    value: "v".repeat(100).into(),
                }),
            };
            state.apply(slot, &request);
        };
        let mut service = ServiceState::new(spec::Configuration::initial([Id::from(0)], 1));
        for key in 0..10_000 {
            put(&mut service, format!("key-{key}"));
        }
        let earlier = Storage {
            checkpoint: Some(Checkpoint::of(service.applied, &service)),
            ..Storage::default()
        };
        let whole = postcard::to_stdvec(&earlier).unwrap().len();
        for key in 0..3 {
            put(&mut service, format!("key-{key}-again"));
        }
        let later = Storage {
            checkpoint: Some(Checkpoint::of(service.applied, &service)),
            ..Storage::default()
        };
        let changes = later.changes_since(&earlier);
        let saved = postcard::to_stdvec(&changes).unwrap().len();
        assert!(
            saved < 4 * 1024,
            "{saved} bytes saved for 3 writes to a state of {whole} bytes"
        );
        let mut replayed = earlier.clone();
        for change in changes {
            replayed.apply(change).unwrap();
        }
        assert_eq!(replayed, later);
    }
}
