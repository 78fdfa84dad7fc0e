//! Client operations on the runtime: the protocol's client actor, driven until it has every
//! answer or the deadline passes.

use super::node_digest;
use crate::client::Client;
use crate::message::{SizeBound, REQUEST_OVERHEAD_BYTES};
use crate::node::{Node, NodeState};
use crate::runtime::auth::{boot, client_id_of};
use crate::runtime::peers::id_of_wire;
use crate::runtime::{Auth, Hooks, Keyring, Runtime, SplitMix64, FIRST_CLIENT_ID};
use spec::{Operation, Output, Request, Slot};
use stateright::actor::Id;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// How a client runs.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Everything must be answered by then.
    pub deadline: Instant,
    /// How long to wait for an answer before sending again (to the next replica every other
    /// time).
    pub retry_timeout: Range<Duration>,
    /// The cluster's [`crate::replica::Limits::max_request_bytes`]: larger requests are
    /// refused before anything is sent.
    pub max_request_bytes: usize,
}

/// Why client operations did not complete.
#[derive(Debug)]
pub enum ClientError {
    /// The deadline passed. `answered` operations had completed.
    NoAnswer {
        answered: usize,
        replicas: Vec<SocketAddr>,
    },
    /// Operation number `operation` (from 1) is larger than the cluster accepts.
    TooLarge {
        operation: usize,
        bytes: usize,
        limit: usize,
    },
    /// The cluster retired the client's session before operation number `operation` (from 1)
    /// was answered; `answered` operations had completed.
    SessionExpired {
        answered: usize,
        operation: usize,
    },
    /// A replica refused the request: the client's credential may not do it.
    Refused(String),
    Socket(std::io::Error),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::NoAnswer { answered, replicas } => {
                let addresses: Vec<String> = replicas.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "no answer before the deadline ({answered} operation(s) completed); tried the replicas at {}: are they running, is a majority of them up, and do they accept this client's key (the replicas count datagrams with an unknown key in `smr status`)?",
                    addresses.join(", ")
                )
            }
            ClientError::SessionExpired { answered, operation } => write!(
                f,
                "session expired: the cluster retired this client's session before it answered operation {operation} ({answered} operation(s) completed), so operation {operation} may or may not have taken effect; its session table is full ([limits] max_sessions) and retires the least recently used session. Check the state before repeating it."
            ),
            ClientError::TooLarge {
                operation,
                bytes,
                limit,
            } => write!(
                f,
                "operation {operation} is too large: it takes {bytes} bytes (its key and values and {REQUEST_OVERHEAD_BYTES} bytes of header), above the cluster's limit of {limit} bytes per request ([limits] max_batch_bytes); nothing was sent"
            ),
            ClientError::Refused(why) => write!(f, "the cluster refused the request: {why}"),
            ClientError::Socket(error) => write!(f, "socket: {error}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// A fresh client id of credential `credential`: random, at or above [`FIRST_CLIENT_ID`], so
/// that it never names a replica and two client processes practically never share one.
pub fn fresh_client_id(random: &mut SplitMix64, credential: u16) -> Id {
    id_of_wire(client_id_of(
        credential,
        random.next_u64() | FIRST_CLIENT_ID,
    ))
}

/// The signer of a client process that holds `keyring`.
pub fn client_auth(keyring: Keyring) -> Auth {
    Auth::new(keyring, boot::clock_boot())
}

/// A local address from which `remote` can be reached: loopback for loopback replicas.
pub fn local_bind_address(remote: SocketAddr) -> SocketAddr {
    let ip = match remote.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(ip) if ip.is_loopback() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

/// Stops the client once every operation is answered.
struct UntilDone {
    operations: usize,
}

impl Hooks<Node> for UntilDone {
    fn should_stop(&mut self, state: &NodeState) -> bool {
        state
            .client()
            .is_some_and(|client| client.next >= self.operations || client.expired)
    }
}

/// A client actor for `ops`, as a runtime on `socket`, signing with `auth` (whose credential
/// `id` must carry). The actor tries the replicas in id order, and the replicas forward to the
/// leader. It opens its session first: request number 1 is the opening, and `ops` are
/// numbered from 2.
#[allow(clippy::too_many_arguments)]
pub fn client_runtime(
    id: Id,
    cluster: u64,
    replicas: &BTreeMap<Id, SocketAddr>,
    auth: Auth,
    ops: Vec<Operation>,
    retry_timeout: Range<Duration>,
    socket: Arc<UdpSocket>,
    seed: u64,
) -> Runtime<Node> {
    let client = Client {
        replicas: replicas.keys().copied().collect(),
        ops: std::iter::once(Operation::OpenSession).chain(ops).collect(),
        max_attempts: u32::MAX,
        retry_timeout,
        delay_start: false,
        bug: None,
    };
    runtime_for(client, id, cluster, replicas, auth, socket, seed)
}

/// The runtime for a given client actor, stopping once it has every answer. `replicas` gives
/// the address of every replica, whatever order the client tries them in.
pub fn runtime_for(
    client: Client,
    id: Id,
    cluster: u64,
    replicas: &BTreeMap<Id, SocketAddr>,
    auth: Auth,
    socket: Arc<UdpSocket>,
    seed: u64,
) -> Runtime<Node> {
    let operations = client.ops.len();
    Runtime::new(
        Node::Client(client),
        id,
        cluster,
        socket,
        replicas.clone(),
        auth,
        node_digest,
        seed,
    )
    .with_hooks(Box::new(UntilDone { operations }))
}

/// The answers a [`client_runtime`] actor recorded to its operations, with their slots: all
/// but the first, which answers the opening of its session.
pub fn operation_answers(state: Option<&NodeState>) -> Vec<(Slot, Output)> {
    let outputs = state
        .and_then(NodeState::client)
        .map(|c| c.outputs.as_slice());
    outputs
        .unwrap_or_default()
        .iter()
        .skip(1)
        .cloned()
        .collect()
}

/// Runs `ops` in order as one fresh client holding `keyring` and returns each answer with its
/// slot (not the answer to opening the session). An operation larger than the cluster accepts
/// is refused before anything is sent.
pub async fn run_operations(
    cluster: u64,
    replicas: &BTreeMap<Id, SocketAddr>,
    keyring: Keyring,
    ops: Vec<Operation>,
    options: ClientOptions,
) -> Result<Vec<(Slot, Output)>, ClientError> {
    for (index, op) in ops.iter().enumerate() {
        let request = Request {
            client: Id::from(0),
            session: spec::IMPLICIT,
            number: 0,
            op: op.clone(),
        };
        let bytes = request.size_bound();
        if bytes > options.max_request_bytes {
            return Err(ClientError::TooLarge {
                operation: index + 1,
                bytes,
                limit: options.max_request_bytes,
            });
        }
    }
    let first = *replicas.values().next().ok_or(ClientError::NoAnswer {
        answered: 0,
        replicas: Vec::new(),
    })?;
    let socket = UdpSocket::bind(local_bind_address(first))
        .await
        .map_err(ClientError::Socket)?;
    let mut random = SplitMix64::new(SplitMix64::seed_from_environment());
    let id = fresh_client_id(&mut random, keyring.own_credential());
    let operations = ops.len();
    let runtime = client_runtime(
        id,
        cluster,
        replicas,
        client_auth(keyring),
        ops,
        options.retry_timeout,
        Arc::new(socket),
        random.next_u64(),
    );
    let stopped = runtime
        .run(tokio::time::sleep_until(options.deadline.into()))
        .await
        .map_err(|error| match error {
            crate::runtime::RuntimeError::Socket(error) => ClientError::Socket(error),
            crate::runtime::RuntimeError::Storage(error) => {
                ClientError::Socket(std::io::Error::other(error.to_string()))
            }
            crate::runtime::RuntimeError::Trace(error) => {
                ClientError::Socket(std::io::Error::other(error))
            }
        })?;
    if let Some(why) = stopped.refused {
        return Err(ClientError::Refused(why));
    }
    let opened = stopped
        .state
        .as_ref()
        .and_then(NodeState::client)
        .is_some_and(|client| !client.outputs.is_empty());
    let outputs = operation_answers(stopped.state.as_ref());
    let expired = Output::Session(spec::SessionOutput::Expired);
    if let Some(position) = outputs.iter().position(|(_, output)| *output == expired) {
        return Err(ClientError::SessionExpired {
            answered: position,
            operation: position + 1,
        });
    }
    if !opened || outputs.len() < operations {
        return Err(ClientError::NoAnswer {
            answered: outputs.len(),
            replicas: replicas.values().copied().collect(),
        });
    }
    Ok(outputs)
}
