//! End-to-end test harness: a cluster of real replicas over UDP on loopback, each a task with
//! its own socket (on an ephemeral port) and its own data directory, so that tests can run in
//! parallel. Replicas can be killed (the runtime stops as in a crash: nothing more is sent) and
//! restarted from their data directories on the same address.
//!
//! A cluster started with [`ClusterOptions`] can record a trace of every replica and client
//! step (see `smr::trace`), inject network faults and partitions, switch on a seeded runtime
//! bug, and check its own run against the model with [`TestCluster::conform`].

use smr::deploy::client::client_auth;
use smr::deploy::config::{create_keys, security_section};
use smr::deploy::status::StatusAnswer;
use smr::deploy::{
    query_status, run_operations, start_replica, ClientError, ClientOptions, Cluster, Security,
    StartError, Want,
};
use smr::node::Node;
use smr::runtime::auth::client_id_of;
use smr::runtime::{
    Keyring, NetworkFaults, OpenMode, Partition, RuntimeBug, RuntimeError, Stopped, SyncPolicy,
    FIRST_CLIENT_ID, FIRST_LOGICAL_CLIENT_ID,
};
use smr::trace::TraceSink;
use spec::{KvOp, Operation, Output, Slot};
use stateright::actor::Id;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A replica task and the means to stop it.
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<Stopped<Node>, RuntimeError>>,
}

/// How a test cluster runs.
#[derive(Clone, Debug, Default)]
pub struct ClusterOptions {
    /// Record traces of every replica and client.
    pub trace: bool,
    /// Faults injected into every replica's outgoing datagrams.
    pub faults: Option<NetworkFaults>,
    /// Faults injected into every client's outgoing datagrams.
    pub client_faults: Option<NetworkFaults>,
    /// A seeded runtime bug in every replica and client (needs `smr/runtime-bugs`).
    pub bug: Option<RuntimeBug>,
    /// Spare replicas (ids after the members), running but outside the configuration until a
    /// JOIN adds them.
    pub spares: usize,
    /// `[limits] max_sessions` (the default otherwise); `max_batch_requests` is kept at or
    /// below it.
    pub max_sessions: Option<usize>,
    /// Without authentication (`[security] insecure = true`). By default the cluster has a
    /// cluster key, a clients' credential (0, which the dense test ids carry) and an
    /// administrators' (1), in `keys/` of its directory.
    pub insecure: bool,
}

/// A local cluster for tests.
pub struct TestCluster {
    pub cluster: Cluster,
    data: tempfile::TempDir,
    running: BTreeMap<usize, Running>,
    options: ClusterOptions,
    /// Each replica's partition: the peers it is cut off from.
    partitions: BTreeMap<usize, Partition>,
    /// The next client id (clients are numbered densely, as the model needs).
    next_client: Arc<AtomicU64>,
    /// Replicas started at least once: a first start creates the data directory for a
    /// brand-new cluster, every later one needs it to hold the replica's state.
    started: std::collections::BTreeSet<usize>,
    /// Replicas whose `[security]` differs from the cluster's (a key rotation in progress).
    security: BTreeMap<usize, Security>,
}

impl TestCluster {
    /// Starts `n` replicas on ephemeral loopback ports.
    pub async fn start(n: usize) -> Self {
        Self::start_with(n, ClusterOptions::default()).await
    }

    /// Starts `n` replicas on ephemeral loopback ports, run as `options` say.
    pub async fn start_with(n: usize, options: ClusterOptions) -> Self {
        // Bind once to learn free ports, then release them for the replicas to bind. (Another
        // process could take a port in between; on loopback in a test run that does not happen
        // in practice, and the bind below would fail loudly if it did.)
        let data = tempfile::tempdir().expect("a temporary directory");
        let mut text = format!(
            "cluster = \"e2e-{}\"\n[timing]\nelection_timeout_ms = [150, 300]\nheartbeat_interval_ms = 30\n",
            std::process::id() as u64 * 1000 + u64::from(rand_u16())
        );
        if options.insecure {
            text.push_str("[security]\ninsecure = true\n");
        } else {
            let keys = data.path().join("keys");
            create_keys(&keys).expect("keys can be created");
            text.push_str(&security_section(&keys));
        }
        if let Some(max) = options.max_sessions {
            // A table smaller than a batch is refused (`deploy::config`): batches shrink too.
            let batch = max.min(512);
            text.push_str(&format!(
                "[limits]\nmax_sessions = {max}\nmax_batch_requests = {batch}\n"
            ));
        }
        let total = n + options.spares;
        let probes: Vec<std::net::UdpSocket> = (0..total)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").expect("bind"))
            .collect();
        for (id, probe) in probes.iter().enumerate() {
            text.push_str(&format!(
                "[[replica]]\nid = {id}\naddress = \"{}\"\nspare = {}\n",
                probe.local_addr().unwrap(),
                id >= n
            ));
        }
        drop(probes);
        let cluster = Cluster::parse(&text).expect("a valid test configuration");
        let mut test = Self {
            cluster,
            data,
            running: BTreeMap::new(),
            partitions: (0..total).map(|id| (id, Partition::default())).collect(),
            options,
            next_client: Arc::new(AtomicU64::new(FIRST_LOGICAL_CLIENT_ID)),
            started: Default::default(),
            security: BTreeMap::new(),
        };
        for id in 0..total {
            test.start_replica(id).await.expect("replica starts");
        }
        test
    }

