//! A replica on the runtime: the protocol's replica actor, its socket, its data directory.

use super::config::{Cluster, ConfigError};
use super::node_digest;
use super::status::encode_replica_status;
use crate::message::Msg;
use crate::node::Node;
use crate::replica::Replica;
use crate::replica::Storage;
use crate::runtime::auth::boot;
use crate::runtime::event_loop::ClientAccess;
use crate::runtime::peers::wire_id;
use crate::runtime::{
    Auth, DurableStore, Genesis, Identity, NetworkFaults, OpenMode, Opened, Partition, Runtime,
    RuntimeBug, StorageError, SyncPolicy,
};
use crate::trace::SharedSink;
use stateright::actor::Id;
use std::path::Path;
use std::sync::Arc;
use tokio::net::UdpSocket;

/// How to run a replica.
#[derive(Clone, Debug)]
pub struct ReplicaOptions {
    pub sync: SyncPolicy,
    /// How to treat the data directory: it must hold the replica's state (the default), be
    /// created for a brand-new cluster, or be rebuilt after a loss (see [`OpenMode`]).
    pub mode: OpenMode,
    /// Seeds timer durations; different replicas should get different seeds.
    pub seed: u64,
    /// Commit on the runtime's thread (see [`Runtime::with_inline_commit`]).
    pub inline_commit: bool,
    /// Record a trace of every step here (see [`crate::trace`]).
    pub trace: Option<SharedSink>,
    /// Inject network faults, and cut the replica off from the peers in the partition.
    pub faults: Option<(NetworkFaults, Option<Partition>)>,
    /// A seeded runtime bug (only with the `runtime-bugs` feature).
    pub bug: Option<RuntimeBug>,
}

impl Default for ReplicaOptions {
    fn default() -> Self {
        Self {
            sync: SyncPolicy::Fsync,
            mode: OpenMode::Existing,
            seed: crate::runtime::SplitMix64::seed_from_environment(),
            inline_commit: false,
            trace: None,
            faults: None,
            bug: None,
        }
    }
}

