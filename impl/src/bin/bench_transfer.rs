//! `bench_transfer`: measures a state transfer to a restarted replica while clients write.
//!
//! ```text
//! cargo run --release -p smr --bin bench_transfer -- --keys 20000 --value-bytes 1024 --clients 64
//! cargo run --release -p smr --bin bench_transfer -- --keys 20000 --value-bytes 1024 --held 0.99
//! ```
//!
//! A local cluster of 3 replicas, as `bench` starts it (a thread, a UDP socket and a temporary
//! data directory each, fsync on):
//! 1. Replica 2 is stopped once a fraction `--held` of the keys is loaded (0: before the
//!    load), then the others load `--keys` keys of `--value-bytes` bytes each.
//! 2. `--clients` clients write values of the same size to random keys from then on, until the
//!    others have truncated their log past what replica 2 holds, so that only a state
//!    transfer brings it up to date.
//! 3. Replica 2 restarts from its data directory. The benchmark reports how long it takes to
//!    install a snapshot and to reach what the leader had executed when it restarted, the
//!    snapshot's size on the wire and its rate, and the clients' throughput before and during
//!    the catch-up.

use clap::Parser;
use smr::deploy::client::{client_auth, client_runtime};
use smr::deploy::config::{create_keys, security_section};
use smr::deploy::status::{ReplicaStatus, StatusAnswer};
use smr::deploy::{query_status, spawn_replica_thread, Cluster, ReplicaOptions, Want};
use smr::message::Msg;
use smr::node::{Node, NodeState};
use smr::replica::TransferStats;
use smr::runtime::{Hooks, OpenMode, SplitMix64, FIRST_CLIENT_ID, FIRST_LOGICAL_CLIENT_ID};
use spec::{KvOp, Operation};
use stateright::actor::Id;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Measures a state transfer under load.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
struct Arguments {
    /// Keys in the state.
    #[arg(long, default_value_t = 20_000)]
    keys: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 1024)]
    value_bytes: usize,
    /// Writing clients during the catch-up.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// The fraction of the keys replica 2 holds when it stops (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    held: f64,
    /// The writing clients write only keys from this fraction of the key space on (0: any key;
    /// 0.99 with `--held 0.99`: only the keys replica 2 missed).
    #[arg(long, default_value_t = 0.0)]
    write_from: f64,
    /// Slots between checkpoints.
    #[arg(long, default_value_t = 1024)]
    checkpoint_interval: u64,
    /// State-transfer chunks in flight (`[limits] transfer_window`).
    #[arg(long)]
    transfer_window: Option<usize>,
    /// Give up if replica 2 has not caught up after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_seconds: u64,
}

const REPLICAS: usize = 3;
const LAGGARD: usize = 2;

fn main() -> std::process::ExitCode {
    match run(Arguments::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::from(2)
        }
    }
}

/// One replica thread, stopped by its own flag.
struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    thread: std::thread::JoinHandle<Result<(), String>>,
}

fn start(cluster: &Cluster, index: usize, dir: &Path, mode: OpenMode) -> Result<Running, String> {
    let address = cluster.members[&Id::from(index)];
    let socket = std::net::UdpSocket::bind(address).map_err(|e| e.to_string())?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let options = ReplicaOptions {
        mode,
        seed: 0x5eed ^ index as u64,
        ..ReplicaOptions::default()
    };
    let thread = spawn_replica_thread(
        cluster.clone(),
        Id::from(index),
        dir.to_path_buf(),
        socket,
        options,
        stopped,
    );
    Ok(Running { stop, thread })
}

fn stop(running: Running) -> Result<(), String> {
    let _ = running.stop.send(true);
    running
        .thread
        .join()
        .map_err(|_| "a replica thread panicked".to_string())?
}

