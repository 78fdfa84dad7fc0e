//! Garbage, truncated, oversized, wrong-version, wrong-cluster, unknown-sender, misaddressed,
//! unsigned, forged, replayed and unauthorized datagrams are dropped and counted by reason;
//! the replica keeps serving.

use e2e::ops::{get, put};
use e2e::TestCluster;
use smr::codec::{self, FrameKind, Header, FORMAT_VERSION, MAX_DATAGRAM_BYTES};
use smr::deploy::Want;
use smr::message::Msg;
use smr::runtime::auth::client_id_of;
use smr::runtime::Auth;
use spec::{KvOutput, Output};
use stateright::actor::Id;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_datagrams_are_dropped_and_counted_and_the_replica_keeps_serving() {
    let cluster = TestCluster::start(3).await;
    let target = cluster.cluster.members[&Id::from(0)];
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let client = client_id_of(0, smr::runtime::FIRST_CLIENT_ID + 77);
    // What a client holds, and (for datagrams that must get past authentication to be refused
    // for another reason) what a replica holds.
    let mut as_client = Auth::new(cluster.keyring(Want::Credential(0)), 1);
    let mut as_replica = Auth::new(cluster.cluster.replica_keyring().unwrap(), 1);
    let heartbeat = Msg::Nack {
        ballot: Default::default(),
    };
    let id = cluster.cluster.id;
    let signed = |auth: &mut Auth, cluster_id: u64, sender: u64, receiver: u64| {
        let mut bytes = Vec::new();
        let header = Header::new(FrameKind::Protocol, cluster_id, sender, receiver);
        auth.frame(header, &heartbeat, &mut bytes).unwrap();
        bytes
    };

    let garbage: Vec<u8> = (0..200u32).map(|i| (i * 7919 % 251) as u8).collect();
    let oversized = vec![0u8; MAX_DATAGRAM_BYTES + 100];
    for _ in 0..3 {
        let good = signed(&mut as_client, id, client, 0);
        let truncated = good[..good.len() / 2].to_vec();
        let mut wrong_version = good.clone();
        wrong_version[4] = FORMAT_VERSION + 1;
        let wrong_cluster = signed(&mut as_client, id ^ 1, client, 0);
        // Signed with the cluster key, but a replica id from an address that is not that
        // replica's, and an id nobody has.
        let impersonation = signed(&mut as_replica, id, 1, 0);
        let unknown_replica = signed(&mut as_replica, id, 9, 0);
        let misaddressed = signed(&mut as_client, id, client, 5);
        let mut bad_body = Vec::new();
        as_client
            .frame(
                Header::new(FrameKind::Protocol, id, client, 0),
                &[0xffu8; 16],
                &mut bad_body,
            )
            .unwrap();
        let mut unsigned = Vec::new();
        let header = Header::new(FrameKind::Protocol, id, client, 0);
        codec::encode(&header, &heartbeat, &mut unsigned).unwrap();
        let mut forged = signed(&mut as_client, id, client, 0);
        let last = forged.len() - 20;
        forged[last] ^= 0x40;
        // Authentic, then again: the second copy is a replay.
        let original = signed(&mut as_client, id, client, 0);
        // A client sending a replica's message (the heartbeat) is refused.
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
            &unsigned,
            &forged,
            &original,
            &original,
        ] {
            socket.send_to(datagram, target).await.unwrap();
        }
        // Room in the replica's receive buffer (three 60 kB datagrams a round) for the next.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
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
    assert_eq!(counters.unknown_key, 3, "{counters:?}");
    assert_eq!(counters.bad_tag, 3, "{counters:?}");
    assert_eq!(counters.replayed, 3, "{counters:?}");
    // The first copy of each authentic heartbeat from a client.
    assert_eq!(counters.unauthorized, 3, "{counters:?}");
}