/// Why a replica could not start.
#[derive(Debug)]
pub enum StartError {
    /// The data directory (see [`StorageError`]).
    Storage(StorageError),
    /// A key file named in `[security]`.
    Keys(ConfigError),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Storage(error) => write!(f, "{error}"),
            StartError::Keys(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for StartError {}

impl From<StorageError> for StartError {
    fn from(error: StorageError) -> Self {
        StartError::Storage(error)
    }
}

/// What a client may send a replica: only its own requests, and a configuration change only
/// with an administrator's credential. (The actor ignores a replica's messages from a client
/// anyway; refusing them here makes the attempt visible in `status`.)
pub fn client_rule(client: u64, msg: &Msg) -> ClientAccess {
    match msg {
        Msg::Request(request) if wire_id(request.client) != client => {
            ClientAccess::Refused("a request in another client's name")
        }
        Msg::Request(request) if matches!(request.op, spec::Operation::Reconfigure(_)) => {
            ClientAccess::Admin
        }
        Msg::Request(_) => ClientAccess::Anyone,
        _ => ClientAccess::Refused("a replica's message from a client"),
    }
}

/// Opens replica `id`'s data directory and prepares its runtime on `socket` (bound to the
/// replica's configured address). The actor starts, or recovers from what the directory
/// holds, or rebuilds lost storage, when the runtime runs. Fails if the directory is missing,
/// empty or damaged (unless `options.mode` says to create or recover it), belongs to another
/// replica or cluster, disagrees with the cluster's first configuration, or is in use; or if
/// a key file of `[security]` is missing, unreadable or readable by others.
pub fn start_replica(
    cluster: &Cluster,
    id: Id,
    data_dir: &Path,
    socket: Arc<UdpSocket>,
    options: ReplicaOptions,
) -> Result<Runtime<Node>, StartError> {
    let keyring = cluster.replica_keyring().map_err(StartError::Keys)?;
    if keyring == crate::runtime::Keyring::Insecure {
        tracing::warn!("INSECURE MODE ([security] insecure = true): datagrams are neither signed nor checked, and anyone who can reach this replica can write, read its status, or change the configuration; for local experiments only");
    }
    let identity = Identity {
        cluster: cluster.id,
        replica: wire_id(id),
        genesis: Some(Genesis {
            members: cluster
                .replica
                .members
                .iter()
                .map(|m| wire_id(*m))
                .collect(),
            window: cluster.replica.limits.window as u64,
            max_sessions: Some(cluster.replica.limits.max_sessions as u64),
        }),
    };
    let (store, opened) =
        DurableStore::<Storage>::open(data_dir, &identity, options.sync, options.mode)?;
    let mut loaded = match opened {
        Opened::New => {
            tracing::info!(
                replica = usize::from(id),
                "starting a new replica of a brand-new cluster"
            );
            None
        }
        Opened::Existing(storage) => {
            tracing::info!(
                replica = usize::from(id),
                incarnation = storage.incarnation,
                accepted = storage.accepted.len(),
                promised = ?storage.promised,
                rebuilding = storage.rebuilding,
                "recovering from the data directory"
            );
            Some(storage)
        }
        Opened::Lost { why, moved_to } => {
            tracing::warn!(
                replica = usize::from(id),
                %why,
                moved_to = %moved_to.as_ref().map_or("(nothing to move)".to_string(), |p| p.display().to_string()),
                "this replica's storage is lost: it rebuilds it from the other replicas and casts no vote until then"
            );
            Some(Storage::lost())
        }
    };
    if RuntimeBug::active(options.bug, RuntimeBug::StaleRestart) && loaded.is_some() {
        loaded = DurableStore::<Storage>::snapshot_only(data_dir)?;
    }
    let boot = boot::next_boot(data_dir).map_err(|what| StorageError {
        path: data_dir.join(boot::BOOT_FILE),
        offset: None,
        what,
    })?;
    let actor = Node::Replica(Replica::new(cluster.replica.clone()));
    let seed = options.seed ^ wire_id(id);
    let mut runtime = Runtime::new(
        actor,
        id,
        cluster.id,
        socket,
        cluster.members.clone(),
        Auth::new(keyring, boot),
        node_digest,
        seed,
    )
    .with_client_rule(Box::new(client_rule))
    .with_store(store, loaded)
    .with_inline_commit(options.inline_commit)
    .with_status(Box::new(encode_replica_status))
    .with_hooks(Box::new(super::progress::RebuildProgress::default()))
    .with_bug(options.bug);
    if let Some((faults, partition)) = options.faults {
        runtime = runtime.with_faults(faults, seed.rotate_left(17), partition);
    }
    if let Some(sink) = options.trace {
        runtime = crate::trace::traced(runtime, sink);
    }
    Ok(runtime)
}

/// Runs replica `id` of `cluster` on a thread of its own, with a single-threaded runtime of its
/// own, on `socket`, until `stop` turns true: how the benchmarks run a local cluster in one
/// process, as separate processes would.
pub fn spawn_replica_thread(
    cluster: Cluster,
    id: Id,
    data_dir: std::path::PathBuf,
    socket: std::net::UdpSocket,
    options: ReplicaOptions,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::thread::JoinHandle<Result<(), String>> {
    std::thread::spawn(move || -> Result<(), String> {
        socket.set_nonblocking(true).map_err(|e| e.to_string())?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async move {
            let socket = UdpSocket::from_std(socket).map_err(|e| e.to_string())?;
            let replica = start_replica(&cluster, id, &data_dir, Arc::new(socket), options)
                .map_err(|e| e.to_string())?;
            replica
                .run(async move {
                    let _ = stop.wait_for(|stop| *stop).await;
                })
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        })
    })
}
