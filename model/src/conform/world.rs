//! The replayed model state, kept in place: what stateright's `ActorModelState` holds, for one
//! state at a time. The model checker keeps every state it visits, so its states are
//! immutable and shared; a replay visits each state once, so it changes one state in place,
//! which is what makes long traces cheap to check.

use smr::{Node, NodeState, Storage, Timer};
use std::collections::{BTreeMap, BTreeSet};

/// One actor's part of the model state.
#[derive(Clone, Debug, Default)]
pub struct Slot {
    /// `None` while the actor has not started, or has crashed and not recovered.
    pub state: Option<NodeState>,
    /// What the actor last saved (the model's `actor_storages`).
    pub storage: Option<Storage>,
    /// The timers set (the model's `timers_set`).
    pub timers: BTreeSet<Timer>,
    /// The random choices offered (the model's `random_choices`).
    pub randoms: BTreeMap<String, Vec<()>>,
    /// Steps replayed for this actor.
    pub steps: u64,
}

/// Every actor's part of the state.
pub struct World<'m> {
    pub actors: &'m [Node],
    pub slots: Vec<Slot>,
}

impl<'m> World<'m> {
    pub fn new(actors: &'m [Node]) -> Self {
        Self {
            actors,
            slots: vec![Slot::default(); actors.len()],
        }
    }

    /// The replicas' states with their ids, for the properties.
    pub fn replicas(&self) -> impl Iterator<Item = (usize, &smr::ReplicaState)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| slot.state.as_ref()?.replica().map(|r| (index, r)))
    }
}
