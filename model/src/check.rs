//! Runs the model checker and turns its result into a verdict for every property.

use crate::properties::INVARIANTS;
use crate::{ModelAction, ModelConfig, ModelState, SmrModel};
use smr::marks::{self, Mark};
use stateright::{Checker, Expectation, HasDiscoveries, Model, Path};
use std::io::Write;
use std::time::{Duration, Instant};

/// Walks a simulation takes without a timeout.
pub const SIMULATION_WALKS: u64 = 10_000;
/// The longest walk of a simulation.
pub const SIMULATION_DEPTH: usize = 2_000;

/// How the state space is searched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Breadth first: shortest counterexamples (single-threaded), most memory.
    Bfs,
    /// Depth first: least memory.
    Dfs,
    /// Random walks from the initial state, with a seed; never exhaustive.
    Simulation { seed: u64 },
}

impl Strategy {
    pub const NAMES: &'static [&'static str] = &["bfs", "dfs", "simulation"];
}

/// Options of one check run.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    pub strategy: Strategy,
    pub threads: usize,
    pub timeout: Option<Duration>,
    /// Print a progress line this often (`None`: quiet).
    pub progress: Option<Duration>,
    /// Symmetry reduction over the interchangeable replicas (`crate::symmetry`; depth first
    /// only).
    pub symmetry: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            strategy: Strategy::Dfs,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            timeout: None,
            progress: None,
            symmetry: false,
        }
    }
}

/// The outcome for one property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An Always property held in every state explored, and every state was explored.
    Holds,
    /// An Always property held in every state explored, but the search was not exhaustive.
    NotRefuted,
    /// An Always property failed. `explanation` says how, `actions` is the path.
    Violated {
        explanation: String,
        actions: Vec<String>,
        encoded: String,
    },
    /// A Sometimes property has an example.
    Found { depth: usize, encoded: String },
    /// A Sometimes property has no example in the explored states.
    Missing,
}

/// The verdict for one property.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub name: &'static str,
    pub expectation: Expectation,
    pub outcome: Outcome,
}

impl Verdict {
    /// Whether this verdict makes the check fail.
    pub fn is_failure(&self) -> bool {
        matches!(self.outcome, Outcome::Violated { .. } | Outcome::Missing)
    }
}

/// What a check run found.
#[derive(Clone, Debug)]
pub struct CheckReport {
    pub states: usize,
    pub unique_states: usize,
    pub max_depth: usize,
    pub elapsed: Duration,
    /// Whether every reachable state within the bounds was explored.
    pub exhaustive: bool,
    pub verdicts: Vec<Verdict>,
    /// The protocol branches the run reached (`smr::marks`).
    pub marks: Vec<Mark>,
}

impl CheckReport {
    /// Whether every property has its expected outcome.
    pub fn passed(&self) -> bool {
        !self.verdicts.iter().any(Verdict::is_failure)
    }

    /// The verdict for `name`.
    pub fn verdict(&self, name: &str) -> Option<&Verdict> {
        self.verdicts.iter().find(|v| v.name == name)
    }

