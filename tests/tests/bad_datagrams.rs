//! Garbage, truncated, oversized, wrong-version, wrong-cluster, unknown-sender and misaddressed
//! datagrams are dropped and counted by reason; the replica keeps serving.

use e2e::ops::{get, put};
use e2e::TestCluster;
use smr::codec::{self, FrameKind, Header, FORMAT_VERSION, MAX_DATAGRAM_BYTES};
use smr::message::Msg;
use spec::{KvOutput, Output};
use stateright::actor::Id;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_datagrams_are_dropped_and_counted_and_the_replica_keeps_serving() {
    let cluster = TestCluster::start(3).await;
    let target = cluster.cluster.members[&Id::from(0)];
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let client = smr::runtime::FIRST_CLIENT_ID + 77;
    let heartbeat = Msg::Nack {
        ballot: Default::default(),
    };
    let frame = |cluster_id: u64, sender: u64, receiver: u64| {
        let header = Header {
            kind: FrameKind::Protocol,
            cluster: cluster_id,
            sender,
            receiver,
        };
        let mut bytes = Vec::new();
        codec::encode(&header, &heartbeat, &mut bytes).unwrap();
        bytes
    };
    let good = frame(cluster.cluster.id, client, 0);

    let garbage: Vec<u8> = (0..200u32).map(|i| (i * 7919 % 251) as u8).collect();
    let truncated = good[..good.len() / 2].to_vec();
    let oversized = vec![0u8; MAX_DATAGRAM_BYTES + 100];
    let mut wrong_version = good.clone();
    wrong_version[4] = FORMAT_VERSION + 1;
    let wrong_cluster = frame(cluster.cluster.id ^ 1, client, 0);
    // A replica id from an address that is not that replica's, and an id nobody has.
    let impersonation = frame(cluster.cluster.id, 1, 0);
    let unknown_replica = frame(cluster.cluster.id, 9, 0);
    let misaddressed = frame(cluster.cluster.id, client, 5);
    let mut bad_body = good.clone();
    bad_body.truncate(codec::HEADER_BYTES);
    bad_body.extend_from_slice(&[0xff; 16]);

    for _ in 0..3 {
        for datagram in [
            &garbage,
            &truncated,
            &oversized,
            &wrong_version,
            &wrong_cluster,
            &impersonation,
            &unknown_replica,
            &misaddressed,
            &bad_body,
            &Vec::new(),
        ] {
            socket.send_to(datagram, target).await.unwrap();
        }
    }

    // Still serving, and with correct results.
    let results = cluster
        .run(vec![put("k", "v"), get("k")])
        .await
        .expect("the cluster still answers");
    assert_eq!(results[1].1, Output::Kv(KvOutput::Value(Some("v".into()))));

    let statuses = cluster.status().await;
    let counters = &statuses[&Id::from(0)].counters;
    // Garbage, truncated, bad body and empty datagrams are malformed: 4 kinds, 3 times each.
    assert_eq!(counters.malformed, 12, "{counters:?}");
    assert_eq!(counters.oversized, 3, "{counters:?}");
    assert_eq!(counters.wrong_version, 3, "{counters:?}");
    assert_eq!(counters.wrong_cluster, 3, "{counters:?}");
    assert_eq!(counters.unknown_sender, 6, "{counters:?}");
    assert_eq!(counters.wrong_receiver, 3, "{counters:?}");
}
