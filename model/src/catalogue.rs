//! The catalogue of seeded protocol bugs: for each bug, the smallest bounds we found under which
//! the model checker catches it, and the property whose violation shows it (`proofs/BUGS.md`
//! explains each one).
//!
//! A bug is *caught* when a breadth-first search of the model with the bug switched on finds a
//! state that violates the row's property. The search is single-threaded, so the counterexample
//! it finds, and the number of states it takes, are the same on every run. Breadth-first search
//! finds short counterexamples, which are the easiest to read (stateright's BFS hands work out in
//! blocks, so the path is not always the very shortest one).
//!
//! A *control* run then explores the same bounds without the bug, to the depth of the
//! counterexample, and must find no violation of the same properties: the bug, not the bounds
//! or a fault of the correct protocol, is what the counterexample shows.
//!
//! To add a bug, add one row to [`CATALOGUE`]. The test `model/tests/seeded_bugs.rs` runs every
//! row and refuses a bug of [`SeededBug::ALL`] without one; `model bugs` prints the measurements.
//!
//! This file uses only the public API of the `model` library, and is compiled into both the
//! `model` binary (`mod catalogue`) and the test (`#[path]`), so the library itself carries no
//! code that exists only for the catalogue.

use model::properties::INVARIANTS;
use model::{build, ModelConfig, ModelState, SmrModel};
use smr::SeededBug;
use stateright::{Checker, Expectation, HasDiscoveries, Model, Path};
use std::io::Write;
use std::time::{Duration, Instant};

/// One bug, the bounds that catch it, and what it breaks.
pub struct Row {
    pub bug: SeededBug,
    /// The name of the Always property (one of [`INVARIANTS`]) that the counterexample violates.
    pub property: &'static str,
    /// Check only `property`. Used for rows that show a consequence of a bug beyond the
    /// property that trips first (for example the agreement violation that follows a
    /// durability violation); a primary row checks every property and expects its own among
    /// those violated in the first bad state found.
    pub only: bool,
    /// The bounds, without the bug (the runner switches it on).
    pub bounds: fn() -> ModelConfig,
}

fn preset(name: &str) -> ModelConfig {
    ModelConfig::preset(name).expect("a catalogue row names a known preset")
}

