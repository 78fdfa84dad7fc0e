//! Replicas as separate processes, killed with SIGKILL (`kill -9`) in the middle of client
//! traffic and restarted, with every process recording its trace: the run conforms to the
//! model. This is the crash the trace design is for: a killed process keeps what it had
//! written to its trace file (the page cache survives it) and nothing else.
//!
//! The replica processes are this test binary itself, re-run with `REPLICA_CHILD` set and only
//! the ignored `replica_process` entry point selected.

use smr::deploy::client::{client_auth, client_runtime};
use smr::deploy::config::{create_keys, security_section};
use smr::deploy::{start_replica, Cluster, ReplicaOptions, Want};
use smr::runtime::FIRST_LOGICAL_CLIENT_ID;
use smr::trace::TraceSink;
use spec::{KvOp, Operation};
use stateright::actor::Id;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHILD: &str = "REPLICA_CHILD";

/// Entry point of a replica process (ignored in normal runs: it serves until killed).
#[test]
#[ignore = "entry point of the replica processes that kill_nine_mid_traffic_conforms starts"]
fn replica_process() {
    let Ok(spec) = std::env::var(CHILD) else {
        return;
    };
    let mut parts = spec.split('|');
    let (Some(config), Some(id), Some(data), Some(traces)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        panic!("bad {CHILD}: {spec}");
    };
    let cluster = Cluster::load(Path::new(config)).unwrap();
    let id: usize = id.parse().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let socket = tokio::net::UdpSocket::bind(cluster.members[&Id::from(id)])
            .await
            .unwrap();
        // The first start of a replica creates its directory for the brand-new cluster.
        let mode = if Path::new(data).exists() {
            smr::runtime::OpenMode::Existing
        } else {
            smr::runtime::OpenMode::NewCluster
        };
        let options = ReplicaOptions {
            mode,
            seed: 77 + id as u64,
            trace: Some(TraceSink::create_in(Path::new(traces), &format!("replica-{id}")).unwrap()),
            ..ReplicaOptions::default()
        };
        let replica = start_replica(
            &cluster,
            Id::from(id),
            Path::new(data),
            Arc::new(socket),
            options,
        )
        .unwrap();
        replica.run(std::future::pending()).await.unwrap();
    });
}

struct Replicas {
    config: PathBuf,
    root: PathBuf,
    children: Vec<Option<Child>>,
}

impl Replicas {
    fn spawn(&mut self, id: usize) {
        let spec = format!(
            "{}|{id}|{}|{}",
            self.config.display(),
            self.root.join(format!("data-{id}")).display(),
            self.root.join("traces").display()
        );
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "replica_process", "--nocapture"])
            .env(CHILD, spec)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children[id] = Some(child);
    }

    /// SIGKILL, as `kill -9` sends.
    fn kill(&mut self, id: usize) {
        if let Some(mut child) = self.children[id].take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        for id in 0..self.children.len() {
            self.kill(id);
        }
    }
}

async fn client(cluster: &Cluster, traces: &Path, id: u64, ops: Vec<KvOp>) -> usize {
    let socket = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let retry = Duration::from_millis(100)..Duration::from_millis(150);
    let ops: Vec<Operation> = ops.into_iter().map(Operation::Kv).collect();
    let total = ops.len();
    let keyring = cluster.client_keyring(Want::Credential(0)).unwrap();
    let runtime = client_runtime(
        Id::from(id as usize),
        cluster.id,
        &cluster.members,
        client_auth(keyring),
        ops,
        retry,
        socket,
        id,
    );
    let sink = TraceSink::create_in(traces, &format!("client-{id}")).unwrap();
    let runtime = smr::trace::traced(runtime, sink);
    let stopped = runtime
        .run(tokio::time::sleep(Duration::from_secs(30)))
        .await
        .unwrap();
    let answered = smr::deploy::client::operation_answers(stopped.state.as_ref()).len();
    assert_eq!(answered, total, "client {id} got every answer");
    answered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_mid_traffic_conforms() {
    let root = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..3)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .map(|s| s.local_addr().unwrap().port())
        .collect();
    let mut text = format!(
        "cluster = \"kill9-{}\"\n[timing]\nelection_timeout_ms = [150, 300]\nheartbeat_interval_ms = 30\n",
        ports[0]
    );
    for (id, port) in ports.iter().enumerate() {
        text.push_str(&format!(
            "[[replica]]\nid = {id}\naddress = \"127.0.0.1:{port}\"\n"
        ));
    }
    // Key files named relative to the configuration file, as an operator would.
    create_keys(&root.path().join("keys")).unwrap();
    text.push_str(&security_section(std::path::Path::new("keys")));
    let config = root.path().join("cluster.toml");
    std::fs::write(&config, &text).unwrap();
    let cluster = Cluster::load(&config).unwrap();
    let traces = root.path().join("traces");
    std::fs::create_dir_all(&traces).unwrap();
    let mut replicas = Replicas {
        config,
        root: root.path().to_path_buf(),
        children: vec![None, None, None],
    };
    for id in 0..3 {
        replicas.spawn(id);
    }
    let mut next = FIRST_LOGICAL_CLIENT_ID;
    for (round, victim) in [1usize, 0, 2].into_iter().enumerate() {
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let ops = (0..15)
                .map(|n| KvOp::Put {
                    key: format!("k{round}-{}", n % 4).into(),
                    value: n.to_string().into(),
                })
                .collect();
            let (cluster, traces) = (cluster.clone(), traces.clone());
            tasks.push(tokio::spawn(async move {
                client(&cluster, &traces, next, ops).await
            }));
            next += 1;
        }
        let started = Instant::now();
        tokio::time::sleep(Duration::from_millis(40 + 20 * round as u64)).await;
        replicas.kill(victim);
        for task in tasks {
            task.await.unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(30));
        replicas.spawn(victim);
    }
    client(
        &cluster,
        &traces,
        next,
        vec![KvOp::Get { key: "k0-0".into() }],
    )
    .await;
    // Let every restarted process get as far as its trace (two files per replica).
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&traces).unwrap().count()
        < 6 + next as usize + 1 - FIRST_LOGICAL_CLIENT_ID as usize
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Kill everything mid-flight: the traces end wherever the processes were.
    for id in 0..3 {
        replicas.kill(id);
    }
    let report = model::conform::run(&traces, &model::conform::Options::default()).unwrap();
    let mut text = Vec::new();
    report.print(&mut text).unwrap();
    let text = String::from_utf8_lossy(&text);
    eprintln!("{text}");
    assert!(report.passed(), "{text}");
    assert_eq!(report.crashes, 3, "{text}");
}
