//! Every message the replicas and clients exchange. One enum, because a stateright actor system
//! has one message type; the variants are grouped by the protocol part they belong to.

use crate::ballot::Ballot;
use crate::replica::Votes;
use serde::{Deserialize, Serialize};
use spec::{Command, Digest, Output, Request, RequestNumber, Slot};
use stateright::actor::Id;
use std::collections::BTreeMap;

/// An accepted value as an acceptor reports it in a promise: the slot, the ballot in which it
/// was accepted, and the command.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AcceptedEntry {
    pub slot: Slot,
    pub ballot: Ballot,
    pub command: Command,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Msg {
    // --- Clients and replicas. ---
    /// A client asks the service to execute a request (retries reuse the request number); or
    /// a replica that does not lead forwards a client's request to the leader it knows.
    Request(Request),
    /// The answer to request `number` of the receiving client, applied at `slot`.
    Reply {
        number: RequestNumber,
        slot: Slot,
        output: Output,
    },

    // --- Phase 1: a candidate asks for promises (Paxos Made Simple, section 2.2). ---
    /// Phase 1a for every slot from `from` on: promise to ignore ballots below `ballot`.
    /// `rebuild`: the sender lost its storage and rebuilds it with this candidacy; an acceptor
    /// then promises only a ballot strictly above its own promise, and records the ballot as
    /// the sender's new life before it answers (proofs/RECOVERY.md). A candidate asks again
    /// with a later `from` for the next page of a promise that did not fit one message.
    Prepare {
        ballot: Ballot,
        from: Slot,
        rebuild: bool,
    },
    /// Phase 1b: the promise, with what the acceptor accepted from the Prepare's `from` on.
    /// `log_start` is the acceptor's truncation point: it discarded what it accepted below
    /// it, so a candidate that has not executed that far must not take those slots for empty;
    /// it catches up first. `complete` is false when the entries were cut at the message size
    /// limit (then there is at least one): the candidate asks for the rest from the slot after
    /// the last entry.
    /// `checkpoint` is, in answer to a rebuild, the slot of the acceptor's latest checkpoint
    /// (0: none, or not a rebuild), and `rebuilt` its
    /// record of every replica's life (see `Storage::rebuilt`), its own included.
    Promise {
        ballot: Ballot,
        log_start: Slot,
        accepted: Vec<AcceptedEntry>,
        complete: bool,
        checkpoint: Slot,
        rebuilt: BTreeMap<Id, Ballot>,
    },
    /// The receiver's ballot is stale: the sender has promised `ballot`.
    Nack { ballot: Ballot },
    /// Pre-vote (Raft dissertation, section 9.6): the sender's election timer fired, and it
    /// would campaign in `ballot`. Nothing changes at the receiver, which grants it only if it
    /// could promise `ballot` and has not heard from a leader since its own timer last fired.
    PreVote { ballot: Ballot },
    /// The pre-vote for `ballot` is granted.
    PreVoteGranted { ballot: Ballot },

    // --- Phase 2: the leader asks acceptors to accept a command for a slot. ---
    /// Phase 2a. `commit` tells how far the leader has executed: every slot below it is
    /// decided, and where the leader proposed in this ballot, its proposal is what was decided
    /// (see `replica::learning`).
    Accept {
        ballot: Ballot,
        slot: Slot,
        command: Command,
        commit: Slot,
        /// The leader's stable checkpoint (see `replica::checkpoint`).
        stable: Option<(Slot, Digest)>,
        /// The members of the configuration that decides `slot`, as the leader computed it
        /// from decided commands: a quorum of these must accept. Observers (the model's
        /// history, conformance) check it against the reference configuration of the slot.
        electorate: Votes,
    },
    /// Phase 2b. `incarnation` counts the acceptor's restarts; it lets observers tell a vote
    /// cast after a recovery from one cast before. `epoch` and `pending` name the configuration
    /// the acceptor's state holds: they let observers check that only a replica whose state
    /// makes it a member votes (a joiner only once it holds the state that includes it).
    Accepted {
        ballot: Ballot,
        slot: Slot,
        incarnation: u32,
        epoch: u64,
        pending: bool,
    },

    // --- Learning decisions. ---
    /// The leader of `ballot` is alive; `commit` and `stable` are as in `Accept`.
    Heartbeat {
        ballot: Ballot,
        commit: Slot,
        stable: Option<(Slot, Digest)>,
    },
    /// A replica that fell behind asks for the decided commands from slot `from` on.
    CatchUp { from: Slot },
    /// Decided commands for consecutive slots starting at `from`.
    CatchUpReply { from: Slot, commands: Vec<Command> },

    // --- Checkpoints and state transfer. ---
    /// A follower holds durably a checkpoint at `slot` with this digest: a vote towards the
    /// checkpoint's stability, sent to the leader, and the audit of the follower's state.
    CheckpointVote { slot: Slot, digest: Digest },
    /// Bytes `offset..offset + bytes.len()` of the encoded checkpoint at `slot`, whose whole
    /// encoding is `total` bytes long and whose state has digest `digest`.
    Snapshot {
        slot: Slot,
        digest: Digest,
        total: u64,
        offset: u64,
        bytes: Vec<u8>,
    },
    /// Asks for the chunk at `offset` of the checkpoint at `slot`.
    SnapshotRequest { slot: Slot, offset: u64 },
    /// The sender no longer holds the checkpoint at `slot` that the receiver asked a chunk of
    /// (a crash ended its loan): the receiver gives that transfer up, and an offer of a newer
    /// checkpoint follows.
    SnapshotGone { slot: Slot },
}

/// An upper bound on the encoded size of values, used to keep every message below the
/// datagram limit without encoding it first.
pub trait SizeBound {
    fn size_bound(&self) -> usize;
}

/// The size bound of a request beyond its key and values: client id, incarnation and number,
/// the operation's tags and lengths (the client's error message names it: `deploy::client`).
pub const REQUEST_OVERHEAD_BYTES: usize = 48;

impl SizeBound for Request {
    fn size_bound(&self) -> usize {
        const FIXED: usize = REQUEST_OVERHEAD_BYTES;
        let spec::Operation::Kv(op) = &self.op else {
            return FIXED; // A membership change (two ids) or a session's opening.
        };
        FIXED
            + match op {
                spec::KvOp::Get { key } | spec::KvOp::Delete { key } => key.len(),
                spec::KvOp::Put { key, value } => key.len() + value.len(),
                spec::KvOp::Cas { key, expected, new } => {
                    key.len() + expected.as_ref().map_or(0, |v| v.len()) + new.len()
                }
            }
    }
}

impl SizeBound for Command {
    fn size_bound(&self) -> usize {
        const FIXED: usize = 16;
        FIXED
            + self
                .requests()
                .iter()
                .map(SizeBound::size_bound)
                .sum::<usize>()
    }
}