/// The catalogue, one row per bug, primary rows first in the order of [`SeededBug::ALL`].
pub const CATALOGUE: &[Row] = &[
    Row {
        bug: SeededBug::QuorumHalf,
        property: "agreement",
        only: false,
        bounds: || preset("small"),
    },
    Row {
        bug: SeededBug::AcceptLowerBallot,
        property: "durability",
        only: false,
        bounds: || ModelConfig {
            elections: 1,
            ..preset("small")
        },
    },
    Row {
        bug: SeededBug::IgnorePromisedValues,
        property: "agreement",
        only: false,
        bounds: || ModelConfig {
            elections: 1,
            ..preset("small")
        },
    },
    Row {
        // Two elections after the bootstrap ballot: the third leader sees values of two
        // different ballots for the same slot. The checkpoint command fills the second slot of
        // the window, so that one client suffices.
        bug: SeededBug::AdoptLowestBallot,
        property: "agreement",
        only: false,
        bounds: || ModelConfig {
            clients: 1,
            crashes: 0,
            elections: 2,
            window: 2,
            ..preset("checkpoint")
        },
    },
    Row {
        bug: SeededBug::PromiseNotPersisted,
        property: "agreement",
        only: false,
        bounds: || ModelConfig {
            clients: 1,
            elections: 1,
            window: 2,
            ..preset("checkpoint")
        },
    },
    Row {
        bug: SeededBug::AcceptNotPersisted,
        property: "durability",
        only: false,
        bounds: || ModelConfig {
            clients: 1,
            ..preset("small")
        },
    },
    Row {
        bug: SeededBug::SessionNotConsulted,
        property: "exactly-once",
        only: false,
        bounds: || ModelConfig {
            max_attempts: 2,
            ..preset("small")
        },
    },
    Row {
        bug: SeededBug::ReplyBeforeExecute,
        property: "durability",
        only: false,
        bounds: || preset("small"),
    },
    Row {
        // A gap needs two slots in flight: two clients at once.
        bug: SeededBug::GapsNotFilled,
        property: "agreement",
        only: false,
        bounds: || ModelConfig {
            elections: 1,
            window: 2,
            staggered: false,
            ..preset("small")
        },
    },
    Row {
        bug: SeededBug::TruncateBeforeStable,
        property: "checkpoint safety",
        only: false,
        bounds: || ModelConfig {
            clients: 1,
            crashes: 0,
            elections: 0,
            ..preset("checkpoint")
        },
    },
    Row {
        // A restarted replica asks for the log, which the others truncated: it gets a snapshot.
        bug: SeededBug::SnapshotWithoutSessions,
        property: "prefix execution",
        only: false,
        bounds: || ModelConfig {
            clients: 1,
            operations: 2,
            elections: 0,
            ..preset("checkpoint")
        },
    },
    Row {
        // The second operation puts an accepted value above the truncation point, so the
        // deceived candidate has slots to fill below it.
        bug: SeededBug::PromiseWithoutLogStart,
        property: "agreement",
        only: false,
        bounds: || ModelConfig {
            clients: 1,
            operations: 2,
            crashes: 0,
            elections: 1,
            ..preset("checkpoint")
        },
    },
    Row {
        bug: SeededBug::JoinerVotesEarly,
        property: "reconfiguration safety",
        only: false,
        bounds: || ModelConfig {
            crashes: 0,
            ..preset("join")
        },
    },
    Row {
        // A window of 2 (so α = 2) leaves a slot between the JOIN's decision and the slot it
        // governs from; the second client's request is proposed there.
        bug: SeededBug::OldQuorumForNewConfig,
        property: "reconfiguration safety",
        only: false,
        bounds: || ModelConfig {
            clients: 2,
            crashes: 0,
            window: 2,
            ..preset("join")
        },
    },
    Row {
        // With α = 2 the JOIN is decided while the QUIT before it is still pending.
        bug: SeededBug::ConcurrentReconfig,
        property: "reconfiguration safety",
        only: false,
        bounds: || ModelConfig {
            crashes: 0,
            window: 2,
            ..preset("quit-join")
        },
    },
    Row {
        // The replica that lost its storage restarts as a brand-new one: it promises the
        // bootstrap ballot again, so its vote (or, for replica 0, its leadership) counts a
        // forgotten quorum. No election needed.
        bug: SeededBug::VoteAfterDiskLoss,
        property: "durability",
        only: false,
        bounds: || ModelConfig {
            elections: 0,
            ..preset("disk-loss")
        },
    },
    Row {
        // With 3 replicas the rebuilding replica and one other make a quorum: the one other
        // may be the one that missed the acknowledged write.
        bug: SeededBug::RebuildCountsItself,
        property: "durability",
        only: false,
        bounds: || preset("disk-loss"),
    },
    Row {
        // The read's answer names a slot where nobody holds it: durability (which counts every
        // answered request) trips first; the consequence row shows the stale read.
        bug: SeededBug::StaleLocalRead,
        property: "durability",
        only: false,
        bounds: || ModelConfig {
            elections: 1,
            ..preset("small")
        },
    },
    Row {
        // A retry gets two answers; the second arrives while the next request is in flight.
        bug: SeededBug::ClientTakesStaleReply,
        property: "linearizability",
        only: false,
        bounds: || ModelConfig {
            clients: 1,
            operations: 2,
            max_attempts: 2,
            ..preset("small")
        },
    },
    Row {
        // The bootstrap leader re-proposes the put in the election's new ballot; replica 0 had
        // accepted it in the first ballot and keeps that entry. Counting holders at any ballot,
        // it would pass for durable at 2 of 3.
        bug: SeededBug::AcceptKeepsOlderBallot,
        property: "durability",
        only: false,
        bounds: || ModelConfig {
            elections: 1,
            ..preset("small")
        },
    },
    Row {
        // Two clients at once: slot 1 is proposed, and chosen, before slot 0 is decided, so
        // its configuration is not yet fixed. Only the reconfiguration property sees it.
        bug: SeededBug::ProposeBeyondWindow,
        property: "reconfiguration safety",
        only: false,
        bounds: || ModelConfig {
            staggered: false,
            ..preset("small")
        },
    },
    Row {
        // The state after the CHECKPOINT command at slot 1 equals the state after slot 1 in
        // everything but the slot count, which the digest covers.
        bug: SeededBug::CheckpointLabelOffByOne,
        property: "checkpoint safety",
        only: false,
        bounds: || ModelConfig {
            clients: 1,
            crashes: 0,
            ..preset("checkpoint")
        },
    },
    Row {
        // The restarted bootstrap leader proposes the get at slot 0 in the ballot where the put
        // was chosen there: two values in one ballot, reported at the second Accept.
        bug: SeededBug::ReuseBallotAfterRestart,
        property: "agreement",
        only: false,
        bounds: || ModelConfig {
            crashes: 1,
            ..preset("small")
        },
    },
    Row {
        // With α = 3 the JOIN decided at slot 0 governs slots from 3; the joiner installs the
        // state, executes the checkpoint command at slot 1 and votes for the checkpoint at 2,
        // where it is not a member yet. The leader truncates on its vote and its own.
        bug: SeededBug::CheckpointVotesFromNonMembers,
        property: "checkpoint safety",
        only: false,
        bounds: || ModelConfig {
            crashes: 0,
            window: 3,
            checkpoint_interval: Some(2),
            ..preset("join")
        },
    },
    Row {
        // Client 1's put is applied; client 2's opening retires client 1's session; client
        // 1's retry of the put is decided again and, taken for a new client's request, applied
        // a second time.
        bug: SeededBug::RetiredSessionReexecutes,
        property: "exactly-once",
        only: false,
        bounds: || preset("sessions"),
    },
    Row {
        // Replica 2 loses its storage after the log was truncated at checkpoint 2, and the
        // leader offers it that checkpoint (its first chunk, lent to replica 2). The leader
        // then executes the next CHECKPOINT; replica 2 asks for the second chunk of checkpoint
        // 2 and, with the bug, gets the bytes of checkpoint 4 at that offset. The snapshot it
        // assembles is not the one announced.
        bug: SeededBug::TransferResumesFromWrongChunk,
        property: "audit digests agree",
        only: false,
        bounds: || ModelConfig {
            crashes: 0,
            storage_losses: 1,
            ..preset("transfer")
        },
    },
    // --- Consequences: what a bug leads to beyond the property it trips first. ---
    Row {
        bug: SeededBug::AcceptLowerBallot,
        property: "agreement",
        only: true,
        bounds: || ModelConfig {
            elections: 1,
            ..preset("small")
        },
    },
    Row {
        bug: SeededBug::AcceptNotPersisted,
        property: "agreement",
        only: true,
        bounds: || ModelConfig {
            clients: 1,
            elections: 1,
            window: 2,
            ..preset("checkpoint")
        },
    },
    Row {
        // The rebuilt-by-bootstrap replica 0 leads the first ballot again and proposes new
        // values at slots already chosen.
        bug: SeededBug::VoteAfterDiskLoss,
        property: "agreement",
        only: true,
        bounds: || ModelConfig {
            elections: 0,
            ..preset("disk-loss")
        },
    },
    Row {
        bug: SeededBug::RebuildCountsItself,
        property: "agreement",
        only: true,
        bounds: || preset("disk-loss"),
    },
    Row {
        // The get follows the put in real time (staggered clients) and reaches a replica that
        // still believes it leads, deposed before the put was decided.
        bug: SeededBug::StaleLocalRead,
        property: "linearizability",
        only: true,
        bounds: || ModelConfig {
            elections: 1,
            ..preset("small")
        },
    },
    Row {
        // The client's read is proposed while its acknowledged write is still undecided (a
        // window of 2), and answered from a state without the write.
        bug: SeededBug::ReplyBeforeExecute,
        property: "linearizability",
        only: true,
        bounds: || ModelConfig {
            clients: 1,
            operations: 2,
            window: 2,
            ..preset("small")
        },
    },
    Row {
        // The answer names a slot that is not chosen yet: exactly-once judges every reply when
        // it is sent, where it used to wait for the reference to reach the slot (and then found
        // the request there, as the bug's answers are right, only early).
        bug: SeededBug::ReplyBeforeExecute,
        property: "exactly-once",
        only: true,
        bounds: || ModelConfig {
            clients: 1,
            ..preset("small")
        },
    },
];

