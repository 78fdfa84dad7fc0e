//! A replica whose storage is corrupt, or belongs to another replica, refuses to start with an
//! error that names the file and says what is wrong.

use e2e::ops::put;
use e2e::TestCluster;

/// The newest file of a kind ("log." or "snapshot.") in a data directory.
fn newest(dir: &std::path::Path, prefix: &str) -> std::path::PathBuf {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(prefix))
        })
        .collect();
    files.sort();
    files
        .pop()
        .unwrap_or_else(|| panic!("no {prefix}* in {}", dir.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_log_record_stops_the_replica_from_starting() {
    let mut cluster = TestCluster::start(3).await;
    let ops: Vec<_> = (0..20).map(|n| put(&format!("k{n}"), "v")).collect();
    cluster.run(ops).await.expect("the cluster answers");
    cluster.kill(1).await;
    let log = newest(&cluster.data_dir(1), "log.");
    let mut bytes = std::fs::read(&log).unwrap();
    assert!(bytes.len() > 100, "the log holds records");
    // Flip a byte inside the first record's payload (header 16 bytes, record header 12).
    bytes[16 + 12 + 2] ^= 0x40;
    std::fs::write(&log, &bytes).unwrap();

    let error = cluster
        .start_replica(1)
        .await
        .expect_err("refuses to start")
        .to_string();
    assert!(
        error.contains(&log.display().to_string()),
        "names the file: {error}"
    );
    assert!(error.contains("at byte 16"), "says where: {error}");
    assert!(error.contains("checksum mismatch"), "says what: {error}");

    // The rest of the cluster is unaffected.
    cluster
        .run(vec![put("still", "up")])
        .await
        .expect("two replicas serve");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_snapshot_or_a_foreign_directory_stops_the_replica_from_starting() {
    let mut cluster = TestCluster::start(3).await;
    cluster
        .run(vec![put("k", "v")])
        .await
        .expect("the cluster answers");
    cluster.kill(2).await;
    let snapshot = newest(&cluster.data_dir(2), "snapshot.");
    let mut bytes = std::fs::read(&snapshot).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&snapshot, &bytes).unwrap();
    let error = cluster
        .start_replica(2)
        .await
        .expect_err("refuses to start")
        .to_string();
    assert!(error.contains(&snapshot.display().to_string()), "{error}");
    assert!(error.contains("snapshot is corrupt"), "{error}");

    // Replica 1's directory given to replica 2: refused by the identity check.
    cluster.kill(1).await;
    std::fs::remove_dir_all(cluster.data_dir(2)).unwrap();
    std::fs::rename(cluster.data_dir(1), cluster.data_dir(2)).unwrap();
    let error = cluster
        .start_replica(2)
        .await
        .expect_err("refuses to start")
        .to_string();
    assert!(error.contains("belongs to another replica"), "{error}");
}
