//! The stateright model of the replicated service: the replica and client actors of `smr`,
//! wired into an `ActorModel` with the safety properties of `spec`.
//!
//! - [`config`]: the bounds and the named presets.
//! - [`history`]: auxiliary variables recording what crossed the network.
//! - [`properties`]: the properties evaluated on every state.
//! - [`check`]: runs the checker and turns its result into verdicts.

pub mod config;
pub mod coverage;
pub mod diagram;
pub mod history;
pub mod properties;
pub mod simulate;
pub mod symmetry;

pub use config::{scaled_limits, ModelConfig, NetworkKind, PRESETS};
pub use history::History;

use smr::{Client, Node, Replica, ReplicaConfig, Storage};
use stateright::actor::{
    model_timeout, ActorModel, ActorModelAction, ActorModelState, Id, LossyNetwork, Network,
};
use stateright::{Expectation, Model, Path, Property};
use std::ops::Deref;

/// A state of the model.
pub type ModelState = ActorModelState<Node, History>;

/// The model: stateright's `ActorModel` of the replica and client actors, with one fault more
/// than stateright's actor model knows: a replica that is down can lose its storage (its disk
/// wiped or replaced, or found damaged), after which it restarts from [`Storage::lost`], as the
/// runtime's `--recover` makes it do (proofs/RECOVERY.md).
#[derive(Clone)]
pub struct SmrModel {
    /// The actors, network, timers, crashes and history.
    pub actor_model: ActorModel<Node, ModelConfig, History>,
    /// The properties checked, in report order.
    pub properties: Vec<Property<SmrModel>>,
}

impl Deref for SmrModel {
    type Target = ActorModel<Node, ModelConfig, History>;

    fn deref(&self) -> &Self::Target {
        &self.actor_model
    }
}

impl SmrModel {
    /// `actor_model` with no properties yet.
    pub fn new(actor_model: ActorModel<Node, ModelConfig, History>) -> Self {
        Self {
            actor_model,
            properties: Vec::new(),
        }
    }

    /// Adds a property.
    pub fn property(
        mut self,
        expectation: Expectation,
        name: &'static str,
        condition: fn(&SmrModel, &ModelState) -> bool,
    ) -> Self {
        self.properties.push(Property {
            expectation,
            name,
            condition,
        });
        self
    }
}

/// The model's actions: what stateright's `ActorModel` does next (deliver, drop, time out,
/// crash, recover, pick a random choice), or the loss of a crashed replica's storage.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ModelAction {
    Actor(ActorModelAction<smr::Msg, smr::Timer, ()>),
    /// A replica crashes, if it is up, and its storage is lost: it restarts (with `Recover`)
    /// from [`Storage::lost`]. The checker takes it for replicas that are up; a replayed real
    /// run, where the crash and the restart from a lost directory are separate events, for one
    /// that is down.
    LoseStorage(Id),
}

impl From<ActorModelAction<smr::Msg, smr::Timer, ()>> for ModelAction {
    fn from(action: ActorModelAction<smr::Msg, smr::Timer, ()>) -> Self {
        ModelAction::Actor(action)
    }
}

impl SmrModel {
    /// The state after replica `id` crashed (if it was up) and its storage was lost.
    pub fn lose_storage(state: &ModelState, id: Id) -> ModelState {
        let index = usize::from(id);
        let mut next = state.clone();
        if !next.crashed[index] {
            // As stateright's `Crash` does.
            next.timers_set[index].cancel_all();
            next.random_choices[index].map.clear();
            next.crashed[index] = true;
        }
        let forgotten = next.actor_storages[index]
            .as_ref()
            .map_or(0, |storage| storage.incarnation);
        next.actor_storages[index] = Some(Storage::lost());
        next.history = next.history.storage_lost(forgotten);
        next
    }
}

impl SmrModel {
    /// The history after actor `id` took a step from `before` to `after`: what a client
    /// recorded as answers is what it returned (see `History::record_returns`).
    pub fn returns(
        history: &History,
        id: Id,
        before: &ModelState,
        after: &ModelState,
    ) -> Option<History> {
        let index = usize::from(id);
        let was = before.actor_states.get(index)?.client()?;
        let now = after.actor_states.get(index)?.client()?;
        history.record_returns(id, was, now)
    }
}

