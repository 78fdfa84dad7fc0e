//! `model`: model check, explore, and conformance-check the replicated service.
//!
//! ```text
//! cargo run --release -p model -- check                 # the default bounds, exhaustively
//! cargo run --release -p model -- check --preset NAME   # a named preset (see `presets`)
//! cargo run --release -p model -- explore               # stateright's explorer on localhost:3000
//! cargo run --release -p model -- conform TRACE_DIR     # replay a real run's traces
//! cargo run --release -p model --features seeded-bugs -- bugs   # catch every seeded bug
//! ```

mod catalogue;

use clap::{Args, Parser, Subcommand};
use model::check::{self, CheckOptions, Strategy};
use model::{ModelConfig, NetworkKind, PRESETS};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "model",
    about = "Model checks the Multi-Paxos replicated key-value service with stateright",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Explore every state within the bounds and give a verdict for every property.
    Check {
        #[command(flatten)]
        bounds: Bounds,
        /// Search strategy: bfs, dfs or simulation.
        #[arg(long, default_value = "dfs", value_parser = clap::builder::PossibleValuesParser::new(Strategy::NAMES))]
        checker: String,
        /// Worker threads (default: one per core).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
        threads: Option<u16>,
        /// Stop after this many seconds (the verdict then says the search was not exhaustive).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        timeout: Option<u64>,
        /// Seed of the simulation checker.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Seconds between progress lines.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
        progress: u64,
        /// Symmetry reduction: explore one state of each class of states that differ only by
        /// a renaming of the followers (depth first only; refused where the bounds let the
        /// protocol tell followers apart, see proofs/SAFETY.md).
        #[arg(long)]
        symmetry: bool,
    },
    /// Serve stateright's web explorer on the same model, or (with --trace) on a real run
    /// replayed through it.
    Explore {
        /// Address to listen on.
        #[arg(default_value = "localhost:3000")]
        address: String,
        #[command(flatten)]
        bounds: Bounds,
        /// Show the run recorded in this trace directory instead: its steps, replayed through
        /// the model as stateright actions, from every process down (the bounds do not apply).
        #[arg(long)]
        trace: Option<std::path::PathBuf>,
        /// With --trace: the first step to show (a step number of `conform`'s report); by
        /// default the window ends at the first failure, or starts at the beginning of a run
        /// that passed.
        #[arg(long, requires = "trace")]
        from: Option<u64>,
        /// With --trace: steps in the window (the explorer replays the window from its first
        /// state on every click, so larger windows browse slower).
        #[arg(long, default_value_t = 300, requires = "trace", value_parser = clap::value_parser!(u64).range(1..=100_000))]
        steps: u64,
    },
    /// Random walks through the model beyond the exhaustive bounds (by default the
    /// `simulation` preset: 5 replicas, crashes, storage losses, partitions, JOIN and QUIT),
    /// checking every property in every state. Prints the seed of each failing walk, the
    /// command that replays it and its explorer address.
    Simulate {
        #[command(flatten)]
        bounds: Bounds,
        /// Walks to take (each its own seed: the first seed, the next, ...).
        #[arg(long, default_value_t = 200)]
        walks: u64,
        /// Stop after this many seconds instead (whatever --walks says).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        seconds: Option<u64>,
        /// The seed of the first walk.
        #[arg(long, default_value_t = 0)]
        first_seed: u64,
        /// Steps of the longest walk.
        #[arg(long, default_value_t = 3000)]
        depth: usize,
        /// Never partition the replicas.
        #[arg(long)]
        no_partitions: bool,
        /// Worker threads (default: one per core).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
        threads: Option<u16>,
    },
    /// Which protocol branches (coverage marks) the checks reach: by default the random walks
    /// the test makes; with --full, every preset exhaustively too.
    Coverage {
        /// Every preset exhaustively as well (as long as all presets take together).
        #[arg(long)]
        full: bool,
        /// Stop each run after this many seconds.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        timeout: Option<u64>,
    },
    /// List the named presets.
    Presets,
    /// Replay the traces of a real run (a directory of *.trace files, as written by
    /// `bench --trace DIR` or a traced test) through the model: every step must be enabled
    /// and give the recorded outputs and state digest, and every safety property must hold.
    Conform {
        /// The trace directory.
        trace_dir: std::path::PathBuf,
        /// Evaluate the model's own properties on a full model state after every step when
        /// the trace has at most this many steps; longer traces get the incremental checks.
        #[arg(long, default_value_t = 50_000)]
        exact_limit: u64,
        /// ... and the clients submit at most this many operations in all.
        #[arg(long, default_value_t = 500)]
        exact_operations: usize,
    },
    /// Run the catalogue of seeded bugs (needs `--features seeded-bugs`): the time to each
    /// counterexample, its length, the shortest length, and a control run without the bug.
    Bugs {
        /// Only these bugs (default: all).
        names: Vec<String>,
        /// Only the first counterexample: no search for the shortest one, no control run.
        #[arg(long)]
        quick: bool,
        /// Print each counterexample and the command that reproduces it.
        #[arg(long)]
        verbose: bool,
    },
}

