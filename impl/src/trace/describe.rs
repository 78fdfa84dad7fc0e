//! A serializable description of a [`Node`], from which the model rebuilds the very actor a
//! process ran: a replica's configuration, or a client's replicas and operations.
//!
//! The protocol's configuration types are not serializable (they are the protocol's, and
//! change with it), so this mirrors their fields. The description also carries the actor's
//! `Debug` form: the model rebuilds the actor and compares, so a field that this mirror misses
//! (one added to the protocol later) is reported instead of silently replayed wrongly.

use crate::client::Client;
use crate::node::Node;
use crate::replica::{Limits, Replica, ReplicaConfig};
use serde::{Deserialize, Serialize};
use spec::Operation;
use stateright::actor::Id;
use std::ops::Range;
use std::time::Duration;

/// A node as recorded in a trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDescription {
    pub kind: NodeKind,
    /// `format!("{node:?}")` of the actor the process ran.
    pub debug: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    Replica(ReplicaDescription),
    Client(ClientDescription),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaDescription {
    pub members: Vec<u64>,
    /// Every replica that may ever be a member (the members and the spares that may join).
    pub replicas: Vec<u64>,
    pub window: usize,
    pub max_batch_requests: usize,
    pub max_batch_bytes: usize,
    pub max_queue: usize,
    pub max_payload_bytes: usize,
    pub max_chunk_bytes: usize,
    pub transfer_window: usize,
    pub max_snapshot_bytes: u64,
    pub max_lent_log_slots: u64,
    pub max_pending_checkpoints: usize,
    pub max_sessions: usize,
    pub election_timeout: Range<Duration>,
    pub heartbeat_interval: Option<Range<Duration>>,
    pub checkpoint_interval: Option<u64>,
    pub initial_leader: Option<u64>,
    pub pre_vote: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientDescription {
    pub replicas: Vec<u64>,
    pub ops: Vec<Operation>,
    pub max_attempts: u32,
    pub retry_timeout: Range<Duration>,
}

fn wire(id: Id) -> u64 {
    usize::from(id) as u64
}

fn id(value: u64) -> Id {
    Id::from(value as usize)
}

impl NodeDescription {
    /// Describes `node`.
    pub fn of(node: &Node) -> Self {
        let kind = match node {
            Node::Replica(replica) => {
                let c = &replica.config;
                NodeKind::Replica(ReplicaDescription {
                    members: c.members.iter().copied().map(wire).collect(),
                    replicas: c.replicas.iter().copied().map(wire).collect(),
                    window: c.limits.window,
                    max_batch_requests: c.limits.max_batch_requests,
                    max_batch_bytes: c.limits.max_batch_bytes,
                    max_queue: c.limits.max_queue,
                    max_payload_bytes: c.limits.max_payload_bytes,
                    max_chunk_bytes: c.limits.max_chunk_bytes,
                    transfer_window: c.limits.transfer_window,
                    max_snapshot_bytes: c.limits.max_snapshot_bytes,
                    max_lent_log_slots: c.limits.max_lent_log_slots,
                    max_pending_checkpoints: c.limits.max_pending_checkpoints,
                    max_sessions: c.limits.max_sessions,
                    election_timeout: c.election_timeout.clone(),
                    heartbeat_interval: c.heartbeat_interval.clone(),
                    checkpoint_interval: c.checkpoint_interval,
                    initial_leader: c.initial_leader.map(wire),
                    pre_vote: c.pre_vote,
                })
            }
            Node::Client(client) => NodeKind::Client(ClientDescription {
                replicas: client.replicas.iter().copied().map(wire).collect(),
                ops: client.ops.clone(),
                max_attempts: client.max_attempts,
                retry_timeout: client.retry_timeout.clone(),
            }),
        };
        Self {
            kind,
            debug: format!("{node:?}"),
        }
    }

    /// The encoded description, for a trace's `Begin` record.
    pub fn encode(node: &Node) -> Vec<u8> {
        postcard::to_stdvec(&Self::of(node)).unwrap_or_default()
    }

    /// Decodes a description from a trace's `Begin` record.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        postcard::from_bytes(bytes).map_err(|e| format!("undecodable actor description: {e}"))
    }

    /// Rebuilds the node, checking that it is exactly the one described.
    pub fn build(&self) -> Result<Node, String> {
        let node = match &self.kind {
            NodeKind::Replica(r) => {
                let members: Vec<Id> = r.members.iter().copied().map(id).collect();
                ReplicaConfig::check_members(&members)?;
                // Start from the defaults and set every described field, so that a field the
                // protocol adds keeps its default here (and the check below notices). The struct
                // update below has no effect today, and is there for the same reason.
                let mut config = ReplicaConfig::new(members);
                config.replicas = r.replicas.iter().copied().map(id).collect();
                #[allow(clippy::needless_update)]
                let limits = Limits {
                    window: r.window,
                    max_batch_requests: r.max_batch_requests,
                    max_batch_bytes: r.max_batch_bytes,
                    max_queue: r.max_queue,
                    max_payload_bytes: r.max_payload_bytes,
                    max_chunk_bytes: r.max_chunk_bytes,
                    transfer_window: r.transfer_window,
                    max_snapshot_bytes: r.max_snapshot_bytes,
                    max_lent_log_slots: r.max_lent_log_slots,
                    max_pending_checkpoints: r.max_pending_checkpoints,
                    max_sessions: r.max_sessions,
                };
                config.limits = limits;
                config.election_timeout = r.election_timeout.clone();
                config.heartbeat_interval = r.heartbeat_interval.clone();
                config.checkpoint_interval = r.checkpoint_interval;
                config.initial_leader = r.initial_leader.map(id);
                config.pre_vote = r.pre_vote;
                Node::Replica(Replica::new(config))
            }
            NodeKind::Client(c) => Node::Client(Client {
                replicas: c.replicas.iter().copied().map(id).collect(),
                ops: c.ops.clone(),
                max_attempts: c.max_attempts,
                retry_timeout: c.retry_timeout.clone(),
                delay_start: false,
                bug: None,
            }),
        };
        let rebuilt = format!("{node:?}");
        if normalized(&rebuilt) != normalized(&self.debug) {
            return Err(format!(
                "the recorded actor cannot be rebuilt exactly (a field missing from the trace's description?):\n  recorded {}\n  rebuilt  {rebuilt}",
                self.debug
            ));
        }
        Ok(node)
    }
}

/// The `Debug` form without what differs only between builds: the seeded-bug switch exists
/// only with the `seeded-bugs` feature, and is off in every traced run the model rebuilds.
fn normalized(debug: &str) -> String {
    debug.replace(", bug: None", "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_and_clients_are_rebuilt_exactly() {
        let members: Vec<Id> = (0..3).map(Id::from).collect();
        let mut config = ReplicaConfig::new(members.clone());
        config.limits.window = 3;
        config.checkpoint_interval = Some(7);
        config.heartbeat_interval = None;
        let replica = Node::Replica(Replica::new(config));
        let client = Node::Client(Client {
            replicas: members,
            ops: vec![Operation::Kv(spec::KvOp::Get { key: "k".into() })],
            max_attempts: 4,
            retry_timeout: Duration::from_millis(5)..Duration::from_millis(9),
            delay_start: false,
            bug: None,
        });
        for node in [replica, client] {
            let encoded = NodeDescription::encode(&node);
            let description: NodeDescription = postcard::from_bytes(&encoded).unwrap();
            let rebuilt = description.build().unwrap();
            assert_eq!(format!("{rebuilt:?}"), format!("{node:?}"));
        }
    }
}