    /// The data directory of replica `id`.
    pub fn data_dir(&self, id: usize) -> PathBuf {
        self.data.path().join(format!("replica-{id}"))
    }

    /// Where the key files are (unless the cluster is insecure).
    pub fn keys_dir(&self) -> PathBuf {
        self.data.path().join("keys")
    }

    /// Replica `id`'s `[security]` from its next start on (as an operator edits one replica's
    /// configuration file during a key rotation).
    pub fn set_security(&mut self, id: usize, security: Security) {
        self.security.insert(id, security);
    }

    /// Where the traces go.
    pub fn trace_dir(&self) -> PathBuf {
        self.data.path().join("traces")
    }

    fn trace_sink(&self, prefix: &str) -> Option<smr::trace::SharedSink> {
        self.options.trace.then(|| {
            TraceSink::create_in(&self.trace_dir(), prefix).expect("a trace file can be created")
        })
    }

    /// Cuts replica `id` off from `peers` (replica or client wire ids), in both directions as
    /// far as `id` is concerned; an empty set heals it.
    pub fn partition(&self, id: usize, peers: &[u64]) {
        *self.partitions[&id].lock().unwrap() = peers.iter().copied().collect();
    }

    /// Replays the recorded traces through the model; panics with the report unless the run
    /// conforms and every property held. Returns the report.
    pub fn conform(&self) -> model::conform::Report {
        let report = self.check_traces();
        let mut text = Vec::new();
        report.print(&mut text).unwrap();
        let text = String::from_utf8_lossy(&text);
        assert!(report.passed(), "the run does not conform:\n{text}");
        eprintln!("{text}");
        report
    }

    /// Replays the recorded traces through the model and returns the report.
    pub fn check_traces(&self) -> model::conform::Report {
        assert!(self.options.trace, "the cluster records no traces");
        model::conform::run(&self.trace_dir(), &model::conform::Options::default())
            .expect("the traces can be read")
    }

    /// Starts (or restarts) replica `id` from its data directory on its configured address.
    pub async fn start_replica(&mut self, id: usize) -> Result<(), StartError> {
        let mode = if self.started.contains(&id) {
            OpenMode::Existing
        } else {
            OpenMode::NewCluster
        };
        self.start_replica_with(id, mode).await
    }

    /// Restarts replica `id` as an operator does after its disk was lost or damaged
    /// (`replica --recover`).
    pub async fn recover_replica(&mut self, id: usize) -> Result<(), StartError> {
        self.start_replica_with(id, OpenMode::Recover).await
    }

    /// Starts replica `id`, opening its data directory as `mode` says.
    pub async fn start_replica_with(
        &mut self,
        id: usize,
        mode: OpenMode,
    ) -> Result<(), StartError> {
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
            mode,
            seed: 1000 + id as u64,
            inline_commit: false,
            trace: self.trace_sink(&format!("replica-{id}")),
            faults: Some((
                self.options.faults.clone().unwrap_or_default(),
                Some(self.partitions[&id].clone()),
            )),
            bug: self.options.bug,
        };
        let mut cluster = self.cluster.clone();
        if let Some(security) = self.security.get(&id) {
            cluster.security = security.clone();
        }
        let runtime = start_replica(
            &cluster,
            Id::from(id),
            &self.data_dir(id),
            Arc::new(socket),
            options,
        )?;
        self.started.insert(id);
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

    /// Crashes replica `id` as `kill -9` would: its task is dropped wherever it is waiting,
    /// without flushing or sending anything more (a commit already handed to the disk thread
    /// still completes, as the kernel would complete a write the process had issued).
    pub async fn crash(&mut self, id: usize) {
        let running = self.running.remove(&id).expect("replica is running");
        running.task.abort();
        let _ = running.task.await;
    }

