//! The status report: computed by a replica's runtime from the replica's state when asked by a
//! control frame (it is not a protocol message, and the actor never sees it), and shown by
//! `smr status`.

use crate::codec::{self, FrameKind, Header, StatusRequest};
use crate::node::NodeState;
use crate::replica::{Role, TransferStats};
use crate::runtime::peers::wire_id;
use crate::runtime::{Auth, Counters, StatusReply};
use serde::{Deserialize, Serialize};
use stateright::actor::Id;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// What one replica says about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// "leader", "candidate" or "follower"; "rebuilding" while the replica rebuilds lost
    /// storage (it casts no vote then).
    pub role: String,
    /// While rebuilding: the other replicas that promised its rebuild ballot, and how many it
    /// needs (it waits while fewer are up).
    pub rebuild: Option<(u64, u64)>,
    /// The ballot promised, as (round, leader).
    pub ballot: (u32, u64),
    /// The replica believed to lead.
    pub leader: Option<u64>,
    /// The configuration the replica has executed up to: its epoch and member ids (the
    /// replicated configuration, which JOIN and QUIT change through the log).
    pub epoch: u64,
    pub members: Vec<u64>,
    /// One past the highest slot known decided here.
    pub decided: u64,
    /// Slots executed (applied to the key-value machine).
    pub executed: u64,
    /// Slots with an accepted value in durable storage.
    pub accepted: u64,
    /// Restarts from durable storage.
    pub incarnation: u32,
    /// Keys in the key-value machine.
    pub keys: u64,
    /// Clients in the exactly-once session table.
    pub sessions: u64,
    /// The digest of the executed service state (equal at equal `executed` on every replica).
    pub service_digest: u64,
    /// The latest checkpoint in durable storage: the first slot it does not cover, and the
    /// digest of its state. `None` before the first checkpoint.
    pub checkpoint: Option<(u64, u64)>,
    /// Slots below this are covered by a stable checkpoint and truncated from the log.
    pub log_start: u64,
    /// Snapshots installed by state transfer since the replica started.
    pub snapshots_installed: u32,
    /// Audits that found this replica's state different from a quorum's.
    pub audit_failures: u32,
    /// State transfers whose assembled snapshot was not the one announced (refused).
    pub snapshots_refused: u32,
    /// The size of the latest checkpoint as a state transfer lays it out (before each chunk's
    /// compression), once a transfer has indexed it.
    pub checkpoint_transfer_bytes: Option<u64>,
    /// The last snapshot installed: its size, the bytes received of it (the header and the
    /// ranges this replica did not hold), its ranges and how many were held already.
    pub last_transfer: TransferStats,
}

/// Encodes the status of a replica state (the runtime's status function for replicas).
pub fn encode_replica_status(state: &NodeState) -> Vec<u8> {
    let Some(replica) = state.replica() else {
        return Vec::new();
    };
    let role = match replica.role {
        _ if replica.durable.rebuilding => "rebuilding",
        Role::Leader(_) => "leader",
        Role::Candidate(_) => "candidate",
        Role::Follower => "follower",
    };
    let rebuild = super::progress::rebuild_progress(state)
        .filter(|(rebuilding, _, _)| *rebuilding)
        .map(|(_, promised, needed)| (promised as u64, needed as u64));
    let decided = replica
        .log
        .keys()
        .next_back()
        .map_or(0, |slot| slot + 1)
        .max(replica.executed);
    let status = ReplicaStatus {
        role: role.to_string(),
        rebuild,
        ballot: (
            replica.durable.promised.round,
            wire_id(replica.durable.promised.leader),
        ),
        leader: replica.leader.map(wire_id),
        epoch: replica.service.configuration.epoch,
        members: replica
            .service
            .configuration
            .members
            .iter()
            .copied()
            .map(wire_id)
            .collect(),
        decided,
        executed: replica.executed,
        accepted: replica.durable.accepted.len() as u64,
        incarnation: replica.durable.incarnation,
        keys: replica.service.machine.len() as u64,
        sessions: replica.service.sessions.len() as u64,
        service_digest: replica.service.digest(),
        checkpoint: replica
            .durable
            .checkpoint
            .as_ref()
            .map(|checkpoint| (checkpoint.slot, checkpoint.digest)),
        log_start: replica.durable.log_start,
        snapshots_installed: replica.snapshots_installed,
        audit_failures: replica.audit_failures,
        snapshots_refused: replica.snapshots_refused,
        checkpoint_transfer_bytes: replica
            .durable
            .checkpoint
            .as_ref()
            .and_then(|checkpoint| checkpoint.index.total_if_indexed()),
        last_transfer: replica.last_transfer,
    };
    postcard::to_stdvec(&status).unwrap_or_default()
}

/// A replica's answer to a status query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusAnswer {
    pub counters: Counters,
    /// `None` if the status did not decode (another build's format).
    pub status: Option<ReplicaStatus>,
}

/// Asks every replica for its status and gathers the answers that come back before
/// `deadline`, asking again every 100 ms those that have not answered.
pub async fn query_status(
    socket: &UdpSocket,
    cluster: u64,
    auth: &mut Auth,
    me: u64,
    replicas: &BTreeMap<Id, SocketAddr>,
    deadline: Instant,
) -> BTreeMap<Id, StatusAnswer> {
    let nonce = crate::runtime::SplitMix64::new(me ^ 0x5a5a).next_u64();
    let mut answers = BTreeMap::new();
    let mut buffer = vec![0u8; codec::MAX_DATAGRAM_BYTES + 1];
    let mut frame = Vec::new();
    while answers.len() < replicas.len() && Instant::now() < deadline {
        for (id, address) in replicas.iter().filter(|(id, _)| !answers.contains_key(*id)) {
            let header = Header::new(FrameKind::StatusRequest, cluster, me, wire_id(*id));
            if auth
                .frame(header, &StatusRequest { nonce }, &mut frame)
                .is_ok()
            {
                let _ = socket.send_to(&frame, address).await;
            }
        }
        let round_end = (Instant::now() + Duration::from_millis(100)).min(deadline);
        while answers.len() < replicas.len() {
            let received =
                tokio::time::timeout_at(round_end.into(), socket.recv_from(&mut buffer)).await;
            let Ok(Ok((length, from))) = received else {
                break;
            };
            let datagram = &buffer[..length];
            let Ok(header) = codec::decode_header(datagram, cluster) else {
                continue;
            };
            let sender = crate::runtime::peers::id_of_wire(header.sender);
            if header.kind != FrameKind::StatusReply
                || header.receiver != me
                || replicas.get(&sender) != Some(&from)
                || auth.verify(&header, datagram).is_err()
            {
                continue;
            }
            if let Ok(reply) = codec::decode_body::<StatusReply>(datagram) {
                if reply.nonce == nonce {
                    let status = postcard::from_bytes(&reply.node).ok();
                    answers.insert(
                        sender,
                        StatusAnswer {
                            counters: reply.counters,
                            status,
                        },
                    );
                }
            }
        }
    }
    answers
}
