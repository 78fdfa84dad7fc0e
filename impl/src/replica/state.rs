//! The replica's volatile state around its durable [`Storage`].

use crate::ballot::Ballot;
use crate::replica::snapshot::{Layout, LENGTH_BYTES};
use crate::replica::storage::Checkpoint;
use crate::replica::storage::{Accepted, Storage};
use spec::digest::{digest_of, Digest, SetDigest, StableHasher};
use spec::kv::Range;
use spec::{Command, Key, Request, ServiceState, Slot};
use stateright::actor::Id;
use std::collections::{BTreeMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A set of replica ids (each below [`crate::replica::config::MAX_REPLICAS`]).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Votes(u64);

impl Votes {
    /// The set holding only `id`.
    pub fn of(id: Id) -> Self {
        let mut votes = Votes::default();
        votes.insert(id);
        votes
    }

    /// Adds `id`.
    pub fn insert(&mut self, id: Id) {
        self.0 |= 1 << usize::from(id);
    }

    /// Whether `id` is in the set.
    pub fn contains(self, id: Id) -> bool {
        self.0 & (1 << usize::from(id)) != 0
    }

    /// Number of ids in the set.
    pub fn count(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The set of `ids`.
    pub fn from_ids<'a>(ids: impl IntoIterator<Item = &'a Id>) -> Self {
        let mut votes = Votes::default();
        for id in ids {
            votes.insert(*id);
        }
        votes
    }

    /// The ids in both sets.
    pub fn intersection(self, other: Votes) -> Votes {
        Votes(self.0 & other.0)
    }

    /// The ids, in increasing order.
    pub fn iter(self) -> impl Iterator<Item = Id> {
        (0..64)
            .filter(move |i| self.0 & (1 << i) != 0)
            .map(Id::from)
    }

    /// The set as a bit mask (bit `i` is replica `i`).
    pub fn bits(self) -> u64 {
        self.0
    }

    /// Whether the ids of `self` that are in `electorate` make a majority of `electorate`.
    pub fn quorum_of(self, electorate: Votes) -> bool {
        self.intersection(electorate).count() > electorate.count() / 2
    }
}

/// A slot the leader has proposed and not yet seen decided.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Proposal {
    pub command: Command,
    /// Acceptors that accepted it in the leader's ballot, the leader included.
    pub votes: Votes,
    /// The members of the configuration that decides the slot.
    pub electorate: Votes,
}

/// Promises counted for one ballot: by a candidate in Phase 1, and by a leader that asks the
/// members of a new configuration for theirs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Promises {
    /// Replicas whose promise is complete and counts (a candidate includes itself, unless it
    /// rebuilds its storage).
    pub by: Votes,
    /// Replicas whose promise arrives in pages: the slot the next page starts at.
    pub paging: BTreeMap<Id, Slot>,
    /// The life (see `Storage::rebuilt`) each counted replica had when it promised, where it
    /// had been rebuilt: a promise from a life since rebuilt is void.
    pub lives: BTreeMap<Id, Ballot>,
}

/// Phase 1 in progress.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Candidacy {
    pub promises: Promises,
    /// The first slot the candidate asked promises for: its executed prefix, or 0 when it
    /// rebuilds its storage (then it needs everything the others hold).
    pub from: Slot,
    /// For each slot, the value accepted in the highest ballot among the promises so far
    /// (Paxos Made Simple, section 2.2, the rule for choosing the value of a proposal).
    pub adopted: BTreeMap<Slot, Accepted>,
    /// Whether this candidacy rebuilds the candidate's lost storage: its own promise does not
    /// count, and winning it makes the adopted values its accepted ones (`replica::rebuild`).
    pub rebuild: bool,
    /// For a rebuild: the highest log start among the counted promises.
    pub log_start: Slot,
}

