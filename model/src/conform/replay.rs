//! The replay: merges the actors' events into one order consistent with causality and steps
//! the model's actors through it, checking each step against the model.
//!
//! Merge. Each actor's events keep their recorded order. A delivery can be replayed only once
//! the model has sent that very message (same sender, receiver and content, compared by
//! digest); until then its actor waits. Among the actors that can go on, the one whose next
//! event was recorded earliest goes first, so that independent steps keep their real-time order
//! as far as the clocks tell it (all processes of a local run share one clock).
//!
//! Each step is checked the way stateright's `ActorModel` would take it, with the most
//! permissive network (unordered, lossy, duplicating): the step must be enabled (a delivered
//! message was sent and never altered; a timer that fires is set; a start happens only to an
//! actor that is down, from exactly the storage the model holds for it); and the outputs the
//! model's actor produces and the digest of its new state must equal the recorded ones. Steps
//! that change nothing and output nothing are stutters: the model has no action for them, and
//! the replay only checks that the real process did nothing either.

use super::load::Event;
use super::world::World;
use crate::ModelAction;
use smr::deploy::node_digest;
use smr::runtime::Stepper;
use smr::trace::recorder::trace_output;
use smr::trace::{NodeStep, TraceInput, TraceOutput};
use smr::{Msg, Node, NodeState, Timer};
use spec::{digest_of, Digest};
use stateright::actor::{Actor, ActorModelAction, Command, Id, Out};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// A message in flight: sender, receiver, and the digest of its content.
pub type Envelope = (u64, u64, Digest);

/// A hasher for keys made of integers that are ids and digests already: one multiply and
/// rotate per word instead of SipHash (the maps of the replay are on its hot path, and their
/// keys come from a trace, not from an adversary who could pick colliding ones).
#[derive(Default, Clone, Copy)]
pub struct Mix(u64);

impl std::hash::Hasher for Mix {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write_u64(u64::from(*byte));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0 ^ word)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(26);
    }

    fn write_usize(&mut self, word: usize) {
        self.write_u64(word as u64);
    }

    fn finish(&self) -> u64 {
        spec::digest::finalize(self.0)
    }
}

/// Hash maps keyed by ids and digests.
pub type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<Mix>>;

/// What a replayed step did, for the observers.
pub struct Applied<'a> {
    /// The step's place in the replayed order (from 1).
    pub step: u64,
    pub id: usize,
    /// The step as the model's action: a start is the `Recover` of an actor that is down
    /// (every actor is down before its first start), a crash is `Crash`.
    pub action: &'a ModelAction,
    /// For a start: whether the actor's storage was lost before it (the start is from
    /// [`smr::Storage::lost`], not from what the model saved): the model's `LoseStorage`.
    pub lost_storage: bool,
    /// The model's outputs.
    pub out: &'a Out<Node>,
}

impl Applied<'_> {
    /// The message delivered, if the step was a delivery.
    pub fn delivered(&self) -> Option<(Id, &Msg)> {
        match self.action {
            ModelAction::Actor(ActorModelAction::Deliver { src, msg, .. }) => Some((*src, msg)),
            _ => None,
        }
    }

    pub fn is_crash(&self) -> bool {
        matches!(self.action, ModelAction::Actor(ActorModelAction::Crash(_)))
    }

    pub fn is_start(&self) -> bool {
        matches!(
            self.action,
            ModelAction::Actor(ActorModelAction::Recover(_))
        )
    }
}

