//! Loads a trace directory: the actors to rebuild, and for every actor its steps in order,
//! with the crash between two instances and the steps that a crash made void.
//!
//! A process killed with `kill -9` may have run steps whose storage never became durable;
//! their messages never left (the runtime sends only after the commit), so to everyone else
//! those steps never happened. The next instance's recovered storage tells how far the
//! previous one got: it must be the storage of one of its commits, at or after everything it
//! released. The steps after that commit are void, and are not replayed. Anything else (a
//! storage older than what was released, or one that no commit wrote) is a divergence.

use smr::trace::reader::{read_dir, Instance, Mark};
use smr::trace::{NodeDescription, NodeStep, TraceInput, TraceOutput};
use smr::{Msg, Node, Storage, Timer};
use spec::{digest_of, Digest};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// An instance of the trace of a [`Node`].
pub type NodeInstance = Instance<Msg, Timer, (), Storage>;

/// One event of one actor, in the actor's own order.
#[derive(Debug)]
pub enum Event {
    /// The actor's process died (before a restart).
    Crash,
    /// A recorded step.
    Step(NodeStep),
}

/// Everything the replay needs from a trace directory.
pub struct Loaded {
    /// The actors by id (`None`: an id nobody ran, a gap before the first client id).
    pub actors: Vec<Option<Node>>,
    /// Each actor's events in its own order.
    pub events: Vec<Vec<Event>>,
    /// Problems found before replaying (each a divergence of its own).
    pub problems: Vec<String>,
    /// Steps recorded, and steps voided by crashes.
    pub recorded_steps: u64,
    pub void_steps: u64,
    pub files: usize,
    pub bytes: u64,
    pub torn: Vec<PathBuf>,
}

/// The largest actor id a trace may use. The model indexes actors by id, so the runs it
/// replays number their clients densely after the replicas (as the tests and the benchmark
/// do); the `smr` command's clients pick random ids at or above 2^32, and a run they drive
/// cannot be replayed.
pub const MAX_ACTOR_ID: u64 = (1 << 20) - 1;

/// Reads `dir` and prepares the replay.
pub fn load(dir: &std::path::Path) -> Result<Loaded, String> {
    let set = read_dir::<Msg, Timer, (), Storage>(dir)?;
    if let Some(id) = set.actors.keys().find(|id| **id > MAX_ACTOR_ID) {
        return Err(format!(
            "actor id {id} is beyond {MAX_ACTOR_ID}: the model indexes actors by id, so conform replays runs whose clients are numbered densely after the replicas (tests, `bench --trace`); clients of the `smr` command pick random ids and their runs cannot be replayed"
        ));
    }
    let size = set.actors.keys().max().map_or(0, |max| *max as usize + 1);
    let mut loaded = Loaded {
        actors: vec![None; size],
        events: (0..size).map(|_| Vec::new()).collect(),
        problems: Vec::new(),
        recorded_steps: 0,
        void_steps: 0,
        files: set.files,
        bytes: set.bytes,
        torn: set.torn,
    };
    for (id, instances) in set.actors {
        let index = id as usize;
        let first = instances.first().expect("an id has an instance");
        let description =
            NodeDescription::decode(&first.actor).map_err(|e| format!("actor {id}: {e}"))?;
        if instances
            .iter()
            .any(|instance| instance.actor != first.actor)
        {
            loaded
                .problems
                .push(format!("actor {id}: its instances ran different actors"));
        }
        loaded.actors[index] = Some(
            description
                .build()
                .map_err(|e| format!("actor {id} ({}): {e}", first.file.display()))?,
        );
        let count = instances.len();
        let mut events = Vec::new();
        let mut instances = instances.into_iter().peekable();
        while let Some(instance) = instances.next() {
            loaded.recorded_steps += instance.steps.len() as u64;
            if let Some(problem) = released_before_durable(&instance) {
                loaded.problems.push(problem);
            }
            let keep = match instances.peek() {
                None => instance.steps.len(),
                Some(next) => match kept_steps(&instance, recovered(next)) {
                    Ok(keep) => keep,
                    Err(problem) => {
                        loaded.problems.push(problem);
                        instance.steps.len()
                    }
                },
            };
            loaded.void_steps += (instance.steps.len() - keep) as u64;
            events.extend(instance.steps.into_iter().take(keep).map(Event::Step));
            if instances.peek().is_some() {
                events.push(Event::Crash);
            }
        }
        debug_assert!(count > 0);
        loaded.events[index] = events;
    }
    Ok(loaded)
}

/// The storage an instance started from, if it starts with a start step.
fn recovered_by(instance: &NodeInstance) -> Option<Option<&Storage>> {
    recovered(instance)
}

/// The storage an instance started from, if it starts with a start step.
fn recovered(instance: &NodeInstance) -> Option<Option<&Storage>> {
    match instance.steps.first().map(|step| &step.input) {
        Some(TraceInput::Start { storage }) => Some(storage.as_ref()),
        _ => None,
    }
}

