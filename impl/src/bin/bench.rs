//! `bench`: starts a local cluster and measures throughput and latency.
//!
//! ```text
//! cargo run --release -p smr --bin bench -- --replicas 3 --clients 64 --seconds 10
//! cargo run --release -p smr --bin bench -- --replicas 3 --clients 64 --rate 20000
//! ```
//!
//! Each replica runs on its own thread with its own single-threaded async runtime, UDP socket
//! and temporary data directory (fsync on unless told otherwise), as separate processes
//! would. The clients are the protocol's client actor on the same runtime, one socket each,
//! on one more thread: a load generator.
//!
//! Closed loop (the default): each client has one request outstanding and sends the next as
//! soon as the answer comes. Open loop (`--rate`): requests are scheduled at a fixed total
//! rate, spread over the clients, and latency is measured from the scheduled time, so a slow
//! cluster is charged for the queueing it causes (no coordinated omission). A client whose
//! answer comes early holds it until its next request is due (the runtime's `hold_until`
//! hook), because the client actor sends the next request in the step that takes the answer.

use clap::Parser;
use hdrhistogram::Histogram;
use smr::deploy::client::{client_auth, client_runtime};
use smr::deploy::config::{create_keys, security_section};
use smr::deploy::{query_status, spawn_replica_thread, Cluster, ReplicaOptions, Want};
use smr::message::Msg;
use smr::node::{Node, NodeState};
use smr::runtime::auth::client_id_of;
use smr::runtime::{
    Hooks, Keyring, SplitMix64, SyncPolicy, FIRST_CLIENT_ID, FIRST_LOGICAL_CLIENT_ID,
};
use smr::trace::{SharedSink, TraceSink};
use spec::{KvOp, Operation};
use stateright::actor::Id;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Measures a local cluster: ops/s and p50/p99/p999 latency.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
struct Arguments {
    /// Replicas in the cluster (3 or 5 are typical).
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// Concurrent clients, each with one request outstanding.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Length of the measurement, after the warm-up.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Warm-up before measuring (elections settle, caches fill).
    #[arg(long, default_value_t = 1)]
    warmup_seconds: u64,
    /// Open loop: total requests per second, spread evenly over the clients.
    #[arg(long)]
    rate: Option<f64>,
    /// Keys the requests spread over.
    #[arg(long, default_value_t = 1000)]
    keys: u64,
    /// Bytes per written value.
    #[arg(long, default_value_t = 16)]
    value_bytes: usize,
    /// Fraction of requests that are gets rather than puts (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0)]
    read_fraction: f64,
    /// Operations per client actor before the client starts afresh with a new client id
    /// (a client actor keeps every answer, so it is bounded).
    #[arg(long, default_value_t = 200)]
    ops_per_client: usize,
    /// UNSAFE, for experiments only: replicas do not wait for the disk.
    #[arg(long)]
    unsafe_no_fsync: bool,
    /// Replicas commit on their own thread instead of handing each fsync to a blocking thread.
    #[arg(long)]
    inline_commit: bool,
    /// The leader's Phase 2 window: undecided slots in flight (smaller windows make larger
    /// batches).
    #[arg(long)]
    window: Option<usize>,
    /// Requests per batch at most.
    #[arg(long)]
    max_batch_requests: Option<usize>,
    /// Slots between checkpoints (the log is truncated at each stable checkpoint).
    #[arg(long)]
    checkpoint_interval: Option<u64>,
    /// Client sessions the replicated table holds (`[limits] max_sessions`).
    #[arg(long)]
    max_sessions: Option<usize>,
    /// Record a trace of every step of every replica and client into this directory, for
    /// `cargo run --release -p model -- conform DIR`.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Run the cluster without authentication (`[security] insecure = true`), to measure what
    /// signing and checking every datagram costs.
    #[arg(long)]
    insecure: bool,
    /// A thread of this process sends this many forged datagrams per second to replica 0
    /// (signed with the wrong key, under the fingerprints of the real ones, so that each costs
    /// the replica its hash; half of them 80 bytes, half 1,300): honest clients' throughput
    /// under a flood.
    #[arg(long)]
    flood: Option<u64>,
    /// With --flood: send datagrams of the same sizes that are not ours at all (wrong magic),
    /// which a replica drops before any hash: the difference to a forged flood is the cost of
    /// the check itself.
    #[arg(long, requires = "flood")]
    flood_garbage: bool,
}