std::thread_local! {
    /// Whether this thread is taking a model step, whose panic becomes a state.
    static IN_STEP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs a panic hook that keeps quiet about panics inside model steps (they become states
/// that the property "no step panics" reports, with their message and path) and reports every
/// other panic as the default hook does.
pub fn quiet_step_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !IN_STEP.with(|flag| flag.get()) {
            default(info);
        }
    }));
}

impl SmrModel {
    /// One step of the model, which may panic if an actor's assertion fails.
    fn step(&self, last: &ModelState, action: ModelAction) -> Option<ModelState> {
        match action {
            ModelAction::Actor(action) => {
                let stepped = match &action {
                    ActorModelAction::Deliver { dst, .. } => Some(*dst),
                    ActorModelAction::Timeout(id, _) => Some(*id),
                    ActorModelAction::SelectRandom { actor, .. } => Some(*actor),
                    _ => None,
                };
                let next = Model::next_state(&self.actor_model, last, action.clone())?;
                let Some(returned) =
                    stepped.and_then(|id| Self::returns(&last.history, id, last, &next))
                else {
                    return Some(next);
                };
                // A client that got its answer may invoke its next operation in the same step:
                // the return goes into the history first, then the step's messages (the step is
                // taken again on top of it; only steps that answer a client pay for that).
                let mut answered = last.clone();
                answered.history = returned;
                Model::next_state(&self.actor_model, &answered, action)
            }
            ModelAction::LoseStorage(id) => Some(Self::lose_storage(last, id)),
        }
    }
}

impl Model for SmrModel {
    type State = ModelState;
    type Action = ModelAction;

    fn init_states(&self) -> Vec<ModelState> {
        Model::init_states(&self.actor_model)
    }

    fn actions(&self, state: &ModelState, actions: &mut Vec<ModelAction>) {
        if state.history.panic.is_some() {
            return; // A step panicked: nothing after it is worth exploring.
        }
        let mut inner = Vec::new();
        Model::actions(&self.actor_model, state, &mut inner);
        actions.extend(inner.into_iter().map(ModelAction::Actor));
        // A replica that is up can crash and lose its storage, while no other is down (as for
        // ordinary crashes, at most one replica is down at a time).
        let down = state.crashed.iter().any(|crashed| *crashed);
        if state.history.storage_losses < self.cfg.storage_losses && !down {
            for index in 0..self.cfg.replica_actors().min(state.crashed.len()) {
                actions.push(ModelAction::LoseStorage(Id::from(index)));
            }
        }
    }

    fn next_state(&self, last: &ModelState, action: ModelAction) -> Option<ModelState> {
        // A step that panics (an actor's assertion failed) becomes a state of its own: the state
        // before the step, marked with the panic, which the property "no step panics" reports
        // with the path to it. The checker's threads and the random walks go on.
        IN_STEP.with(|flag| flag.set(true));
        let stepped =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.step(last, action)));
        IN_STEP.with(|flag| flag.set(false));
        match stepped {
            Ok(next) => next,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "a step panicked".into());
                let mut marked = last.clone();
                marked.history = last.history.panicked(message);
                Some(marked)
            }
        }
    }

    fn format_action(&self, action: &ModelAction) -> String {
        match action {
            ModelAction::Actor(action) => Model::format_action(&self.actor_model, action),
            ModelAction::LoseStorage(id) => format!("LoseStorage({id:?})"),
        }
    }

    fn format_step(&self, last: &ModelState, action: ModelAction) -> Option<String> {
        match action {
            ModelAction::Actor(action) => Model::format_step(&self.actor_model, last, action),
            ModelAction::LoseStorage(id) => Some(format!(
                "replica {id:?} is down and its storage is lost: it will restart from {:?}",
                Storage::lost()
            )),
        }
    }

    fn as_svg(&self, path: Path<ModelState, ModelAction>) -> Option<String> {
        Some(diagram::of_path(&self.actors, path))
    }

    fn properties(&self) -> Vec<Property<Self>> {
        self.properties.clone()
    }

    fn within_boundary(&self, state: &ModelState) -> bool {
        Model::within_boundary(&self.actor_model, state)
    }
}

/// A Sometimes property: an example must exist, or the model would be vacuous.
pub struct Example {
    pub name: &'static str,
    pub found: fn(&SmrModel, &ModelState) -> bool,
    /// Whether the bounds make an example possible at all.
    pub applies: fn(&ModelConfig) -> bool,
}

