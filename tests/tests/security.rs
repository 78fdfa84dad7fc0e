//! Only the cluster speaks for the cluster: forged replica messages, replayed and re-addressed
//! client requests, clients without a credential and JOIN or status without an
//! administrator's credential are refused; a cluster key is rotated with every replica
//! restarted one at a time while clients keep working.

use e2e::ops::{get, put};
use e2e::TestCluster;
use smr::codec::{self, FrameKind, Header};
use smr::deploy::client::client_auth;
use smr::deploy::{ClientError, Security, Want};
use smr::message::Msg;
use smr::runtime::auth::client_id_of;
use smr::runtime::peers::wire_id;
use smr::runtime::{Auth, Credential, Key, Keyring, Role, FIRST_CLIENT_ID};
use smr::Ballot;
use spec::{KvOp, KvOutput, Operation, Output, Request};
use stateright::actor::Id;
use std::time::Duration;

fn value(answer: &Output) -> Option<String> {
    match answer {
        Output::Kv(KvOutput::Value(value)) => value.as_ref().map(ToString::to_string),
        other => panic!("not a get's answer: {other:?}"),
    }
}

/// Each replica's (ballot round, executed, state digest).
async fn fingerprint(cluster: &TestCluster) -> Vec<(u64, (u32, u64), u64, u64)> {
    let statuses = cluster.status().await;
    statuses
        .iter()
        .map(|(id, answer)| {
            let status = answer.status.as_ref().expect("status decodes");
            (
                wire_id(*id),
                status.ballot,
                status.executed,
                status.service_digest,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replica_messages_from_the_right_address_change_nothing() {
    let mut cluster = TestCluster::start(3).await;
    cluster.run(vec![put("k", "real")]).await.unwrap();
    // Replica 1 stops; its address is now the attacker's, who lacks the cluster key.
    cluster.kill(1).await;
    let address = cluster.cluster.members[&Id::from(1)];
    let attacker = tokio::net::UdpSocket::bind(address).await.unwrap();
    cluster
        .wait_for("replicas 0 and 2 have executed the put", |statuses| {
            let executed: Vec<u64> = statuses
                .values()
                .filter_map(|a| a.status.as_ref().map(|s| s.executed))
                .collect();
            executed.len() == 2 && executed[0] == executed[1]
        })
        .await;
    let before = fingerprint(&cluster).await;
    let ballot = Ballot {
        round: 99,
        leader: Id::from(1),
    };
    let accept = Msg::Accept {
        ballot,
        slot: 50,
        command: spec::Command::Noop,
        commit: 0,
        stable: None,
        electorate: Default::default(),
    };
    let prepare = Msg::Prepare {
        ballot,
        from: 0,
        rebuild: false,
    };
    let wrong_key = Keyring::Replica {
        cluster: vec![Key::generate().unwrap()],
        credentials: Default::default(),
    };
    let mut forger = Auth::new(wrong_key, u64::MAX);
    let mut with_real_key = Auth::new(cluster.cluster.replica_keyring().unwrap(), u64::MAX);
    for target in [0usize, 2] {
        let to = cluster.cluster.members[&Id::from(target)];
        for msg in [&accept, &prepare] {
            let header = Header::new(FrameKind::Protocol, cluster.cluster.id, 1, target as u64);
            let mut unsigned = Vec::new();
            codec::encode(&header, msg, &mut unsigned).unwrap();
            let mut wrong = Vec::new();
            forger.frame(header, msg, &mut wrong).unwrap();
            // The real key's fingerprint, the wrong key's tag.
            let mut misnamed = wrong.clone();
            let real = Key::load(&cluster.keys_dir().join("cluster.key")).unwrap();
            misnamed[30..34].copy_from_slice(&real.fingerprint().to_le_bytes());
            for datagram in [&unsigned, &wrong, &misnamed] {
                attacker.send_to(datagram, to).await.unwrap();
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = fingerprint(&cluster).await;
    assert_eq!(
        before, after,
        "a forged Accept or Prepare changed a replica"
    );
    let statuses = cluster.status().await;
    for target in [0, 2] {
        let counters = &statuses[&Id::from(target)].counters;
        assert_eq!(counters.unknown_key, 4, "replica {target}: {counters:?}");
        assert_eq!(counters.bad_tag, 2, "replica {target}: {counters:?}");
    }
    let answers = cluster.run(vec![get("k")]).await.unwrap();
    assert_eq!(value(&answers[0].1).as_deref(), Some("real"));

    // The same Prepare under the real key, from the same address, is believed: what the
    // forgeries lacked was the key.
    let header = Header::new(FrameKind::Protocol, cluster.cluster.id, 1, 2);
    let mut genuine = Vec::new();
    with_real_key.frame(header, &prepare, &mut genuine).unwrap();
    attacker
        .send_to(&genuine, cluster.cluster.members[&Id::from(2)])
        .await
        .unwrap();
    cluster
        .wait_for("replica 2 promises the genuine ballot", |statuses| {
            statuses
                .get(&Id::from(2))
                .and_then(|a| a.status.as_ref())
                .is_some_and(|s| s.ballot.0 >= 99)
        })
        .await;
}

/// A client's signed request, as captured on the network.
fn request(auth: &mut Auth, cluster: u64, client: u64, number: u64, op: KvOp) -> Vec<u8> {
    let msg = Msg::Request(Request {
        client: Id::from(client as usize),
        session: spec::IMPLICIT,
        number,
        op: Operation::Kv(op),
    });
    let mut datagram = Vec::new();
    let header = Header::new(FrameKind::Protocol, cluster, client, 0);
    auth.frame(header, &msg, &mut datagram).unwrap();
    datagram
}

/// Sends `datagram` to replica 0 until a reply to request `number` comes back (verified under
/// the client's key), or gives up after `patience`.
async fn ask(
    socket: &tokio::net::UdpSocket,
    auth: &mut Auth,
    cluster: &TestCluster,
    datagram: &[u8],
    number: u64,
    patience: Duration,
) -> Option<Output> {
    let leader = cluster.cluster.members[&Id::from(0)];
    socket.send_to(datagram, leader).await.unwrap();
    let deadline = tokio::time::Instant::now() + patience;
    let mut buffer = vec![0u8; codec::MAX_DATAGRAM_BYTES];
    while let Ok(Ok((length, _))) =
        tokio::time::timeout_at(deadline, socket.recv_from(&mut buffer)).await
    {
        let reply = &buffer[..length];
        let Ok(header) = codec::decode_header(reply, cluster.cluster.id) else {
            continue;
        };
        if auth.verify(&header, reply).is_err() {
            continue;
        }
        if let Ok(Msg::Reply {
            number: n, output, ..
        }) = codec::decode_body::<Msg>(reply)
        {
            if n == number {
                return Some(output);
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_request_replayed_elsewhere_or_after_a_restart_is_not_executed_again() {
    let mut cluster = TestCluster::start(3).await;
    let id = cluster.cluster.id;
    let keyring = cluster.keyring(Want::Credential(0));
    let mut auth = client_auth(keyring.clone());
    let me = client_id_of(0, FIRST_CLIENT_ID + 4242);
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let captured = request(&mut auth, id, me, 1, put("k", "v1"));
    let answer = ask(
        &socket,
        &mut auth,
        &cluster,
        &captured,
        1,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(answer, Some(Output::Kv(KvOutput::Written)));
    cluster.run(vec![put("k", "v2")]).await.unwrap();

    // Replayed from another address: refused as a replay.
    let elsewhere = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let leader = cluster.cluster.members[&Id::from(0)];
    elsewhere.send_to(&captured, leader).await.unwrap();
    // Re-addressed to another client's id: the tag no longer matches.
    let mut renamed = captured.clone();
    renamed[14..22].copy_from_slice(&(me + 1).to_le_bytes());
    elsewhere.send_to(&renamed, leader).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let counters = cluster.status().await[&Id::from(0)].counters.clone();
    assert_eq!(counters.replayed, 1, "{counters:?}");
    assert_eq!(counters.bad_tag, 1, "{counters:?}");

    // After every replica restarted, the replay windows are empty: the stamp is accepted
    // again, and the replicated session table keeps the request from running twice (the
    // leader answers from it, and nothing changes).
    for replica in 0..3 {
        cluster.kill(replica).await;
    }
    for replica in 0..3 {
        cluster.start_replica(replica).await.unwrap();
    }
    let again = ask(
        &socket,
        &mut auth,
        &cluster,
        &captured,
        1,
        Duration::from_secs(10),
    )
    .await;
    assert_ne!(
        again, None,
        "the leader answers the replay from its session table"
    );
    let answers = cluster.run(vec![get("k")]).await.unwrap();
    assert_eq!(
        value(&answers[0].1).as_deref(),
        Some("v2"),
        "executed twice"
    );

    // The same path with a new request number does write: the replay changed nothing because
    // it was a replay.
    let fresh = request(&mut auth, id, me, 2, put("k", "v3"));
    let answer = ask(
        &socket,
        &mut auth,
        &cluster,
        &fresh,
        2,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(answer, Some(Output::Kv(KvOutput::Written)));
    let answers = cluster.run(vec![get("k")]).await.unwrap();
    assert_eq!(value(&answers[0].1).as_deref(), Some("v3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_a_credential_and_joins_without_an_administrator_are_refused() {
    let cluster = TestCluster::start_with(
        3,
        e2e::ClusterOptions {
            spares: 1,
            ..Default::default()
        },
    )
    .await;
    // A key the cluster does not know: nothing it sends is believed, and the error says where
    // to look.
    let stranger = Keyring::Client(Credential {
        id: 0,
        role: Role::Client,
        keys: vec![Key::generate().unwrap()],
    });
    let options = smr::deploy::ClientOptions {
        max_request_bytes: cluster.cluster.replica.limits.max_request_bytes(),
        deadline: std::time::Instant::now() + Duration::from_secs(1),
        retry_timeout: Duration::from_millis(100)..Duration::from_millis(150),
    };
    let error = smr::deploy::run_operations(
        cluster.cluster.id,
        &cluster.cluster.members,
        stranger,
        vec![Operation::Kv(put("k", "stranger"))],
        options,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, ClientError::NoAnswer { answered: 0, .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("accept this client's key"),
        "{error}"
    );
    let statuses = cluster.status().await;
    assert!(statuses[&Id::from(0)].counters.unknown_key > 0);

    // A client's credential asking to JOIN: refused, with the reason, and nothing changes.
    let mut join = cluster.admin(vec![spec::Change::Join(Id::from(3))]);
    join.keyring = cluster.keyring(Want::Credential(0));
    let error = join.run().await.unwrap_err();
    assert!(
        matches!(&error, ClientError::Refused(why) if why.contains("administrator")),
        "{error}"
    );
    // ... and asking for the status: no answer, each replica counts it.
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut as_client = client_auth(cluster.keyring(Want::Credential(0)));
    let me = client_id_of(0, FIRST_CLIENT_ID + 7);
    let deadline = std::time::Instant::now() + Duration::from_millis(300);
    let answers = smr::deploy::query_status(
        &socket,
        cluster.cluster.id,
        &mut as_client,
        me,
        &cluster.cluster.members,
        deadline,
    )
    .await;
    assert!(answers.is_empty(), "{answers:?}");
    let statuses = cluster.status().await;
    for (id, answer) in &statuses {
        let status = answer.status.as_ref().unwrap();
        assert_eq!(status.members, vec![0, 1, 2], "replica {id:?}");
        assert!(answer.counters.unauthorized >= 1, "replica {id:?}");
    }
    let written = cluster.run(vec![get("k")]).await.unwrap();
    assert_eq!(value(&written[0].1), None, "the stranger wrote nothing");

    // The administrator's credential may.
    let answers = cluster
        .admin(vec![spec::Change::Join(Id::from(3))])
        .run()
        .await
        .expect("the administrator's JOIN is decided");
    assert!(matches!(
        answers[0].1,
        Output::Reconfigure(spec::ChangeOutput::Accepted { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_key_is_rotated_one_replica_at_a_time_while_clients_work() {
    let mut cluster = TestCluster::start(3).await;
    let keys = cluster.keys_dir();
    let (old, new) = (keys.join("cluster.key"), keys.join("cluster-2.key"));
    Key::create_file(&new).unwrap();
    let Security::Keys { credentials, .. } = cluster.cluster.security.clone() else {
        panic!("the test cluster is secure");
    };
    let with = |cluster_keys: Vec<std::path::PathBuf>| Security::Keys {
        cluster_keys,
        credentials: credentials.clone(),
    };
    let mut written = 0;
    // 1: every replica accepts the new key too; 2: every replica signs with it; 3: the old
    // key is gone. One replica down at a time: a majority always serves.
    for (step, keys) in [
        vec![old.clone(), new.clone()],
        vec![new.clone(), old.clone()],
        vec![new.clone()],
    ]
    .into_iter()
    .enumerate()
    {
        for replica in 0..3 {
            cluster.kill(replica).await;
            cluster.set_security(replica, with(keys.clone()));
            cluster.start_replica(replica).await.unwrap();
            written += 1;
            cluster
                .run(vec![put(&format!("during-{step}-{replica}"), "ok")])
                .await
                .unwrap_or_else(|e| panic!("step {step}, replica {replica} restarted: {e}"));
        }
    }
    let statuses = cluster.status().await;
    for (id, answer) in &statuses {
        assert_eq!(
            answer.counters.unknown_key, 0,
            "replica {id:?}: {:?}",
            answer.counters
        );
    }
    let answers = cluster
        .run(vec![get("during-0-0"), get("during-2-2")])
        .await
        .unwrap();
    assert!(answers
        .iter()
        .all(|(_, a)| value(a).as_deref() == Some("ok")));
    assert_eq!(written, 9);

    // A replica left on the old key alone is not believed by the others.
    cluster.kill(2).await;
    cluster.set_security(2, with(vec![old]));
    cluster.start_replica(2).await.unwrap();
    cluster
        .wait_for("the others refuse replica 2's old key", |statuses| {
            statuses
                .get(&Id::from(0))
                .is_some_and(|a| a.counters.unknown_key > 0)
        })
        .await;
}

/// Every one-byte change, truncation and extension of a client's signed request, and random
/// bodies under its header.
fn mutations(original: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for at in 0..original.len() {
        for flip in [0x01u8, 0x80, 0x5a] {
            let mut changed = original.to_vec();
            changed[at] ^= flip;
            out.push(changed);
        }
        out.push(original[..at].to_vec());
    }
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..64 {
        let mut random = original[..codec::HEADER_BYTES].to_vec();
        for _ in 0..(original.len() - codec::HEADER_BYTES) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            random.push(x as u8);
        }
        out.push(random);
        let mut longer = original.to_vec();
        longer.push(x as u8);
        out.push(longer);
    }
    out
}

/// The defect this issue reported: mutated client datagrams decoded as valid requests and
/// were executed. A request that was signed but never sent, mutated in every way above, is
/// flooded at the leader; with authentication nothing of it is executed, and every datagram
/// is dropped and counted. The same flood at an insecure cluster does write keys that no
/// client wrote: the check is not vacuous.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_client_datagrams_are_never_executed() {
    for insecure in [false, true] {
        let cluster = TestCluster::start_with(
            3,
            e2e::ClusterOptions {
                insecure,
                ..Default::default()
            },
        )
        .await;
        let mut auth = client_auth(cluster.keyring(Want::Credential(0)));
        let me = client_id_of(0, FIRST_CLIENT_ID + 99);
        let captured = request(&mut auth, cluster.cluster.id, me, 1, put("captured", "v"));
        let flood = mutations(&captured);
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let leader = cluster.cluster.members[&Id::from(0)];
        for (n, datagram) in flood.iter().enumerate() {
            socket.send_to(datagram, leader).await.unwrap();
            if n % 32 == 31 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let statuses = cluster.status().await;
        let leader_status = &statuses[&Id::from(0)];
        let keys = leader_status.status.as_ref().unwrap().keys;
        if insecure {
            assert!(keys > 0, "the insecure cluster executed nothing mutated");
            continue;
        }
        assert_eq!(keys, 0, "a mutated request was executed");
        let c = &leader_status.counters;
        let dropped = c.dropped_incoming();
        assert_eq!(
            dropped,
            flood.len() as u64,
            "every mutated datagram is dropped and counted: {c:?}"
        );
    }
}
