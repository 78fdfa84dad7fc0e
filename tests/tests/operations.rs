//! Real replicas over UDP answer every operation as the sequential key-value spec does.

use e2e::ops::{cas, delete, get, put};
use e2e::TestCluster;
use spec::{KvOutput, Output};

fn outputs(results: Vec<(u64, Output)>) -> Vec<KvOutput> {
    results
        .into_iter()
        .map(|(slot, output)| match output {
            Output::Kv(output) => output,
            other => panic!("slot {slot}: a key-value operation answered {other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_returns_what_the_sequential_spec_says() {
    let cluster = TestCluster::start(3).await;
    let results = cluster
        .run(vec![
            get("k"),
            put("k", "1"),
            get("k"),
            cas("k", Some("0"), "x"),
            cas("k", Some("1"), "2"),
            cas("fresh", None, "a"),
            cas("fresh", None, "b"),
            delete("k"),
            delete("k"),
            get("k"),
            get("fresh"),
        ])
        .await
        .expect("the cluster answers");
    let slots: Vec<u64> = results.iter().map(|(slot, _)| *slot).collect();
    assert!(
        slots.windows(2).all(|w| w[0] < w[1]),
        "slots increase: {slots:?}"
    );
    assert_eq!(
        outputs(results),
        vec![
            KvOutput::Value(None),
            KvOutput::Written,
            KvOutput::Value(Some("1".into())),
            KvOutput::Cas {
                swapped: false,
                previous: Some("1".into())
            },
            KvOutput::Cas {
                swapped: true,
                previous: Some("1".into())
            },
            KvOutput::Cas {
                swapped: true,
                previous: None
            },
            KvOutput::Cas {
                swapped: false,
                previous: Some("a".into())
            },
            KvOutput::Deleted(true),
            KvOutput::Deleted(false),
            KvOutput::Value(None),
            KvOutput::Value(Some("a".into())),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_each_see_their_own_writes_and_all_replicas_converge() {
    let cluster = TestCluster::start(3).await;
    let clients: Vec<_> = (0..8)
        .map(|client| {
            let key = format!("client{client}");
            let ops = (0..20)
                .flat_map(|n| [put(&key, &n.to_string()), get(&key)])
                .collect::<Vec<_>>();
            e2e::run_client(cluster.cluster.clone(), ops)
        })
        .collect();
    let all = futures_join(clients).await;
    for (client, results) in all.into_iter().enumerate() {
        let results = outputs(results.expect("the cluster answers"));
        for (n, pair) in results.chunks(2).enumerate() {
            assert_eq!(pair[0], KvOutput::Written, "client {client}");
            assert_eq!(
                pair[1],
                KvOutput::Value(Some(n.to_string().into())),
                "client {client} reads its write {n}"
            );
        }
    }
    // 8 clients x 40 operations, and every replica ends with the same state at the same slot.
    cluster
        .wait_for(
            "all replicas executed the same slots with the same state",
            |statuses| {
                let states: Vec<_> = statuses
                    .values()
                    .filter_map(|answer| answer.status.as_ref())
                    .map(|status| (status.executed, status.service_digest, status.keys))
                    .collect();
                states.len() == 3 && states.windows(2).all(|w| w[0] == w[1]) && states[0].2 == 8
            },
        )
        .await;
}

/// Runs the futures concurrently and returns their results in order.
async fn futures_join<F: std::future::Future + Send + 'static>(futures: Vec<F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut results = Vec::new();
    for handle in handles {
        results.push(handle.await.expect("no panic"));
    }
    results
}