/// Leadership after a successful Phase 1.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Leadership {
    /// The next slot to propose a new batch in.
    pub next_slot: Slot,
    /// Proposed slots not yet decided; at most `window` of them hold new batches.
    pub proposals: BTreeMap<Slot, Proposal>,
    /// Client requests waiting for a slot.
    pub queue: VecDeque<Request>,
    /// The promises of this ballot, the leader's included. A slot whose configuration is not
    /// covered by a quorum of them waits for more promises (after a JOIN).
    pub promises: Promises,
    /// Values reported in promises for slots not yet proposed in this ballot: the value
    /// accepted in the highest ballot, which the leader must propose there.
    pub adopted: BTreeMap<Slot, Accepted>,
    /// Replicas sent a Prepare for this ballot (each is asked once; a joiner that was not
    /// ready is asked again when it asks to catch up).
    pub asked: Votes,
}

/// A snapshot arriving in chunks, several at a time (`Limits::transfer_window`), in any order.
///
/// It arrives in two parts (`replica::snapshot`): the header first, then the bytes of the
/// ranges this replica does not hold already. `needed` lists the chunks to receive, by offset:
/// at first those of the header; once the header is in, `plan` says which ranges are held and
/// `needed` grows by the chunks of the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// The checkpoint's slot and digest, as announced by the sender.
    pub slot: Slot,
    pub digest: Digest,
    /// Its encoded size.
    pub total: u64,
    /// The chunk size (`Limits::max_chunk_bytes`): the chunk at `offset` holds the `chunk`
    /// bytes from there, or those up to `total`.
    pub chunk: u64,
    /// The chunks received, by offset.
    pub chunks: BTreeMap<u64, Vec<u8>>,
    /// The offsets of the chunks to receive, increasing and not overlapping.
    pub needed: Vec<u64>,
    /// `needed[..done]` have all been received.
    pub done: usize,
    /// `needed[..requested]` have been asked for.
    pub requested: usize,
    /// `done` when the leader's last heartbeat came: a transfer that has not moved since asks
    /// again for its missing chunks.
    pub at_last_heartbeat: usize,
    /// Where the header ends, once its length is in.
    pub header_end: Option<u64>,
    /// Which ranges this replica holds, once the header is in.
    pub plan: Option<Arc<Plan>>,
    /// A digest of the chunks received (offset and bytes), kept up to date as they arrive:
    /// it stands for them when the state is hashed, so a step costs the size of its chunk,
    /// not of everything received so far.
    pub received: SetDigest,
}

/// What a receiver makes of a snapshot's header: the layout, and the ranges it holds with the
/// digest the layout gives (taken when the header came: later writes here do not change them).
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    pub layout: Layout,
    pub held: BTreeMap<Key, Arc<Range>>,
    /// A digest of the held ranges' first keys and digests.
    pub held_digest: Digest,
}

impl Transfer {
    /// A transfer of the checkpoint at `slot` in chunks of `chunk` bytes, nothing received
    /// yet: the chunks holding the header's length are needed first.
    pub fn new(slot: Slot, digest: Digest, total: u64, chunk: u64) -> Self {
        let mut transfer = Transfer {
            slot,
            digest,
            total,
            chunk,
            chunks: BTreeMap::new(),
            needed: Vec::new(),
            done: 0,
            requested: 0,
            at_last_heartbeat: 0,
            header_end: None,
            plan: None,
            received: SetDigest::default(),
        };
        transfer.need(0, LENGTH_BYTES.min(total));
        transfer
    }

    /// Whether this transfers the checkpoint a chunk announces.
    pub fn is_of(&self, slot: Slot, digest: Digest, total: u64) -> bool {
        (self.slot, self.digest, self.total) == (slot, digest, total)
    }

    /// The length of the chunk at `offset`.
    pub fn chunk_len(&self, offset: u64) -> u64 {
        self.chunk.min(self.total.saturating_sub(offset))
    }

