//! The fixed parameters of a replica: its cluster, its limits and its timing.

use crate::bugs::SeededBug;
use stateright::actor::Id;
use std::ops::Range;
use std::time::Duration;

/// The most replicas a cluster can have: votes are kept in a 64-bit set.
pub const MAX_REPLICAS: usize = 64;

/// Every queue, batch and message the replica builds has a named maximum here, so that the
/// replica applies back-pressure instead of growing without bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The Phase 2 pipeline window: the leader proposes slot `x` only once it has executed
    /// every slot below `x - window + 1`. It is also the α of reconfiguration (a change decided
    /// at `s` governs slots from `s + window`), so it must be the same on every replica.
    pub window: usize,
    /// Client requests per batch.
    pub max_batch_requests: usize,
    /// Size bound of one batch, in bytes; keeps an Accept within one datagram.
    pub max_batch_bytes: usize,
    /// Client requests waiting at the leader for a slot; beyond it requests are dropped and
    /// the clients retry.
    pub max_queue: usize,
    /// Size bound of the entries in one promise or catch-up reply, in bytes.
    pub max_payload_bytes: usize,
    /// Bytes of snapshot in one state-transfer message, before its compression (which a
    /// chunk that does not compress survives within the datagram limit: a codec test). The
    /// same on every replica: a receiver expects chunks of its own size.
    pub max_chunk_bytes: usize,
    /// Chunks a state transfer's receiver asks for ahead of the first one missing: the
    /// transfer's window of requests in flight.
    pub transfer_window: usize,
    /// The largest snapshot a replica accepts in a state transfer, compressed or not.
    pub max_snapshot_bytes: u64,
    /// Slots of decided log kept below the truncation point for a checkpoint lent to a
    /// transfer (`replica::lending`), so that its receiver continues by log: a receiver that
    /// never comes back costs at most this much memory.
    pub max_lent_log_slots: u64,
    /// Slots for which checkpoint votes from other replicas are kept while this replica has
    /// not reached them yet.
    pub max_pending_checkpoints: usize,
    /// Client sessions the replicated session table holds; a new session beyond it retires the
    /// least recently used one (`spec::session`). Replicated state, like `window`: fixed when
    /// the cluster is created.
    pub max_sessions: usize,
}

/// The deployed default of [`Limits::max_sessions`]: room for many more clients than a
/// cluster serves at once, while a snapshot of the table stays a few megabytes (a session
/// holds its last answer, so large values make it larger).
pub const DEFAULT_MAX_SESSIONS: usize = 16_384;

impl Limits {
    /// The largest client request, by its size bound (`message::SizeBound`): one batch holds
    /// at least one request of this size, and a batch always fits one Accept, one promise page
    /// and one catch-up page (the configuration keeps `max_batch_bytes` below the datagram
    /// limit), so a request within it can always be replicated, through any election. Clients
    /// refuse larger ones before sending, naming this limit; replicas drop them.
    pub fn max_request_bytes(&self) -> usize {
        self.max_batch_bytes
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            window: 8,
            max_batch_requests: 512,
            max_batch_bytes: 16 * 1024,
            max_queue: 8192,
            max_payload_bytes: 48 * 1024,
            max_chunk_bytes: 32 * 1024,
            transfer_window: 4,
            max_snapshot_bytes: 1 << 30,
            max_lent_log_slots: 16_384,
            max_pending_checkpoints: 4,
            max_sessions: DEFAULT_MAX_SESSIONS,
        }
    }
}

/// The configuration of one replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// The members of the cluster's first configuration, by logical id. Later configurations
    /// come from JOIN and QUIT commands in the log.
    pub members: Vec<Id>,
    /// Every replica that may ever take part: the first members and the spares that may join
    /// later. Messages from any other id are ignored.
    pub replicas: Vec<Id>,
    /// Queue, batch and message limits.
    pub limits: Limits,
    /// How long a follower waits without hearing from a leader before it starts an election.
    pub election_timeout: Range<Duration>,
    /// How often a leader shows followers that it is alive and how far it has executed.
    /// `None`: no heartbeats. Heartbeats serve liveness only (followers detect a lost leader
    /// and missed decisions); the default model check leaves them out to keep the state space
    /// small, and the `heartbeats` preset checks them.
    pub heartbeat_interval: Option<Range<Duration>>,
    /// The leader proposes a checkpoint command at every slot `s` with `(s + 1) % interval ==
    /// 0`, so checkpoints cover multiples of `interval` slots. `None`: no checkpoints, and the
    /// log grows without bound.
    pub checkpoint_interval: Option<u64>,
    /// The leader of a brand-new cluster. A replica that starts with no storage at all
    /// promises this replica's ballot of round 1, and that replica leads in it at once. Phase 1
    /// for that ballot could only learn that nothing was accepted anywhere, so it is skipped
    /// (the usual Multi-Paxos bootstrap). `None`: the first leader is elected.
    pub initial_leader: Option<Id>,
    /// Campaign only after a pre-vote (`replica::pre_vote`): on in every deployment. Off, an
    /// election timeout starts Phase 1 at once; the model checks most presets so, since
    /// pre-vote multiplies their state spaces, and checks pre-vote in presets of its own.
    pub pre_vote: bool,
    #[cfg(feature = "seeded-bugs")]
    pub bug: Option<SeededBug>,
}

impl ReplicaConfig {
    /// Checks that `members` can form a cluster, saying what is wrong if not.
    pub fn check_members(members: &[Id]) -> Result<(), String> {
        if members.is_empty() {
            return Err("a cluster needs at least one replica".into());
        }
        if let Some(id) = members.iter().find(|id| usize::from(**id) >= MAX_REPLICAS) {
            return Err(format!(
                "replica id {} is too large: ids must be below {MAX_REPLICAS}",
                usize::from(*id)
            ));
        }
        let mut sorted = members.to_vec();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != members.len() {
            return Err("a replica id appears twice".into());
        }
        Ok(())
    }

    /// A configuration with default limits and timing for a replica among `members`.
    /// Panics if [`ReplicaConfig::check_members`] refuses them.
    pub fn new(members: Vec<Id>) -> Self {
        if let Err(error) = Self::check_members(&members) {
            panic!("{error}");
        }
        let initial_leader = members.first().copied();
        Self {
            replicas: members.clone(),
            members,
            limits: Limits::default(),
            election_timeout: Duration::from_millis(300)..Duration::from_millis(600),
            heartbeat_interval: Some(Duration::from_millis(50)..Duration::from_millis(50)),
            initial_leader,
            checkpoint_interval: Some(1024),
            pre_vote: true,
            #[cfg(feature = "seeded-bugs")]
            bug: None,
        }
    }

    /// Whether the seeded bug `bug` is switched on. Always false without the `seeded-bugs`
    /// feature, so the broken code paths compile away.
    #[inline]
    pub fn has_bug(&self, bug: SeededBug) -> bool {
        #[cfg(feature = "seeded-bugs")]
        {
            self.bug == Some(bug)
        }
        #[cfg(not(feature = "seeded-bugs"))]
        {
            let _ = bug;
            false
        }
    }
}