/// The model's bounds: a preset, then any option overrides it.
#[derive(Args, Clone)]
struct Bounds {
    /// Named configuration to start from (see `model presets`; `check` and `explore` start
    /// from `default`, `simulate` from `simulation`).
    #[arg(long)]
    preset: Option<String>,
    /// Replicas.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=7))]
    replicas: Option<u8>,
    /// Clients.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=4))]
    clients: Option<u8>,
    /// Operations per client (clients alternate puts and gets of one key).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=16))]
    operations: Option<u8>,
    /// Crashes over the whole run, each followed by a recovery from durable storage.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=16))]
    crashes: Option<u32>,
    /// Crashes that lose the replica's storage too (a wiped or damaged disk), besides
    /// --crashes: it restarts from nothing and rebuilds before it votes.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=3))]
    storage_losses: Option<u32>,
    /// Elections after replica 0's initial one, by any replica at any time (0: no leader
    /// change).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=32))]
    elections: Option<u32>,
    /// Sends of one client request, retries and redirects included.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=5))]
    max_attempts: Option<u32>,
    /// The leader's pipeline window.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=8))]
    window: Option<u8>,
    /// Network semantics: unordered (reordering and loss), duplicating (also duplication),
    /// ordered.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(NetworkKind::NAMES))]
    network: Option<String>,
    /// Switch on a seeded protocol bug (needs `--features seeded-bugs`).
    #[arg(long)]
    bug: Option<String>,
    /// Clients all start at once (by default in most presets, each client's first operation
    /// waits for the previous client's first answer).
    #[arg(long)]
    concurrent_clients: bool,
    /// Slots between checkpoints (the leader proposes a checkpoint command every N slots).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=16))]
    checkpoint_interval: Option<u64>,
    /// Leaders send heartbeats, and followers catch up on what they show missing.
    #[arg(long)]
    heartbeats: bool,
    /// Replicas campaign only after a pre-vote, as deployed ones do.
    #[arg(long)]
    pre_vote: bool,
    /// The replicas' limits scaled down so that the model reaches them: batches of one
    /// request, a queue of two, promise and catch-up pages of one entry, 16-byte snapshot
    /// chunks, checkpoint votes kept for one slot.
    #[arg(long)]
    scaled_limits: bool,
    /// The replicated session table's maximum, so that the model fills it; clients then open
    /// their sessions first, as deployed clients do.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=4))]
    max_sessions: Option<u8>,
}