fn run(arguments: Arguments) -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .init();
    if !(0.0..=1.0).contains(&arguments.held)
        || !(0.0..1.0).contains(&arguments.write_from)
        || arguments.keys == 0
        || arguments.clients == 0
    {
        return Err(
            "--held must be between 0 and 1, --write-from at least 0 and below 1; --keys and --clients positive"
                .into(),
        );
    }
    let data = tempfile::tempdir()?;
    let mut config = format!("cluster = \"bench-transfer-{}\"\n", std::process::id());
    let keys = data.path().join("keys");
    create_keys(&keys)?;
    config.push_str(&security_section(&keys));
    for id in 0..REPLICAS {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        config.push_str(&format!(
            "[[replica]]\nid = {id}\naddress = \"127.0.0.1:{port}\"\n"
        ));
    }
    config.push_str(&format!(
        "[limits]\ncheckpoint_interval = {}\n",
        arguments.checkpoint_interval
    ));
    if let Some(window) = arguments.transfer_window {
        config.push_str(&format!("transfer_window = {window}\n"));
    }
    let cluster = Cluster::parse(&config)?;
    let dir = |index: usize| data.path().join(index.to_string());
    let mut replicas: Vec<Option<Running>> = (0..REPLICAS)
        .map(|index| start(&cluster, index, &dir(index), OpenMode::NewCluster).map(Some))
        .collect::<Result<_, _>>()?;
    let load = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let ids = Arc::new(AtomicU64::new(FIRST_LOGICAL_CLIENT_ID));

    // 1. The load, with replica 2 stopped at the fraction it holds.
    let held_keys = (arguments.keys as f64 * arguments.held) as u64;
    let started = Instant::now();
    if held_keys > 0 {
        load.block_on(put_keys(&cluster, &ids, 0..held_keys, &arguments))?;
    }
    let laggard_at_stop = load
        .block_on(statuses(&cluster))
        .get(&Id::from(LAGGARD))
        .map_or(0, |s| s.executed);
    stop(replicas[LAGGARD].take().expect("running"))?;
    load.block_on(put_keys(
        &cluster,
        &ids,
        held_keys..arguments.keys,
        &arguments,
    ))?;
    println!(
        "loaded {} keys of {} bytes in {:.1} s; replica 2 stopped at slot {laggard_at_stop} holding {held_keys} of them",
        arguments.keys,
        arguments.value_bytes,
        started.elapsed().as_secs_f64()
    );

    // 2. Clients write until the others truncated past replica 2.
    let answered = Arc::new(AtomicU64::new(0));
    let writing = Arc::new(AtomicBool::new(true));
    let writers = load.block_on(async {
        (0..arguments.clients)
            .map(|lane| {
                tokio::spawn(write_lane(
                    lane,
                    cluster.clone(),
                    arguments.clone(),
                    ids.clone(),
                    answered.clone(),
                    writing.clone(),
                ))
            })
            .collect::<Vec<_>>()
    });
    let truncated = load.block_on(wait_until(&cluster, Duration::from_secs(120), |s| {
        let leader = leader_status(s);
        leader.is_some_and(|l| l.log_start > laggard_at_stop)
    }));
    if !truncated {
        return Err("the others did not truncate past replica 2 within 120 s".into());
    }
    // Throughput before the restart, over 5 s of the same load.
    let before = load.block_on(rate_over(&answered, Duration::from_secs(5)));

    // 3. Restart replica 2 and measure its catch-up.
    let (leader_executed, ballot_at_restart) = load
        .block_on(statuses(&cluster))
        .values()
        .find(|s| s.role == "leader")
        .map(|s| (s.executed, s.ballot))
        .ok_or("no leader")?;
    let ops_at_restart = answered.load(Ordering::Relaxed);
    let restarted = Instant::now();
    replicas[LAGGARD] = Some(start(&cluster, LAGGARD, &dir(LAGGARD), OpenMode::Existing)?);
    let deadline = restarted + Duration::from_secs(arguments.timeout_seconds);
    let mut installed: Option<(Duration, ReplicaStatus)> = None;
    let mut answering: Option<Duration> = None;
    let caught_up = load.block_on(async {
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let all = statuses(&cluster).await;
            let Some(laggard) = all.get(&Id::from(LAGGARD)) else {
                continue;
            };
            answering.get_or_insert_with(|| restarted.elapsed());
            if installed.is_none() && laggard.snapshots_installed > 0 {
                installed = Some((restarted.elapsed(), laggard.clone()));
            }
            if installed.is_some() && laggard.executed >= leader_executed {
                return Some(restarted.elapsed());
            }
        }
        None
    });
    // Elections during the catch-up: a replica's thread that stalls for longer than the
    // election timeout (encoding or saving a large state) loses its leadership.
    let ballot_after = load
        .block_on(statuses(&cluster))
        .values()
        .map(|s| s.ballot)
        .max()
        .unwrap_or_default();
    let during_ops = answered.load(Ordering::Relaxed) - ops_at_restart;
    let during_time = restarted.elapsed();
    writing.store(false, Ordering::Relaxed);
    load.block_on(async {
        for writer in writers {
            let _ = writer.await;
        }
    });
    for running in replicas.into_iter().flatten() {
        stop(running)?;
    }
    let raw = arguments.keys * (arguments.value_bytes as u64 + 8);
    println!(
        "state: about {:.1} MB of keys and values; {} clients writing {}-byte values; transfer window {}",
        raw as f64 / 1e6,
        arguments.clients,
        arguments.value_bytes,
        cluster.replica.limits.transfer_window
    );
    match (installed, caught_up) {
        (Some((install, status)), Some(caught_up)) => {
            let TransferStats {
                total,
                received,
                ranges,
                ranges_held: held,
            } = status.last_transfer;
            println!(
                "snapshot installed after {:.2} s: {:.1} MB (LZ4), of which {:.1} MB received ({:.1} MB/s); {held} of its {ranges} key ranges were held already",
                install.as_secs_f64(),
                total as f64 / 1e6,
                received as f64 / 1e6,
                received as f64 / 1e6 / install.as_secs_f64()
            );
            println!(
                "caught up with the leader's slot {leader_executed} after {:.2} s (replica 2 opened its storage and answered after {:.2} s)",
                caught_up.as_secs_f64(),
                answering.unwrap_or_default().as_secs_f64()
            );
        }
        _ => println!(
            "replica 2 did not catch up within {} s",
            arguments.timeout_seconds
        ),
    }
    println!(
        "clients: {before:.0} ops/s before the restart, {:.0} ops/s while replica 2 caught up",
        during_ops as f64 / during_time.as_secs_f64()
    );
    println!(
        "ballot at the restart {}.{}, at the end {}.{}{}",
        ballot_at_restart.0,
        ballot_at_restart.1,
        ballot_after.0,
        ballot_after.1,
        if ballot_after == ballot_at_restart {
            " (no election)"
        } else {
            " (an election: the leader changed or was challenged)"
        }
    );
    Ok(())
}