    /// Restarts replica `id` after a crash, waiting for the data directory's lock: a commit
    /// the crashed runtime had handed to the disk thread still holds it until it completes.
    pub async fn restart_after_crash(&mut self, id: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.start_replica(id).await {
                Ok(()) => return,
                Err(error) if error.to_string().contains("in use") && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(error) => panic!("replica {id} does not restart: {error}"),
            }
        }
    }

    /// Runs `ops` as one fresh client, with a deadline of 20 s.
    pub async fn run(&self, ops: Vec<KvOp>) -> Result<Vec<(Slot, Output)>, ClientError> {
        if !self.options.trace && self.options.client_faults.is_none() && self.options.bug.is_none()
        {
            return run_client(self.cluster.clone(), ops).await;
        }
        self.client(ops).run().await
    }

    /// An administrator's client that submits `changes` (JOIN and QUIT) one after the other
    /// (with the next logical id, which an administrator's credential may use).
    pub fn admin(&self, changes: Vec<spec::Change>) -> TestClient {
        let mut client = self.client(Vec::new());
        client.ops = changes.into_iter().map(Operation::Reconfigure).collect();
        client.keyring = self.keyring(Want::AnyAdmin);
        client
    }

    /// The clients' credential (0), or the administrators' (1).
    pub fn keyring(&self, want: Want) -> Keyring {
        self.cluster
            .client_keyring(want)
            .expect("the test keys can be read")
    }

    /// A client for `ops` with the next logical id, traced and faulty as the cluster is; run it
    /// with [`TestClient::run`] (several can run concurrently).
    pub fn client(&self, ops: Vec<KvOp>) -> TestClient {
        let id = self.next_client.fetch_add(1, Ordering::Relaxed);
        TestClient {
            id: Id::from(id as usize),
            cluster: self.cluster.clone(),
            ops: ops.into_iter().map(Operation::Kv).collect(),
            trace: self.trace_sink(&format!("client-{id}")),
            faults: self.options.client_faults.clone(),
            bug: self.options.bug,
            keyring: self.keyring(Want::Credential(0)),
        }
    }

    /// The status of every replica that answers within a second.
    pub async fn status(&self) -> BTreeMap<Id, StatusAnswer> {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let keyring = self.keyring(Want::AnyAdmin);
        let me = client_id_of(
            keyring.own_credential(),
            FIRST_CLIENT_ID | u64::from(rand_u16()),
        );
        let deadline = Instant::now() + Duration::from_secs(1);
        query_status(
            &socket,
            self.cluster.id,
            &mut client_auth(keyring),
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

/// A client of a test cluster, ready to run.
pub struct TestClient {
    id: Id,
    cluster: Cluster,
    ops: Vec<Operation>,
    trace: Option<smr::trace::SharedSink>,
    faults: Option<NetworkFaults>,
    bug: Option<RuntimeBug>,
    /// The credential it signs with.
    pub keyring: Keyring,
}

impl TestClient {
    /// Runs the operations in order, with a deadline of 20 s. The answers stop at the first
    /// that says the session expired.
    pub async fn run(self) -> Result<Vec<(Slot, Output)>, ClientError> {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .map_err(ClientError::Socket)?;
        let operations = self.ops.len();
        let retry = Duration::from_millis(100)..Duration::from_millis(150);
        let seed = usize::from(self.id) as u64;
        let mut runtime = smr::deploy::client::client_runtime(
            self.id,
            self.cluster.id,
            &self.cluster.members,
            client_auth(self.keyring),
            self.ops,
            retry,
            Arc::new(socket),
            seed,
        )
        .with_bug(self.bug);
        if let Some(faults) = self.faults {
            runtime = runtime.with_faults(faults, seed ^ 0xfa, None);
        }
        if let Some(sink) = self.trace {
            runtime = smr::trace::traced(runtime, sink);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let stopped = runtime
            .run(tokio::time::sleep_until(deadline.into()))
            .await
            .map_err(|error| ClientError::Socket(std::io::Error::other(error.to_string())))?;
        if let Some(why) = stopped.refused {
            return Err(ClientError::Refused(why));
        }
        let outputs = smr::deploy::client::operation_answers(stopped.state.as_ref());
        let expired = Output::Session(spec::SessionOutput::Expired);
        if outputs.len() < operations && outputs.last().map(|(_, o)| o) != Some(&expired) {
            return Err(ClientError::NoAnswer {
                answered: outputs.len(),
                replicas: self.cluster.members.values().copied().collect(),
            });
        }
        Ok(outputs)
    }
}

/// Runs `ops` as one fresh client of `cluster`, with a deadline of 20 s.
pub async fn run_client(
    cluster: Cluster,
    ops: Vec<KvOp>,
) -> Result<Vec<(Slot, Output)>, ClientError> {
    let options = ClientOptions {
        max_request_bytes: cluster.replica.limits.max_request_bytes(),
        deadline: Instant::now() + Duration::from_secs(20),
        retry_timeout: Duration::from_millis(100)..Duration::from_millis(150),
    };
    let ops = ops.into_iter().map(Operation::Kv).collect();
    let keyring = cluster
        .client_keyring(Want::Credential(0))
        .expect("the test keys can be read");
    run_operations(cluster.id, &cluster.members, keyring, ops, options).await
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
