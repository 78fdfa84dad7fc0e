//! Which protocol branches (`smr::marks`) the checks reach: a list of runs, each an exhaustive
//! check of a preset or a batch of random walks, and the marks each one hit. `model coverage`
//! prints the table; `model/tests/coverage.rs` runs the quick list and fails if a mark is hit
//! by none of its runs.

use crate::check::{self, CheckOptions, CheckReport, Strategy};
use crate::simulate::{self, Schedule, SimulateOptions};
use crate::{build, ModelConfig};
use smr::marks::{self, Mark};
use smr::Limits;
use std::time::Duration;

/// How a run explores.
#[derive(Clone, Debug)]
pub enum How {
    /// Every state within the bounds (depth first).
    Exhaustive,
    /// Random walks (see `simulate`).
    Walks {
        walks: u64,
        first_seed: u64,
        depth: usize,
        partitions: bool,
    },
}

/// One run of the coverage table.
#[derive(Clone, Debug)]
pub struct Run {
    pub name: String,
    pub cfg: ModelConfig,
    pub how: How,
}

/// Marks that no model run in the test's budget reaches, each with the step test that drives a
/// replica into its branch, asserts what the branch must do, and asserts the mark was hit.
pub const STEP_TESTED: &[(Mark, &str)] = &[(
    Mark::CatchUpConflictStepsDown,
    "impl/tests/replica_steps.rs a_leader_that_learns_another_decision_where_it_proposed_steps_down",
)];

/// What a run reached, and whether every property held in it.
#[derive(Clone, Debug)]
pub struct Reached {
    pub run: Run,
    pub marks: Vec<Mark>,
    pub report: CheckReport,
}

fn preset(name: &str) -> ModelConfig {
    ModelConfig::preset(name).expect("a known preset")
}

/// The runs the test makes (about a minute on two cores): a small exhaustive check of storage
/// loss with two elections, random walks of the `simulation` preset, and of the same with one
/// client so that walks go deep into elections and storage losses rather than into client
/// traffic.
pub fn quick_runs() -> Vec<Run> {
    vec![
        Run {
            // A candidate hears from a life of a replica that has since lost its storage and
            // begun to rebuild (proofs/RECOVERY.md, RC2): with 3 replicas, two elections and
            // one storage loss, exhaustively.
            name: "check --preset disk-loss --clients 0 --elections 2".into(),
            cfg: ModelConfig {
                clients: 0,
                elections: 2,
                ..preset("disk-loss")
            },
            how: How::Exhaustive,
        },
        Run {
            // A session table of one entry, filled and retired from (the preset's 61,553
            // states take about a second).
            name: "check --preset sessions".into(),
            cfg: preset("sessions"),
            how: How::Exhaustive,
        },
        Run {
            // With implicit sessions in an unbounded table, as the walks were before sessions
            // were bounded: walk 360 of these found a leader re-proposing a slot below its
            // executed prefix (proofs/SAFETY.md section 10).
            name: "simulation, implicit sessions: 400 walks".into(),
            cfg: ModelConfig {
                open_sessions: false,
                limits: Limits {
                    max_sessions: Limits::default().max_sessions,
                    ..preset("simulation").limits
                },
                ..preset("simulation")
            },
            how: How::Walks {
                walks: 400,
                first_seed: 0,
                depth: 3000,
                partitions: true,
            },
        },
        Run {
            // Sessions opened in a table of 2 for 3 clients (the administrator included).
            name: "simulation, 2 clients with 2 operations, 2 sessions: 3000 walks of 600 steps"
                .into(),
            cfg: ModelConfig {
                clients: 2,
                operations: 2,
                limits: Limits {
                    max_sessions: 2,
                    ..preset("simulation").limits
                },
                ..preset("simulation")
            },
            how: How::Walks {
                walks: 3000,
                first_seed: 0,
                depth: 600,
                partitions: true,
            },
        },
    ]
}

