//! A real run in stateright's explorer: `model -- explore --trace TRACE_DIR`.
//!
//! `conform` replays a run through the model's actors in place, changing one state where it
//! stands, which is what makes millions of steps cheap. Here the same run is taken the way the
//! model checker takes steps: each replayed step is a stateright `ActorModelAction`, checked
//! to be enabled in the last state (the message is in the network, the timer is set, the actor
//! is up or down as the action needs), and the next state is whatever the conformance model's
//! own `ActorModel::next_state` computes. The path is served by stateright's explorer through
//! [`ReplayedRun`], a model whose every state has one action, the run's next step; every view
//! of the explorer works on it: the model state after each step (actor states, network,
//! timers, storages, history), the property verdicts ("Run to completion" evaluates every
//! property of the model along the run), and a sequence diagram of the latest steps.
//!
//! The model checker starts from `ActorModel::init_states`, every actor started. A real run
//! starts with every process down, and they start one after another (spares late, restarted
//! ones again), so the replayed path starts one state earlier, with every actor down
//! ([`super::shadow::all_down`]), and each start is a `Recover` from the storage the model
//! holds for the actor.
//!
//! The explorer recomputes a path from its first state on every request, and every
//! `ActorModel` step copies the network (a duplicating network keeps every message ever
//! sent), so a path of thousands of steps is slow to browse. The explorer therefore shows a
//! window of the run: by default the steps that lead to the first failure, or the first steps
//! of a run that passed; its first state is computed once, when the command starts.

use super::replay::{Applied, Envelope, FastMap, Observer};
use super::shadow::{all_down, Shadow};
use super::world::World;
use crate::diagram::{self, Step};
use crate::{ModelAction, ModelState, SmrModel};
use spec::digest_of;
use stateright::actor::{ActorModelAction, Envelope as Sent, Id, Network};
use stateright::{Model, Path, Property};
use std::time::{Duration, Instant};

/// Collects the replayed steps as model actions: those from a step number on, up to a limit.
pub struct Recorder {
    from: u64,
    limit: usize,
    pub steps: Vec<Step>,
    /// The number of the last step before `from` (0 if none).
    pub before: u64,
    /// Whether steps beyond the limit were left out.
    pub truncated: bool,
    first_send: FastMap<Envelope, u64>,
}

impl Recorder {
    /// Records the steps numbered `from` and after (`from` 0 or 1: all), at most `limit`.
    pub fn new(from: u64, limit: usize) -> Self {
        Self {
            from,
            limit,
            steps: Vec::new(),
            before: 0,
            truncated: false,
            first_send: FastMap::default(),
        }
    }
}

impl Observer for Recorder {
    fn after_step(
        &mut self,
        _world: &World<'_>,
        applied: &Applied<'_>,
    ) -> Vec<(&'static str, String)> {
        if self.steps.len() >= self.limit {
            self.truncated = true;
            return Vec::new();
        }
        let sent_at = applied.delivered().and_then(|(src, msg)| {
            let key = (usize::from(src) as u64, applied.id as u64, digest_of(msg));
            self.first_send.get(&key).copied()
        });
        for command in applied.out.iter() {
            if let stateright::actor::Command::Send(dst, msg) = command {
                let key = (applied.id as u64, usize::from(*dst) as u64, digest_of(msg));
                self.first_send.entry(key).or_insert(applied.step);
            }
        }
        if applied.step < self.from {
            self.before = applied.step;
        } else {
            if applied.lost_storage {
                self.steps.push(Step {
                    number: applied.step,
                    action: ModelAction::LoseStorage(Id::from(applied.id)),
                    sent_at: None,
                });
            }
            self.steps.push(Step {
                number: applied.step,
                action: applied.action.clone(),
                sent_at,
            });
        }
        Vec::new()
    }
}

/// Whether `action` is enabled in `state` in stateright's `ActorModel` (with the conformance
/// model's unordered duplicating network, where a sent message stays deliverable).
pub fn enabled(state: &ModelState, action: &ModelAction) -> Result<(), String> {
    let down = |id: &Id| state.crashed.get(usize::from(*id)).copied().unwrap_or(true);
    let action = match action {
        ModelAction::LoseStorage(_) => return Ok(()),
        ModelAction::Actor(action) => action,
    };
    match action {
        ActorModelAction::Deliver { src, dst, msg } => {
            if down(dst) {
                return Err(format!("{dst:?} is down"));
            }
            let Network::UnorderedDuplicating(sent, _) = &state.network else {
                return Err("the conformance model's network is unordered and duplicating".into());
            };
            let envelope = Sent {
                src: *src,
                dst: *dst,
                msg: msg.clone(),
            };
            if sent.contains(&envelope) {
                Ok(())
            } else {
                Err(format!(
                    "no such message from {src:?} to {dst:?} in the network"
                ))
            }
        }
        ActorModelAction::Drop(_) => Ok(()),
        ActorModelAction::Timeout(id, timer) => {
            let set = state
                .timers_set
                .get(usize::from(*id))
                .is_some_and(|timers| timers.iter().any(|t| t == timer));
            if down(id) || !set {
                Err(format!("{id:?}'s {timer:?} timer is not set"))
            } else {
                Ok(())
            }
        }
        ActorModelAction::Crash(id) if down(id) => Err(format!("{id:?} is down already")),
        ActorModelAction::Crash(_) => Ok(()),
        ActorModelAction::Recover(id) if down(id) => Ok(()),
        ActorModelAction::Recover(id) => Err(format!("{id:?} is up")),
        ActorModelAction::SelectRandom { actor, key, random } => {
            let offered = state
                .random_choices
                .get(usize::from(*actor))
                .and_then(|choices| choices.map.get(key))
                .is_some_and(|choices| choices.contains(random));
            if offered {
                Ok(())
            } else {
                Err(format!("{actor:?} was not offered {random:?} for {key:?}"))
            }
        }
    }
}