/// Every replica's status that answers within a second.
async fn statuses(cluster: &Cluster) -> BTreeMap<Id, ReplicaStatus> {
    let Ok(socket) = tokio::net::UdpSocket::bind("127.0.0.1:0").await else {
        return BTreeMap::new();
    };
    let deadline = Instant::now() + Duration::from_secs(1);
    let Ok(keyring) = cluster.client_keyring(Want::AnyAdmin) else {
        return BTreeMap::new();
    };
    let me = smr::runtime::auth::client_id_of(keyring.own_credential(), FIRST_CLIENT_ID | 0x7a5f);
    let answers: BTreeMap<Id, StatusAnswer> = query_status(
        &socket,
        cluster.id,
        &mut client_auth(keyring),
        me,
        &cluster.members,
        deadline,
    )
    .await;
    answers
        .into_iter()
        .filter_map(|(id, answer)| answer.status.map(|s| (id, s)))
        .collect()
}

fn leader_status(statuses: &BTreeMap<Id, ReplicaStatus>) -> Option<&ReplicaStatus> {
    statuses.values().find(|s| s.role == "leader")
}

async fn wait_until(
    cluster: &Cluster,
    limit: Duration,
    done: impl Fn(&BTreeMap<Id, ReplicaStatus>) -> bool,
) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done(&statuses(cluster).await) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn rate_over(answered: &AtomicU64, period: Duration) -> f64 {
    let first = answered.load(Ordering::Relaxed);
    tokio::time::sleep(period).await;
    (answered.load(Ordering::Relaxed) - first) as f64 / period.as_secs_f64()
}

