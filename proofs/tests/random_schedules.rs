//! Goal: along random schedules of the real replica and client actors, in configurations far
//! beyond the model checker's exhaustive bounds (5 replicas, longer logs, more elections and so
//! larger ballots, crashes, a duplicating network, checkpoints, membership changes), every step
//! preserves every safety property of the model and every lemma of the safety argument.
//!
//! What this is, honestly: random exploration of reachable states, not a proof and not
//! exhaustive. Each schedule is a list of choices, one per step, among the actions enabled in
//! the model (deliver any message in flight, again if the network duplicates; fire any timer;
//! crash or recover a replica), within the model's bounds for the configuration. A failing
//! schedule is shrunk by proptest to a short one. A coverage check makes sure the schedules do
//! reach the interesting states (decisions deep into the log, leader changes, truncation, state
//! transfer, recoveries), so that passing is not vacuous. In debug builds every step also runs
//! the replica's own assertions (`impl/src/replica/invariants.rs`).

use model::properties::INVARIANTS;
use model::{build, ModelConfig, ModelState, NetworkKind, SmrModel};
use proofs::clients::ClientHistory;
use proofs::lemmas::LEMMAS;
use proptest::collection::vec;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use spec::Change;
use stateright::actor::Id;
use stateright::Model;
use std::cell::RefCell;

/// What the schedules reached, over all of them.
#[derive(Debug, Default)]
struct Coverage {
    walks: usize,
    steps: usize,
    longest_log: u64,
    highest_round: u32,
    truncations: usize,
    transfers: usize,
    recoveries: usize,
    configuration_changes: usize,
}

impl Coverage {
    fn add(&mut self, state: &ModelState, steps: usize) {
        let history = &state.history;
        self.walks += 1;
        self.steps += steps;
        self.longest_log = self.longest_log.max(history.reference.applied());
        let round = history.ballots.iter().map(|b| b.round).max().unwrap_or(0);
        self.highest_round = self.highest_round.max(round);
        let storages = || state.actor_storages.iter().flatten();
        self.truncations += usize::from(storages().any(|s| s.log_start > 0));
        self.recoveries += usize::from(storages().any(|s| s.incarnation > 0));
        let replicas = || state.actor_states.iter().filter_map(|n| n.replica());
        self.transfers += usize::from(replicas().any(|r| r.snapshots_installed > 0));
        self.configuration_changes +=
            usize::from(replicas().any(|r| r.service.configuration.epoch > 0));
    }
}

/// Checks every property and lemma in `state`, reached by `trail`.
fn check(
    model: &SmrModel,
    state: &ModelState,
    clients: &ClientHistory,
    trail: &[String],
) -> Result<(), TestCaseError> {
    let failures: Vec<String> = INVARIANTS
        .iter()
        .filter_map(|p| {
            (p.check)(model, state)
                .err()
                .map(|e| format!("property {}: {e}", p.name))
        })
        .chain(LEMMAS.iter().filter_map(|l| {
            (l.check)(state)
                .err()
                .map(|e| format!("lemma {} ({}): {e}", l.number, l.name))
        }))
        .chain(clients.check().err().map(|e| format!("clients: {e}")))
        .collect();
    if failures.is_empty() {
        return Ok(());
    }
    let steps: Vec<String> = trail
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{:>4}. {a}", i + 1))
        .collect();
    Err(TestCaseError::fail(format!(
        "{}\nafter {} steps:\n{}",
        failures.join("\n"),
        trail.len(),
        steps.join("\n")
    )))
}

/// Walks `model` from its initial state, taking at each step the enabled action that
/// `choice` points at (or the next one that stays within the bounds), and checks every state.
fn walk(model: &SmrModel, choices: &[u32]) -> Result<(ModelState, usize), TestCaseError> {
    let mut state = model.init_states().remove(0);
    let mut clients = ClientHistory::new(model, &state);
    let mut trail = Vec::new();
    check(model, &state, &clients, &trail)?;
    let mut actions = Vec::new();
    for choice in choices {
        actions.clear();
        model.actions(&state, &mut actions);
        let count = actions.len();
        let next = (0..count).find_map(|k| {
            let action = actions[(*choice as usize + k) % count].clone();
            let next = model.next_state(&state, action.clone())?;
            model.within_boundary(&next).then_some((action, next))
        });
        let Some((action, next)) = next else {
            break; // Nothing left to do within the bounds.
        };
        trail.push(model.format_action(&action));
        clients.step(model, &state, &next);
        state = next;
        check(model, &state, &clients, &trail)?;
    }
    Ok((state, trail.len()))
}

/// Runs `cases` random schedules of up to `steps` steps on `cfg`, and returns the coverage.
fn explore(cfg: &ModelConfig, cases: u32, steps: usize) -> Coverage {
    cfg.validate().expect("valid bounds");
    let model = build(cfg);
    let coverage = RefCell::new(Coverage::default());
    // A fixed seed: the same schedules on every run, so a failure reproduces (set
    // PROPTEST_CASES to explore more of them).
    let config = Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(cases),
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(
        config,
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    let result = runner.run(&vec(proptest::num::u32::ANY, steps), |choices| {
        let (state, taken) = walk(&model, &choices)?;
        coverage.borrow_mut().add(&state, taken);
        Ok(())
    });
    if let Err(error) = result {
        panic!("{cfg}\n{error}");
    }
    coverage.into_inner()
}

/// Five replicas, three clients with three operations each, four elections, two crashes,
/// retries, a window of three, checkpoints every three slots, heartbeats, duplication.
fn large() -> ModelConfig {
    ModelConfig {
        replicas: 5,
        clients: 3,
        operations: 3,
        crashes: 2,
        elections: 4,
        max_attempts: 3,
        window: 3,
        network: NetworkKind::Duplicating,
        heartbeats: true,
        checkpoint_interval: Some(3),
        ..ModelConfig::default()
    }
}

#[test]
fn five_replicas_long_logs_many_elections_crashes_and_checkpoints() {
    let coverage = explore(&large(), 128, 1000);
    println!("{coverage:?}");
    // Not vacuous: the schedules went well beyond the exhaustive bounds.
    assert!(coverage.longest_log >= 10, "{coverage:?}");
    assert!(coverage.highest_round >= 4, "{coverage:?}");
    assert!(coverage.truncations > 0, "{coverage:?}");
    assert!(coverage.transfers > 0, "{coverage:?}");
    assert!(coverage.recoveries > 0, "{coverage:?}");
}

#[test]
fn five_replicas_with_the_leader_quitting_and_a_spare_joining() {
    let cfg = ModelConfig {
        spares: 1,
        changes: vec![Change::Quit(Id::from(0)), Change::Join(Id::from(5))],
        ..large()
    };
    let coverage = explore(&cfg, 96, 1000);
    println!("{coverage:?}");
    assert!(coverage.configuration_changes > 0, "{coverage:?}");
    assert!(coverage.longest_log >= 8, "{coverage:?}");
}