/// The model's next state after `action`: a step the `ActorModel` ignores (it changes
/// nothing) leaves the state as it was.
fn next(model: &SmrModel, state: &ModelState, action: &ModelAction) -> ModelState {
    model
        .next_state(state, action.clone())
        .unwrap_or_else(|| state.clone())
}

/// A walk of recorded steps through `ActorModel::next_state`.
pub struct Walk {
    /// Steps checked to be enabled and taken.
    pub taken: usize,
    /// Steps `ActorModel::next_state` ignored (a timer renewed, nothing else).
    pub ignored: usize,
    /// The first step not enabled, if any: its index among the steps walked, and why.
    pub disabled: Option<(usize, String)>,
    pub time: Duration,
}

/// Takes `steps` through the model from `state`, checking that each is enabled; stops at the
/// first that is not. Returns the walk and the state it reached.
pub fn walk(model: &SmrModel, mut state: ModelState, steps: &[Step]) -> (Walk, ModelState) {
    let started = Instant::now();
    let mut walk = Walk {
        taken: 0,
        ignored: 0,
        disabled: None,
        time: Duration::ZERO,
    };
    for (index, step) in steps.iter().enumerate() {
        if let Err(why) = enabled(&state, &step.action) {
            walk.disabled = Some((index, why));
            break;
        }
        match model.next_state(&state, step.action.clone()) {
            Some(next) => state = next,
            None => walk.ignored += 1,
        }
        walk.taken += 1;
    }
    walk.time = started.elapsed();
    (walk, state)
}

/// The model state after step `after` of the run in `dir` (a conform step number; 0: before
/// the first), from the complete shadow state that the replay changes in place (a walk through
/// `ActorModel::next_state` copies the whole state at every step, which on a long run costs
/// time quadratic in its length).
pub fn state_after(
    dir: &std::path::Path,
    model: &SmrModel,
    after: u64,
) -> Result<ModelState, String> {
    if after == 0 {
        return Ok(all_down(model));
    }
    let mut shadow = Shadow::complete(model, after);
    super::replay_dir(dir, model, &mut [&mut shadow])?;
    shadow
        .snapshot
        .ok_or_else(|| format!("the replay did not reach step {after}"))
}

/// A state of the replayed run: the model state after the window's first `index` steps.
#[derive(Clone, Debug, Hash, PartialEq)]
pub struct RunState {
    /// Steps of the window taken.
    pub index: usize,
    /// The conform step number of the last step taken (0 before the first).
    pub after_step: u64,
    pub state: ModelState,
}

/// A window of a real run as a stateright model: one action per state, the run's next step.
pub struct ReplayedRun {
    model: SmrModel,
    start: ModelState,
    start_number: u64,
    steps: Vec<Step>,
}

impl ReplayedRun {
    /// The run from `start` (the state before `steps[0]`, which is conform step
    /// `start_number + 1` or later) through `steps`.
    pub fn new(model: SmrModel, start: ModelState, start_number: u64, steps: Vec<Step>) -> Self {
        Self {
            model,
            start,
            start_number,
            steps,
        }
    }

    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// Property `I` of the conformance model, evaluated on a replayed state (stateright's
/// properties are plain function pointers, so each index gets its own function).
fn inner_property<const I: usize>(run: &ReplayedRun, state: &RunState) -> bool {
    run.model
        .properties
        .get(I)
        .is_none_or(|property| (property.condition)(&run.model, &state.state))
}

type Condition = fn(&ReplayedRun, &RunState) -> bool;

/// One wrapper per property of the model, in order.
const CONDITIONS: [Condition; 24] = [
    inner_property::<0>,
    inner_property::<1>,
    inner_property::<2>,
    inner_property::<3>,
    inner_property::<4>,
    inner_property::<5>,
    inner_property::<6>,
    inner_property::<7>,
    inner_property::<8>,
    inner_property::<9>,
    inner_property::<10>,
    inner_property::<11>,
    inner_property::<12>,
    inner_property::<13>,
    inner_property::<14>,
    inner_property::<15>,
    inner_property::<16>,
    inner_property::<17>,
    inner_property::<18>,
    inner_property::<19>,
    inner_property::<20>,
    inner_property::<21>,
    inner_property::<22>,
    inner_property::<23>,
];

impl Model for ReplayedRun {
    type State = RunState;
    type Action = ModelAction;

