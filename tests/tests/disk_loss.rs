//! A replica that lost or damaged its disk never costs an acknowledged write (issue 12,
//! proofs/RECOVERY.md): it refuses to start from a missing, empty or damaged directory, and
//! started with `--recover` it rebuilds its storage from the other replicas before it votes.
//! Each run's traces are replayed through the model, where the loss is the model's
//! `LoseStorage`.

use e2e::ops::{get, put};
use e2e::{ClusterOptions, TestCluster};
use model::conform::explore::{self, Recorder};
use model::conform::shadow::all_down;
use model::conform::Options;
use model::ModelAction;
use spec::{KvOutput, Output};
use stateright::actor::Id;
use std::time::Duration;

const WRITES: usize = 5;
/// The model's example that the run must show.
const REBUILT_AND_VOTED: &str =
    "a replica that lost its storage rebuilt it and voted in a decision";

fn traced() -> ClusterOptions {
    ClusterOptions {
        trace: true,
        ..ClusterOptions::default()
    }
}

/// Five puts, each acknowledged before the next (a client per put, as `smr put` runs).
async fn acknowledged_writes(cluster: &TestCluster) {
    for n in 0..WRITES {
        let answer = cluster
            .run(vec![put(&format!("k{n}"), &format!("v{n}"))])
            .await
            .expect("the cluster answers");
        assert_eq!(answer[0].1, Output::Kv(KvOutput::Written));
    }
}

/// The replica that leads, as the replicas' status says.
async fn leader(cluster: &TestCluster) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let found = cluster.status().await.iter().find_map(|(id, answer)| {
            let status = answer.status.as_ref()?;
            (status.role == "leader").then_some(usize::from(*id))
        });
        if let Some(leader) = found {
            return leader;
        }
        assert!(std::time::Instant::now() < deadline, "no replica leads");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The rebuild completes; every acknowledged write reads back; and then every replica, the
/// rebuilt one included, holds the same state at the same slot.
async fn nothing_lost(cluster: &TestCluster) {
    cluster
        .wait_for("the replica rebuilt its storage", |statuses| {
            statuses.len() == 3
                && statuses
                    .values()
                    .all(|a| a.status.as_ref().is_some_and(|s| s.rebuild.is_none()))
        })
        .await;
    let gets = (0..WRITES).map(|n| get(&format!("k{n}"))).collect();
    let outputs = cluster.run(gets).await.expect("the cluster answers");
    for (n, (_, output)) in outputs.iter().enumerate() {
        assert_eq!(
            *output,
            Output::Kv(KvOutput::Value(Some(format!("v{n}").into()))),
            "k{n}, acknowledged before the disk was lost"
        );
    }
    // A last write, decided with the rebuilt replica's vote.
    cluster
        .run(vec![put("after", "rebuild")])
        .await
        .expect("the cluster answers");
    cluster
        .wait_for(
            "every replica executed the same slots with the same digest, none rebuilding",
            |statuses| {
                let states: Vec<_> = statuses.values().filter_map(|a| a.status.clone()).collect();
                states.len() == 3
                    && states
                        .iter()
                        .all(|s| s.role != "rebuilding" && s.rebuild.is_none())
                    && states.windows(2).all(|pair| {
                        pair[0].executed == pair[1].executed
                            && pair[0].service_digest == pair[1].service_digest
                    })
            },
        )
        .await;
}

/// The data directory of `id` is wiped; a start without `--recover` is refused with a message
/// that names the directory and the fix.
fn wipe_and_check_refusal(cluster: &TestCluster, id: usize) -> std::path::PathBuf {
    let dir = cluster.data_dir(id);
    std::fs::remove_dir_all(&dir).expect("the data directory is wiped");
    dir
}

