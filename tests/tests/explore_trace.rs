//! A real run in stateright's explorer: the replayed run is a path of the conformance model's
//! `ActorModel` (each step enabled where it is taken, each state what `next_state` computes),
//! the in-place replay reaches the very same states, and stateright's own checker walks the
//! explorer's model of the run with every property holding.

use e2e::ops::{get, put};
use e2e::{ClusterOptions, TestCluster};
use model::conform::explore::{self, Recorder, WindowChoice};
use model::conform::shadow::all_down;
use model::conform::Options;
use stateright::{Checker, Expectation, Model};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_run_is_a_path_of_the_actor_model_and_opens_in_the_explorer() {
    let mut cluster = TestCluster::start_with(
        3,
        ClusterOptions {
            trace: true,
            ..ClusterOptions::default()
        },
    )
    .await;
    let ops = |tag: &str| {
        (0..4)
            .flat_map(|n| [put(&format!("{tag}{n}"), "v"), get(&format!("{tag}{n}"))])
            .collect::<Vec<_>>()
    };
    cluster.client(ops("a")).run().await.expect("answered");
    // A follower's crash and restart: the walk takes a Crash and a Recover from storage.
    cluster.kill(2).await;
    cluster.client(ops("b")).run().await.expect("answered");
    cluster.start_replica(2).await.expect("restarts");
    cluster.client(ops("c")).run().await.expect("answered");
    let dir = cluster.trace_dir();

    let mut recorder = Recorder::new(0, usize::MAX);
    let (report, model) =
        model::conform::run_with(&dir, &Options::default(), &mut [&mut recorder]).unwrap();
    assert!(report.passed() && report.exact);
    let steps = recorder.steps;
    assert!(steps.len() > 100, "{} steps", steps.len());
    assert!(steps.iter().any(|s| matches!(
        s.action,
        model::ModelAction::Actor(stateright::actor::ActorModelAction::Crash(_))
    )));

    // The whole run through ActorModel::next_state, from every actor down: every step is
    // enabled, and the state reached is the one the in-place replay reaches.
    let (walk, end) = explore::walk(&model, all_down(&model), &steps);
    assert_eq!(walk.disabled, None);
    assert_eq!(walk.taken, steps.len());
    let last = steps.last().unwrap().number;
    let shadow_end = explore::state_after(&dir, &model, last).unwrap();
    assert!(
        end == shadow_end,
        "the in-place replay and ActorModel part ways"
    );
    // ... and halfway, where a window would start.
    let half = steps.len() / 2;
    let (_, middle) = explore::walk(&model, all_down(&model), &steps[..half]);
    let shadow_middle = explore::state_after(&dir, &model, steps[half - 1].number).unwrap();
    assert!(middle == shadow_middle);

    // A window in the middle of the run, checked by stateright's own BFS checker on the
    // explorer's model: one state per step, every property holds.
    let from = steps[half].number;
    let prepared = explore::prepare(
        &dir,
        &Options::default(),
        WindowChoice {
            from: Some(from),
            steps: 50,
        },
    )
    .unwrap();
    assert_eq!(prepared.first, from);
    assert_eq!(prepared.run.len(), 50);
    let properties = prepared.run.properties();
    let checker = prepared.run.checker().spawn_bfs().join();
    assert_eq!(checker.unique_state_count(), 51);
    for property in properties {
        if property.expectation == Expectation::Always {
            assert!(
                checker.discovery(property.name).is_none(),
                "{} fails on the run",
                property.name
            );
        }
    }
}
