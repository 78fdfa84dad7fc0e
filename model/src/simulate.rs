//! Random walks through the model, beyond what an exhaustive search can reach: each walk
//! starts in the initial state and takes, at every state, an action chosen by a seeded random
//! generator among those the model enables, checking every property in every state it reaches.
//! A walk is a function of its seed, so a failure is reproduced by its seed alone.
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
use stateright::{Expectation, Model, Path};
use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
pub fn walk(model: &SmrModel, seed: u64, max_depth: usize, mut seen: impl FnMut(u64)) -> Walk {
    let mut random = SplitMix64::new(seed);
    let properties = model.properties();
    let mut state = model
        .init_states()
        .into_iter()
        .next()
        .expect("the model has an initial state");
    let mut result = Walk {
        seed,
        actions: Vec::new(),
        violation: None,
        examples: Vec::new(),
    };
    let mut visited = HashSet::from([fingerprint(&state)]);
    seen(fingerprint(&state));
    loop {
        for property in &properties {
            let holds = (property.condition)(model, &state);
            match property.expectation {
                Expectation::Always if !holds => {
                    result.violation = Some(property.name);
                    return result;
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
            return result;
        }
        let mut actions = Vec::new();
        model.actions(&state, &mut actions);
        loop {
            if actions.is_empty() {
                return result;
            }
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
                    let result = walk(model, seed, options.max_depth, |f| fingerprints.push(f));
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
    }
}