fn main() -> std::process::ExitCode {
    match run(Arguments::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run(arguments: Arguments) -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    if arguments.replicas == 0 || arguments.clients == 0 || arguments.ops_per_client == 0 {
        return Err("--replicas, --clients and --ops-per-client must be positive".into());
    }
    if !(0.0..=1.0).contains(&arguments.read_fraction) {
        return Err("--read-fraction must be between 0 and 1".into());
    }
    if arguments
        .rate
        .is_some_and(|rate| rate.is_nan() || rate <= 0.0)
    {
        return Err("--rate must be positive".into());
    }
    let data = tempfile::tempdir()?;
    // Bind first so the configuration can name the ports the system chose.
    let sockets = (0..arguments.replicas)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut config = format!("cluster = \"bench-{}\"\n", std::process::id());
    if arguments.insecure {
        config.push_str("[security]\ninsecure = true\n");
    } else {
        let keys = data.path().join("keys");
        create_keys(&keys)?;
        config.push_str(&security_section(&keys));
    }
    for (id, socket) in sockets.iter().enumerate() {
        config.push_str(&format!(
            "[[replica]]\nid = {id}\naddress = \"{}\"\n",
            socket.local_addr()?
        ));
    }
    config.push_str("[limits]\n");
    if let Some(window) = arguments.window {
        config.push_str(&format!("window = {window}\n"));
    }
    if let Some(requests) = arguments.max_batch_requests {
        config.push_str(&format!("max_batch_requests = {requests}\n"));
    }
    if let Some(interval) = arguments.checkpoint_interval {
        config.push_str(&format!("checkpoint_interval = {interval}\n"));
    }
    if let Some(max) = arguments.max_sessions {
        config.push_str(&format!("max_sessions = {max}\n"));
    }
    let cluster = Cluster::parse(&config)?;
    // Credential 0 is the clients' (their dense ids carry it), 1 the administrators'.
    let client_keyring = cluster.client_keyring(Want::Credential(0))?;
    let admin_keyring = cluster.client_keyring(Want::AnyAdmin)?;
    let inline_commit = arguments.inline_commit;
    let sync = if arguments.unsafe_no_fsync {
        SyncPolicy::UnsafeNoFsync
    } else {
        SyncPolicy::Fsync
    };
    // A bench run starts a fresh cluster: traces of an earlier run in the same directory would
    // read as restarts of these replicas, and the run would not replay.
    if let Some(dir) = &arguments.trace {
        if let Ok(entries) = std::fs::read_dir(dir) {
            let traces = entries
                .filter_map(Result::ok)
                .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "trace"))
                .count();
            if traces > 0 {
                return Err(format!(
                    "{} already holds {traces} trace files of another run: give a new or empty directory",
                    dir.display()
                )
                .into());
            }
        }
    }
    let sink = |prefix: &str| -> Result<Option<SharedSink>, String> {
        match &arguments.trace {
            Some(dir) => TraceSink::create_in(dir, prefix)
                .map(Some)
                .map_err(|e| format!("cannot create a trace file in {}: {e}", dir.display())),
            None => Ok(None),
        }
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut replica_threads = Vec::new();
    for (index, socket) in sockets.into_iter().enumerate() {
        let options = ReplicaOptions {
            sync,
            // The benchmark's cluster is brand new, in fresh directories.
            mode: smr::runtime::OpenMode::NewCluster,
            seed: 0x5eed ^ index as u64,
            inline_commit,
            trace: sink(&format!("replica-{index}"))?,
            ..ReplicaOptions::default()
        };
        replica_threads.push(spawn_replica_thread(
            cluster.clone(),
            Id::from(index),
            data.path().join(index.to_string()),
            socket,
            options,
            stopped.clone(),
        ));
    }
    let load = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let clients_trace = sink("clients")?;
    let flood = arguments
        .flood
        .map(|rate| flood::start(&cluster, rate, arguments.flood_garbage))
        .transpose()?;
    let report = load.block_on(drive(
        arguments.clone(),
        cluster.clone(),
        client_keyring,
        clients_trace,
    ))?;
    let flooded = flood.map(flood::Flood::stop);
    let statuses = load.block_on(async {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let me = client_id_of(admin_keyring.own_credential(), FIRST_CLIENT_ID | 0xbe0c);
        let mut auth = client_auth(admin_keyring);
        let deadline = Instant::now() + Duration::from_secs(1);
        Ok::<_, std::io::Error>(
            query_status(
                &socket,
                cluster.id,
                &mut auth,
                me,
                &cluster.members,
                deadline,
            )
            .await,
        )
    })?;
    let _ = stop.send(true);
    for thread in replica_threads {
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("replica failed: {error}"),
            Err(_) => eprintln!("replica thread panicked"),
        }
    }
    print_report(&arguments, &cluster, &report, &statuses);
    if let Some((sent, seconds)) = flooded {
        let dropped = statuses.get(&Id::from(0)).map(|s| {
            let c = &s.counters;
            c.bad_tag + c.unknown_key + c.malformed
        });
        println!(
            "flood: {sent} {} datagrams sent to replica 0 in {seconds:.1} s ({:.0}/s); replica 0 dropped {} as forged or malformed",
            if arguments.flood_garbage { "garbage" } else { "forged" },
            sent as f64 / seconds.max(1e-9),
            dropped.map_or("(no status)".to_string(), |d| d.to_string())
        );
    }
    print_footprint(&cluster, &report, &statuses, data.path());
    Ok(())
}

