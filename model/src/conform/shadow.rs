//! The exact check: the replayed run as a stateright `ActorModelState` with the model's own
//! `History`, on which every `Always` property of the model is evaluated after every step —
//! the very functions the model checker evaluates, linearizability through stateright's
//! `LinearizabilityTester` included.
//!
//! The model's history is built for a checker that keeps millions of small states: every
//! change copies it. On a long trace that costs time quadratic in its length, so this check
//! runs on traces up to a step limit, and [`super::incremental`] checks longer ones.
//!
//! For the checks the state leaves out what no property reads (the network, timers and
//! random choices). Made [`Shadow::complete`], it keeps those too, so that it is the very
//! state `ActorModel::next_state` would reach along the run, changed in place; the explorer
//! ([`super::explore`]) starts from a snapshot of it.

use super::replay::{Applied, Observer};
use super::world::World;
use crate::{ModelAction, ModelState, SmrModel};
use smr::{Node, NodeState};
use stateright::actor::{
    Actor, ActorModelAction, ActorModelState, Command, Envelope, Id, Network, Out, Timers,
};
use stateright::Expectation;
use std::sync::Arc;

/// The model state of the replay, kept alongside the world.
pub struct Shadow<'m> {
    model: &'m SmrModel,
    state: ModelState,
    /// `Sometimes` properties that some replayed state satisfied.
    pub examples: Vec<&'static str>,
    /// Whether the properties are evaluated after every step.
    evaluate: bool,
    /// Whether the network, timers and random choices are kept too.
    complete: bool,
    /// The state after this step (a conform step number), once it was replayed.
    snapshot_after: Option<u64>,
    pub snapshot: Option<ModelState>,
}

impl<'m> Shadow<'m> {
    pub fn new(model: &'m SmrModel) -> Self {
        Self {
            model,
            state: all_down(model),
            examples: Vec::new(),
            evaluate: true,
            complete: false,
            snapshot_after: None,
            snapshot: None,
        }
    }

    /// The complete model state, without evaluating properties, kept until the state after
    /// step `snapshot_after` is taken (into [`Shadow::snapshot`]).
    pub fn complete(model: &'m SmrModel, snapshot_after: u64) -> Self {
        Self {
            evaluate: false,
            complete: true,
            snapshot_after: Some(snapshot_after),
            ..Self::new(model)
        }
    }

    /// The network, timers and random choices, as `ActorModel` changes them.
    fn track(&mut self, applied: &Applied<'_>) {
        let state = &mut self.state;
        let id = applied.id;
        let ModelAction::Actor(action) = applied.action else {
            return; // A storage loss changes the storage only, which `after_step` tracks.
        };
        match action {
            ActorModelAction::Crash(_) => {
                state.timers_set[id].cancel_all();
                state.random_choices[id].map.clear();
            }
            ActorModelAction::Deliver { src, dst, msg } => {
                if let Network::UnorderedDuplicating(_, last) = &mut state.network {
                    *last = Some(Envelope {
                        src: *src,
                        dst: *dst,
                        msg: msg.clone(),
                    });
                }
            }
            ActorModelAction::Timeout(_, timer) => {
                state.timers_set[id].cancel(timer);
            }
            ActorModelAction::SelectRandom { key, .. } => {
                state.random_choices[id].remove(key);
            }
            ActorModelAction::Recover(_) | ActorModelAction::Drop(_) => {}
        }
        for command in applied.out.iter() {
            match command {
                Command::Send(dst, msg) => {
                    if let Network::UnorderedDuplicating(sent, _) = &mut state.network {
                        sent.insert(Envelope {
                            src: Id::from(id),
                            dst: *dst,
                            msg: msg.clone(),
                        });
                    }
                }
                Command::SetTimer(timer, _) => {
                    state.timers_set[id].set(*timer);
                }
                Command::CancelTimer(timer) => {
                    state.timers_set[id].cancel(timer);
                }
                Command::ChooseRandom(key, choices) if choices.is_empty() => {
                    state.random_choices[id].remove(key);
                }
                Command::ChooseRandom(key, choices) => {
                    state.random_choices[id].insert(key.clone(), choices.clone());
                }
                Command::Save(_) => {}
            }
        }
    }
}