/// Every preset exhaustively, then the quick runs: the whole table (as long as all the presets
/// take together, see `proofs/SAFETY.md`).
pub fn full_runs() -> Vec<Run> {
    crate::PRESETS
        .iter()
        .filter(|p| p.name != "simulation" && p.name != "small")
        .map(|p| Run {
            name: format!("check --preset {}", p.name),
            cfg: (p.config)(),
            how: How::Exhaustive,
        })
        .chain(quick_runs())
        .collect()
}

/// Runs `run`, measuring the marks it hits. The marks are one set per process, so runs are
/// measured one after the other.
pub fn reach(run: &Run, threads: usize, timeout: Option<Duration>) -> Reached {
    smr::replica::invariants::check_always();
    let model = build(&run.cfg);
    let report = match &run.how {
        How::Exhaustive => check::run(
            model,
            &CheckOptions {
                strategy: Strategy::Dfs,
                threads,
                timeout,
                progress: None,
                symmetry: false,
            },
            &mut std::io::sink(),
        ),
        How::Walks {
            walks,
            first_seed,
            depth,
            partitions,
        } => {
            marks::reset();
            let simulation = simulate::simulate(
                &model,
                &SimulateOptions {
                    first_seed: *first_seed,
                    walks: Some(*walks),
                    max_depth: *depth,
                    threads,
                    timeout,
                    stop_at_violation: false,
                    schedule: Schedule {
                        partitions: *partitions,
                    },
                },
            );
            let mut report = simulate::report(&model, &simulation);
            report.marks = marks::hits();
            report
        }
    };
    Reached {
        run: run.clone(),
        marks: report.marks.clone(),
        report,
    }
}

/// The marks no run reached.
pub fn missed(reached: &[Reached]) -> Vec<Mark> {
    Mark::ALL
        .iter()
        .copied()
        .filter(|mark| !reached.iter().any(|r| r.marks.contains(mark)))
        .collect()
}

/// Prints the table: one row per mark, one column per run (numbered; the legend follows).
pub fn print_table(reached: &[Reached], out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let width = Mark::ALL.iter().map(|m| m.name().len()).max().unwrap_or(0);
    write!(out, "{:<width$} ", "mark")?;
    for index in 0..reached.len() {
        write!(out, "{:>3}", index + 1)?;
    }
    writeln!(out, "  runs")?;
    for mark in Mark::ALL {
        write!(out, "{:<width$} ", mark.name())?;
        let mut count = 0;
        for r in reached {
            let hit = r.marks.contains(mark);
            count += usize::from(hit);
            write!(out, "{:>3}", if hit { "x" } else { "." })?;
        }
        let note = match STEP_TESTED.iter().find(|(m, _)| m == mark) {
            Some((_, test)) if count == 0 => format!("  (step test: {test})"),
            _ if count == 0 => "  NOT REACHED".to_string(),
            _ => String::new(),
        };
        writeln!(out, "  {count}{note}")?;
    }
    writeln!(out)?;
    for (index, r) in reached.iter().enumerate() {
        writeln!(
            out,
            "{:>3}. {} ({}): {} marks, {} states ({} unique), {:.1}s, {}",
            index + 1,
            r.run.name,
            r.run.cfg,
            r.marks.len(),
            r.report.states,
            r.report.unique_states,
            r.report.elapsed.as_secs_f64(),
            if !r.report.passed() && matches!(r.run.how, How::Exhaustive) {
                "FAILED"
            } else if r
                .report
                .verdicts
                .iter()
                .any(|v| { matches!(v.outcome, check::Outcome::Violated { .. }) })
            {
                "VIOLATION"
            } else if r.report.exhaustive {
                "exhaustive, every property as expected"
            } else {
                "no violation"
            }
        )?;
    }
    let missed = missed(reached);
    writeln!(
        out,
        "\n{} of {} marks reached{}",
        Mark::ALL.len() - missed.len(),
        Mark::ALL.len(),
        if missed.is_empty() {
            String::new()
        } else {
            format!(
                "; not reached: {}",
                missed
                    .iter()
                    .map(|m| m.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    )
}