/// What the clients measured.
struct Report {
    histogram: Histogram<u64>,
    operations: u64,
    measured: Duration,
    retries_hint: u64,
    total: u64,
    /// Client actors started, each with a session of its own.
    clients: u64,
}

/// Latencies and counts shared by the clients of the load thread.
struct Shared {
    histogram: Histogram<u64>,
    operations: u64,
    /// Answers that took longer than the retry timeout (a retry was probably sent).
    slow: u64,
    /// Operations completed, warm-up included (to relate to the slots the leader decided).
    total: u64,
}

/// Per client actor: records each operation's latency as its answer arrives, and paces
/// requests in open-loop mode.
struct Measure {
    shared: Arc<Mutex<Shared>>,
    /// When each operation of this client actor was due (closed loop: when it was sent).
    due: Vec<Instant>,
    /// Answers recorded so far (= operations completed).
    answered: usize,
    open_loop: bool,
    window: (Instant, Instant),
    retry: Duration,
}

impl Hooks<Node> for Measure {
    fn hold_until(&mut self, _src: Id, msg: &Msg, arrival: Instant) -> Option<Instant> {
        let Msg::Reply { number, .. } = msg else {
            return None;
        };
        // Request number 1 opens the session (see `client_runtime`): not measured, it starts
        // the clock of the first operation.
        if *number == 1 {
            if self.answered > 0 {
                return None;
            }
            return if self.open_loop {
                self.due.first().copied()
            } else {
                if let Some(first) = self.due.first_mut() {
                    *first = arrival;
                }
                None
            };
        }
        // The answer to the operation in flight is number `answered + 2`. Duplicates and stale
        // answers are not measured again.
        if *number != self.answered as u64 + 2 {
            // A duplicate of the answer just recorded is held as long as the original, so the
            // client does not send its next request early.
            return if self.open_loop && *number == self.answered as u64 + 1 {
                self.due.get(self.answered).copied()
            } else {
                None
            };
        }
        let index = self.answered;
        self.answered += 1;
        let started = self.due[index];
        let latency = arrival.saturating_duration_since(started);
        if let Ok(mut shared) = self.shared.lock() {
            shared.total += 1;
            if arrival >= self.window.0 && arrival < self.window.1 {
                let micros = latency.as_micros().max(1) as u64;
                let _ = shared.histogram.record(micros);
                shared.operations += 1;
                if latency > self.retry {
                    shared.slow += 1;
                }
            }
        }
        if self.open_loop {
            // Deliver the answer (and so send the next request) when the next one is due.
            self.due.get(index + 1).copied()
        } else {
            if let Some(next) = self.due.get_mut(index + 1) {
                *next = arrival;
            }
            None
        }
    }