    fn init_states(&self) -> Vec<RunState> {
        vec![RunState {
            index: 0,
            after_step: self.start_number,
            state: self.start.clone(),
        }]
    }

    fn actions(&self, state: &RunState, actions: &mut Vec<ModelAction>) {
        if let Some(step) = self.steps.get(state.index) {
            actions.push(step.action.clone());
        }
    }

    fn next_state(&self, last: &RunState, action: ModelAction) -> Option<RunState> {
        Some(RunState {
            index: last.index + 1,
            after_step: self.steps.get(last.index).map_or(0, |step| step.number),
            state: next(&self.model, &last.state, &action),
        })
    }

    fn format_action(&self, action: &ModelAction) -> String {
        self.model.format_action(action)
    }

    fn format_step(&self, last: &RunState, action: ModelAction) -> Option<String> {
        self.model.format_step(&last.state, action)
    }

    fn as_svg(&self, path: Path<RunState, ModelAction>) -> Option<String> {
        let taken = path.last_state().index.min(self.steps.len());
        let from = taken.saturating_sub(diagram::DIAGRAM_STEPS);
        Some(diagram::of_steps(
            &self.model.actors,
            &self.steps[from..taken],
        ))
    }

    fn properties(&self) -> Vec<Property<Self>> {
        self.model
            .properties
            .iter()
            .zip(CONDITIONS)
            .map(|(property, condition)| Property {
                expectation: property.expectation.clone(),
                name: property.name,
                condition,
            })
            .collect()
    }
}

/// Which part of the run the explorer shows.
#[derive(Clone, Copy, Debug)]
pub struct WindowChoice {
    /// The first conform step to show (default: the window ends at the first failure, or
    /// starts at the run's beginning if it passed).
    pub from: Option<u64>,
    /// Steps in the window.
    pub steps: usize,
}

/// Steps recorded at most to find the window before a failure: enough for any test run; a
/// benchmark's millions of steps are for `conform`, not for browsing.
pub const RECORD_LIMIT: usize = 1_000_000;

/// A replayed run, ready to serve.
pub struct Prepared {
    pub report: super::Report,
    pub run: ReplayedRun,
    pub walk: Walk,
    /// Conform step numbers of the window's first and last steps.
    pub first: u64,
    pub last: u64,
}

/// Replays the traces in `dir` (the full conformance check, whose report comes back too),
/// picks the window, and walks the run through the model up to the window's end.
pub fn prepare(
    dir: &std::path::Path,
    options: &super::Options,
    choice: WindowChoice,
) -> Result<Prepared, String> {
    let mut recorder = match choice.from {
        Some(from) => Recorder::new(from, choice.steps),
        None => Recorder::new(0, RECORD_LIMIT),
    };
    let (report, model) = super::run_with(dir, options, &mut [&mut recorder])?;
    let steps = recorder.steps;
    // The conform step of the first failure: a diverging step was not applied (the window
    // ends before it); a violating step was (the window ends with it).
    let failure = report
        .divergence
        .as_ref()
        .map(|d| d.step.saturating_sub(1))
        .into_iter()
        .chain(report.violations.iter().map(|(_, step, _)| *step))
        .min();
    let (start, end) = match (choice.from, failure) {
        (Some(_), _) => (0, steps.len()),
        (None, Some(failure)) => {
            let end = steps.partition_point(|step| step.number <= failure);
            if end == steps.len() && recorder.truncated {
                return Err(format!(
                    "the first failure is at step {failure}, beyond the {RECORD_LIMIT} steps the explorer records"
                ));
            }
            (end.saturating_sub(choice.steps), end)
        }
        (None, None) => (0, choice.steps.min(steps.len())),
    };
    if start >= end {
        let last = steps.last().map_or(0, |step| step.number);
        return Err(match choice.from {
            Some(from) => format!(
                "--from {from} is beyond the run's last step, {}",
                recorder.before.max(last)
            ),
            None => "the run has no step to show".to_string(),
        });
    }
    let start_number = match start {
        0 => recorder.before,
        _ => steps[start - 1].number,
    };
    if start_number > 0 && !report.exact {
        return Err(format!(
            "a window from step {} needs the model state there, history included, and this run is beyond the exact limits ({} steps, {} operations at most: stateright's linearizability tester searches the whole history on every operation); explore its first steps with --from 1, or a shorter run",
            steps[start].number, options.exact_limit, options.exact_operations
        ));
    }
    let first_state = state_after(dir, &model, start_number)?;
    let (walk, _) = walk(&model, first_state.clone(), &steps[start..end]);
    let first = steps[start].number;
    let last = steps[end - 1].number;
    // Up to the first step the model does not enable, if the walk found one.
    let window: Vec<Step> = steps[start..start + walk.taken].to_vec();
    let run = ReplayedRun::new(model, first_state, start_number, window);
    Ok(Prepared {
        report,
        run,
        walk,
        first,
        last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_property_of_the_model_has_a_wrapper() {
        let model = crate::build(&crate::ModelConfig::default());
        assert!(!model.properties.is_empty());
        assert!(model.properties.len() <= CONDITIONS.len());
    }
}
