//! Random walks through the model, beyond what an exhaustive search can reach: each walk
//! starts in the initial state and takes, at every state, an action chosen by a seeded random
//! generator among those the model enables, checking every property in every state it reaches.
//! A walk is a function of its seed (and of whether it partitions), so a failure is reproduced
//! by its seed alone.
//!
//! Partitions are a way of scheduling, not a change to the model: while one lasts, the walk
//! does not deliver messages between replicas on different sides of it (the messages wait in
//! the network, as they would in a switch that drops and a client that retries), so every walk
//! is still a path of the model and opens in the explorer as one.
//!
//! Stateright has a simulation checker, but it cannot be used here: when the action it picks
//! changes nothing (`Model::next_state` returns `None`), it removes that action from its list
//! and records the *next* pick as an index into the shortened list, while the path is rebuilt
//! later by indexing the full list again (`Path::from_action_indices`). Any walk that met such
//! a step printed a wrong path, or panicked ("Unable to reconstruct a `Path` based on action
//! indices") — seen with 5 replicas, where such steps are common. These walks record the
//! actions themselves, and a path's explorer address is computed from them by stateright's own
//! `Path::from_actions` and `Path::encode`, so it is the one the explorer rebuilds.

use crate::check::{CheckReport, Outcome, Verdict};
use crate::properties::INVARIANTS;
use crate::{ModelAction, ModelState, SmrModel};
use smr::runtime::SplitMix64;
use spec::digest::StableHasher;
use stateright::actor::ActorModelAction;
use stateright::{Expectation, Model, Path};
use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How a walk schedules the network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    /// Whether the replicas are partitioned from time to time.
    pub partitions: bool,
}

/// A partition of the replicas: the replica ids on one side (bits), for so many more steps.
struct Partition {
    side: u64,
    steps_left: usize,
}

/// A step starts a partition with probability 1 in this, when none is under way.
const PARTITION_ODDS: u64 = 40;
/// A partition lasts up to this many steps.
const PARTITION_STEPS: u64 = 120;

impl Partition {
    /// Maybe starts a partition of `replicas` replicas.
    fn start(random: &mut SplitMix64, replicas: usize) -> Option<Partition> {
        if replicas < 2 || random.next_u64() % PARTITION_ODDS != 0 {
            return None;
        }
        // A nonempty proper subset of the replicas.
        let all = (1u64 << replicas) - 1;
        let side = 1 + random.next_u64() % (all - 1);
        let steps_left = 1 + (random.next_u64() % PARTITION_STEPS) as usize;
        Some(Partition { side, steps_left })
    }

    /// Whether `action` delivers a message across the partition (clients are on every side).
    fn cuts(&self, action: &ModelAction, replicas: usize) -> bool {
        let ModelAction::Actor(ActorModelAction::Deliver { src, dst, .. }) = action else {
            return false;
        };
        let (src, dst) = (usize::from(*src), usize::from(*dst));
        src < replicas && dst < replicas && (self.side >> src & 1) != (self.side >> dst & 1)
    }
}