/// Sees every replayed step; returns the property violations the step caused.
pub trait Observer {
    /// Called after the step was applied to `world`.
    fn after_step(
        &mut self,
        world: &World<'_>,
        applied: &Applied<'_>,
    ) -> Vec<(&'static str, String)>;
}

/// The first step where the real run and the model part ways.
#[derive(Debug, Clone)]
pub struct Divergence {
    /// Index of the step in the replayed order (from 1), or 0 if found before replaying.
    pub step: u64,
    pub actor: usize,
    /// The actor's own step number in its trace instance, and when it ran.
    pub seq: u64,
    pub time: u64,
    pub what: String,
    /// The recorded side and the model's side, when they differ.
    pub recorded: Option<String>,
    pub model: Option<String>,
}

/// The replay's outcome.
pub struct Outcome {
    pub steps: u64,
    pub stutters: u64,
    pub crashes: u64,
    pub divergence: Option<Divergence>,
    /// Per property: the first violation, with the step index.
    pub violations: Vec<(&'static str, u64, String)>,
}

struct Scheduler {
    /// Each actor's next event.
    cursor: Vec<usize>,
    ready: BinaryHeap<Reverse<(u64, usize)>>,
    /// Actors waiting for a message to be sent.
    waiting: FastMap<Envelope, Vec<usize>>,
    /// Messages sent whose deliveries are still to come, with how many are.
    in_flight: FastMap<Envelope, u32>,
    /// Deliveries to come per message, counted before the replay.
    remaining: FastMap<Envelope, u32>,
}

fn envelope(src: u64, dst: usize, msg: &Msg) -> Envelope {
    (src, dst as u64, digest_of(msg))
}

fn event_time(events: &[Event], at: usize) -> u64 {
    // A crash takes the time of the restart that follows it.
    events[at..]
        .iter()
        .find_map(|event| match event {
            Event::Step(step) => Some(step.time),
            Event::Crash => None,
        })
        .unwrap_or(u64::MAX)
}

/// Replays `events` (taken by value: each message is moved into its delivery) through the
/// model's `actors`, calling `observers` after every step.
pub fn replay(
    actors: &[Node],
    mut events: Vec<Vec<Event>>,
    observers: &mut [&mut dyn Observer],
) -> Outcome {
    let mut world = World::new(actors);
    let mut scheduler = Scheduler {
        cursor: vec![0; events.len()],
        ready: BinaryHeap::new(),
        waiting: FastMap::default(),
        in_flight: FastMap::default(),
        remaining: FastMap::default(),
    };
    for (dst, list) in events.iter().enumerate() {
        for event in list {
            if let Event::Step(NodeStep {
                input: TraceInput::Deliver { src, msg },
                ..
            }) = event
            {
                *scheduler
                    .remaining
                    .entry(envelope(*src, dst, msg))
                    .or_default() += 1;
            }
        }
        if !list.is_empty() {
            scheduler.ready.push(Reverse((event_time(list, 0), dst)));
        }
    }
    let mut outcome = Outcome {
        steps: 0,
        stutters: 0,
        crashes: 0,
        divergence: None,
        violations: Vec::new(),
    };
    while let Some(Reverse((_, id))) = scheduler.ready.pop() {
        let at = scheduler.cursor[id];
        let Some(event) = events[id].get_mut(at) else {
            continue;
        };
        if let Event::Step(NodeStep {
            input: TraceInput::Deliver { src, msg },
            ..
        }) = event
        {
            let key = envelope(*src, id, msg);
            if !scheduler.in_flight.contains_key(&key) {
                scheduler.waiting.entry(key).or_default().push(id);
                continue;
            }
        }
        let event = std::mem::replace(event, Event::Crash);
        scheduler.cursor[id] += 1;
        outcome.steps += 1;
        let result = match event {
            Event::Crash => {
                outcome.crashes += 1;
                let slot = &mut world.slots[id];
                slot.state = None;
                slot.timers.clear();
                slot.randoms.clear();
                let out = Out::new();
                let action = ModelAction::Actor(ActorModelAction::Crash(Id::from(id)));
                let applied = Applied {
                    step: outcome.steps,
                    id,
                    action: &action,
                    lost_storage: false,
                    out: &out,
                };
                observe(
                    &world,
                    &applied,
                    observers,
                    outcome.steps,
                    &mut outcome.violations,
                );
                Ok(())
            }
            Event::Step(step) => apply(
                &mut world,
                &mut scheduler,
                id,
                step,
                outcome.steps,
                observers,
                &mut outcome,
            ),
        };
        if let Err(divergence) = result {
            outcome.divergence = Some(divergence);
            return outcome;
        }
        if scheduler.cursor[id] < events[id].len() {
            let time = event_time(&events[id], scheduler.cursor[id]);
            scheduler.ready.push(Reverse((time, id)));
        }
    }
    // Whatever still waits is a delivery of a message the model never sent.
    let mut stuck: Vec<(u64, usize)> = scheduler
        .waiting
        .values()
        .flatten()
        .map(|id| (event_time(&events[*id], scheduler.cursor[*id]), *id))
        .collect();
    stuck.sort();
    if let Some((_, id)) = stuck.first() {
        if let Some(Event::Step(step)) = events[*id].get(scheduler.cursor[*id]) {
            let TraceInput::Deliver { src, msg } = &step.input else {
                unreachable!("only deliveries wait")
            };
            outcome.divergence = Some(Divergence {
                step: outcome.steps + 1,
                actor: *id,
                seq: step.seq,
                time: step.time,
                what: format!(
                    "actor {id} received from {src} a message that {src} never sent in the model (forged, altered, or sent by a step the sender's crash voided)"
                ),
                recorded: Some(format!("{msg:?}")),
                model: Some(sent_by(&world, *src, *id)),
            });
        }
    }
    outcome
}

/// A hint for a message nobody sent: what the sender's model state looks like.
fn sent_by(world: &World<'_>, src: u64, dst: usize) -> String {
    match world
        .slots
        .get(src as usize)
        .and_then(|slot| slot.state.as_ref())
    {
        Some(_) => format!(
            "actor {src} is up in the model; no message of this content to {dst} is in flight"
        ),
        None => format!("actor {src} is down (or never started) in the model"),
    }
}

fn observe(
    world: &World<'_>,
    applied: &Applied<'_>,
    observers: &mut [&mut dyn Observer],
    step: u64,
    violations: &mut Vec<(&'static str, u64, String)>,
) {
    for observer in observers.iter_mut() {
        for (property, why) in observer.after_step(world, applied) {
            if !violations.iter().any(|(name, _, _)| *name == property) {
                violations.push((property, step, why));
            }
        }
    }
}

fn apply(
    world: &mut World<'_>,
    scheduler: &mut Scheduler,
    id: usize,
    step: NodeStep,
    index: u64,
    observers: &mut [&mut dyn Observer],
    outcome: &mut Outcome,
) -> Result<(), Divergence> {
    let actor_id = Id::from(id);
    let actors = world.actors;
    let node = &actors[id];
    let diverge = |what: String, recorded: Option<String>, model: Option<String>| Divergence {
        step: index,
        actor: id,
        seq: step.seq,
        time: step.time,
        what,
        recorded,
        model,
    };
    let slot = &mut world.slots[id];
    let mut out = Out::new();
    let before = slot.state.as_ref().map(node_digest);
    let mut lost_storage = false;
    let action = match step.input {
        TraceInput::Start { storage } => {
            if slot.state.is_some() {
                return Err(diverge(
                    format!("actor {id} started while the model has it running (a restart without a crash?)"),
                    None,
                    None,
                ));
            }
            // A start from the storage a lost or damaged directory is replaced with (the
            // runtime's `--recover`) is the model's `LoseStorage` followed by the start.
            lost_storage = storage != slot.storage
                && matches!(node, Node::Replica(_))
                && storage.as_ref().is_some_and(smr::Storage::is_lost);
            if storage != slot.storage && !lost_storage {
                return Err(diverge(
                    format!("actor {id} started from storage that differs from what the model saved for it"),
                    Some(format!("{storage:?}")),
                    Some(format!("{:?}", slot.storage)),
                ));
            }
            slot.storage = storage;
            slot.state = Some(node.on_start(actor_id, &slot.storage, &mut out));
            ActorModelAction::Recover(actor_id)
        }
        TraceInput::Deliver { src, msg } => {
            let Some(state) = slot.state.take() else {
                return Err(diverge(
                    format!("actor {id} received a message while the model has it down"),
                    Some(format!("{msg:?}")),
                    None,
                ));
            };
            let key = envelope(src, id, &msg);
            let src = Id::from(src as usize);
            let kept = msg.clone();
            slot.state = Some(node.step_msg(actor_id, state, src, msg, &mut out));
            if let Some(left) = scheduler.in_flight.get_mut(&key) {
                *left -= 1;
                if *left == 0 {
                    scheduler.in_flight.remove(&key);
                }
            }
            ActorModelAction::Deliver {
                src,
                dst: actor_id,
                msg: kept,
            }
        }
        TraceInput::Timeout { timer } => {
            if !slot.timers.contains(&timer) {
                return Err(diverge(
                    format!("actor {id}'s {timer:?} timer fired but is not set in the model (cancelled, or never set)"),
                    Some(format!("timers set: {:?}", slot.timers)),
                    None,
                ));
            }
            let Some(state) = slot.state.take() else {
                return Err(diverge(
                    format!("actor {id} timed out while down"),
                    None,
                    None,
                ));
            };
            slot.state = Some(node.step_timeout(actor_id, state, &timer, &mut out));
            if !(out.is_empty() && slot.state.as_ref().map(node_digest) == before) {
                slot.timers.remove(&timer);
            }
            ActorModelAction::Timeout(actor_id, timer)
        }
        TraceInput::Random { random } => {
            let key = slot
                .randoms
                .iter()
                .find(|(_, choices)| choices.contains(&random))
                .map(|(key, _)| key.clone());
            let (Some(key), Some(state)) = (key, slot.state.take()) else {
                return Err(diverge(
                    format!("actor {id} made a random choice it was not offered"),
                    None,
                    None,
                ));
            };
            slot.randoms.remove(&key);
            slot.state = Some(node.step_random(actor_id, state, &random, &mut out));
            ActorModelAction::SelectRandom {
                actor: actor_id,
                key,
                random,
            }
        }
    };
    let after = slot.state.as_ref().map(node_digest);
    let model_outputs: Vec<TraceOutput<Timer, ()>> = out.iter().map(trace_output::<Node>).collect();
    if model_outputs != step.outputs || after != Some(step.digest) {
        return Err(diverge(
            format!("actor {id}'s step gave other outputs or another state than the model's"),
            Some(format!(
                "outputs {:?}, state digest {:#018x}",
                step.outputs, step.digest
            )),
            Some(format!(
                "outputs {out:?}, state digest {:#018x}",
                after.unwrap_or(0)
            )),
        ));
    }
    slot.steps += 1;
    let start = matches!(action, ActorModelAction::Recover(_));
    let action = ModelAction::Actor(action);
    let stutter = !start && out.is_empty() && after == before;
    if stutter {
        outcome.stutters += 1;
        return Ok(());
    }
    for command in out.iter() {
        match command {
            Command::Send(dst, msg) => {
                let key = envelope(id as u64, usize::from(*dst), msg);
                if scheduler.remaining.get(&key).is_some_and(|n| *n > 0) {
                    let deliveries = scheduler.remaining.remove(&key).unwrap_or(0);
                    *scheduler.in_flight.entry(key).or_default() += deliveries;
                    for waiter in scheduler.waiting.remove(&key).unwrap_or_default() {
                        scheduler.ready.push(Reverse((0, waiter)));
                    }
                }
            }
            Command::SetTimer(timer, _) => {
                slot.timers.insert(*timer);
            }
            Command::CancelTimer(timer) => {
                slot.timers.remove(timer);
            }
            Command::Save(storage) => slot.storage = Some(storage.clone()),
            Command::ChooseRandom(key, choices) => {
                if choices.is_empty() {
                    slot.randoms.remove(key);
                } else {
                    slot.randoms.insert(key.clone(), choices.clone());
                }
            }
        }
    }
    let applied = Applied {
        step: index,
        id,
        action: &action,
        lost_storage,
        out: &out,
    };
    observe(world, &applied, observers, index, &mut outcome.violations);
    Ok(())
}

/// The state of a node, for messages.
pub fn describe_state(state: &NodeState) -> String {
    let text = format!("{state:?}");
    if text.len() > 2000 {
        format!("{}... ({} bytes)", &text[..2000], text.len())
    } else {
        text
    }
}