    fn should_stop(&mut self, state: &NodeState) -> bool {
        state
            .client()
            .is_some_and(|client| client.next > self.due.len() || client.expired)
    }
}

async fn drive(
    arguments: Arguments,
    cluster: Cluster,
    keyring: Keyring,
    trace: Option<SharedSink>,
) -> Result<Report, String> {
    let shared = Arc::new(Mutex::new(Shared {
        histogram: Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?,
        operations: 0,
        slow: 0,
        total: 0,
    }));
    let start = Instant::now();
    let window = (
        start + Duration::from_secs(arguments.warmup_seconds),
        start + Duration::from_secs(arguments.warmup_seconds + arguments.seconds),
    );
    // Client actors are numbered densely (see `runtime::peers`), so a traced run replays in
    // the model as it is.
    let ids = Arc::new(AtomicU64::new(FIRST_LOGICAL_CLIENT_ID));
    let mut lanes = Vec::new();
    for lane in 0..arguments.clients {
        let arguments = arguments.clone();
        let cluster = cluster.clone();
        let shared = shared.clone();
        let lane_context = Lane {
            ids: ids.clone(),
            trace: trace.clone(),
            keyring: keyring.clone(),
        };
        lanes.push(tokio::spawn(async move {
            run_lane(
                lane,
                arguments,
                cluster,
                shared,
                start,
                window,
                lane_context,
            )
            .await
        }));
    }
    for lane in lanes {
        lane.await.map_err(|e| e.to_string())??;
    }
    let shared = shared.lock().map_err(|e| e.to_string())?;
    Ok(Report {
        histogram: shared.histogram.clone(),
        operations: shared.operations,
        measured: window.1 - window.0,
        retries_hint: shared.slow,
        total: shared.total,
        clients: ids.load(Ordering::Relaxed) - FIRST_LOGICAL_CLIENT_ID,
    })
}

/// What the lanes share: the next client id, the trace, and the clients' credential.
struct Lane {
    ids: Arc<AtomicU64>,
    trace: Option<SharedSink>,
    keyring: Keyring,
}

