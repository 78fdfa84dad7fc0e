//! The exact check: the replayed run as a stateright `ActorModelState` with the model's own
//! `History`, on which every `Always` property of the model is evaluated after every step —
//! the very functions the model checker evaluates, linearizability through stateright's
//! `LinearizabilityTester` included.
//!
//! The model's history is built for a checker that keeps millions of small states: every
//! change copies it. On a long trace that costs time quadratic in its length, so this check
//! runs on traces up to a step limit, and [`super::incremental`] checks longer ones.

use super::replay::{Applied, Observer};
use super::world::World;
use crate::{ModelState, SmrModel};
use smr::{Msg, Node, NodeState};
use stateright::actor::{Actor, ActorModelState, Command, Envelope, Id, Network, Out, Timers};
use stateright::Expectation;
use std::sync::Arc;

/// The model state of the replay, kept alongside the world.
pub struct Shadow<'m> {
    model: &'m SmrModel,
    state: ModelState,
    /// `Sometimes` properties that some replayed state satisfied.
    pub examples: Vec<&'static str>,
}

impl<'m> Shadow<'m> {
    /// The state before any actor started: every actor down, nothing saved.
    pub fn new(model: &'m SmrModel) -> Self {
        let n = model.actors.len();
        let placeholder = |index: usize, node: &Node| -> Arc<NodeState> {
            let mut ignored = Out::new();
            Arc::new(node.on_start(Id::from(index), &None, &mut ignored))
        };
        let state = ActorModelState {
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
        };
        Self {
            model,
            state,
            examples: Vec::new(),
        }
    }
}

impl Observer for Shadow<'_> {
    fn after_step(
        &mut self,
        world: &World<'_>,
        applied: &Applied<'_>,
    ) -> Vec<(&'static str, String)> {
        let id = applied.id;
        let model = self.model;
        let state = &mut self.state;
        if applied.crash {
            state.crashed[id] = true;
            return Vec::new();
        }
        if applied.start {
            state.crashed[id] = false;
        }
        if let Some(current) = &world.slots[id].state {
            state.actor_states[id] = Arc::new(current.clone());
        }
        if let Some((src, msg)) = applied.delivered {
            let env = Envelope {
                src,
                dst: Id::from(id),
                msg,
            };
            if let Some(history) = (model.record_msg_in)(&model.cfg, &state.history, env) {
                state.history = history;
            }
        }
        for command in applied.out.iter() {
            match command {
                // A follower forwards a client's request to the leader: that is no new
                // invocation by the follower. The model's history (as of this writing) takes
                // any `Request` for an invocation by its sender, which marks the client history
                // invalid as soon as a replica forwards two requests; until the history checks
                // `request.client`, forwarded requests are not shown to it.
                Command::Send(_, Msg::Request(request)) if request.client != Id::from(id) => {}
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
        let mut violations = Vec::new();
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

/// The model's own explanation of a violated invariant.
fn explain(model: &SmrModel, state: &ModelState, name: &str) -> String {
    crate::properties::INVARIANTS
        .iter()
        .find(|invariant| invariant.name == name)
        .and_then(|invariant| (invariant.check)(model, state).err())
        .unwrap_or_else(|| format!("{name} does not hold"))
}
