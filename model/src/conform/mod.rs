//! Trace conformance: `model -- conform TRACE_DIR` shows that a real run is one of the
//! behaviours the model allows, with every safety property holding along it.
//!
//! - [`load`]: reads the traces, rebuilds the actors the processes ran, and works out which
//!   steps a crash voided.
//! - [`replay`]: merges the per-process traces into one causal order and replays it through
//!   the model's actors, checking that each step is enabled and gives the recorded outputs and
//!   state digest.
//! - [`world`]: the replayed model state, kept in place.
//! - [`shadow`]: the exact property check (the model's own properties on a stateright state).
//! - [`incremental`]: the property checks for long traces, each step in constant time.
//! - [`report`]: the verdicts.
//! - [`explore`]: the run in stateright's explorer, replayed through `ActorModel::next_state`.
//!
//! The model is [`conform_model`]: the actors the processes ran, the model's properties, and
//! the most permissive network (unordered, lossy, duplicating), with no bounds on crashes,
//! elections or anything else (the checker's bounds keep state spaces finite; a real run is one
//! path and needs none).

pub mod explore;
pub mod incremental;
pub mod load;
pub mod replay;
pub mod report;
pub mod shadow;
pub mod world;

use crate::{History, ModelConfig, SmrModel};
use smr::Node;
use stateright::actor::{ActorModel, LossyNetwork, Network};
use std::path::Path;
use std::time::Instant;

pub use report::Report;

/// How to check.
#[derive(Clone, Debug)]
pub struct Options {
    /// Evaluate the model's own properties on a full model state after every step (exact, but
    /// its cost grows with the trace) when the trace has at most this many steps...
    pub exact_limit: u64,
    /// ... and its clients submit at most this many operations in all: stateright's
    /// linearizability tester searches the whole client history again on every invocation and
    /// return, which is quick for the few hundred operations of a test and hopeless for a
    /// benchmark's hundreds of thousands.
    pub exact_operations: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            exact_limit: 50_000,
            exact_operations: 500,
        }
    }
}

/// The model a trace is replayed through: `actors` as the processes ran them (an id nobody
/// ran is a client with nothing to do), the model's properties for their cluster, the most
/// permissive network, no boundary.
pub fn conform_model(actors: Vec<Node>) -> SmrModel {
    // The model's history starts from the first configuration: its members (ids 0..n), the
    // spares after them, and the leader's window (the configuration's alpha).
    let replica = actors.iter().find_map(|node| match node {
        Node::Replica(replica) => Some(&replica.config),
        Node::Client(_) => None,
    });
    let cfg = match replica {
        // The faults a real run may have, so that the examples of each are reported when the
        // run shows them (the bounds themselves do not apply to a replay).
        Some(config) => ModelConfig {
            replicas: config.members.len(),
            spares: config.replicas.len().saturating_sub(config.members.len()),
            window: config.limits.window,
            storage_losses: 1,
            ..ModelConfig::default()
        },
        None => ModelConfig::default(),
    };
    // The same properties the checker uses, taken from the model it builds.
    let properties = crate::build(&cfg).properties;
    let crashes = actors.len();
    let actor_model = ActorModel::new(cfg.clone(), History::new(&cfg))
        .actors(actors)
        .init_network(Network::new_unordered_duplicating([]))
        .lossy_network(LossyNetwork::Yes)
        .max_crashes(crashes)
        .record_msg_out(History::record_out);
    let mut model = SmrModel::new(actor_model);
    model.properties = properties;
    model
}

/// An actor for an id that no process ran.
fn idle() -> Node {
    Node::Client(smr::Client {
        replicas: Vec::new(),
        ops: Vec::new(),
        max_attempts: 0,
        retry_timeout: std::time::Duration::ZERO..std::time::Duration::ZERO,
        delay_start: false,
        bug: None,
    })
}

/// Checks the traces in `dir`.
pub fn run(dir: &Path, options: &Options) -> Result<Report, String> {
    run_with(dir, options, &mut []).map(|(report, _)| report)
}

/// Replays the traces in `dir` through `model` for `observers` alone, without checks of its
/// own (the replay still stops at a step that diverges).
pub fn replay_dir(
    dir: &Path,
    model: &SmrModel,
    observers: &mut [&mut dyn replay::Observer],
) -> Result<replay::Outcome, String> {
    let loaded = load::load(dir)?;
    Ok(replay::replay(&model.actors, loaded.events, observers))
}

/// Checks the traces in `dir`, showing every replayed step to `extra` observers too; returns
/// the report and the model the run was replayed through.
pub fn run_with(
    dir: &Path,
    options: &Options,
    extra: &mut [&mut dyn replay::Observer],
) -> Result<(Report, SmrModel), String> {
    let started = Instant::now();
    let loaded = load::load(dir)?;
    let loaded_in = started.elapsed();
    let replicas = loaded
        .actors
        .iter()
        .filter(|node| matches!(node, Some(Node::Replica(_))))
        .count();
    let clients = loaded
        .actors
        .iter()
        .filter(|node| matches!(node, Some(Node::Client(_))))
        .count();
    let actors: Vec<Node> = loaded
        .actors
        .iter()
        .map(|node| node.clone().unwrap_or_else(idle))
        .collect();
    let model = conform_model(actors);
    let operations: usize = loaded
        .actors
        .iter()
        .map(|node| match node {
            Some(Node::Client(client)) => client.ops.len(),
            _ => 0,
        })
        .sum();
    let exact =
        loaded.recorded_steps <= options.exact_limit && operations <= options.exact_operations;
    let mut report = Report {
        dir: dir.to_path_buf(),
        files: loaded.files,
        bytes: loaded.bytes,
        torn: loaded.torn.clone(),
        replicas,
        clients,
        recorded_steps: loaded.recorded_steps,
        void_steps: loaded.void_steps,
        exact,
        problems: loaded.problems.clone(),
        ..Report::default()
    };
    let replay_started = Instant::now();
    let mut incremental = incremental::Incremental::new(&model);
    let mut shadow = exact.then(|| shadow::Shadow::new(&model));
    let mut observers: Vec<&mut dyn replay::Observer> = vec![&mut incremental];
    if let Some(shadow) = shadow.as_mut() {
        observers.push(shadow);
    }
    for observer in extra.iter_mut() {
        observers.push(&mut **observer);
    }
    let outcome = replay::replay(&model.actors, loaded.events, &mut observers);
    if let Some(shadow) = &shadow {
        report.examples = shadow.examples.clone();
    }
    report.properties = model
        .properties
        .iter()
        .filter(|p| p.expectation == stateright::Expectation::Always)
        .map(|p| p.name)
        .collect();
    if !exact {
        report.properties = incremental::PROPERTIES.to_vec();
    }
    report.load_time = loaded_in;
    report.replay_time = replay_started.elapsed();
    report.absorb(outcome);
    // The checkers borrow the model that goes back to the caller.
    drop(incremental);
    drop(shadow);
    Ok((report, model))
}