/// One client lane: client actor after client actor, until the measurement window closes.
async fn run_lane(
    lane: usize,
    arguments: Arguments,
    cluster: Cluster,
    shared: Arc<Mutex<Shared>>,
    start: Instant,
    window: (Instant, Instant),
    context: Lane,
) -> Result<(), String> {
    let first: SocketAddr = *cluster.members.values().next().ok_or("no replicas")?;
    let socket = Arc::new(
        tokio::net::UdpSocket::bind(smr::deploy::client::local_bind_address(first))
            .await
            .map_err(|e| e.to_string())?,
    );
    let mut random = SplitMix64::new(0xbe4c_0000 + lane as u64);
    let value: String = "v".repeat(arguments.value_bytes);
    let retry = Duration::from_millis(500);
    // Open loop: this lane's share of the schedule, offset so lanes interleave.
    let interval = arguments
        .rate
        .map(|rate| Duration::from_secs_f64(arguments.clients as f64 / rate));
    let mut next_due = start
        + interval.map_or(Duration::ZERO, |i| {
            i.mul_f64(lane as f64 / arguments.clients as f64)
        });
    while Instant::now() < window.1 {
        let ops: Vec<Operation> = (0..arguments.ops_per_client)
            .map(|_| {
                let key = format!("key{}", random.below(arguments.keys.max(1)));
                let read = (random.next_u64() as f64 / u64::MAX as f64) < arguments.read_fraction;
                Operation::Kv(if read {
                    KvOp::Get { key: key.into() }
                } else {
                    KvOp::Put {
                        key: key.into(),
                        value: value.as_str().into(),
                    }
                })
            })
            .collect();
        let due: Vec<Instant> = match interval {
            Some(interval) => (0..ops.len())
                .map(|k| next_due + interval * k as u32)
                .collect(),
            None => vec![Instant::now(); ops.len()],
        };
        if let Some(interval) = interval {
            tokio::time::sleep_until(due[0].into()).await;
            next_due = due[due.len() - 1] + interval;
        }
        let mut due = due;
        if interval.is_none() {
            due[0] = Instant::now();
        }
        let hooks = Measure {
            shared: shared.clone(),
            due,
            answered: 0,
            open_loop: interval.is_some(),
            window,
            retry,
        };
        let id = Id::from(context.ids.fetch_add(1, Ordering::Relaxed) as usize);
        let mut runtime = client_runtime(
            id,
            cluster.id,
            &cluster.members,
            client_auth(context.keyring.clone()),
            ops,
            retry..retry + retry / 2,
            socket.clone(),
            random.next_u64(),
        )
        .with_hooks(Box::new(hooks));
        if let Some(sink) = &context.trace {
            runtime = smr::trace::traced(runtime, sink.clone());
        }
        runtime
            .run(tokio::time::sleep_until(window.1.into()))
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn print_report(
    arguments: &Arguments,
    cluster: &Cluster,
    report: &Report,
    statuses: &std::collections::BTreeMap<Id, smr::deploy::status::StatusAnswer>,
) {
    let mode = match arguments.rate {
        Some(rate) => format!("open loop at {rate} ops/s"),
        None => "closed loop".to_string(),
    };
    println!(
        "{} replicas, {} clients, {mode}, window {}, {} s measured after {} s warm-up, fsync {}, {}% reads",
        arguments.replicas,
        arguments.clients,
        cluster.replica.limits.window,
        report.measured.as_secs(),
        arguments.warmup_seconds,
        if arguments.unsafe_no_fsync {
            "OFF (unsafe)"
        } else {
            "on"
        },
        (arguments.read_fraction * 100.0).round()
    );
    let seconds = report.measured.as_secs_f64();
    let ms = |quantile: f64| report.histogram.value_at_quantile(quantile) as f64 / 1000.0;
    println!(
        "throughput: {:.0} ops/s ({} operations)",
        report.operations as f64 / seconds,
        report.operations
    );
    println!(
        "latency: p50 {:.3} ms  p99 {:.3} ms  p999 {:.3} ms  max {:.3} ms",
        ms(0.5),
        ms(0.99),
        ms(0.999),
        report.histogram.max() as f64 / 1000.0
    );
    if report.retries_hint > 0 {
        println!(
            "note: {} operations took longer than the client retry timeout",
            report.retries_hint
        );
    }
    for (id, answer) in statuses {
        if let Some(status) = &answer.status {
            tracing::info!(replica = usize::from(*id), ?status, counters = ?answer.counters, "final status");
            if status.role == "leader" {
                let per_slot = report.total as f64 / status.decided.max(1) as f64;
                println!(
                    "leader: replica {}, {} slots decided for {} operations ({:.1} per slot)",
                    usize::from(*id),
                    status.decided,
                    report.total,
                    per_slot
                );
            }
        }
    }
}

/// What the run left behind: sessions in the table, the replicas' data directories, and the
/// process's peak memory (the replicas run in this process), so that a long run shows whether
/// they stay flat.
fn print_footprint(
    cluster: &Cluster,
    report: &Report,
    statuses: &std::collections::BTreeMap<Id, smr::deploy::status::StatusAnswer>,
    data: &std::path::Path,
) {
    let sessions: Vec<String> = statuses
        .values()
        .filter_map(|answer| answer.status.as_ref())
        .map(|status| status.sessions.to_string())
        .collect();
    println!(
        "sessions: {} opened over the run; the replicas hold [{}] (max_sessions {})",
        report.clients,
        sessions.join(", "),
        cluster.replica.limits.max_sessions
    );
    let sizes: Vec<String> = (0..cluster.members.len())
        .map(|index| {
            format!(
                "{:.1}",
                directory_bytes(&data.join(index.to_string())) as f64 / 1e6
            )
        })
        .collect();
    let peak = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .map(|line| line.trim_start_matches("VmHWM:").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    println!(
        "data directories: [{}] MB; peak memory of this process: {peak}",
        sizes.join(", ")
    );
}

/// The bytes of the files under `dir`.
fn directory_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => directory_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Forged datagrams against replica 0, from a thread of their own.
mod flood {
    use smr::codec::{FrameKind, Header};
    use smr::deploy::Cluster;
    use smr::message::Msg;
    use smr::runtime::{Auth, Credential, Key, Keyring, Role};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    pub struct Flood {
        stop: Arc<AtomicBool>,
        thread: std::thread::JoinHandle<(u64, f64)>,
    }

    impl Flood {
        /// Stops the flood; returns the datagrams sent and over how many seconds.
        pub fn stop(self) -> (u64, f64) {
            self.stop.store(true, Ordering::Relaxed);
            self.thread.join().unwrap_or((0, 0.0))
        }
    }

    /// Starts sending `rate` forged datagrams per second to replica 0: protocol messages that
    /// claim to come from replica 1 and from clients, each under the fingerprint of a key the
    /// cluster uses (an attacker sees fingerprints on the wire) but signed with another key.
    pub fn start(
        cluster: &Cluster,
        rate: u64,
        garbage: bool,
    ) -> Result<Flood, Box<dyn std::error::Error>> {
        let target = *cluster.members.values().next().ok_or("no replicas")?;
        let real = match cluster.replica_keyring()? {
            Keyring::Replica {
                cluster: keys,
                credentials,
            } => {
                let mut fingerprints: Vec<u32> = keys.iter().map(Key::fingerprint).collect();
                fingerprints.extend(
                    credentials
                        .values()
                        .flat_map(|c| c.keys.iter().map(Key::fingerprint)),
                );
                fingerprints
            }
            _ => vec![0],
        };
        let forger = Credential {
            id: 0,
            role: Role::Client,
            keys: vec![Key::generate()?],
        };
        let mut auth = Auth::new(Keyring::Client(forger), 1);
        let mut frames = Vec::new();
        for (n, sender) in [1u64, 64, 65, 1 << 32].into_iter().enumerate() {
            let mut buffer = Vec::new();
            // Small and large: a forged datagram costs the hash of its length.
            let msg = if n % 2 == 0 {
                Msg::Nack {
                    ballot: Default::default(),
                }
            } else {
                Msg::Snapshot {
                    slot: 1,
                    digest: 1,
                    total: 1,
                    offset: 0,
                    bytes: vec![0x5a; 1200],
                }
            };
            auth.frame(
                Header::new(FrameKind::Protocol, cluster.id, sender, 0),
                &msg,
                &mut buffer,
            )
            .map_err(|e| e.to_string())?;
            let key = real[n % real.len()];
            buffer[30..34].copy_from_slice(&key.to_le_bytes());
            if garbage {
                buffer[0] = b'X';
            }
            frames.push(buffer);
        }
        let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut sent = 0u64;
            let per_tick = (rate / 1000).max(1);
            while !flag.load(Ordering::Relaxed) {
                for _ in 0..per_tick {
                    let frame = &frames[(sent % frames.len() as u64) as usize];
                    if socket.send_to(frame, target).is_ok() {
                        sent += 1;
                    }
                }
                // Paced per millisecond: `rate` per second on average.
                let due = start + Duration::from_secs_f64(sent as f64 / rate.max(1) as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            (sent, start.elapsed().as_secs_f64())
        });
        Ok(Flood { stop, thread })
    }
}