    /// Adds the chunks that cover `from..to` and are not needed already.
    pub fn need(&mut self, from: u64, to: u64) {
        let covered = self
            .needed
            .last()
            .map_or(0, |last| last + self.chunk_len(*last));
        let mut offset = from.max(covered);
        while offset < to {
            self.needed.push(offset);
            offset += self.chunk_len(offset);
        }
    }

    /// The index in `needed` past the window: the chunks from `done` up to it may be in
    /// flight.
    pub fn window_end(&self, window: usize) -> usize {
        (self.done + window).min(self.needed.len())
    }

    /// Whether the chunk at `offset` is one of the window's and not received yet.
    pub fn wants(&self, offset: u64, window: usize) -> bool {
        match self.needed.binary_search(&offset) {
            Ok(index) => {
                index >= self.done
                    && index < self.window_end(window)
                    && !self.chunks.contains_key(&offset)
            }
            Err(_) => false,
        }
    }

    /// Records the chunk at `offset` (wanted), and moves `done` past every chunk received.
    pub fn insert(&mut self, offset: u64, bytes: Vec<u8>) {
        self.received.add(digest_of(&(offset, &bytes)));
        self.chunks.insert(offset, bytes);
        self.advance();
    }

    fn advance(&mut self) {
        while self
            .needed
            .get(self.done)
            .is_some_and(|offset| self.chunks.contains_key(offset))
        {
            self.done += 1;
        }
    }

    /// Whether every chunk needed so far has arrived.
    pub fn has_needed(&self) -> bool {
        self.done == self.needed.len()
    }

    /// Whether the snapshot can be assembled: the header is in and every chunk of the ranges
    /// not held.
    pub fn is_complete(&self) -> bool {
        self.plan.is_some() && self.has_needed()
    }

    /// The bytes `from..to`, if the chunks received cover them.
    pub fn bytes(&self, from: u64, to: u64) -> Option<Vec<u8>> {
        let mut bytes = Vec::with_capacity(to.saturating_sub(from) as usize);
        let first = self
            .chunks
            .range(..=from)
            .next_back()
            .map_or(from, |(o, _)| *o);
        for (offset, chunk) in self.chunks.range(first..to) {
            let at = from + bytes.len() as u64;
            if *offset > at {
                return None;
            }
            let end = (offset + chunk.len() as u64).min(to);
            if end > at {
                bytes.extend_from_slice(&chunk[(at - offset) as usize..(end - offset) as usize]);
            }
        }
        (from + bytes.len() as u64 == to).then_some(bytes)
    }

    /// Bytes received so far.
    pub fn bytes_received(&self) -> u64 {
        self.chunks.values().map(|c| c.len() as u64).sum()
    }
}

impl Hash for Transfer {
    fn hash<H: Hasher>(&self, hasher: &mut H) {
        let Transfer {
            slot,
            digest,
            total,
            chunk,
            chunks,
            needed,
            done,
            requested,
            at_last_heartbeat,
            header_end,
            plan,
            received,
        } = self;
        // `received` stands for the chunks, and the header they hold with the held ranges'
        // digest for the plan and the chunks needed.
        (
            slot,
            digest,
            total,
            chunk,
            chunks.len(),
            needed.len(),
            done,
            requested,
            at_last_heartbeat,
            header_end,
            plan.as_ref().map(|plan| plan.held_digest),
        )
            .hash(hasher);
        received.hash(hasher);
    }
}

/// What a snapshot transfer cost (`ReplicaState::last_transfer`, and `status`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TransferStats {
    /// The snapshot's encoded size.
    pub total: u64,
    /// The bytes received: the header and the ranges not held.
    pub received: u64,
    /// The snapshot's ranges, and how many of them this replica held already.
    pub ranges: u64,
    pub ranges_held: u64,
}

/// What part the replica currently plays besides acceptor and learner, which it always is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Follower,
    Candidate(Candidacy),
    Leader(Leadership),
}

