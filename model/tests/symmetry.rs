//! Goal: symmetry reduction is sound where `model::symmetry::applies` allows it: the checker
//! with the reduction reaches a state of every class of states (states equal up to a renaming
//! of the followers) that the checker without it reaches, and no other. If the protocol told
//! followers apart by their ids somewhere, some class would be reached only from one member of
//! another class, and the two sets would differ. Also: the reduction does reduce, and the
//! verdicts are the same.

use model::check::{run, CheckOptions, Strategy};
use model::symmetry::{applies, rename, representative};
use model::{build, ModelConfig, SmrModel};
use spec::digest::StableHasher;
use stateright::{Checker, Model, Path};
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

/// Every permutation of `items`.
fn permutations(items: &[usize]) -> Vec<Vec<usize>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut all = Vec::new();
    for (i, first) in items.iter().enumerate() {
        let mut rest = items.to_vec();
        rest.remove(i);
        for mut tail in permutations(&rest) {
            tail.insert(0, *first);
            all.push(tail);
        }
    }
    all
}

/// The class of `state`: the least fingerprint over every renaming of the replicas in `group`
/// (canonical, unlike the representative the checker uses, which is cheaper).
fn class(state: &model::ModelState, group: &[usize]) -> u64 {
    let actors = state.actor_states.len();
    permutations(group)
        .into_iter()
        .map(|order| {
            let mut renamed: Vec<usize> = (0..actors).collect();
            for (old, new) in group.iter().zip(order) {
                renamed[*old] = new;
            }
            let mut hasher = StableHasher::new();
            rename(state, &renamed).hash(&mut hasher);
            hasher.finish()
        })
        .min()
        .expect("some renaming")
}

/// The classes of every state a depth-first search visits, with or without the reduction.
fn classes(model: SmrModel, group: Vec<usize>, symmetry: bool) -> HashSet<u64> {
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let record = Arc::clone(&seen);
    let visitor = move |path: Path<model::ModelState, model::ModelAction>| {
        record
            .lock()
            .unwrap()
            .insert(class(path.last_state(), &group));
    };
    let mut builder = model.checker().threads(1).visitor(visitor);
    if symmetry {
        builder = builder.symmetry_fn(representative);
    }
    builder.spawn_dfs().join();
    let classes = seen.lock().unwrap().clone();
    classes
}

/// Bounds where `applies` allows the reduction, and the replicas it may rename there.
fn reducible_bounds() -> Vec<(&'static str, ModelConfig, Vec<usize>)> {
    let small = ModelConfig::preset("small").unwrap();
    vec![
        (
            "four replicas, a put, an election: followers 1, 2, 3",
            ModelConfig {
                replicas: 4,
                clients: 1,
                elections: 1,
                ..small.clone()
            },
            vec![1, 2, 3],
        ),
        (
            "three replicas, checkpoints every 2 slots, a put, an election: followers 1, 2",
            ModelConfig {
                replicas: 3,
                clients: 1,
                elections: 1,
                checkpoint_interval: Some(2),
                ..small.clone()
            },
            vec![1, 2],
        ),
        (
            "a network that duplicates, a put, an election (the `duplicating` preset)",
            ModelConfig::preset("duplicating").unwrap(),
            vec![1, 2],
        ),
        (
            "replica 2 quits, a put: only 1 and 3 are interchangeable",
            ModelConfig {
                replicas: 4,
                clients: 1,
                changes: vec![spec::Change::Quit(stateright::actor::Id::from(2))],
                ..small
            },
            vec![1, 3],
        ),
    ]
}

#[test]
fn the_reduced_search_reaches_every_class_of_states_and_only_those() {
    for (about, cfg, group) in reducible_bounds() {
        applies(&cfg).unwrap_or_else(|why| panic!("{about}: {why}"));
        assert_eq!(model::symmetry::interchangeable(&cfg), group, "{about}");
        let full = classes(build(&cfg), group.clone(), false);
        let reduced = classes(build(&cfg), group.clone(), true);
        assert_eq!(
            full.len(),
            reduced.len(),
            "{about}: the same number of classes"
        );
        assert!(full == reduced, "{about}: the same classes");
        assert!(
            full.len() > 100,
            "{about}: not vacuous: {} classes",
            full.len()
        );
        eprintln!("{about}: {} classes", full.len());
    }
}

#[test]
fn the_reduction_keeps_the_verdicts_and_reduces() {
    // Four replicas (three interchangeable followers), a put, one election.
    let cfg = reducible_bounds().remove(0).1;
    // The verdicts agree, and the reduced search stores fewer states.
    let options = |symmetry| CheckOptions {
        strategy: Strategy::Dfs,
        threads: 2,
        symmetry,
        ..CheckOptions::default()
    };
    let plain = run(build(&cfg), &options(false), &mut std::io::sink());
    let reduced = run(build(&cfg), &options(true), &mut std::io::sink());
    assert!(plain.passed() && reduced.passed());
    assert!(plain.exhaustive && reduced.exhaustive);
    let outcome = |r: &model::check::CheckReport| {
        r.verdicts
            .iter()
            .map(|v| (v.name, matches!(v.outcome, model::check::Outcome::Holds)))
            .collect::<Vec<_>>()
    };
    assert_eq!(outcome(&plain), outcome(&reduced));
    assert!(
        reduced.unique_states * 3 < plain.unique_states,
        "{} states with the reduction, {} without",
        reduced.unique_states,
        plain.unique_states
    );
}

#[test]
fn the_reduction_is_refused_where_followers_can_be_told_apart() {
    for name in ["checkpoint", "retries", "disk-loss", "quit-join"] {
        let cfg = ModelConfig::preset(name).unwrap();
        assert!(applies(&cfg).is_err(), "{name}");
    }
    let two_elections = ModelConfig {
        elections: 2,
        ..ModelConfig::default()
    };
    assert!(applies(&two_elections).is_err());
}