/// One walk's result.
#[derive(Clone, Debug)]
pub struct Walk {
    pub seed: u64,
    /// The actions taken, in order (steps that changed nothing are not among them).
    pub actions: Vec<ModelAction>,
    /// The first Always property violated, in the walk's last state.
    pub violation: Option<&'static str>,
    /// The Sometimes properties some state of the walk satisfied, with the step it did at.
    pub examples: Vec<(&'static str, usize)>,
}

/// Takes one walk of at most `max_depth` steps. A pick that changes nothing, leaves the
/// model's boundary or returns to a state of the walk is dropped and another action picked;
/// the walk ends where no action is left, or at the first violation.
pub fn walk(model: &SmrModel, seed: u64, max_depth: usize, seen: impl FnMut(u64)) -> Walk {
    walk_with(model, seed, max_depth, Schedule::default(), seen)
}

/// [`walk`], scheduled by `schedule`.
pub fn walk_with(
    model: &SmrModel,
    seed: u64,
    max_depth: usize,
    schedule: Schedule,
    seen: impl FnMut(u64),
) -> Walk {
    let mut result = Walk {
        seed,
        actions: Vec::new(),
        violation: None,
        examples: Vec::new(),
    };
    take_walk(model, max_depth, schedule, seen, &mut result);
    result
}

/// The walk itself, recording into `result` as it goes.
fn take_walk(
    model: &SmrModel,
    max_depth: usize,
    schedule: Schedule,
    mut seen: impl FnMut(u64),
    result: &mut Walk,
) {
    let mut random = SplitMix64::new(result.seed);
    let replicas = model.cfg.replica_actors();
    let mut partition: Option<Partition> = None;
    let properties = model.properties();
    let mut state = model
        .init_states()
        .into_iter()
        .next()
        .expect("the model has an initial state");
    let mut visited = HashSet::from([fingerprint(&state)]);
    seen(fingerprint(&state));
    loop {
        for property in &properties {
            let holds = (property.condition)(model, &state);
            match property.expectation {
                Expectation::Always if !holds => {
                    result.violation = Some(property.name);
                    return;
                }
                Expectation::Sometimes
                    if holds && !result.examples.iter().any(|(n, _)| *n == property.name) =>
                {
                    result.examples.push((property.name, result.actions.len()));
                }
                _ => {}
            }
        }
        if result.actions.len() >= max_depth {
            return;
        }
        let mut actions = Vec::new();
        model.actions(&state, &mut actions);
        let mut cut = Vec::new();
        if schedule.partitions {
            partition = match partition.take() {
                Some(p) if p.steps_left > 0 => Some(Partition {
                    steps_left: p.steps_left - 1,
                    ..p
                }),
                Some(_) => None,
                None => Partition::start(&mut random, replicas),
            };
            if let Some(p) = &partition {
                (cut, actions) = actions
                    .into_iter()
                    .partition(|action| p.cuts(action, replicas));
            }
        }
        let mut kinds = Kinds::of(actions);
        // The kind of step is chosen once per step: a step tries actions of that kind until one
        // leads somewhere new, and only when none does, another kind.
        let mut kind = kinds.pick(&mut random);
        loop {
            if kinds.is_empty() {
                if cut.is_empty() {
                    return;
                }
                // Nothing can happen on either side: the partition heals.
                partition = None;
                kinds = Kinds::of(std::mem::take(&mut cut));
            }
            if kinds.get(kind).is_empty() {
                kind = kinds.pick(&mut random);
            }
            let actions = kinds.get(kind);
            let index = (random.next_u64() % actions.len() as u64) as usize;
            let action = actions.swap_remove(index);
            let Some(next) = model.next_state(&state, action.clone()) else {
                continue;
            };
            if !model.within_boundary(&next) || !visited.insert(fingerprint(&next)) {
                continue;
            }
            seen(fingerprint(&next));
            result.actions.push(action);
            state = next;
            break;
        }
    }
}

/// The enabled actions by kind, for a schedule in which messages travel faster than timers
/// fire: a walk delivers a message 90 times in 100, fires an election timer once (elections
/// are what timeouts lead to when messages are slow), and otherwise fires another timer or
/// crashes, restarts or wipes a replica. (Picking among all actions alike, candidates time out
/// as often as messages arrive, and duel until the elections run out.)
struct Kinds {
    /// Deliveries, election timeouts, and everything else.
    lists: [Vec<ModelAction>; 3],
}

/// The weights of the kinds, in the order of `Kinds::lists`.
const WEIGHTS: [u64; 3] = [90, 1, 9];

impl Kinds {
    fn of(actions: Vec<ModelAction>) -> Kinds {
        let mut lists: [Vec<ModelAction>; 3] = Default::default();
        for action in actions {
            let kind = match &action {
                ModelAction::Actor(ActorModelAction::Deliver { .. }) => 0,
                ModelAction::Actor(ActorModelAction::Timeout(_, smr::Timer::Election)) => 1,
                _ => 2,
            };
            lists[kind].push(action);
        }
        Kinds { lists }
    }

    fn is_empty(&self) -> bool {
        self.lists.iter().all(Vec::is_empty)
    }

    fn get(&mut self, kind: usize) -> &mut Vec<ModelAction> {
        &mut self.lists[kind]
    }