    /// States per second, over the whole run.
    pub fn states_per_second(&self) -> f64 {
        self.states as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Checks `model`, printing progress to `progress_out` if asked to.
pub fn run(model: SmrModel, options: &CheckOptions, progress_out: &mut dyn Write) -> CheckReport {
    // The marks are one set per process: a run measures its own.
    marks::reset();
    let mut report = search(model, options, progress_out);
    report.marks = marks::hits();
    report
}

fn search(model: SmrModel, options: &CheckOptions, progress_out: &mut dyn Write) -> CheckReport {
    if let Strategy::Simulation { seed } = options.strategy {
        // Seeded random walks of our own (see `simulate` for why not stateright's).
        let simulation = crate::simulate::simulate(
            &model,
            &crate::simulate::SimulateOptions {
                first_seed: seed,
                walks: options.timeout.is_none().then_some(SIMULATION_WALKS),
                max_depth: SIMULATION_DEPTH,
                threads: options.threads,
                timeout: options.timeout,
                stop_at_violation: true,
                schedule: Default::default(),
            },
        );
        let _ = writeln!(
            progress_out,
            "  {} walks from seed {seed} (at most {SIMULATION_DEPTH} steps each)",
            simulation.walks
        );
        return crate::simulate::report(&model, &simulation);
    }
    // A preset may ask for the reduction itself (`ModelConfig::symmetry`); it gets it only where
    // the bounds keep the renamed replicas interchangeable (a caller may have added a seeded bug
    // or a crash to such a preset). An explicit request must be sound: the CLI refuses it first.
    let applies = crate::symmetry::applies(&model.cfg);
    if options.symmetry {
        if let Err(why) = &applies {
            panic!("symmetry reduction requested where it is unsound: {why}");
        }
    }
    let model_symmetry = model.cfg.symmetry && applies.is_ok() && options.strategy == Strategy::Dfs;
    let mut builder = model
        .checker()
        .threads(options.threads.max(1))
        // Stop at the first violation: one counterexample is what a user needs.
        .finish_when(HasDiscoveries::AnyFailures);
    if let Some(timeout) = options.timeout {
        builder = builder.timeout(timeout);
    }
    if options.symmetry || model_symmetry {
        builder = builder.symmetry_fn(crate::symmetry::representative);
    }
    let start = Instant::now();
    let checker: Box<dyn Checker<SmrModel>> = match options.strategy {
        Strategy::Bfs => Box::new(builder.spawn_bfs()),
        Strategy::Dfs => Box::new(builder.spawn_dfs()),
        Strategy::Simulation { .. } => unreachable!("simulated above"),
    };
    let mut last_states = 0;
    let mut last_time = start;
    while !checker.is_done() {
        std::thread::sleep(Duration::from_millis(100));
        if let Some(interval) = options.progress {
            if last_time.elapsed() >= interval {
                let states = checker.state_count();
                let rate = (states - last_states) as f64 / last_time.elapsed().as_secs_f64();
                let _ = writeln!(
                    progress_out,
                    "  {:>6.1}s  states={} unique={} depth={} ({:.0} states/s)",
                    start.elapsed().as_secs_f64(),
                    states,
                    checker.unique_state_count(),
                    checker.max_depth(),
                    rate
                );
                last_states = states;
                last_time = Instant::now();
            }
        }
    }
    let mut checker = checker;
    for handle in checker.handles() {
        handle.join().expect("a checker thread panicked");
    }
    let elapsed = start.elapsed();
    let timed_out = options.timeout.is_some_and(|t| elapsed >= t);
    let discoveries = checker.discoveries();
    let model = checker.model();
    let any_violation = model
        .properties()
        .iter()
        .any(|p| p.expectation != Expectation::Sometimes && discoveries.contains_key(p.name));
    let exhaustive =
        !timed_out && !any_violation && !matches!(options.strategy, Strategy::Simulation { .. });

    let verdicts = model
        .properties()
        .into_iter()
        .map(|property| {
            let outcome = match (property.expectation.clone(), discoveries.get(property.name)) {
                (Expectation::Sometimes, Some(path)) => Outcome::Found {
                    depth: path.clone().into_actions().len(),
                    encoded: path.encode(model),
                },
                (Expectation::Sometimes, None) => Outcome::Missing,
                (_, Some(path)) => violation(model, property.name, path),
                (_, None) if exhaustive => Outcome::Holds,
                (_, None) => Outcome::NotRefuted,
            };
            Verdict {
                name: property.name,
                expectation: property.expectation,
                outcome,
            }
        })
        .collect();
    CheckReport {
        states: checker.state_count(),
        unique_states: checker.unique_state_count(),
        max_depth: checker.max_depth(),
        elapsed,
        exhaustive,
        verdicts,
        marks: Vec::new(),
    }
}

fn violation(model: &SmrModel, name: &str, path: &Path<ModelState, ModelAction>) -> Outcome {
    let explanation = INVARIANTS
        .iter()
        .find(|invariant| invariant.name == name)
        .and_then(|invariant| (invariant.check)(model, path.last_state()).err())
        .unwrap_or_else(|| format!("{name} does not hold in the last state"));
    Outcome::Violated {
        explanation,
        actions: path
            .clone()
            .into_actions()
            .iter()
            .map(|action| model.format_action(action))
            .collect(),
        encoded: path.encode(model),
    }
}

/// Prints a report the way `check` shows it.
pub fn print_report(
    cfg: &ModelConfig,
    report: &CheckReport,
    explore_hint: &str,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{} after {:.1}s: states={} unique={} max-depth={} ({:.0} states/s)",
        if report.exhaustive {
            "Explored every state"
        } else {
            "Stopped"
        },
        report.elapsed.as_secs_f64(),
        report.states,
        report.unique_states,
        report.max_depth,
        report.states_per_second()
    )?;
    writeln!(out, "Bounds: {cfg}")?;
    writeln!(out, "Properties:")?;
    for verdict in &report.verdicts {
        let kind = match verdict.expectation {
            Expectation::Always => "always",
            Expectation::Sometimes => "sometimes",
            Expectation::Eventually => "eventually",
        };
        let text = match &verdict.outcome {
            Outcome::Holds => "holds in every reachable state".to_string(),
            Outcome::NotRefuted => {
                "no violation in the states explored (not exhaustive)".to_string()
            }
            Outcome::Violated { explanation, .. } => format!("VIOLATED: {explanation}"),
            Outcome::Found { depth, .. } => format!("example found ({depth} steps)"),
            Outcome::Missing => "NO EXAMPLE: the model never shows this".to_string(),
        };
        writeln!(out, "  {:<9} {:<40} {}", kind, verdict.name, text)?;
    }
    let missed: Vec<&str> = Mark::ALL
        .iter()
        .filter(|mark| !report.marks.contains(mark))
        .map(|mark| mark.name())
        .collect();
    writeln!(
        out,
        "Coverage: {} of {} protocol branches reached{}",
        report.marks.len(),
        Mark::ALL.len(),
        if missed.is_empty() {
            String::new()
        } else {
            format!("; not reached: {}", missed.join(", "))
        }
    )?;
    for verdict in &report.verdicts {
        if let Outcome::Violated {
            explanation,
            actions,
            encoded,
        } = &verdict.outcome
        {
            writeln!(out)?;
            writeln!(
                out,
                "Counterexample for \"{}\" ({} steps):",
                verdict.name,
                actions.len()
            )?;
            for (i, action) in actions.iter().enumerate() {
                writeln!(out, "  {:>3}. {action}", i + 1)?;
            }
            writeln!(out, "  => {explanation}")?;
            writeln!(out, "Open it in the explorer:")?;
            writeln!(out, "  {explore_hint}")?;
            writeln!(out, "  then http://localhost:3000/#/steps/{encoded}")?;
        }
    }
    Ok(())
}
