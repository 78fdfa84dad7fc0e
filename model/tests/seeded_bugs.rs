//! Goal: the model checker catches every seeded protocol bug, each with a counterexample that
//! violates the property the catalogue names for it, under the catalogue's bounds; and the same
//! bounds without the bug show no violation to the same depth, so the bug is what is caught.
//!
//! The rows live in `model/src/catalogue.rs` (shared with `model bugs`, which prints the time to
//! each counterexample and its length); `proofs/BUGS.md` documents each bug.

#[allow(dead_code)]
#[path = "../src/catalogue.rs"]
mod catalogue;

use catalogue::{catch, control, missing_rows, validate, Row, CATALOGUE};
use model::ModelConfig;
use smr::SeededBug;

#[test]
fn every_seeded_bug_has_a_catalogue_row() {
    assert_eq!(
        missing_rows(),
        vec![],
        "add a row to model/src/catalogue.rs for each new bug"
    );
    for row in CATALOGUE {
        validate(row).unwrap_or_else(|error| panic!("{error}"));
    }
}

#[test]
fn every_seeded_bug_is_caught_by_its_property_and_only_with_the_bug() {
    let mut failures = Vec::new();
    for row in CATALOGUE {
        let name = row.bug.name();
        let catch = match catch(row) {
            Ok(catch) => catch,
            Err(error) => {
                failures.push(format!("{name}: {error}"));
                continue;
            }
        };
        if !catch.caught() {
            failures.push(format!(
                "{name}: expected a violation of {:?}, got {:?} after {} states ({})",
                row.property, catch.violated, catch.unique_states, catch.cfg
            ));
            continue;
        }
        assert!(
            catch.path_length() > 0,
            "{name}: a counterexample has steps"
        );
        let control = control(row, catch.path_length());
        if !control.violated.is_empty() {
            failures.push(format!(
                "{name}: without the bug, {:?} fail within {} steps too ({})",
                control.violated,
                control.depth,
                (row.bounds)()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "seeded bugs not caught as catalogued:\n{}",
        failures.join("\n")
    );
}

#[test]
fn linearizability_sees_a_stale_read_only_when_clients_follow_each_other() {
    // Goal: the staggered clients are what make linearizability able to fail. With both
    // clients starting at once, the get is concurrent with the put, any answer is
    // linearizable, and the stale read of `stale-local-read` passes every state.
    let concurrent = Row {
        bug: SeededBug::StaleLocalRead,
        property: "linearizability",
        only: true,
        bounds: || ModelConfig {
            elections: 1,
            staggered: false,
            ..ModelConfig::preset("small").unwrap()
        },
    };
    let search = catch(&concurrent).unwrap();
    assert!(
        !search.caught(),
        "linearizability caught it: {:?}",
        search.violated
    );
    let staggered = CATALOGUE
        .iter()
        .find(|row| row.bug == SeededBug::StaleLocalRead && row.property == "linearizability")
        .unwrap();
    assert!(catch(staggered).unwrap().caught());
}