/// The Sometimes properties, in report order.
pub const EXAMPLES: &[Example] = &[
    Example {
        name: "value decided",
        found: properties::value_decided,
        applies: |cfg| cfg.clients > 0 && cfg.operations > 0,
    },
    Example {
        name: "leader change preserves decided value",
        found: properties::leader_change_preserves_decision,
        applies: |cfg| {
            cfg.clients > 0 && cfg.operations > 0 && cfg.elections >= 1 && cfg.replicas > 1
        },
    },
    Example {
        name: "recovered replica votes in a decision",
        found: properties::recovered_replica_votes,
        applies: |cfg| cfg.clients > 0 && cfg.operations > 0 && cfg.crashes > 0 && cfg.replicas > 1,
    },
    Example {
        name: "log truncated, then a replica catches up by state transfer",
        found: properties::state_transfer_after_truncation,
        applies: |cfg| cfg.checkpoint_interval.is_some() && cfg.crashes > 0,
    },
    Example {
        name: "a snapshot of at least 3 chunks was transferred and installed",
        found: properties::multi_chunk_transfer,
        applies: |cfg| {
            cfg.checkpoint_interval.is_some() && cfg.crashes > 0 && cfg.limits.max_chunk_bytes <= 16
        },
    },
    Example {
        name: "an elected leader decides above a truncated log",
        found: properties::elected_leader_decides_above_truncation,
        applies: |cfg| cfg.checkpoint_interval.is_some() && cfg.elections > 0,
    },
    Example {
        name: "a joiner votes in a decision",
        found: properties::joiner_votes_in_decision,
        applies: |cfg| {
            cfg.changes
                .iter()
                .any(|c| matches!(c, spec::Change::Join(_)))
        },
    },
    Example {
        name: "the leader quits and a new leader decides",
        found: properties::new_leader_decides_after_leader_quits,
        applies: |cfg| cfg.changes.contains(&spec::Change::Quit(Id::from(0))) && cfg.elections > 0,
    },
    Example {
        name: "a replica that lost its storage rebuilt it and voted in a decision",
        found: properties::rebuilt_replica_votes,
        applies: |cfg| cfg.storage_losses > 0 && cfg.clients > 0 && cfg.operations > 0,
    },
    Example {
        name: "a retry of an applied request found its session retired and was not applied again",
        found: properties::retry_after_session_retired,
        applies: |cfg| {
            cfg.limits.max_sessions < cfg.client_actors()
                && cfg.max_attempts > 1
                && cfg.operations > 0
        },
    },
    Example {
        name: "every client answered",
        found: properties::all_clients_answered,
        applies: |_| true,
    },
];

/// Builds the model for `cfg`.
pub fn build(cfg: &ModelConfig) -> SmrModel {
    let replica_ids: Vec<Id> = (0..cfg.replicas).map(Id::from).collect();
    let every_replica: Vec<Id> = (0..cfg.replica_actors()).map(Id::from).collect();
    let replicas = (0..cfg.replica_actors()).map(|_| {
        let mut config = ReplicaConfig::new(replica_ids.clone());
        config.replicas = every_replica.clone();
        config.limits = smr::Limits {
            window: cfg.window,
            ..cfg.limits.clone()
        };
        config.election_timeout = model_timeout();
        config.heartbeat_interval = cfg.heartbeats.then(model_timeout);
        config.pre_vote = cfg.pre_vote;
        config.initial_leader = Some(Id::from(0));
        config.checkpoint_interval = cfg.checkpoint_interval;
        #[cfg(feature = "seeded-bugs")]
        {
            config.bug = cfg.bug;
        }
        Node::Replica(Replica::new(config))
    });
    let clients = (0..cfg.client_actors()).map(|index| {
        let ops = if index < cfg.clients {
            cfg.client_ops(index)
        } else {
            cfg.admin_ops()
        };
        Node::Client(Client {
            replicas: replica_ids.clone(),
            ops,
            max_attempts: cfg.max_attempts,
            retry_timeout: model_timeout(),
            // Staggered clients after the first start on their retry timer.
            delay_start: cfg.staggered && index > 0 && index < cfg.clients,
            bug: cfg.bug,
        })
    });
    let network = match cfg.network {
        NetworkKind::Unordered => Network::new_unordered_nonduplicating([]),
        NetworkKind::Duplicating => Network::new_unordered_duplicating([]),
        NetworkKind::Ordered => Network::new_ordered([]),
    };
    let actor_model = ActorModel::new(cfg.clone(), History::new(cfg))
        .actors(replicas)
        .actors(clients)
        .init_network(network)
        .lossy_network(LossyNetwork::No)
        // Up to f replicas down at once (one in clusters of 3); the crash bound counts them
        // over the whole run.
        .max_crashes((cfg.crashes as usize).min(((cfg.replicas - 1) / 2).max(1)))
        .within_boundary(within_boundary)
        .record_msg_out(History::record_out);
    with_properties(SmrModel::new(actor_model), cfg)
}