impl Bounds {
    fn config(&self, default_preset: &str) -> Result<ModelConfig, String> {
        let preset = self.preset.as_deref().unwrap_or(default_preset);
        let mut cfg = ModelConfig::preset(preset).ok_or_else(|| {
            format!(
                "unknown preset {preset:?}; the presets are: {}",
                PRESETS
                    .iter()
                    .map(|p| p.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        if let Some(v) = self.replicas {
            cfg.replicas = v.into();
        }
        if let Some(v) = self.clients {
            cfg.clients = v.into();
        }
        if let Some(v) = self.operations {
            cfg.operations = v.into();
        }
        if let Some(v) = self.crashes {
            cfg.crashes = v;
        }
        if let Some(v) = self.storage_losses {
            cfg.storage_losses = v;
        }
        if let Some(v) = self.elections {
            cfg.elections = v;
        }
        if let Some(v) = self.max_attempts {
            cfg.max_attempts = v;
        }
        if let Some(v) = self.window {
            cfg.window = v.into();
        }
        if self.concurrent_clients {
            cfg.staggered = false;
        }
        if let Some(interval) = self.checkpoint_interval {
            cfg.checkpoint_interval = Some(interval);
        }
        if self.heartbeats {
            cfg.heartbeats = true;
        }
        if self.pre_vote {
            cfg.pre_vote = true;
        }
        if self.scaled_limits {
            cfg.limits = model::scaled_limits();
        }
        if let Some(max) = self.max_sessions {
            cfg.limits.max_sessions = max.into();
            cfg.open_sessions = true;
        }
        if let Some(name) = &self.network {
            cfg.network = NetworkKind::from_name(name).expect("clap checked the name");
        }
        if let Some(name) = &self.bug {
            cfg.bug = Some(smr::SeededBug::from_name(name).ok_or_else(|| {
                format!(
                    "unknown bug {name:?}; the seeded bugs are: {}",
                    smr::SeededBug::ALL
                        .iter()
                        .map(|b| b.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?);
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    model::quiet_step_panics();
    match cli.command {
        Command::Bugs {
            names,
            quick,
            verbose,
        } => catalogue::main(&names, quick, verbose),
        Command::Simulate {
            bounds,
            walks,
            seconds,
            first_seed,
            depth,
            no_partitions,
            threads,
        } => {
            let cfg = match bounds.config("simulation") {
                Ok(cfg) => cfg,
                Err(error) => {
                    eprintln!("error: {error}");
                    return ExitCode::from(2);
                }
            };
            let options = model::simulate::SimulateOptions {
                first_seed,
                walks: seconds.is_none().then_some(walks),
                max_depth: depth,
                threads: threads.map_or(CheckOptions::default().threads, usize::from),
                timeout: seconds.map(Duration::from_secs),
                stop_at_violation: false,
                schedule: model::simulate::Schedule {
                    partitions: !no_partitions,
                },
            };
            simulate(&cfg, &options)
        }
        Command::Coverage { full, timeout } => {
            let runs = if full {
                model::coverage::full_runs()
            } else {
                model::coverage::quick_runs()
            };
            let threads = CheckOptions::default().threads;
            let mut reached = Vec::new();
            for run in &runs {
                println!("{} ...", run.name);
                reached.push(model::coverage::reach(
                    run,
                    threads,
                    timeout.map(Duration::from_secs),
                ));
            }
            let _ = model::coverage::print_table(&reached, &mut std::io::stdout());
            let step_tested = |mark: &smr::marks::Mark| {
                model::coverage::STEP_TESTED.iter().any(|(m, _)| m == mark)
            };
            if model::coverage::missed(&reached).iter().all(step_tested) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Presets => {
            for preset in PRESETS {
                println!("{:<14} {}", preset.name, preset.about);
                println!("{:<14} {}", "", (preset.config)());
            }
            ExitCode::SUCCESS
        }
        Command::Check {
            bounds,
            checker,
            threads,
            timeout,
            seed,
            progress,
            symmetry,
        } => {
            let cfg = match bounds.config("default") {
                Ok(cfg) => cfg,
                Err(error) => {
                    eprintln!("error: {error}");
                    return ExitCode::from(2);
                }
            };
            let strategy = match checker.as_str() {
                "bfs" => Strategy::Bfs,
                "simulation" => Strategy::Simulation { seed },
                _ => Strategy::Dfs,
            };
            let symmetry = symmetry || cfg.symmetry;
            if symmetry {
                if let Err(error) = model::symmetry::applies(&cfg) {
                    eprintln!("error: {error}");
                    return ExitCode::from(2);
                }
                if strategy != Strategy::Dfs {
                    eprintln!("error: --symmetry needs --checker dfs (stateright's other checkers ignore it)");
                    return ExitCode::from(2);
                }
            }
            let mut options = CheckOptions {
                strategy,
                timeout: timeout.map(Duration::from_secs),
                progress: Some(Duration::from_secs(progress)),
                symmetry,
                ..CheckOptions::default()
            };
            if let Some(threads) = threads {
                options.threads = threads.into();
            }
            println!(
                "Checking Multi-Paxos SMR with {checker} on {} threads",
                options.threads
            );
            println!("Bounds: {cfg}");
            // The replicas' own assertions after every step: a failed one is a counterexample
            // of "no step panics".
            smr::replica::invariants::check_always();
            let report = check::run(model::build(&cfg), &options, &mut std::io::stdout());
            let features = if cfg.bug.is_some() {
                " --features seeded-bugs"
            } else {
                ""
            };
            let hint = format!(
                "cargo run --release -p model{features} -- explore localhost:3000 {}",
                cfg.command_line()
                    .unwrap_or_else(|| format!("(the bounds: {cfg})"))
            );
            let _ = check::print_report(&cfg, &report, &hint, &mut std::io::stdout());
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Conform {
            trace_dir,
            exact_limit,
            exact_operations,
        } => {
            let options = model::conform::Options {
                exact_limit,
                exact_operations,
            };
            match model::conform::run(&trace_dir, &options) {
                Ok(report) => {
                    let _ = report.print(&mut std::io::stdout());
                    if report.passed() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Explore {
            address,
            trace: Some(dir),
            from,
            steps,
            ..
        } => explore_trace(&address, &dir, from, steps as usize),
        Command::Explore {
            address, bounds, ..
        } => {
            let cfg = match bounds.config("default") {
                Ok(cfg) => cfg,
                Err(error) => {
                    eprintln!("error: {error}");
                    return ExitCode::from(2);
                }
            };
            if let Err(error) = can_listen(&address) {
                eprintln!("error: {error}");
                return ExitCode::from(2);
            }
            println!("Exploring {cfg}");
            println!("Open http://{address}/ (a counterexample: http://{address}/#/steps/<path printed by check>)");
            use stateright::Model;
            // Serves until the process is stopped.
            let _ = model::build(&cfg)
                .checker()
                .threads(std::thread::available_parallelism().map_or(1, |n| n.get()))
                .serve(address.as_str());
            ExitCode::SUCCESS
        }
    }
}

/// The explorer panics on an address it cannot bind; say what is wrong instead.
fn can_listen(address: &str) -> Result<(), String> {
    std::net::TcpListener::bind(address)
        .map(drop)
        .map_err(|error| format!("cannot listen on {address}: {error}"))
}

/// `explore --trace DIR`: the conformance check, then the explorer on a window of the run.
fn explore_trace(
    address: &str,
    dir: &std::path::Path,
    from: Option<u64>,
    steps: usize,
) -> ExitCode {
    use model::conform::explore::{prepare, WindowChoice};
    if let Err(error) = can_listen(address) {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    let choice = WindowChoice { from, steps };
    let prepared = match prepare(dir, &model::conform::Options::default(), choice) {
        Ok(prepared) => prepared,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let _ = prepared.report.print(&mut std::io::stdout());
    let walk = &prepared.walk;
    println!(
        "Explorer: steps {} to {} of the run ({} steps that change something), from the model state {}, then through stateright's ActorModel::next_state: {} steps taken in {:.2} s, each enabled in the model{}",
        prepared.first,
        prepared.last,
        prepared.run.len(),
        if prepared.first <= 1 {
            "with every actor down"
        } else {
            "the replay reached before them"
        },
        walk.taken,
        walk.time.as_secs_f64(),
        if walk.ignored > 0 {
            format!(" ({} left the model state as it was)", walk.ignored)
        } else {
            String::new()
        }
    );
    if let Some((index, why)) = &walk.disabled {
        println!("  the model does not enable recorded step {index} of the walk: {why}; the window stops before it");
    }
    let path = std::iter::once("0")
        .chain(std::iter::repeat_n("0", prepared.run.len()))
        .collect::<Vec<_>>()
        .join("/");
    println!("Open http://{address}/#/steps/0 (the window's first state)");
    println!("  or http://{address}/#/steps/{path} (its last state)");
    use stateright::Model;
    let _ = prepared.run.checker().threads(1).serve(address);
    ExitCode::SUCCESS
}

/// `model simulate`: the walks, the verdicts, and how to replay each failure.
fn simulate(cfg: &ModelConfig, options: &model::simulate::SimulateOptions) -> ExitCode {
    println!(
        "Simulating Multi-Paxos SMR: {} from seed {} on {} threads, at most {} steps each{}",
        match (options.walks, options.timeout) {
            (Some(walks), _) => format!("{walks} walks"),
            (None, Some(timeout)) => format!("walks for {}s", timeout.as_secs()),
            (None, None) => "walks".to_string(),
        },
        options.first_seed,
        options.threads,
        options.max_depth,
        if options.schedule.partitions {
            ", with partitions"
        } else {
            ""
        }
    );
    println!("Bounds: {cfg}");
    // Walks are few enough to afford the replicas' own assertions after every step.
    smr::replica::invariants::check_always();
    let model = model::build(cfg);
    smr::marks::reset();
    let simulation = model::simulate::simulate(&model, options);
    let mut report = model::simulate::report(&model, &simulation);
    report.marks = smr::marks::hits();
    println!(
        "Walked {} walks ({} steps, {} distinct states, longest {} steps) in {:.1}s: {:.0} steps/s",
        simulation.walks,
        simulation.steps,
        simulation.unique,
        simulation.max_depth,
        simulation.elapsed.as_secs_f64(),
        simulation.steps as f64 / simulation.elapsed.as_secs_f64().max(1e-9)
    );
    let features = if cfg.bug.is_some() {
        " --features seeded-bugs"
    } else {
        ""
    };
    let bounds = cfg
        .command_line()
        .unwrap_or_else(|| format!("(the bounds: {cfg})"));
    let hint = format!("cargo run --release -p model{features} -- explore localhost:3000 {bounds}");
    let _ = check::print_report(cfg, &report, &hint, &mut std::io::stdout());
    for (property, walk) in &simulation.violations {
        println!(
            "Replay the walk that broke {property}: cargo run --release -p model{features} -- simulate {bounds} --first-seed {} --walks 1{}",
            walk.seed,
            if options.schedule.partitions { "" } else { " --no-partitions" }
        );
    }
    if simulation.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
