//! Real clusters under faults record traces of every replica and client step, and each run is
//! replayed through the model: every step must be one the model allows, with the recorded
//! outputs and state digests, and every safety property must hold along the way.

use e2e::ops::{get, put};
use e2e::{ClusterOptions, TestCluster};
use smr::runtime::NetworkFaults;
use spec::{KvOutput, Output};
use stateright::actor::Id;
use std::time::Duration;

fn traced() -> ClusterOptions {
    ClusterOptions {
        trace: true,
        ..ClusterOptions::default()
    }
}

/// Runs `clients` concurrent clients of `ops` operations each on distinct keys, and checks
/// every answer.
async fn load(cluster: &TestCluster, clients: usize, ops: usize, tag: &str) {
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut script = Vec::new();
        for n in 0..ops {
            let key = format!("{tag}-{c}-{}", n % 3);
            script.push(put(&key, &format!("{n}")));
            script.push(get(&key));
        }
        tasks.push(tokio::spawn(cluster.client(script).run()));
    }
    for task in tasks {
        let results = task.await.unwrap().expect("every operation is answered");
        for (n, pair) in results.chunks(2).enumerate() {
            assert_eq!(pair[0].1, Output::Kv(KvOutput::Written));
            assert_eq!(
                pair[1].1,
                Output::Kv(KvOutput::Value(Some(n.to_string().into())))
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_lost_duplicated_and_delayed_datagrams_conforms() {
    // Every process loses, duplicates and delays (and so reorders) its datagrams: a lost
    // Accept or Accepted is made good by the leader's resends on its heartbeat, a lost request
    // or reply by the client's retry.
    let options = ClusterOptions {
        faults: Some(NetworkFaults {
            loss: 0.05,
            duplicate: 0.05,
            delay: 0.1,
            max_delay: Duration::from_millis(20),
        }),
        client_faults: Some(NetworkFaults {
            loss: 0.2,
            duplicate: 0.1,
            delay: 0.1,
            max_delay: Duration::from_millis(20),
        }),
        ..traced()
    };
    let cluster = TestCluster::start_with(3, options).await;
    load(&cluster, 3, 6, "faulty").await;
    let report = cluster.conform();
    assert!(report.steps > 100, "{} steps", report.steps);
    assert!(
        report.stutters > 0,
        "duplicates and stale messages are stutters"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_and_restarting_a_follower_and_the_leader_conforms() {
    let mut cluster = TestCluster::start_with(3, traced()).await;
    load(&cluster, 2, 3, "a").await;
    cluster.kill(2).await;
    load(&cluster, 2, 3, "b").await;
    cluster
        .start_replica(2)
        .await
        .expect("the follower restarts");
    load(&cluster, 1, 2, "c").await;
    cluster.kill(0).await;
    load(&cluster, 2, 3, "d").await;
    cluster
        .start_replica(0)
        .await
        .expect("the old leader restarts");
    load(&cluster, 1, 3, "e").await;
    cluster
        .wait_for("every replica executed the same", |statuses| {
            let executed: Vec<u64> = statuses
                .values()
                .filter_map(|a| a.status.as_ref().map(|s| s.executed))
                .collect();
            executed.len() == 3 && executed.iter().all(|e| *e == executed[0])
        })
        .await;
    let report = cluster.conform();
    assert_eq!(report.crashes, 2, "two restarts, each after a crash");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_is_replaced_and_the_healed_run_conforms() {
    let cluster = TestCluster::start_with(3, traced()).await;
    load(&cluster, 2, 2, "before").await;
    // Cut the leader (replica 0) off from the other replicas, both ways.
    cluster.partition(0, &[1, 2]);
    cluster.partition(1, &[0]);
    cluster.partition(2, &[0]);
    load(&cluster, 2, 3, "during").await;
    cluster.partition(0, &[]);
    cluster.partition(1, &[]);
    cluster.partition(2, &[]);
    load(&cluster, 1, 3, "after").await;
    cluster
        .wait_for("replica 0 follows the new leader", |statuses| {
            statuses
                .get(&Id::from(0))
                .and_then(|a| a.status.as_ref())
                .is_some_and(|s| s.role == "follower" && s.leader.is_some_and(|l| l != 0))
        })
        .await;
    cluster.conform();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_in_the_middle_of_traffic_conform() {
    // Replicas die as with kill -9 while clients are busy: whatever the crash interrupted (a
    // group stepped but not committed, a commit under way, messages not yet sent) must leave a
    // run the model allows once the steps that never took effect are set aside.
    let mut cluster = TestCluster::start_with(3, traced()).await;
    for (round, victim) in [2usize, 0, 1, 0].into_iter().enumerate() {
        let busy = {
            let mut tasks = Vec::new();
            for c in 0..3 {
                let ops = (0..20)
                    .map(|n| put(&format!("crash-{round}-{c}-{}", n % 4), &n.to_string()))
                    .collect();
                tasks.push(tokio::spawn(cluster.client(ops).run()));
            }
            tasks
        };
        tokio::time::sleep(Duration::from_millis(15 + 10 * round as u64)).await;
        cluster.crash(victim).await;
        for task in busy {
            task.await.unwrap().expect("two replicas keep answering");
        }
        cluster.restart_after_crash(victim).await;
    }
    load(&cluster, 1, 3, "end").await;
    let report = cluster.conform();
    assert_eq!(report.crashes, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_and_quit_under_load_conform() {
    // A spare joins while clients write, then the first leader quits; the run is replayed with
    // the model's reconfiguration properties.
    let options = ClusterOptions {
        spares: 1,
        ..traced()
    };
    let cluster = TestCluster::start_with(3, options).await;
    let writers = {
        let mut tasks = Vec::new();
        for c in 0..2 {
            let ops = (0..25)
                .map(|n| put(&format!("reconfigure-{c}-{}", n % 5), &n.to_string()))
                .collect();
            tasks.push(tokio::spawn(cluster.client(ops).run()));
        }
        tasks
    };
    let changes = vec![
        spec::Change::Join(Id::from(3)),
        spec::Change::Quit(Id::from(0)),
    ];
    let answers = cluster
        .admin(changes)
        .run()
        .await
        .expect("both changes are decided");
    for (slot, answer) in &answers {
        assert!(
            matches!(
                answer,
                Output::Reconfigure(spec::ChangeOutput::Accepted { .. })
            ),
            "slot {slot}: {answer:?}"
        );
    }
    for task in writers {
        task.await
            .unwrap()
            .expect("the writers are answered throughout");
    }
    load(&cluster, 1, 3, "after").await;
    let exact = cluster.conform();
    assert!(exact.exact);
    // The incremental checks that long runs get, on the same run: quorums counted in each
    // slot's own configuration, and reconfiguration safety among the verdicts.
    let options = model::conform::Options {
        exact_limit: 0,
        ..model::conform::Options::default()
    };
    let incremental = model::conform::run(&cluster.trace_dir(), &options).unwrap();
    let mut text = Vec::new();
    incremental.print(&mut text).unwrap();
    let text = String::from_utf8_lossy(&text);
    assert!(!incremental.exact);
    assert!(incremental.passed(), "{text}");
    assert!(text.contains("reconfiguration safety: holds"), "{text}");
}