    /// A nonempty kind (if any), chosen by [`WEIGHTS`] among the nonempty ones.
    fn pick(&self, random: &mut SplitMix64) -> usize {
        let weight = |kind: usize| {
            if self.lists[kind].is_empty() {
                0
            } else {
                WEIGHTS[kind]
            }
        };
        let total: u64 = (0..3).map(weight).sum();
        let mut roll = random.next_u64() % total.max(1);
        for kind in 0..3 {
            if roll < weight(kind) {
                return kind;
            }
            roll -= weight(kind);
        }
        0
    }
}

fn fingerprint(state: &ModelState) -> u64 {
    let mut hasher = StableHasher::new();
    state.hash(&mut hasher);
    hasher.finish()
}

/// The path of `actions` from the initial state, as stateright builds it.
pub fn path(model: &SmrModel, actions: &[ModelAction]) -> Path<ModelState, ModelAction> {
    let init = model.init_states().remove(0);
    Path::from_actions(model, init, actions).expect("a walk's actions are a path of the model")
}

/// How to simulate.
#[derive(Clone, Debug)]
pub struct SimulateOptions {
    /// The first seed; walk `k` uses `first_seed + k`.
    pub first_seed: u64,
    /// Walks to take at most (`None`: until the timeout).
    pub walks: Option<u64>,
    pub max_depth: usize,
    pub threads: usize,
    pub timeout: Option<Duration>,
    /// Stop at the first violation.
    pub stop_at_violation: bool,
    pub schedule: Schedule,
}

/// What a simulation found.
#[derive(Clone, Debug)]
pub struct Simulation {
    pub walks: u64,
    /// States visited, counting repeats, and distinct states.
    pub steps: usize,
    pub unique: usize,
    pub max_depth: usize,
    pub elapsed: Duration,
    /// The first walk that violated each property, by property.
    pub violations: BTreeMap<&'static str, Walk>,
    /// The shortest example of each Sometimes property found.
    pub examples: BTreeMap<&'static str, (usize, Walk)>,
}

/// Runs walks on `options.threads` threads.
pub fn simulate(model: &SmrModel, options: &SimulateOptions) -> Simulation {
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let found = Mutex::new(Simulation {
        walks: 0,
        steps: 0,
        unique: 0,
        max_depth: 0,
        elapsed: Duration::ZERO,
        violations: BTreeMap::new(),
        examples: BTreeMap::new(),
    });
    let unique = Mutex::new(HashSet::<u64>::new());
    std::thread::scope(|scope| {
        for _ in 0..options.threads.max(1) {
            scope.spawn(|| {
                let mut fingerprints = Vec::new();
                loop {
                    if stop.load(Ordering::Relaxed)
                        || options.timeout.is_some_and(|t| started.elapsed() >= t)
                    {
                        return;
                    }
                    let k = next.fetch_add(1, Ordering::Relaxed) as u64;
                    if options.walks.is_some_and(|walks| k >= walks) {
                        return;
                    }
                    let seed = options.first_seed.wrapping_add(k);
                    fingerprints.clear();
                    let result = walk_with(model, seed, options.max_depth, options.schedule, |f| {
                        fingerprints.push(f)
                    });
                    unique.lock().unwrap().extend(fingerprints.iter().copied());
                    let mut found = found.lock().unwrap();
                    found.walks += 1;
                    found.steps += fingerprints.len();
                    found.max_depth = found.max_depth.max(result.actions.len());
                    for (name, depth) in &result.examples {
                        let shorter = found.examples.get(name).is_none_or(|(d, _)| depth < d);
                        if shorter {
                            found.examples.insert(name, (*depth, result.clone()));
                        }
                    }
                    if let Some(name) = result.violation {
                        found.violations.entry(name).or_insert(result);
                        if options.stop_at_violation {
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    let mut simulation = found.into_inner().unwrap();
    simulation.unique = unique.into_inner().unwrap().len();
    simulation.elapsed = started.elapsed();
    simulation
}

/// A simulation as the verdicts `check` prints: never exhaustive.
pub fn report(model: &SmrModel, simulation: &Simulation) -> CheckReport {
    let verdicts = model
        .properties()
        .into_iter()
        .map(|property| {
            let outcome = match property.expectation {
                Expectation::Always => match simulation.violations.get(property.name) {
                    Some(walk) => {
                        let path = path(model, &walk.actions);
                        let explanation = INVARIANTS
                            .iter()
                            .find(|i| i.name == property.name)
                            .and_then(|i| (i.check)(model, path.last_state()).err())
                            .unwrap_or_else(|| format!("{} does not hold", property.name));
                        Outcome::Violated {
                            explanation: format!("{explanation} (walk seed {})", walk.seed),
                            actions: walk
                                .actions
                                .iter()
                                .map(|a| model.format_action(a))
                                .collect(),
                            encoded: path.encode(model),
                        }
                    }
                    None => Outcome::NotRefuted,
                },
                _ => match simulation.examples.get(property.name) {
                    Some((depth, walk)) => Outcome::Found {
                        depth: *depth,
                        encoded: path(model, &walk.actions[..*depth]).encode(model),
                    },
                    None => Outcome::Missing,
                },
            };
            Verdict {
                name: property.name,
                expectation: property.expectation,
                outcome,
            }
        })
        .collect();
    CheckReport {
        states: simulation.steps,
        unique_states: simulation.unique,
        max_depth: simulation.max_depth,
        elapsed: simulation.elapsed,
        exhaustive: false,
        verdicts,
        marks: Vec::new(),
    }
}
