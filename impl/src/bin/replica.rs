//! `replica`: runs one replica of a cluster.
//!
//! ```text
//! replica --config cluster.toml --id 0 --data-dir data/0 --new-cluster   # the first start
//! replica --config cluster.toml --id 0 --data-dir data/0                 # every restart
//! replica --config cluster.toml --id 0 --data-dir data/0 --recover       # after a lost disk
//! ```

use clap::Parser;
use smr::deploy::{start_replica, Cluster, ReplicaOptions};
use smr::runtime::{OpenMode, SplitMix64, SyncPolicy};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Runs one replica of a state machine replication cluster (Multi-Paxos over UDP).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Arguments {
    /// The cluster configuration file (TOML: `cluster`, and `[[replica]]` entries with `id`
    /// and `address`).
    #[arg(long)]
    config: PathBuf,
    /// This replica's id in the configuration.
    #[arg(long)]
    id: u64,
    /// Where this replica keeps its durable state. Never share one between replicas. It must
    /// hold this replica's state, unless --new-cluster or --recover says otherwise.
    #[arg(long)]
    data_dir: PathBuf,
    /// Create the data directory (it must be missing or empty) for a member of a brand-new
    /// cluster's first configuration, or for a spare that has never been a member. Only for
    /// the very first start: a replica that starts from nothing forgets whatever it promised
    /// before, so never use it for a replica that ran before.
    #[arg(long, conflicts_with = "recover")]
    new_cluster: bool,
    /// This replica lost its storage (the disk was wiped or replaced, or its files are
    /// damaged, or --data-dir pointed elsewhere): move what the directory holds aside (into a
    /// damaged-* directory inside it) and rebuild the state from the other replicas. It casts no
    /// vote until a quorum of the others has told it everything it may have promised or
    /// accepted. An intact directory is used as it is.
    #[arg(long)]
    recover: bool,
    /// UNSAFE, for experiments only: do not wait for the disk before answering. A machine
    /// crash can then lose acknowledged writes and break consistency.
    #[arg(long)]
    unsafe_no_fsync: bool,
    /// Write and fsync on the replica's own thread rather than a helper thread: lower latency
    /// with few clients, lower throughput with many (the next batch is not prepared meanwhile).
    #[arg(long)]
    inline_commit: bool,
    /// Seed for the randomised timeouts (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
}

fn main() -> ExitCode {
    let arguments = Arguments::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cluster = match Cluster::load(&arguments.config) {
        Ok(cluster) => cluster,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let id = match cluster.member(arguments.id) {
        Ok(id) => id,
        Err(error) => {
            eprintln!("error: {}: {error}", arguments.config.display());
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(arguments, cluster, id)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    arguments: Arguments,
    cluster: Cluster,
    id: stateright::actor::Id,
) -> Result<(), Box<dyn std::error::Error>> {
    let address = cluster.members[&id];
    let socket = tokio::net::UdpSocket::bind(address)
        .await
        .map_err(|e| format!("cannot bind {address}: {e}"))?;
    let sync = if arguments.unsafe_no_fsync {
        tracing::warn!("running WITHOUT fsync: acknowledged writes may be lost in a machine crash");
        SyncPolicy::UnsafeNoFsync
    } else {
        SyncPolicy::Fsync
    };
    let mode = if arguments.new_cluster {
        OpenMode::NewCluster
    } else if arguments.recover {
        OpenMode::Recover
    } else {
        OpenMode::Existing
    };
    let options = ReplicaOptions {
        sync,
        mode,
        seed: arguments
            .seed
            .unwrap_or_else(SplitMix64::seed_from_environment),
        inline_commit: arguments.inline_commit,
        ..ReplicaOptions::default()
    };
    let runtime = start_replica(&cluster, id, &arguments.data_dir, Arc::new(socket), options)?;
    tracing::info!(
        cluster = %cluster.name,
        replica = usize::from(id),
        %address,
        data_dir = %arguments.data_dir.display(),
        members = cluster.members.len(),
        "replica running"
    );
    let stopped = runtime.run(shutdown_signal()).await?;
    tracing::info!(counters = ?stopped.counters, "replica stopped");
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