/// One breadth-first search on one thread, stopped at the first violation of an Always
/// property. (`model::check::run` polls the checker every 100 ms, which would round every time
/// below up to a tenth of a second; joining the checker measures it exactly.)
struct Search {
    unique_states: usize,
    elapsed: Duration,
    /// Violated Always properties, each with its counterexample.
    violations: Vec<(&'static str, Path<ModelState, Action>)>,
}

type Action = <SmrModel as Model>::Action;

fn search(model: &SmrModel, depth: Option<usize>) -> Search {
    let always: Vec<&'static str> = model
        .properties()
        .iter()
        .filter(|p| p.expectation == Expectation::Always)
        .map(|p| p.name)
        .collect();
    let start = Instant::now();
    let mut builder = model
        .clone()
        .checker()
        .threads(1)
        .finish_when(HasDiscoveries::AnyFailures);
    if let Some(depth) = depth {
        // The initial state has depth 1, and the checker skips states at the target depth, so
        // `depth + 2` checks every state reached by `depth` actions.
        builder = builder.target_max_depth(depth + 2);
    }
    let checker = builder.spawn_bfs().join();
    let elapsed = start.elapsed();
    let mut discoveries = checker.discoveries();
    let violations = always
        .into_iter()
        .filter_map(|name| discoveries.remove(name).map(|path| (name, path)))
        .collect();
    Search {
        unique_states: checker.unique_state_count(),
        elapsed,
        violations,
    }
}

/// A counterexample, as the catalogue shows it.
pub struct Violation {
    /// The actions of the path, formatted.
    pub actions: Vec<String>,
    /// Why the property fails in the path's last state.
    pub explanation: String,
    /// The path as stateright's explorer encodes it (`/#/steps/<encoded>`).
    pub encoded: String,
}

/// Cuts `path` at the first state that violates `property`. The checker keeps, for each
/// property, the last violating state of the block of states in which it found the first one,
/// and that state may lie a few irrelevant steps (a client's timer, say) past the violation.
fn trim(model: &SmrModel, property: &str, path: Path<ModelState, Action>) -> Violation {
    let check = INVARIANTS
        .iter()
        .find(|invariant| invariant.name == property)
        .expect("a validated row names an invariant")
        .check;
    let steps = path.into_vec();
    let first_bad = steps
        .iter()
        .position(|(state, _)| check(model, state).is_err())
        .unwrap_or(steps.len() - 1);
    let explanation = check(model, &steps[first_bad].0).err().unwrap_or_default();
    let init = steps[0].0.clone();
    let actions: Vec<Action> = steps[..first_bad]
        .iter()
        .filter_map(|(_, action)| action.clone())
        .collect();
    let encoded = Path::from_actions(model, init, &actions)
        .expect("a prefix of a path is a path")
        .encode(model);
    Violation {
        actions: actions.iter().map(|a| model.format_action(a)).collect(),
        explanation,
        encoded,
    }
}

/// A catalogue row run: the bug's search, and what the row expects of it.
pub struct Catch {
    pub cfg: ModelConfig,
    /// Unique states explored until the counterexample (or in all, if none was found).
    pub unique_states: usize,
    /// Time to the counterexample.
    pub elapsed: Duration,
    /// Names of the Always properties violated when the search stopped.
    pub violated: Vec<&'static str>,
    /// The counterexample of the row's property, if it is violated.
    pub counterexample: Option<Violation>,
}

impl Catch {
    /// Whether the row's property is among those violated.
    pub fn caught(&self) -> bool {
        self.counterexample.is_some()
    }

