//! `smr`: the command-line client. Runs the protocol's client actor on the runtime.
//!
//! ```text
//! smr --config cluster.toml put greeting hello
//! smr --config cluster.toml get greeting
//! smr --config cluster.toml cas greeting hello bonjour
//! smr --config cluster.toml cas --absent counter 1
//! smr --config cluster.toml delete greeting
//! smr --config cluster.toml status
//! smr --config cluster.toml join 3      # a spare replica joins the configuration
//! smr --config cluster.toml quit 0      # a member leaves it
//! smr new-key keys/cluster.key          # a new secret key file (readable by its owner only)
//! ```
//!
//! `smr` signs with the first credential of `[security]` whose key file it can read (an
//! administrator's for `join`, `quit` and `status`), or the one `--credential` names.

use clap::{Parser, Subcommand};
use smr::deploy::client::local_bind_address;
use smr::deploy::client::{client_auth, fresh_client_id};
use smr::deploy::status::StatusAnswer;
use smr::deploy::{query_status, run_operations, ClientOptions, Cluster, Want};
use smr::replica::TransferStats;
use smr::runtime::peers::wire_id;
use smr::runtime::{Key, SplitMix64};
use spec::{Change, ChangeOutput, KvOp, KvOutput, Operation, Output};
use stateright::actor::Id;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// `println!` that does not panic when stdout is closed (`smr status | head`): the rest of the
/// output is not wanted then.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Command-line client of a state machine replication cluster (a replicated key-value store).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Arguments {
    /// The cluster configuration file, as given to the replicas.
    #[arg(long, default_value = "cluster.toml")]
    config: PathBuf,
    /// Give up if there is no answer within this many milliseconds.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// Send a request again after this many milliseconds without an answer.
    #[arg(long, default_value_t = 200)]
    retry_ms: u64,
    /// Sign with this credential of `[security]` (default: the first whose key file this user
    /// can read; an administrator's for join, quit and status).
    #[arg(long)]
    credential: Option<u16>,
    #[command(subcommand)]
    command: Action,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// Sets KEY to VALUE.
    Put { key: String, value: String },
    /// Reads KEY.
    Get { key: String },
    /// Removes KEY.
    Delete { key: String },
    /// Compare-and-set: sets KEY to NEW if its value is EXPECTED. With --absent, give only
    /// KEY and NEW: sets KEY if it has no value.
    Cas {
        /// Expect KEY to have no value (then pass only KEY NEW).
        #[arg(long)]
        absent: bool,
        key: String,
        /// EXPECTED NEW, or just NEW with --absent.
        #[arg(num_args = 1..=2, required = true)]
        values: Vec<String>,
    },
    /// Administrators: adds replica ID (a spare of the configuration file, running) to the
    /// configuration, through the log.
    Join { id: u64 },
    /// Administrators: removes replica ID from the configuration, through the log.
    Quit { id: u64 },
    /// Administrators: shows each replica's role, ballot, leader, configuration, slots
    /// decided and executed, latest checkpoint and dropped-datagram counters.
    Status,
    /// Creates a new secret key in each FILE (which must not exist), readable by its owner
    /// only, for `[security]` in the configuration file. Needs no configuration.
    NewKey {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let arguments = Arguments::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Action::NewKey { files } = &arguments.command {
        for file in files {
            match Key::create_file(file) {
                Ok(key) => say!("{}: new key {:08x}", file.display(), key.fingerprint()),
                Err(error) => {
                    eprintln!("error: {error}");
                    return ExitCode::FAILURE;
                }
            }
        }
        return ExitCode::SUCCESS;
    }
    let cluster = match Cluster::load(&arguments.config) {
        Ok(cluster) => cluster,
        Err(error) => {
            eprintln!("error: {error}");
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
    match runtime.block_on(run(arguments, cluster)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(arguments: Arguments, cluster: Cluster) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_millis(arguments.timeout_ms);
    let replica = |id: u64| -> Result<Id, Box<dyn std::error::Error>> { Ok(cluster.member(id)?) };
    let administrative = matches!(
        arguments.command,
        Action::Status | Action::Join { .. } | Action::Quit { .. }
    );
    let want = match (arguments.credential, administrative) {
        (Some(id), _) => Want::Credential(id),
        (None, true) => Want::AnyAdmin,
        (None, false) => Want::AnyClient,
    };
    let keyring = cluster.client_keyring(want)?;
    if let smr::runtime::Keyring::Client(credential) = &keyring {
        if administrative && credential.role != smr::runtime::Role::Admin {
            return Err(format!(
                "credential {} is a client's: join, quit and status need an administrator's (role = \"admin\")",
                credential.id
            )
            .into());
        }
    }
    let op = match arguments.command {
        Action::NewKey { .. } => unreachable!("handled before the configuration is read"),
        Action::Status => return status(&cluster, keyring, deadline).await,
        Action::Join { id } => Operation::Reconfigure(Change::Join(replica(id)?)),
        Action::Quit { id } => Operation::Reconfigure(Change::Quit(replica(id)?)),
        Action::Put { key, value } => Operation::Kv(KvOp::Put {
            key: key.into(),
            value: value.into(),
        }),
        Action::Get { key } => Operation::Kv(KvOp::Get { key: key.into() }),
        Action::Delete { key } => Operation::Kv(KvOp::Delete { key: key.into() }),
        Action::Cas {
            absent,
            key,
            mut values,
        } => {
            let (expected, new) = match (absent, values.len()) {
                (true, 1) => (None, values.remove(0)),
                (false, 2) => {
                    let new = values.remove(1);
                    (Some(values.remove(0).into()), new)
                }
                (true, _) => return Err("cas --absent takes KEY NEW".into()),
                (false, _) => return Err("cas takes KEY EXPECTED NEW (or --absent KEY NEW)".into()),
            };
            Operation::Kv(KvOp::Cas {
                key: key.into(),
                expected,
                new: new.into(),
            })
        }
    };
    let retry = Duration::from_millis(arguments.retry_ms.max(1));
    let options = ClientOptions {
        max_request_bytes: cluster.replica.limits.max_request_bytes(),
        deadline,
        retry_timeout: retry..retry + retry / 2,
    };
    let outputs = run_operations(cluster.id, &cluster.members, keyring, vec![op], options).await?;
    for (slot, output) in outputs {
        let output = match output {
            Output::Kv(output) => output,
            Output::Reconfigure(ChangeOutput::Accepted {
                epoch,
                members,
                from,
            }) => {
                let members: Vec<String> = members
                    .iter()
                    .map(|id| usize::from(*id).to_string())
                    .collect();
                say!(
                    "configuration {epoch}: members [{}], deciding the slots from {from} on",
                    members.join(", ")
                );
                tracing::info!(slot, "applied");
                continue;
            }
            Output::Reconfigure(ChangeOutput::Refused(why)) => {
                return Err(format!("refused: {why}").into());
            }
            Output::Session(_) => {
                return Err(format!("unexpected answer {output:?} from the cluster").into());
            }
        };
        let text = match output {
            KvOutput::Value(Some(value)) => value.to_string(),
            KvOutput::Value(None) => "(absent)".to_string(),
            KvOutput::Written => "ok".to_string(),
            KvOutput::Deleted(true) => "deleted".to_string(),
            KvOutput::Deleted(false) => "(absent; nothing deleted)".to_string(),
            KvOutput::Cas {
                swapped: true,
                previous,
            } => format!("swapped (was {})", previous.as_deref().unwrap_or("absent")),
            KvOutput::Cas {
                swapped: false,
                previous,
            } => format!(
                "not swapped: the value is {}",
                previous.as_deref().unwrap_or("absent")
            ),
        };
        say!("{text}");
        tracing::info!(slot, "applied");
    }
    Ok(())
}

async fn status(
    cluster: &Cluster,
    keyring: smr::runtime::Keyring,
    deadline: Instant,
) -> Result<(), Box<dyn std::error::Error>> {
    let first = *cluster.members.values().next().ok_or("no replicas")?;
    let socket = tokio::net::UdpSocket::bind(local_bind_address(first)).await?;
    let mut random = SplitMix64::new(SplitMix64::seed_from_environment());
    let me = wire_id(fresh_client_id(&mut random, keyring.own_credential()));
    let mut auth = client_auth(keyring);
    // Answers that come in before the deadline, but no need to wait for a replica that is
    // down once the others have answered for a while.
    let deadline = deadline.min(Instant::now() + Duration::from_millis(1500));
    let answers = query_status(
        &socket,
        cluster.id,
        &mut auth,
        me,
        &cluster.members,
        deadline,
    )
    .await;
    say!(
        "cluster {:?} ({} replicas)",
        cluster.name,
        cluster.members.len()
    );
    for (id, address) in &cluster.members {
        match answers.get(id) {
            None => say!("replica {} at {address}: no answer", wire_id(*id)),
            Some(answer) => print_answer(wire_id(*id), *address, answer),
        }
    }
    if answers.is_empty() {
        return Err("no replica answered (are they running, and do they accept this administrator's key? they count datagrams with an unknown key as unknown-key)".into());
    }
    Ok(())
}

fn print_answer(id: u64, address: std::net::SocketAddr, answer: &StatusAnswer) {
    match &answer.status {
        Some(status) => {
            let leader = status
                .leader
                .map_or_else(|| "unknown".to_string(), |leader| leader.to_string());
            let members: Vec<String> = status.members.iter().map(ToString::to_string).collect();
            let checkpoint = status.checkpoint.map_or_else(
                || "none".to_string(),
                |(slot, digest)| format!("at slot {slot} (digest {digest:016x})"),
            );
            say!(
                "replica {id} at {address}: {} in ballot {}.{}, leader {leader}, configuration {} members [{}]",
                status.role,
                status.ballot.0,
                status.ballot.1,
                status.epoch,
                members.join(", ")
            );
            say!(
                "  slots decided {} executed {}; log from slot {} ({} accepted in storage); checkpoint {checkpoint}; snapshots installed {} (refused {}); audit failures {}",
                status.decided,
                status.executed,
                status.log_start,
                status.accepted,
                status.snapshots_installed,
                status.snapshots_refused,
                status.audit_failures,
            );
            say!(
                "  incarnation {}; keys {}; sessions {}; state digest {:016x}",
                status.incarnation,
                status.keys,
                status.sessions,
                status.service_digest
            );
            let TransferStats {
                total,
                received,
                ranges,
                ranges_held: held,
            } = status.last_transfer;
            if status.snapshots_installed > 0 {
                say!(
                    "  last snapshot installed: {total} bytes, {received} of them received; {held} of its {ranges} key ranges were held here already"
                );
            }
            if let Some((promised, needed)) = status.rebuild {
                say!(
                    "  rebuilding lost storage: {promised} of the {needed} other replicas it needs have answered; it casts no vote until then"
                );
            }
        }
        None => say!(
            "replica {id} at {address}: answered, but its status did not decode (another version?)"
        ),
    }
    let c = &answer.counters;
    say!(
        "  datagrams received {} sent {}; dropped: malformed {} oversized {} wrong-version {} wrong-cluster {} unknown-sender {} wrong-receiver {}; failed authentication: unknown-key {} bad-tag {} replayed {} unauthorized {}; not sent: oversized {} unroutable {} errors {}",
        c.received,
        c.sent,
        c.malformed,
        c.oversized,
        c.wrong_version,
        c.wrong_cluster,
        c.unknown_sender,
        c.wrong_receiver,
        c.unknown_key,
        c.bad_tag,
        c.replayed,
        c.unauthorized,
        c.oversized_outgoing,
        c.unroutable,
        c.send_errors
    );
}
