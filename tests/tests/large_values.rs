//! Goal: the largest request a client may send is replicated through a leader change, and a
//! larger one is refused at the client with an error that names the limit (issue 14: a request
//! of 48–59 KB used to be accepted, and then no promise could carry it, so no new leader could
//! complete Phase 1).

use e2e::ops::{get, put};
use e2e::TestCluster;
use smr::deploy::client::ClientError;
use spec::{KvOutput, Output};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_values_survive_an_election_and_a_larger_one_is_refused() {
    let mut cluster = TestCluster::start(3).await;
    let limit = cluster.cluster.replica.limits.max_request_bytes();
    // The largest value of a put to a 4-byte key: the limit less the key and the header.
    let largest = |fill: char| fill.to_string().repeat(limit - 48 - 4);
    // Several at once, so that the leader has more than one of them in flight (accepted, not
    // yet known to be decided by the followers) when it is killed right after.
    let keys = ["big0", "big1", "big2", "big3"];
    let value = |i: usize| largest(char::from(b'a' + i as u8));
    let written = tokio::join!(
        cluster.run(vec![put(keys[0], &value(0))]),
        cluster.run(vec![put(keys[1], &value(1))]),
        cluster.run(vec![put(keys[2], &value(2))]),
        cluster.run(vec![put(keys[3], &value(3))]),
    );
    for outputs in [written.0, written.1, written.2, written.3] {
        assert_eq!(
            outputs.expect("answered")[0].1,
            Output::Kv(KvOutput::Written)
        );
    }
    cluster.kill(0).await;
    // A new leader must learn all four through its Phase 1 (promises in pages).
    for (i, key) in keys.iter().enumerate() {
        let outputs = cluster
            .run(vec![get(key)])
            .await
            .expect("answered after the election");
        assert_eq!(
            outputs[0].1,
            Output::Kv(KvOutput::Value(Some(value(i).into())))
        );
    }
    // One byte more is refused before anything is sent, naming the limit.
    let too_large = format!("{}x", largest('z'));
    match cluster.run(vec![put("big4", &too_large)]).await {
        Err(error @ ClientError::TooLarge { bytes, .. }) => {
            assert_eq!(bytes, limit + 1);
            let message = error.to_string();
            assert!(
                message.contains(&limit.to_string()) && message.contains("max_batch_bytes"),
                "{message}"
            );
        }
        other => panic!("a request above the limit must be refused: {other:?}"),
    }
    let outputs = cluster.run(vec![get("big4")]).await.unwrap();
    assert_eq!(outputs[0].1, Output::Kv(KvOutput::Value(None)));
}
