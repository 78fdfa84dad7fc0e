//! The cluster keeps serving when the leader is killed, and a restarted replica recovers from
//! its data directory and catches up, with every result still correct.

use e2e::ops::{get, put};
use e2e::TestCluster;
use spec::{KvOutput, Output};
use stateright::actor::Id;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_and_catches_up_after_restart() {
    let mut cluster = TestCluster::start(3).await;
    let before: Vec<_> = (0..10).map(|n| put(&format!("k{n}"), "before")).collect();
    cluster.run(before).await.expect("the cluster answers");

    // Replica 0 leads a new cluster. Kill it: the other two elect a leader and go on.
    let killed = cluster.kill(0).await;
    let leader_state = killed.state.expect("it ran");
    assert!(leader_state.replica().is_some_and(|r| r.is_leader()));
    let during: Vec<_> = (0..10)
        .flat_map(|n| [get(&format!("k{n}")), put(&format!("k{n}"), "during")])
        .collect();
    let results = cluster
        .run(during)
        .await
        .expect("two of three replicas answer");
    for (n, pair) in results.chunks(2).enumerate() {
        assert_eq!(
            pair[0].1,
            Output::Kv(KvOutput::Value(Some("before".into()))),
            "k{n} kept the write acknowledged before the leader died"
        );
        assert_eq!(pair[1].1, Output::Kv(KvOutput::Written));
    }
    let statuses = cluster.status().await;
    assert!(!statuses.contains_key(&Id::from(0)), "replica 0 is down");
    assert!(
        statuses
            .values()
            .any(|answer| answer.status.as_ref().is_some_and(|s| s.role == "leader")),
        "a new leader was elected: {statuses:#?}"
    );

    // Restart replica 0 from its data directory: it recovers and catches up.
    cluster
        .start_replica(0)
        .await
        .expect("it restarts from its data directory");
    cluster
        .run(vec![put("after", "restart")])
        .await
        .expect("the cluster answers");
    cluster
        .wait_for("the restarted replica caught up", |statuses| {
            let Some(restarted) = statuses.get(&Id::from(0)).and_then(|a| a.status.clone()) else {
                return false;
            };
            let others: Vec<_> = statuses
                .iter()
                .filter(|(id, _)| **id != Id::from(0))
                .filter_map(|(_, a)| a.status.clone())
                .collect();
            restarted.incarnation == 1
                && others.len() == 2
                && others.iter().all(|o| {
                    o.executed == restarted.executed && o.service_digest == restarted.service_digest
                })
        })
        .await;

    // Results stay correct through every replica, the restarted one included.
    let reads: Vec<_> = (0..10)
        .map(|n| get(&format!("k{n}")))
        .chain([get("after")])
        .collect();
    let results = cluster.run(reads).await.expect("the cluster answers");
    for (n, (_, output)) in results.iter().take(10).enumerate() {
        assert_eq!(
            *output,
            Output::Kv(KvOutput::Value(Some("during".into()))),
            "k{n}"
        );
    }
    assert_eq!(
        results[10].1,
        Output::Kv(KvOutput::Value(Some("restart".into())))
    );

    // Now kill another replica: the restarted one is needed for a majority, and it serves.
    cluster.kill(2).await;
    let results = cluster
        .run(vec![put("last", "one"), get("last")])
        .await
        .expect("replicas 0 and 1 form a majority");
    assert_eq!(
        results[1].1,
        Output::Kv(KvOutput::Value(Some("one".into())))
    );
}

/// Issue 14: a replica cut off from a live leader used to raise its promise at each election
/// timeout; once back, its higher ballot deposed the healthy leader. With pre-vote it asks
/// first, the others (who hear the leader) refuse, and the leader keeps its ballot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_from_a_live_leader_does_not_depose_it_when_it_returns() {
    let cluster = TestCluster::start(3).await;
    cluster
        .run(vec![put("k", "before")])
        .await
        .expect("the cluster answers");
    let ballot_of =
        |statuses: &std::collections::BTreeMap<Id, smr::deploy::status::StatusAnswer>,
         id: usize| {
            statuses[&Id::from(id)]
                .status
                .as_ref()
                .map(|s| (s.role.clone(), s.ballot))
        };
    let before = cluster.status().await;
    let (role, leader_ballot) = ballot_of(&before, 0).expect("replica 0 answers");
    assert_eq!(role, "leader");
    // Replica 2 is cut off from both others, both ways, for several election timeouts.
    cluster.partition(2, &[0, 1]);
    cluster.partition(0, &[2]);
    cluster.partition(1, &[2]);
    cluster
        .run(vec![put("k", "during")])
        .await
        .expect("two of three answer");
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (_, isolated) = ballot_of(&cluster.status().await, 2).expect("replica 2 answers");
    assert_eq!(isolated, leader_ballot, "no ballot raised while cut off");
    for id in 0..3 {
        cluster.partition(id, &[]);
    }
    cluster
        .run(vec![put("k", "after")])
        .await
        .expect("the cluster answers");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let after = cluster.status().await;
    assert_eq!(
        ballot_of(&after, 0),
        Some(("leader".to_string(), leader_ballot)),
        "the leader keeps leading in its ballot: {after:#?}"
    );
}
