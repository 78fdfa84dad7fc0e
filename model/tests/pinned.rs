//! Small configurations explored exhaustively: every property must have its expected verdict,
//! and the number of unique states is pinned, so that a change to the protocol or the model
//! that grows or shrinks the state space is noticed (and the pin is updated on purpose).

use model::check::{self, CheckOptions, Outcome, Strategy};
use model::{build, ModelConfig};
use stateright::Expectation;

fn check_pinned(cfg: ModelConfig, unique_states: usize) {
    cfg.validate().expect("valid bounds");
    let options = CheckOptions {
        strategy: Strategy::Dfs,
        threads: 2,
        timeout: None,
        progress: None,
        symmetry: false,
    };
    let report = check::run(build(&cfg), &options, &mut std::io::sink());
    assert!(report.exhaustive, "the search must finish: {cfg}");
    for verdict in &report.verdicts {
        match (&verdict.expectation, &verdict.outcome) {
            (Expectation::Always, Outcome::Holds)
            | (Expectation::Sometimes, Outcome::Found { .. }) => {}
            (_, outcome) => panic!(
                "{cfg}: property \"{}\" has outcome {outcome:?}",
                verdict.name
            ),
        }
    }
    // Every Always property of the model was evaluated, not just some.
    let always = report
        .verdicts
        .iter()
        .filter(|v| v.expectation == Expectation::Always)
        .count();
    assert_eq!(always, model::properties::INVARIANTS.len());
    assert_eq!(
        report.unique_states, unique_states,
        "{cfg}: the state space changed; if that is intended, update the pin"
    );
}

#[test]
fn no_faults() {
    check_pinned(ModelConfig::preset("small").unwrap(), 136);
}

#[test]
fn a_crash_and_recovery() {
    let cfg = ModelConfig {
        crashes: 1,
        ..ModelConfig::preset("small").unwrap()
    };
    check_pinned(cfg, 1_530);
}

#[test]
fn checkpoints_and_truncation() {
    let cfg = ModelConfig {
        clients: 1,
        operations: 2,
        crashes: 0,
        elections: 0,
        ..ModelConfig::preset("checkpoint").unwrap()
    };
    check_pinned(cfg, 10_836);
}

#[test]
fn a_spare_joins_then_votes() {
    let cfg = ModelConfig {
        crashes: 0,
        ..ModelConfig::preset("join").unwrap()
    };
    check_pinned(cfg, 40_475);
}

#[test]
fn a_member_quits_then_a_spare_joins() {
    let cfg = ModelConfig {
        crashes: 0,
        ..ModelConfig::preset("quit-join").unwrap()
    };
    check_pinned(cfg, 25_111);
}

#[test]
fn the_leader_quits_and_a_new_leader_decides() {
    let cfg = ModelConfig {
        crashes: 0,
        ..ModelConfig::preset("quit-leader").unwrap()
    };
    check_pinned(cfg, 9_988);
}

#[test]
fn a_replica_loses_its_storage_and_rebuilds_it() {
    let cfg = ModelConfig {
        clients: 1,
        ..ModelConfig::preset("disk-loss").unwrap()
    };
    check_pinned(cfg, 55_420);
}

#[test]
fn an_election_through_a_pre_vote() {
    let cfg = ModelConfig {
        clients: 1,
        ..ModelConfig::preset("pre-vote").unwrap()
    };
    check_pinned(cfg, 8_006);
}