/// Puts the keys `keys`, 64 clients at a time, each with a contiguous share.
async fn put_keys(
    cluster: &Cluster,
    ids: &Arc<AtomicU64>,
    keys: std::ops::Range<u64>,
    arguments: &Arguments,
) -> Result<(), String> {
    const LOADERS: u64 = 64;
    const PER_CLIENT: u64 = 200;
    let mut tasks = Vec::new();
    for loader in 0..LOADERS {
        let mine: Vec<u64> = keys.clone().filter(|k| k % LOADERS == loader).collect();
        let (cluster, ids) = (cluster.clone(), ids.clone());
        let mut random = SplitMix64::new(0x10ad_0000 + loader);
        let bytes = arguments.value_bytes;
        tasks.push(tokio::spawn(async move {
            let socket = client_socket(&cluster).await?;
            for batch in mine.chunks(PER_CLIENT as usize) {
                let ops = batch
                    .iter()
                    .map(|k| {
                        Operation::Kv(KvOp::Put {
                            key: key(*k),
                            value: random_value(&mut random, bytes),
                        })
                    })
                    .collect();
                run_client(&cluster, &ids, ops, socket.clone(), None).await?;
            }
            Ok::<_, String>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// One writing client lane: client actor after client actor while `writing` holds.
async fn write_lane(
    lane: usize,
    cluster: Cluster,
    arguments: Arguments,
    ids: Arc<AtomicU64>,
    answered: Arc<AtomicU64>,
    writing: Arc<AtomicBool>,
) -> Result<(), String> {
    let socket = client_socket(&cluster).await?;
    let mut random = SplitMix64::new(0x7a5f_0000 + lane as u64);
    let first = (arguments.keys as f64 * arguments.write_from) as u64;
    while writing.load(Ordering::Relaxed) {
        let ops = (0..100)
            .map(|_| {
                Operation::Kv(KvOp::Put {
                    key: key(first + random.below(arguments.keys - first)),
                    value: random_value(&mut random, arguments.value_bytes),
                })
            })
            .collect();
        run_client(&cluster, &ids, ops, socket.clone(), Some(answered.clone())).await?;
    }
    Ok(())
}

/// The name of key `k`: zero-padded, so that key order is numeric order and the keys
/// replica 2 missed (the last ones loaded) lie in few ranges.
fn key(k: u64) -> spec::Key {
    format!("key{k:010}").into()
}

/// A value of `bytes` random letters and digits: data that compresses little, as real values
/// often do not.
fn random_value(random: &mut SplitMix64, bytes: usize) -> spec::Value {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let text: String = (0..bytes)
        .map(|_| ALPHABET[random.below(ALPHABET.len() as u64) as usize] as char)
        .collect();
    text.into()
}

async fn client_socket(cluster: &Cluster) -> Result<Arc<tokio::net::UdpSocket>, String> {
    let first: SocketAddr = *cluster.members.values().next().ok_or("no replicas")?;
    let socket = tokio::net::UdpSocket::bind(smr::deploy::client::local_bind_address(first))
        .await
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(socket))
}

/// Runs `ops` as one fresh client actor, counting its answers into `answered`.
async fn run_client(
    cluster: &Cluster,
    ids: &AtomicU64,
    ops: Vec<Operation>,
    socket: Arc<tokio::net::UdpSocket>,
    answered: Option<Arc<AtomicU64>>,
) -> Result<(), String> {
    let id = Id::from(ids.fetch_add(1, Ordering::Relaxed) as usize);
    let retry = Duration::from_millis(500);
    let operations = ops.len() + 1;
    // Credential 0 is the clients': their dense ids carry it.
    let keyring = cluster
        .client_keyring(Want::Credential(0))
        .map_err(|e| e.to_string())?;
    let mut runtime = client_runtime(
        id,
        cluster.id,
        &cluster.members,
        client_auth(keyring),
        ops,
        retry..retry + retry / 2,
        socket,
        usize::from(id) as u64,
    );
    if let Some(answered) = answered {
        runtime = runtime.with_hooks(Box::new(CountAnswers {
            answered,
            last: 1,
            operations,
        }));
    }
    runtime
        .run(tokio::time::sleep(Duration::from_secs(600)))
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Counts each operation's first answer, and stops the client when it has them all.
struct CountAnswers {
    answered: Arc<AtomicU64>,
    /// The highest request number answered so far (1: the session's opening).
    last: u64,
    /// Requests of the client actor, its session's opening included.
    operations: usize,
}

impl Hooks<Node> for CountAnswers {
    fn hold_until(&mut self, _src: Id, msg: &Msg, _arrival: Instant) -> Option<Instant> {
        if let Msg::Reply { number, .. } = msg {
            if *number == self.last + 1 {
                self.last += 1;
                self.answered.fetch_add(1, Ordering::Relaxed);
            }
        }
        None
    }

    fn should_stop(&mut self, state: &NodeState) -> bool {
        state
            .client()
            .is_some_and(|client| client.next >= self.operations || client.expired)
    }
}