async fn wiped_replica_rebuilds(victim: impl Fn(usize) -> usize) {
    let mut cluster = TestCluster::start_with(3, traced()).await;
    acknowledged_writes(&cluster).await;
    let id = victim(leader(&cluster).await);
    // kill -9, then the disk is gone.
    cluster.crash(id).await;
    // A commit the crashed runtime handed to its disk thread still completes (as the kernel
    // would complete a write the process issued): let it, so that it cannot land in the new
    // directory.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let dir = wipe_and_check_refusal(&cluster, id);
    let refused = cluster
        .start_replica(id)
        .await
        .expect_err("a missing directory is never taken for a new one")
        .to_string();
    assert!(refused.contains(&dir.display().to_string()), "{refused}");
    assert!(refused.contains("--recover"), "{refused}");
    // Restarted at once, within the others' election timeout.
    cluster
        .recover_replica(id)
        .await
        .expect("it starts rebuilding");
    nothing_lost(&cluster).await;
    let rebuilt = cluster.status().await[&Id::from(id)]
        .status
        .clone()
        .expect("it answers");
    assert!(
        rebuilt.accepted > 0 || rebuilt.checkpoint.is_some(),
        "the rebuilt replica holds state again: {rebuilt:?}"
    );
    let report = cluster.conform();
    assert!(
        report.examples.contains(&REBUILT_AND_VOTED),
        "the run shows the rebuild: {:?}",
        report.examples
    );
    walks_through_the_model(&cluster);
}

/// The run, the loss included, is a path of the model that `explore --trace` shows: every
/// step enabled where it is taken, and the state reached the one the in-place replay reaches.
fn walks_through_the_model(cluster: &TestCluster) {
    let dir = cluster.trace_dir();
    let mut recorder = Recorder::new(0, usize::MAX);
    let (_, model) =
        model::conform::run_with(&dir, &Options::default(), &mut [&mut recorder]).unwrap();
    let steps = recorder.steps;
    assert!(steps
        .iter()
        .any(|s| matches!(s.action, ModelAction::LoseStorage(_))));
    let (walk, end) = explore::walk(&model, all_down(&model), &steps);
    assert_eq!(walk.disabled, None);
    let last = steps.last().unwrap().number;
    assert!(end == explore::state_after(&dir, &model, last).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_disk_was_wiped_loses_no_acknowledged_write() {
    wiped_replica_rebuilds(|leader| leader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_whose_disk_was_wiped_loses_no_acknowledged_write() {
    wiped_replica_rebuilds(|leader| (leader + 1) % 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_durable_record_is_rebuilt_never_dropped() {
    let mut cluster = TestCluster::start_with(3, traced()).await;
    acknowledged_writes(&cluster).await;
    let id = (leader(&cluster).await + 2) % 3;
    // The victim holds the writes in its log (a follower that missed the Accepts would hold
    // them only as decided commands, which it keeps in memory).
    cluster
        .wait_for("the victim accepted every write", |statuses| {
            statuses
                .get(&Id::from(id))
                .and_then(|a| a.status.as_ref())
                .is_some_and(|s| s.accepted >= WRITES as u64)
        })
        .await;
    cluster.kill(id).await;
    // Flip bytes inside the first record of the newest log: a record that was durable (its
    // durability marker follows it).
    let dir = cluster.data_dir(id);
    let mut logs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("log.")
        })
        .collect();
    logs.sort();
    let log = logs.pop().expect("a log");
    let mut bytes = std::fs::read(&log).unwrap();
    assert!(bytes.len() > 64, "the log holds records");
    for at in [16 + 12 + 1, 16 + 12 + 2] {
        bytes[at] ^= 0x5a;
    }
    std::fs::write(&log, &bytes).unwrap();
    let refused = cluster
        .start_replica(id)
        .await
        .expect_err("a damaged record is never used nor dropped")
        .to_string();
    assert!(refused.contains("checksum mismatch"), "{refused}");
    assert!(refused.contains("--recover"), "{refused}");
    cluster
        .recover_replica(id)
        .await
        .expect("it starts rebuilding");
    // The damaged files are kept, moved aside.
    let kept = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("damaged-")
        })
        .expect("the damaged files were moved aside");
    assert!(kept.join(log.file_name().unwrap()).exists());
    nothing_lost(&cluster).await;
    let report = cluster.conform();
    assert!(
        report.examples.contains(&REBUILT_AND_VOTED),
        "the run shows the rebuild: {:?}",
        report.examples
    );
    walks_through_the_model(&cluster);
}