    /// Actions on the counterexample path (0 if not caught).
    pub fn path_length(&self) -> usize {
        self.counterexample.as_ref().map_or(0, |c| c.actions.len())
    }
}

/// The outcome of a search bounded by depth: the control run without the bug, or the search
/// for a shorter counterexample with it.
pub struct Bounded {
    /// The depth explored, in actions.
    pub depth: usize,
    pub unique_states: usize,
    pub elapsed: Duration,
    /// Properties violated (of those the row checks).
    pub violated: Vec<&'static str>,
}

/// The row's bounds with its bug switched on.
pub fn bugged_config(row: &Row) -> ModelConfig {
    ModelConfig {
        bug: Some(row.bug),
        ..(row.bounds)()
    }
}

/// Builds the model for `cfg`, keeping only the row's property if the row says so.
fn model_for(row: &Row, cfg: &ModelConfig) -> SmrModel {
    let mut model = build(cfg);
    if row.only {
        model.properties.retain(|p| p.name == row.property);
    }
    model
}

/// Checks that the row names a real property and valid bounds.
pub fn validate(row: &Row) -> Result<(), String> {
    if !INVARIANTS.iter().any(|i| i.name == row.property) {
        return Err(format!(
            "{}: {:?} is not an Always property of the model",
            row.bug.name(),
            row.property
        ));
    }
    bugged_config(row).validate()
}

fn caught_in(row: &Row, model: &SmrModel, search: Search, cfg: ModelConfig) -> Catch {
    let violated = search.violations.iter().map(|(name, _)| *name).collect();
    let counterexample = search
        .violations
        .into_iter()
        .find(|(name, _)| *name == row.property)
        .map(|(name, path)| trim(model, name, path));
    Catch {
        cfg,
        unique_states: search.unique_states,
        elapsed: search.elapsed,
        violated,
        counterexample,
    }
}

/// Runs the checker on the row's bounds with its bug on until the first violation (or until
/// every state is explored, if the bug is not caught).
pub fn catch(row: &Row) -> Result<Catch, String> {
    validate(row)?;
    let cfg = bugged_config(row);
    let model = model_for(row, &cfg);
    let search = search(&model, None);
    Ok(caught_in(row, &model, search, cfg))
}

/// With the bug on, searches every state reached by fewer actions than `catch`'s
/// counterexample, and again below any shorter one found, until none is: the result is a
/// counterexample of the fewest actions there are within the bounds.
pub fn shortest(row: &Row, catch: Catch) -> (Catch, Vec<Bounded>) {
    let mut catch = catch;
    let mut runs = Vec::new();
    let model = model_for(row, &catch.cfg);
    while catch.path_length() > 0 {
        let depth = catch.path_length() - 1;
        let search = search(&model, Some(depth));
        runs.push(Bounded {
            depth,
            unique_states: search.unique_states,
            elapsed: search.elapsed,
            violated: search.violations.iter().map(|(name, _)| *name).collect(),
        });
        let shorter = caught_in(row, &model, search, catch.cfg.clone());
        if !shorter.caught() {
            break;
        }
        catch = Catch {
            // The time and states to the first counterexample stay those of the first search.
            unique_states: catch.unique_states,
            elapsed: catch.elapsed,
            ..shorter
        };
    }
    (catch, runs)
}

/// Explores the row's bounds without the bug, every state up to `depth` actions deep, and
/// reports the Always properties (of those the row checks) that fail there.
pub fn control(row: &Row, depth: usize) -> Bounded {
    let search = search(&model_for(row, &(row.bounds)()), Some(depth));
    Bounded {
        depth,
        unique_states: search.unique_states,
        elapsed: search.elapsed,
        violated: search.violations.iter().map(|(name, _)| *name).collect(),
    }
}

/// Runs the catalogue rows whose bug is in `only` (all if empty), printing one line per row:
/// the time and unique states to the first counterexample and its length; unless `quick`, the
/// length of the shortest counterexample and the time it took to establish it, and the control
/// run without the bug. With `verbose`, prints each counterexample too. Returns whether every row
/// was caught and every control was clean.
pub fn run_all(
    only: &[SeededBug],
    quick: bool,
    verbose: bool,
    out: &mut dyn Write,
) -> std::io::Result<bool> {
    let mut all_good = true;
    let start = Instant::now();
    writeln!(
        out,
        "{:<26} {:<22} {:>7} {:>8} {:>5} {:>15}  control without the bug",
        "bug", "property", "time", "states", "steps", "shortest"
    )?;
    for row in CATALOGUE
        .iter()
        .filter(|row| only.is_empty() || only.contains(&row.bug))
    {
        let label = if row.only {
            format!("{} (only)", row.property)
        } else {
            row.property.to_string()
        };
        write!(out, "{:<26} {:<22} ", row.bug.name(), label)?;
        let catch = match catch(row) {
            Ok(catch) => catch,
            Err(error) => {
                writeln!(out, "error: {error}")?;
                all_good = false;
                continue;
            }
        };
        if !catch.caught() {
            all_good = false;
            writeln!(
                out,
                "NOT CAUGHT: {} states in {:.1}s, violated {:?}",
                catch.unique_states,
                catch.elapsed.as_secs_f64(),
                catch.violated
            )?;
            continue;
        }
        write!(
            out,
            "{:>6.2}s {:>8} {:>5} ",
            catch.elapsed.as_secs_f64(),
            catch.unique_states,
            catch.path_length()
        )?;
        let catch = if quick {
            writeln!(out)?;
            catch
        } else {
            let (shortest, runs) = shortest(row, catch);
            let time: f64 = runs.iter().map(|run| run.elapsed.as_secs_f64()).sum();
            write!(out, "{:>5} ({:>6.2}s)  ", shortest.path_length(), time)?;
            let control = control(row, shortest.path_length());
            if control.violated.is_empty() {
                writeln!(
                    out,
                    "clean to depth {} ({} states, {:.2}s)",
                    control.depth,
                    control.unique_states,
                    control.elapsed.as_secs_f64()
                )?;
            } else {
                all_good = false;
                writeln!(out, "FAILS WITHOUT THE BUG: {:?}", control.violated)?;
            }
            shortest
        };
        if verbose {
            if let Some(args) = catch.cfg.command_line() {
                // `check` evaluates every property, so for a consequence row it stops at the
                // property that the bug trips first.
                let which = if row.only {
                    " (stops at the first property violated)"
                } else {
                    ""
                };
                writeln!(
                    out,
                    "    reproduce{which}: cargo run --release -p model --features seeded-bugs -- check {args} --checker bfs --threads 1"
                )?;
            }
            if let Some(counterexample) = &catch.counterexample {
                for (i, action) in counterexample.actions.iter().enumerate() {
                    writeln!(out, "    {:>3}. {action}", i + 1)?;
                }
                writeln!(out, "    => {}", counterexample.explanation)?;
                writeln!(
                    out,
                    "    explorer: http://localhost:3000/#/steps/{}",
                    counterexample.encoded
                )?;
            }
        }
    }
    writeln!(out, "total {:.1}s", start.elapsed().as_secs_f64())?;
    Ok(all_good)
}

/// Whether every bug of [`SeededBug::ALL`] has a primary row.
pub fn missing_rows() -> Vec<SeededBug> {
    SeededBug::ALL
        .iter()
        .copied()
        .filter(|bug| !CATALOGUE.iter().any(|row| row.bug == *bug && !row.only))
        .collect()
}

/// `model bugs [NAMES...]`: runs the named rows (all by default) and prints the measurements.
pub fn main(names: &[String], quick: bool, verbose: bool) -> std::process::ExitCode {
    use std::process::ExitCode;
    if !cfg!(feature = "seeded-bugs") {
        eprintln!("error: `bugs` needs the model built with `--features seeded-bugs`");
        return ExitCode::from(2);
    }
    let mut only = Vec::new();
    for name in names {
        match SeededBug::from_name(name) {
            Some(bug) => only.push(bug),
            None => {
                let known: Vec<&str> = SeededBug::ALL.iter().map(|b| b.name()).collect();
                eprintln!(
                    "error: unknown bug {name:?}; the seeded bugs are: {}",
                    known.join(", ")
                );
                return ExitCode::from(2);
            }
        }
    }
    let missing = missing_rows();
    if !missing.is_empty() {
        eprintln!("warning: bugs without a catalogue row: {missing:?}");
    }
    match run_all(&only, quick, verbose, &mut std::io::stdout()) {
        Ok(true) if missing.is_empty() => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}
