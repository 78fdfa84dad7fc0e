//! Goal: the session table stays within `[limits] max_sessions` however many clients come, and a
//! request of a session it retired is answered "expired", never executed (issue 14: before the
//! bound, every `smr` command and benchmark client left a session behind for ever).

use e2e::ops::{get, put};
use e2e::{ClusterOptions, TestCluster};
use spec::{KvOutput, Output, SessionOutput};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_table_stays_bounded_however_many_clients_come() {
    let options = ClusterOptions {
        max_sessions: Some(4),
        ..ClusterOptions::default()
    };
    let cluster = TestCluster::start_with(3, options).await;
    for k in 0..12 {
        let outputs = cluster
            .run(vec![put(&format!("k{k}"), "v")])
            .await
            .expect("answered");
        assert_eq!(outputs[0].1, Output::Kv(KvOutput::Written));
    }
    // Every write is there, and every replica holds at most 4 sessions (12 without the bound).
    for k in 0..12 {
        let outputs = cluster.run(vec![get(&format!("k{k}"))]).await.unwrap();
        assert_eq!(outputs[0].1, Output::Kv(KvOutput::Value(Some("v".into()))));
    }
    cluster
        .wait_for("every replica to execute the 24 operations", |status| {
            status.len() == 3
                && status
                    .values()
                    .all(|s| s.status.as_ref().is_some_and(|s| s.executed >= 48))
        })
        .await;
    for (id, answer) in cluster.status().await {
        let status = answer.status.expect("a replica's status");
        assert!(
            status.sessions <= 4,
            "replica {id:?}: {} sessions",
            status.sessions
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_session_was_retired_is_told_so_and_nothing_runs_twice() {
    // A table of one session and two busy clients: each opening retires the other's session.
    let options = ClusterOptions {
        max_sessions: Some(1),
        ..ClusterOptions::default()
    };
    let cluster = TestCluster::start_with(3, options).await;
    let ops = |client: &str| (0..30).map(|k| put(&format!("{client}{k}"), "v")).collect();
    let (a, b) = tokio::join!(
        cluster.client(ops("a")).run(),
        cluster.client(ops("b")).run()
    );
    let (a, b) = (a.expect("a answered"), b.expect("b answered"));
    let expired = Output::Session(SessionOutput::Expired);
    assert!(
        a.last().map(|(_, o)| o) == Some(&expired) || b.last().map(|(_, o)| o) == Some(&expired),
        "one of the clients found its session retired: {a:?} {b:?}"
    );
    // Every write answered "written" is there; an expired client stops at once.
    for (client, outputs) in [("a", &a), ("b", &b)] {
        for (k, (_, output)) in outputs.iter().enumerate() {
            if *output == expired {
                assert_eq!(k, outputs.len() - 1, "nothing follows an expiry");
                continue;
            }
            assert_eq!(*output, Output::Kv(KvOutput::Written));
            let read = cluster
                .run(vec![get(&format!("{client}{k}"))])
                .await
                .unwrap();
            assert_eq!(read[0].1, Output::Kv(KvOutput::Value(Some("v".into()))));
        }
    }
}