/// The model state before any process ran: every actor down, nothing saved, nothing sent.
/// Each actor's first start is then a `Recover` from no storage, exactly as the real process
/// started; the actor state held for a down actor is a placeholder nobody reads.
pub fn all_down(model: &SmrModel) -> ModelState {
    let n = model.actors.len();
    let placeholder = |index: usize, node: &Node| -> Arc<NodeState> {
        let mut ignored = Out::new();
        Arc::new(node.on_start(Id::from(index), &None, &mut ignored))
    };
    ActorModelState {
        actor_states: model
            .actors
            .iter()
            .enumerate()
            .map(|(index, node)| placeholder(index, node))
            .collect(),
        network: Network::new_unordered_duplicating([]),
        timers_set: vec![Timers::new(); n],
        random_choices: vec![Default::default(); n],
        crashed: vec![true; n],
        history: model.init_history.clone(),
        actor_storages: vec![None; n],
    }
}

impl Observer for Shadow<'_> {
    fn after_step(
        &mut self,
        world: &World<'_>,
        applied: &Applied<'_>,
    ) -> Vec<(&'static str, String)> {
        if self.snapshot.is_some() && self.snapshot_after.is_none() {
            return Vec::new(); // The snapshot is all that was wanted.
        }
        if self.complete {
            self.track(applied);
        }
        let id = applied.id;
        let model = self.model;
        let state = &mut self.state;
        if applied.is_crash() {
            state.crashed[id] = true;
            self.take_snapshot(applied.step);
            return Vec::new();
        }
        if applied.lost_storage {
            *state = SmrModel::lose_storage(state, Id::from(id));
        }
        if applied.is_start() {
            state.crashed[id] = false;
        }
        if let Some(current) = &world.slots[id].state {
            // What a client recorded as answers is what it returned, before anything it sent in
            // the same step (as the model's `SmrModel::returns`).
            let before = state.actor_states[id]
                .client()
                .filter(|_| !applied.is_start());
            if let (Some(before), Some(after)) = (before, current.client()) {
                if let Some(history) = state.history.record_returns(Id::from(id), before, after) {
                    state.history = history;
                }
            }
            state.actor_states[id] = Arc::new(current.clone());
        }
        for command in applied.out.iter() {
            match command {
                Command::Send(dst, msg) => {
                    let env = Envelope {
                        src: Id::from(id),
                        dst: *dst,
                        msg,
                    };
                    if let Some(history) = (model.record_msg_out)(&model.cfg, &state.history, env) {
                        state.history = history;
                    }
                }
                Command::Save(storage) => state.actor_storages[id] = Some(storage.clone()),
                _ => {}
            }
        }
        self.take_snapshot(applied.step);
        let mut violations = Vec::new();
        if !self.evaluate {
            return violations;
        }
        let state = &self.state;
        for property in model.properties.iter() {
            let holds = (property.condition)(model, state);
            match property.expectation {
                Expectation::Always if !holds => {
                    violations.push((property.name, explain(model, state, property.name)));
                }
                Expectation::Sometimes if holds && !self.examples.contains(&property.name) => {
                    self.examples.push(property.name);
                }
                _ => {}
            }
        }
        violations
    }
}

impl Shadow<'_> {
    fn take_snapshot(&mut self, step: u64) {
        if self.snapshot_after.is_some_and(|after| step >= after) {
            self.snapshot_after = None;
            self.snapshot = Some(self.state.clone());
            self.complete = false;
        }
    }
}

/// The model's own explanation of a violated invariant.
fn explain(model: &SmrModel, state: &ModelState, name: &str) -> String {
    crate::properties::INVARIANTS
        .iter()
        .find(|invariant| invariant.name == name)
        .and_then(|invariant| (invariant.check)(model, state).err())
        .unwrap_or_else(|| format!("{name} does not hold"))
}
