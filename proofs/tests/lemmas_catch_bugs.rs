//! Goal: the lemmas of the safety argument are not hollow: each one that a seeded bug breaks
//! fails, under that bug, in a small model that the checker explores breadth first, at the
//! step where the argument breaks (often before any safety property does).

use model::{build, ModelConfig, ModelState, SmrModel};
use proofs::lemmas::LEMMAS;
use smr::SeededBug;
use stateright::{Checker, Expectation, HasDiscoveries, Model};

/// A stateright property is a plain function pointer: one per lemma.
fn holds<const I: usize>(_: &SmrModel, state: &ModelState) -> bool {
    (LEMMAS[I].check)(state).is_ok()
}

fn lemma_property(number: &str) -> (&'static str, fn(&SmrModel, &ModelState) -> bool) {
    let index = LEMMAS
        .iter()
        .position(|l| l.number == number)
        .expect("a known lemma");
    let check: fn(&SmrModel, &ModelState) -> bool = match index {
        0 => holds::<0>,
        1 => holds::<1>,
        2 => holds::<2>,
        3 => holds::<3>,
        4 => holds::<4>,
        _ => unreachable!("add a case for each lemma"),
    };
    (LEMMAS[index].name, check)
}

/// Whether the checker finds a state that breaks lemma `number` under `bug`, and in how
/// many steps.
fn broken_in(number: &str, bug: SeededBug, cfg: ModelConfig) -> Option<usize> {
    let cfg = ModelConfig {
        bug: Some(bug),
        ..cfg
    };
    let (name, check) = lemma_property(number);
    let mut model = build(&cfg);
    model.properties.clear();
    let model = model.property(Expectation::Always, name, check);
    let checker = model
        .checker()
        .threads(1)
        .finish_when(HasDiscoveries::AnyFailures)
        .spawn_bfs()
        .join();
    checker
        .discovery(name)
        .map(|path| path.into_actions().len())
}

fn small(elections: u32) -> ModelConfig {
    ModelConfig {
        elections,
        ..ModelConfig::preset("small").unwrap()
    }
}

#[test]
fn each_lemma_fails_under_a_bug_that_breaks_it() {
    let checkpoint = || ModelConfig {
        clients: 1,
        window: 2,
        elections: 1,
        ..ModelConfig::preset("checkpoint").unwrap()
    };
    // L1 (nothing accepted above the promise) is a state invariant that no seeded bug breaks:
    // accepting a *lower* ballot than promised leaves it true. The transition rule that such a
    // bug breaks (accept only at or above the promise) is checked step by step in
    // tests/acceptor_steps.rs, which shows it failing under that bug.
    let cases = [
        ("L3", SeededBug::IgnorePromisedValues, small(1)),
        ("L3", SeededBug::PromiseNotPersisted, checkpoint()),
        ("L4", SeededBug::PromiseNotPersisted, small(1)),
        (
            "L4",
            SeededBug::AcceptNotPersisted,
            ModelConfig::preset("small").unwrap(),
        ),
    ];
    let mut missed = Vec::new();
    for (number, bug, cfg) in cases {
        match broken_in(number, bug, cfg.clone()) {
            Some(steps) => println!("{number} breaks under {} in {steps} steps", bug.name()),
            None => missed.push(format!("{number} holds under {} ({cfg})", bug.name())),
        }
    }
    assert!(missed.is_empty(), "{missed:?}");
}
