//! A request sent to a follower is forwarded to the leader, which answers the client directly:
//! the follower's runtime told the other replicas where the client is.

use e2e::TestCluster;
use smr::client::Client;
use smr::deploy::client::{client_auth, fresh_client_id, runtime_for};
use smr::deploy::Want;
use smr::runtime::SplitMix64;
use spec::{KvOp, KvOutput, Operation, Output};
use stateright::actor::Id;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_to_a_follower_is_answered_by_the_leader_without_a_retry() {
    let cluster = TestCluster::start(3).await;
    // Replica 0 leads a new cluster; this client tries replica 1 first, and would only retry
    // after a minute, so an answer within the test's deadline came from the first send.
    let client = Client {
        replicas: vec![Id::from(1), Id::from(0), Id::from(2)],
        ops: vec![Operation::Kv(KvOp::Put {
            key: "k".into(),
            value: "v".into(),
        })],
        max_attempts: 1,
        retry_timeout: Duration::from_secs(60)..Duration::from_secs(60),
        delay_start: false,
        bug: None,
    };
    let socket = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let mut random = SplitMix64::new(42);
    let id = fresh_client_id(&mut random, 0);
    let runtime = runtime_for(
        client,
        id,
        cluster.cluster.id,
        &cluster.cluster.members,
        client_auth(cluster.keyring(Want::Credential(0))),
        socket,
        7,
    );
    let stopped = runtime
        .run(tokio::time::sleep(Duration::from_secs(10)))
        .await
        .expect("the client runs");
    let state = stopped.state.expect("started");
    let outputs = &state.client().expect("a client").outputs;
    assert_eq!(outputs.len(), 1, "answered without a retry");
    assert_eq!(outputs[0].1, Output::Kv(KvOutput::Written));
    let statuses = cluster.status().await;
    let leader = &statuses[&Id::from(0)];
    assert_eq!(
        leader.status.as_ref().map(|s| s.role.as_str()),
        Some("leader")
    );
    assert_eq!(leader.counters.unroutable, 0, "{:?}", leader.counters);
}
