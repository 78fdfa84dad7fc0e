//! Goal: every marked branch of the protocol (`smr::marks`) is reached by some check, and the
//! runs that reach them find no violation. A branch that no check reaches is a branch whose
//! bugs no check can find: this test fails, naming it, until a run reaches it (or the branch
//! goes). One test in its own binary, because the marks are one set per process.

use model::coverage::{missed, print_table, quick_runs, reach, STEP_TESTED};

#[test]
fn every_protocol_branch_is_reached_by_some_run() {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let reached: Vec<_> = quick_runs()
        .iter()
        .map(|run| reach(run, threads, None))
        .collect();
    let mut table = Vec::new();
    print_table(&reached, &mut table).unwrap();
    let table = String::from_utf8(table).unwrap();
    println!("{table}");
    for r in &reached {
        let violated: Vec<_> = r
            .report
            .verdicts
            .iter()
            .filter(|v| matches!(v.outcome, model::check::Outcome::Violated { .. }))
            .map(|v| v.name)
            .collect();
        assert!(
            violated.is_empty(),
            "{}: violated {violated:?}\n{table}",
            r.run.name
        );
    }
    let missed: Vec<_> = missed(&reached)
        .into_iter()
        .filter(|mark| !STEP_TESTED.iter().any(|(m, _)| m == mark))
        .collect();
    assert!(
        missed.is_empty(),
        "branches no run reaches: {:?}\n{table}",
        missed.iter().map(|m| m.name()).collect::<Vec<_>>()
    );
}