/// `model` with the model's properties: every invariant, and the examples the bounds of `cfg`
/// make possible.
pub fn with_properties(mut model: SmrModel, cfg: &ModelConfig) -> SmrModel {
    for invariant in properties::INVARIANTS {
        model = add_invariant(model, invariant.name);
    }
    for example in EXAMPLES {
        if (example.applies)(cfg) {
            model = model.property(Expectation::Sometimes, example.name, example.found);
        }
    }
    model
}

/// Stateright properties are plain function pointers, so each invariant gets its own.
fn add_invariant(model: SmrModel, name: &'static str) -> SmrModel {
    fn holds<const I: usize>(model: &SmrModel, state: &ModelState) -> bool {
        (properties::INVARIANTS[I].check)(model, state).is_ok()
    }
    let index = properties::INVARIANTS
        .iter()
        .position(|i| i.name == name)
        .expect("known invariant");
    let condition: fn(&SmrModel, &ModelState) -> bool = match index {
        0 => holds::<0>,
        1 => holds::<1>,
        2 => holds::<2>,
        3 => holds::<3>,
        4 => holds::<4>,
        5 => holds::<5>,
        6 => holds::<6>,
        7 => holds::<7>,
        8 => holds::<8>,
        9 => holds::<9>,
        _ => unreachable!("add a case for each invariant"),
    };
    model.property(Expectation::Always, name, condition)
}

/// The bounds, none of which is built into the actors: elections are counted by the distinct
/// ballots prepared; crashes by the replicas' own incarnation numbers; clients do not crash;
/// and on a non-duplicating network at most one copy
/// of the same message is in flight (a timer that re-sends a message still undelivered adds
/// nothing that loss and reordering of the first copy do not already cover; the duplicating
/// preset covers redelivery).
fn within_boundary(cfg: &ModelConfig, state: &ModelState) -> bool {
    // Every crash either recovered (and bumped the incarnation) or is still in progress; a
    // storage loss forgot the incarnations of the storage it replaced, which the history keeps.
    let restarts: u32 = state
        .actor_storages
        .iter()
        .flatten()
        .map(|storage| storage.incarnation)
        .sum::<u32>()
        + state.history.forgotten_restarts;
    // Each storage loss is a crash too, counted apart.
    let down = state.crashed.iter().filter(|crashed| **crashed).count() as u32;
    if restarts + down > cfg.crashes + state.history.storage_losses {
        return false;
    }
    if state.history.ballots.len() as u32 > cfg.elections {
        return false;
    }
    if cfg.elections_after_truncation
        && !state.history.ballots.is_empty()
        && !state
            .actor_storages
            .iter()
            .flatten()
            .any(|s| s.log_start > 0)
    {
        return false;
    }
    if state.crashed[cfg.replica_actors()..]
        .iter()
        .any(|crashed| *crashed)
    {
        return false;
    }
    if cfg.staggered && !staggered(cfg, state) {
        return false;
    }
    if let (true, Network::UnorderedNonDuplicating(messages)) =
        (cfg.one_copy_in_flight, &state.network)
    {
        if messages.values().any(|copies| *copies > 1) {
            return false;
        }
    }
    true
}

pub mod check;
pub mod conform;

/// Staggered clients: each key-value client invokes its first operation only once the client
/// before it has had its first operation answered, so that the second one's operations follow
/// the first one's in real time and a stale read is a linearizability violation (with clients
/// that all start at once, any answer of a concurrent read is linearizable).
fn staggered(cfg: &ModelConfig, state: &ModelState) -> bool {
    let clients = &state.actor_states[cfg.replica_actors()..cfg.replica_actors() + cfg.clients];
    clients.windows(2).all(|pair| {
        let (Some(earlier), Some(later)) = (pair[0].client(), pair[1].client()) else {
            return true;
        };
        let invoked = later.next > 0 || later.attempts > 0;
        !invoked || earlier.next > 0
    })
}