fn saves(step: &NodeStep) -> bool {
    step.outputs
        .iter()
        .any(|output| matches!(output, TraceOutput::Save))
}

/// How many of `instance`'s steps took effect, given the storage its successor recovered.
fn kept_steps(
    instance: &NodeInstance,
    recovered: Option<Option<&Storage>>,
) -> Result<usize, String> {
    let id = instance.id;
    let Some(recovered) = recovered else {
        return Err(format!(
            "actor {id}: an instance does not begin with a start step ({})",
            instance.file.display()
        ));
    };
    let released = instance.released() as usize;
    let Some(recovered) = recovered else {
        // A restart with no storage at all: nothing this instance did was durable.
        if instance.steps.iter().take(released).any(saves) {
            return Err(format!(
                "actor {id} restarted with no storage, but it had released steps that saved"
            ));
        }
        return Ok(released.max(first_save(instance)));
    };
    if recovered.is_lost() {
        // The successor started from a lost directory (`--recover`): what this instance saved
        // is gone, and what it sent stays sent. Its messages left once released, or, for a
        // group commit, as soon as its fsync returned, before the release was recorded: so the
        // steps up to its last commit may have been seen (a message the model keeps in flight
        // that nobody received is a lost one). The replay takes the loss as the model's
        // `LoseStorage`.
        let committed = instance
            .marks
            .iter()
            .filter_map(|mark| match mark {
                Mark::Commit { through, .. } => Some(*through as usize),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        return Ok(released.max(committed).max(first_save(instance)));
    }
    let wanted: Digest = digest_of(recovered);
    // Each commit covers the saving steps up to its `through`; a cut after step `p` leaves the
    // storage of the commit that covers the last saving step at or before `p`, provided that
    // commit's group has no later saving step at or before its `through`.
    let commits: Vec<(u64, Digest)> = instance
        .marks
        .iter()
        .filter_map(|mark| match mark {
            Mark::Commit { through, storage } => Some((*through, *storage)),
            _ => None,
        })
        .collect();
    // A cut before the first saving step leaves the storage this instance itself started from.
    let mut best: Option<usize> = match recovered_by(instance) {
        Some(own) if own.map(digest_of) == Some(wanted) => Some(first_save(instance)),
        _ => None,
    };
    for (index, (through, digest)) in commits.iter().enumerate() {
        if *digest != wanted {
            continue;
        }
        // The cut can be anywhere from this commit's `through` up to (not including) the next
        // saving step after it.
        let next_save = instance
            .steps
            .iter()
            .skip(*through as usize)
            .position(saves)
            .map_or(instance.steps.len(), |offset| *through as usize + offset);
        let _ = index;
        best = Some(best.map_or(next_save, |b: usize| b.max(next_save)));
    }
    match best {
        Some(cut) if cut >= released => Ok(cut),
        Some(cut) => Err(format!(
            "actor {id} restarted from storage that holds only its steps up to {cut}, but it had already released the messages of its steps up to {released}: a restart from stale storage"
        )),
        None => Err(format!(
            "actor {id} restarted from storage (digest {wanted:#018x}) that none of its {} recorded commits wrote: a restart from stale or foreign storage",
            commits.len()
        )),
    }
}

/// The number of steps before the instance's first saving step.
fn first_save(instance: &NodeInstance) -> usize {
    instance
        .steps
        .iter()
        .position(saves)
        .unwrap_or(instance.steps.len())
}

/// Checks the runtime's rule that a step's messages leave only after its storage is durable:
/// every release must follow the durability of every saving step it covers.
fn released_before_durable(instance: &NodeInstance) -> Option<String> {
    // In step order, so increasing.
    let saving: Vec<u64> = instance
        .steps
        .iter()
        .filter(|step| saves(step))
        .map(|step| step.seq)
        .collect();
    let mut durable = 0u64;
    for mark in &instance.marks {
        match *mark {
            Mark::Durable { through } => durable = durable.max(through),
            Mark::Released { through } => {
                // The last saving step the release covers must be durable already.
                let covered = saving.partition_point(|seq| *seq <= through);
                let last_save = covered.checked_sub(1).map(|index| saving[index]);
                if let Some(step) = last_save.filter(|step| *step > durable) {
                    return Some(format!(
                        "actor {}: the messages of steps up to {through} were released while step {step}'s storage was not yet durable (durable up to step {durable})",
                        instance.id
                    ));
                }
            }
            Mark::Commit { .. } => {}
        }
    }
    None
}

/// The steps of every actor, for the report.
pub fn steps_by_actor(loaded: &Loaded) -> BTreeMap<usize, usize> {
    loaded
        .events
        .iter()
        .enumerate()
        .map(|(id, events)| (id, events.len()))
        .filter(|(_, n)| *n > 0)
        .collect()
}
