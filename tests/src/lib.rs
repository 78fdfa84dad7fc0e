//! End-to-end test harness: a cluster of real replicas over UDP on loopback, each a task with
//! its own socket (on an ephemeral port) and its own data directory, so that tests can run in
//! parallel. Replicas can be killed (the runtime stops as in a crash: nothing more is sent) and
//! restarted from their data directories on the same address.

use smr::deploy::status::StatusAnswer;
use smr::deploy::{
    query_status, run_operations, start_replica, ClientError, ClientOptions, Cluster,
};
use smr::node::Node;
use smr::runtime::{RuntimeError, Stopped, StorageError, SyncPolicy, FIRST_CLIENT_ID};
use spec::{KvOp, Operation, Output, Slot};
use stateright::actor::Id;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A replica task and the means to stop it.
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<Stopped<Node>, RuntimeError>>,
}

/// A local cluster for tests.
pub struct TestCluster {
    pub cluster: Cluster,
    data: tempfile::TempDir,
    running: BTreeMap<usize, Running>,
}

impl TestCluster {
    /// Starts `n` replicas on ephemeral loopback ports.
    pub async fn start(n: usize) -> Self {
        // Bind once to learn free ports, then release them for the replicas to bind. (Another
        // process could take a port in between; on loopback in a test run that does not happen
        // in practice, and the bind below would fail loudly if it did.)
        let mut text = format!(
            "cluster = \"e2e-{}\"\n[timing]\nelection_timeout_ms = [150, 300]\nheartbeat_interval_ms = 30\n",
            std::process::id() as u64 * 1000 + u64::from(rand_u16())
        );
        let probes: Vec<std::net::UdpSocket> = (0..n)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").expect("bind"))
            .collect();
        for (id, probe) in probes.iter().enumerate() {
            text.push_str(&format!(
                "[[replica]]\nid = {id}\naddress = \"{}\"\n",
                probe.local_addr().unwrap()
            ));
        }
        drop(probes);
        let cluster = Cluster::parse(&text).expect("a valid test configuration");
        let mut test = Self {
            cluster,
            data: tempfile::tempdir().expect("a temporary directory"),
            running: BTreeMap::new(),
        };
        for id in 0..n {
            test.start_replica(id).await.expect("replica starts");
        }
        test
    }

    /// The data directory of replica `id`.
    pub fn data_dir(&self, id: usize) -> PathBuf {
        self.data.path().join(format!("replica-{id}"))
    }

    /// Starts (or restarts) replica `id` from its data directory on its configured address.
    pub async fn start_replica(&mut self, id: usize) -> Result<(), StorageError> {
        assert!(
            !self.running.contains_key(&id),
            "replica {id} is already running"
        );
        let address = self.cluster.members[&Id::from(id)];
        let socket = tokio::net::UdpSocket::bind(address)
            .await
            .unwrap_or_else(|e| panic!("cannot bind {address}: {e}"));
        let options = smr::deploy::ReplicaOptions {
            sync: SyncPolicy::Fsync,
            seed: 1000 + id as u64,
            inline_commit: false,
            ..Default::default()
        };
        let runtime = start_replica(
            &self.cluster,
            Id::from(id),
            &self.data_dir(id),
            Arc::new(socket),
            options,
        )?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(runtime.run(async move {
            let _ = stopped.await;
        }));
        self.running.insert(id, Running { stop, task });
        Ok(())
    }

    /// Kills replica `id` as a crash would: it sends nothing more. Returns its final state.
    pub async fn kill(&mut self, id: usize) -> Stopped<Node> {
        let running = self.running.remove(&id).expect("replica is running");
        let _ = running.stop.send(());
        running
            .task
            .await
            .expect("replica task did not panic")
            .expect("replica ran without a fatal error")
    }

    /// Runs `ops` as one fresh client, with a deadline of 20 s.
    pub async fn run(&self, ops: Vec<KvOp>) -> Result<Vec<(Slot, Output)>, ClientError> {
        run_client(self.cluster.clone(), ops).await
    }

    /// The status of every replica that answers within a second.
    pub async fn status(&self) -> BTreeMap<Id, StatusAnswer> {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let me = FIRST_CLIENT_ID | u64::from(rand_u16());
        let deadline = Instant::now() + Duration::from_secs(1);
        query_status(
            &socket,
            self.cluster.id,
            me,
            &self.cluster.members,
            deadline,
        )
        .await
    }

    /// Waits (up to 20 s) until `done` holds for the statuses; panics otherwise.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&BTreeMap<Id, StatusAnswer>) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let statuses = self.status().await;
            if done(&statuses) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting until {what}: {statuses:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Runs `ops` as one fresh client of `cluster`, with a deadline of 20 s.
pub async fn run_client(
    cluster: Cluster,
    ops: Vec<KvOp>,
) -> Result<Vec<(Slot, Output)>, ClientError> {
    let options = ClientOptions {
        deadline: Instant::now() + Duration::from_secs(20),
        retry_timeout: Duration::from_millis(100)..Duration::from_millis(150),
    };
    let ops = ops.into_iter().map(Operation::Kv).collect();
    run_operations(cluster.id, &cluster.members, ops, options).await
}

fn rand_u16() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos ^ (nanos >> 16)) as u16
}

/// Shorthands for operations.
pub mod ops {
    use spec::KvOp;

    pub fn put(key: &str, value: &str) -> KvOp {
        KvOp::Put {
            key: key.into(),
            value: value.into(),
        }
    }
    pub fn get(key: &str) -> KvOp {
        KvOp::Get { key: key.into() }
    }
    pub fn delete(key: &str) -> KvOp {
        KvOp::Delete { key: key.into() }
    }
    pub fn cas(key: &str, expected: Option<&str>, new: &str) -> KvOp {
        KvOp::Cas {
            key: key.into(),
            expected: expected.map(Into::into),
            new: new.into(),
        }
    }
}