/// Everything a replica holds.
///
/// `digest` is a digest of all the other fields, refreshed after every step that changes the
/// state. It stands for the whole state wherever the state is hashed: the model checker hashes
/// every state it visits, and a trace records the digest after every step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaState {
    /// Saved to durable storage before any message of the same step leaves.
    pub durable: Storage,
    pub role: Role,
    /// The replica believed to lead, for redirecting clients.
    pub leader: Option<Id>,
    /// Heard from the leader of its ballot (an Accept or a heartbeat) since its election timer
    /// last fired: it then grants no pre-vote, so a replica that merely lost touch with a live
    /// leader cannot depose it (leader stickiness, `replica::pre_vote`).
    pub leader_heard: bool,
    /// The pre-vote this replica runs (its election timer fired): the ballot it asks for, and
    /// who granted it so far.
    pub pre_vote: Option<(Ballot, Votes)>,
    /// Decided commands, from the first slot still held.
    pub log: BTreeMap<Slot, Command>,
    /// Slots `0..executed` have been applied to `service`.
    pub executed: Slot,
    /// The replicated service: the key-value machine, the session table, the configuration.
    pub service: ServiceState,
    /// Checkpoint votes (digests) by slot and replica, for slots not yet stable.
    pub checkpoint_votes: BTreeMap<Slot, BTreeMap<Id, Digest>>,
    /// A state transfer being received.
    pub transfer: Option<Transfer>,
    /// Checkpoints lent to the transfers this replica sends, by receiver: each stays available
    /// to its receiver while newer checkpoints replace it here (`replica::lending`).
    pub lent: BTreeMap<Id, Checkpoint>,
    /// Set when the audit found this replica's state different from a quorum's: it then
    /// installs a snapshot even at a slot it has already executed.
    pub diverged: bool,
    /// Counters shown by `status`: snapshots installed, audit disagreements found, and
    /// transfers that assembled a snapshot other than the one announced (refused).
    pub snapshots_installed: u32,
    pub audit_failures: u32,
    pub snapshots_refused: u32,
    /// What the last snapshot installed cost. Statistics for `status`, not part of the
    /// state: left out of the digest.
    pub last_transfer: TransferStats,
    /// Digest of all of the above (see the type's documentation).
    pub digest: Digest,
}

impl Hash for ReplicaState {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.digest.hash(state);
    }
}

impl ReplicaState {
    /// Digests every field. Destructuring makes a new field a compile error until it is
    /// digested too.
    pub fn compute_digest(&self) -> Digest {
        let ReplicaState {
            durable,
            role,
            leader,
            leader_heard,
            pre_vote,
            log,
            executed,
            service,
            checkpoint_votes,
            transfer,
            lent,
            diverged,
            snapshots_installed,
            audit_failures,
            snapshots_refused,
            last_transfer: _,
            digest: _,
        } = self;
        let mut hasher = StableHasher::new();
        checkpoint_votes.hash(&mut hasher);
        transfer.hash(&mut hasher);
        lent.hash(&mut hasher);
        leader_heard.hash(&mut hasher);
        pre_vote.hash(&mut hasher);
        snapshots_refused.hash(&mut hasher);
        diverged.hash(&mut hasher);
        snapshots_installed.hash(&mut hasher);
        audit_failures.hash(&mut hasher);
        durable.hash(&mut hasher);
        role.hash(&mut hasher);
        leader.hash(&mut hasher);
        log.hash(&mut hasher);
        executed.hash(&mut hasher);
        service.hash(&mut hasher);
        hasher.finish()
    }

    /// Brings `digest` up to date after a change.
    pub fn refresh_digest(&mut self) {
        self.digest = self.compute_digest();
    }

    /// The ballot this replica is working in: the one it promised.
    pub fn ballot(&self) -> Ballot {
        self.durable.promised
    }

    /// Whether this replica leads.
    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }

    /// The leadership, if this replica leads.
    pub fn leadership(&self) -> Option<&Leadership> {
        match &self.role {
            Role::Leader(leadership) => Some(leadership),
            _ => None,
        }
    }
}
