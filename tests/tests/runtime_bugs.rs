//! Conformance catches runtime bugs: each seeded bug of the runtime (compiled in with the
//! `runtime-bugs` feature, switched on per cluster) makes a real run that the model does not
//! allow, and `conform` says where.

use e2e::ops::{get, put};
use e2e::{ClusterOptions, TestCluster};
use model::conform::explore::{self, WindowChoice};
use model::conform::Options;
use smr::runtime::RuntimeBug;
use std::time::Duration;

async fn cluster_with(bug: RuntimeBug) -> TestCluster {
    let options = ClusterOptions {
        trace: true,
        bug: Some(bug),
        ..ClusterOptions::default()
    };
    TestCluster::start_with(3, options).await
}

/// Runs a little traffic; a buggy cluster may not answer everything, which is not the point.
async fn traffic(cluster: &TestCluster, tag: &str) {
    let mut tasks = Vec::new();
    for c in 0..2 {
        let ops = (0..8)
            .flat_map(|n| {
                let key = format!("{tag}-{c}-{n}");
                [put(&key, "v"), get(&key)]
            })
            .collect();
        tasks.push(tokio::spawn(cluster.client(ops).run()));
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// The report's text, asserting that the run was found not to conform, and that the
/// explorer opens on the steps that lead to the failure.
fn fails(cluster: &TestCluster) -> String {
    let report = cluster.check_traces();
    let mut text = Vec::new();
    report.print(&mut text).unwrap();
    let text = String::from_utf8_lossy(&text).into_owned();
    assert!(!report.passed(), "the bug went unnoticed:\n{text}");
    assert!(text.contains("explore --trace"), "{text}");
    eprintln!("{text}");
    let window = WindowChoice {
        from: None,
        steps: 100,
    };
    let prepared = explore::prepare(&cluster.trace_dir(), &Options::default(), window)
        .expect("the explorer can show the run");
    assert!(!prepared.run.is_empty());
    assert_eq!(prepared.walk.disabled, None, "{text}");
    if let Some(divergence) = &report.divergence {
        // The window ends with the last step before the one that diverges.
        assert!(prepared.last < divergence.step, "{text}");
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_before_their_storage_is_durable_are_flagged() {
    let cluster = cluster_with(RuntimeBug::SendBeforeDurable).await;
    traffic(&cluster, "early").await;
    let text = fails(&cluster);
    assert!(text.contains("released while step"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_timer_cancel_is_flagged() {
    // A new leader cancels its election timer; with the bug it fires all the same.
    let mut cluster = cluster_with(RuntimeBug::TimerCancelLost).await;
    traffic(&cluster, "before").await;
    cluster.kill(0).await;
    traffic(&cluster, "after").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let text = fails(&cluster);
    assert!(text.contains("timer fired but is not set"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_delivery_is_flagged() {
    let cluster = cluster_with(RuntimeBug::CorruptDelivery).await;
    traffic(&cluster, "corrupt").await;
    let text = fails(&cluster);
    assert!(text.contains("never sent in the model"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_from_stale_storage_is_flagged() {
    let mut cluster = cluster_with(RuntimeBug::StaleRestart).await;
    traffic(&cluster, "before").await;
    cluster.kill(1).await;
    cluster.start_replica(1).await.expect("it restarts");
    traffic(&cluster, "after").await;
    let text = fails(&cluster);
    assert!(text.contains("stale"), "{text}");
}
