//! The Multi-Paxos replica: acceptor, leader and learner in one sans-IO actor, executing the
//! decided log on the replicated key-value service.
//!
//! The protocol follows Lamport's "Paxos Made Simple" (section 3, "Implementing a State
//! Machine"): one Phase 1 per leadership covers every open slot, then Phase 2 runs per slot with
//! a bounded pipeline window; decisions are executed strictly in slot order.
//!
//! - [`election`]: timers, Phase 1 (prepare, promise, nack) and taking over as leader.
//! - [`replication`]: client requests, batching, Phase 2 (accept, accepted) and decisions.
//! - [`learning`]: decisions reaching followers through the leader's commit point,
//!   heartbeats and catch-up.
//! - [`execution`]: in-order execution with the exactly-once session table.
//! - [`checkpoint`]: checkpoints, stability, log truncation and the audit.
//! - [`transfer`]: state transfer of checkpoints in chunks.
//! - [`rebuild`]: rebuilding lost or damaged storage before voting again.
//! - [`invariants`]: local invariants checked after every step in debug builds.

mod checkpoint;
pub mod config;
mod election;
mod execution;
pub mod invariants;
mod learning;
mod lending;
mod pre_vote;
mod rebuild;
mod replication;
pub mod snapshot;
pub mod state;
pub mod storage;
pub mod transfer;

pub use config::{Limits, ReplicaConfig};
pub use state::{
    Candidacy, Leadership, Promises, Proposal, ReplicaState, Role, Transfer, TransferStats, Votes,
};
pub use storage::{Accepted, Checkpoint, Durable, Storage, StorageChange};

use crate::ballot::Ballot;
use crate::bugs::SeededBug;
use crate::effects::Effects;
use crate::marks::{self, Mark};
use crate::message::Msg;
use crate::node::{Node, Timer};
use spec::{Configuration, ServiceState, Slot};
use stateright::actor::{Id, Out};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// A replica: its fixed configuration. Its state is a [`ReplicaState`].
#[derive(Clone, Debug)]
pub struct Replica {
    pub config: ReplicaConfig,
}

impl Replica {
    pub fn new(config: ReplicaConfig) -> Self {
        Self { config }
    }

    /// Whether `src` is a replica of this cluster (a member now, once, or a spare).
    fn is_replica(&self, src: Id) -> bool {
        self.config.replicas.contains(&src)
    }

    /// Whether this replica takes part in the protocol: its state makes it a member in force
    /// or of the pending configuration. A joiner is not one until it holds a state that includes
    /// it (it got it by state transfer); a replica whose QUIT is in force is no longer one.
    /// Only a participant votes, campaigns or leads. A replica rebuilding lost storage does
    /// not participate until the rebuild completes (see `rebuild`).
    fn participates(&self, id: Id, state: &ReplicaState) -> bool {
        (state.service.configuration.includes(id)
            || self.config.has_bug(SeededBug::JoinerVotesEarly))
            && !state.durable.rebuilding
    }

    /// The other replicas that decide some slot this replica can currently propose or vote
    /// for: the members in force and those of a pending change.
    fn audience(&self, id: Id, state: &ReplicaState) -> Vec<Id> {
        let mut audience = state.service.configuration.audience();
        audience.remove(&id);
        audience.into_iter().collect()
    }

    /// The members that decide `slot` (below `executed + alpha`), as a set.
    fn electorate(&self, state: &ReplicaState, slot: Slot) -> Votes {
        let configuration = &state.service.configuration;
        if self.config.has_bug(SeededBug::OldQuorumForNewConfig) {
            // The bug: count votes in the configuration in force, even for a slot that the
            // pending configuration decides.
            return Votes::from_ids(&configuration.members);
        }
        Votes::from_ids(configuration.members_at(slot))
    }

    /// Whether `votes` hold a quorum of `electorate`: a majority, so any two quorums of one
    /// configuration intersect.
    fn is_quorum(&self, votes: Votes, electorate: Votes) -> bool {
        if self.config.has_bug(SeededBug::QuorumHalf) {
            votes.intersection(electorate).count() >= (electorate.count() / 2).max(1)
        } else {
            votes.quorum_of(electorate)
        }
    }

    /// Whether `promised_by` covers every configuration that decides a slot in the window
    /// `executed..executed + alpha`: a quorum of the members in force, and of a pending change.
    fn promises_cover_window(&self, state: &ReplicaState, promised_by: Votes) -> bool {
        let configuration = &state.service.configuration;
        let in_force = Votes::from_ids(&configuration.members);
        let pending = configuration
            .pending
            .as_ref()
            .map(|p| Votes::from_ids(&p.members));
        self.is_quorum(promised_by, in_force)
            && pending.is_none_or(|p| self.is_quorum(promised_by, p))
    }

    pub(crate) fn on_start(
        &self,
        id: Id,
        storage: Option<&Storage>,
        o: &mut Out<Node>,
    ) -> ReplicaState {
        let mut fx = Effects::default();
        // The seeded bug: storage marked as lost is taken for a brand-new replica's.
        let storage = storage
            .filter(|s| !(s.rebuilding && self.config.has_bug(SeededBug::VoteAfterDiskLoss)));
        // A restart keeps everything durable and counts itself; volatile knowledge (the decided
        // log, the executed state) is learned again from the other replicas.
        let (durable, fresh) = match storage {
            Some(storage) => (
                Storage {
                    incarnation: storage.incarnation + 1,
                    ..storage.clone()
                },
                false,
            ),
            None => (Storage::default(), true),
        };
        // Recovery starts from the latest checkpoint in storage, if any.
        let (service, executed) = match &durable.checkpoint {
            Some(checkpoint) => ((*checkpoint.state).clone(), checkpoint.slot),
            None => (
                ServiceState::new(Configuration::initial(
                    self.config.members.iter().copied(),
                    self.config.limits.window as u64,
                ))
                .with_max_sessions(self.config.limits.max_sessions),
                0,
            ),
        };
        let mut state = ReplicaState {
            durable,
            role: Role::Follower,
            leader: None,
            leader_heard: false,
            pre_vote: None,
            log: BTreeMap::new(),
            executed,
            service,
            checkpoint_votes: BTreeMap::new(),
            transfer: None,
            lent: BTreeMap::new(),
            diverged: false,
            snapshots_installed: 0,
            audit_failures: 0,
            snapshots_refused: 0,
            last_transfer: Default::default(),
            digest: 0,
        };
        fx.persist();
        if !fresh && self.config.checkpoint_interval.is_some() {
            // Ask a peer at once for what was decided while this replica was down: its peers
            // may have truncated it, and then only a snapshot brings it back. Without
            // checkpoints nothing is truncated, and the leader's next heartbeat shows the gap
            // (see `learning`); not asking at once then keeps the model's state space to a
            // third (the `checkpoint` preset explores the immediate catch-up). A replica that
            // rebuilds lost storage asks every peer: any of them may be down.
            let audience = self.audience(id, &state);
            let asked = if state.durable.rebuilding {
                &audience[..]
            } else {
                &audience[..audience.len().min(1)]
            };
            marks::hit(Mark::RestartAsksCatchUp);
            fx.broadcast(asked.iter().copied(), &Msg::CatchUp { from: executed });
        }
        match self.config.initial_leader {
            // A replica rebuilding its storage starts the rebuild when its election timer fires
            // (or a heartbeat shows it caught up, see `rebuild`).
            _ if state.durable.rebuilding => {
                fx.set_timer(Timer::Election, self.config.election_timeout.clone())
            }
            // A spare waits, silent, until a JOIN and a state transfer make it a member.
            _ if !self.participates(id, &state) => {}
            Some(leader) if fresh => {
                state.durable.promised = Ballot { round: 1, leader };
                state.leader = Some(leader);
                if leader == id {
                    state.role = Role::Leader(self.leadership_without_phase_one(0));
                    self.set_heartbeat_timer(&mut fx);
                } else {
                    fx.set_timer(Timer::Election, self.config.election_timeout.clone());
                }
            }
            // The seeded bug: a replica that led before its crash leads the same ballot again,
            // as if its Phase 1 still held, and proposes from its recovered prefix on.
            _ if state.durable.promised.leader == id
                && self.config.has_bug(SeededBug::ReuseBallotAfterRestart) =>
            {
                state.leader = Some(id);
                state.role = Role::Leader(self.leadership_without_phase_one(executed));
                self.set_heartbeat_timer(&mut fx);
            }
            _ => fx.set_timer(Timer::Election, self.config.election_timeout.clone()),
        }
        state.refresh_digest();
        self.check_invariants(id, &state);
        fx.flush(&state.durable, o);
        state
    }

    pub(crate) fn on_msg(
        &self,
        id: Id,
        state: &mut Cow<ReplicaState>,
        src: Id,
        msg: Msg,
        o: &mut Out<Node>,
    ) {
        let mut fx = Effects::default();
        match msg {
            // A replica that rebuilds its storage learns from heartbeats, and votes on nothing.
            Msg::Heartbeat { ballot, commit, .. }
                if state.durable.rebuilding && self.is_replica(src) =>
            {
                self.on_heartbeat_while_rebuilding(id, state, src, ballot, commit, &mut fx);
                if let Cow::Owned(state) = state {
                    state.refresh_digest();
                }
                self.check_invariants(id, state);
                fx.flush(&state.durable, o);
                return;
            }
            // A replica that does not participate (a spare before its state transfer, one
            // whose QUIT is in force, or one rebuilding its storage) casts no vote and serves no
            // client.
            Msg::Request(_) | Msg::Prepare { .. } | Msg::Accept { .. } | Msg::Heartbeat { .. }
                if !self.participates(id, state) =>
            {
                if matches!(msg, Msg::Prepare { .. } | Msg::Accept { .. }) {
                    marks::hit(Mark::NonParticipantIgnores);
                }
                return;
            }
            // Only replicas take part in the protocol; anything else claiming to is ignored.
            Msg::Request(_) | Msg::Reply { .. } => {}
            _ if !self.is_replica(src) => return,
            _ => {}
        }
        match msg {
            Msg::Request(request) => self.on_request(id, state, src, request, &mut fx),
            Msg::Prepare {
                ballot,
                from,
                rebuild,
            } => self.on_prepare(id, state, src, ballot, from, rebuild, &mut fx),
            Msg::Promise {
                ballot,
                log_start,
                accepted,
                complete,
                checkpoint,
                rebuilt,
            } => {
                let promise = election::PromiseMsg {
                    ballot,
                    log_start,
                    accepted,
                    complete,
                    checkpoint,
                    rebuilt,
                };
                self.on_promise(id, state, src, promise, &mut fx)
            }
            Msg::Nack { ballot } => self.on_nack(state, ballot, &mut fx),
            Msg::PreVote { ballot } => self.on_pre_vote(id, state, src, ballot, &mut fx),
            Msg::PreVoteGranted { ballot } => {
                self.on_pre_vote_granted(id, state, src, ballot, &mut fx)
            }
            Msg::Accept {
                ballot,
                slot,
                command,
                commit,
                stable,
                electorate: _,
            } => {
                self.on_accept(id, state, src, ballot, slot, command, commit, &mut fx);
                if ballot == state.ballot() {
                    self.on_stable_checkpoint(state, src, stable, &mut fx);
                }
            }
            Msg::Accepted { ballot, slot, .. } => {
                self.on_accepted(id, state, src, ballot, slot, &mut fx)
            }
            Msg::Heartbeat {
                ballot,
                commit,
                stable,
            } => {
                self.on_heartbeat(id, state, src, ballot, commit, &mut fx);
                if ballot == state.ballot() {
                    self.on_stable_checkpoint(state, src, stable, &mut fx);
                    self.resend_one_shots(state, src, stable, &mut fx);
                }
            }
            Msg::CatchUp { from } => self.on_catch_up(id, state, src, from, &mut fx),
            Msg::CheckpointVote { slot, digest } => {
                self.on_checkpoint_vote(id, state, src, slot, digest, &mut fx)
            }
            Msg::Snapshot {
                slot,
                digest,
                total,
                offset,
                bytes,
            } => self.on_snapshot(id, state, src, slot, digest, total, offset, bytes, &mut fx),
            Msg::SnapshotRequest { slot, offset } => {
                self.on_snapshot_request(state, src, slot, offset, &mut fx)
            }
            Msg::SnapshotGone { slot } => self.on_snapshot_gone(state, slot),
            Msg::CatchUpReply { from, commands } => {
                self.on_catch_up_reply(id, state, from, commands, &mut fx)
            }
            // Replies and redirects are for clients; a replica ignores them.
            Msg::Reply { .. } => {}
        }
        if let Cow::Owned(state) = state {
            state.refresh_digest();
        }
        self.check_invariants(id, state);
        fx.flush(&state.durable, o);
    }

    pub(crate) fn on_timeout(
        &self,
        id: Id,
        state: &mut Cow<ReplicaState>,
        timer: Timer,
        o: &mut Out<Node>,
    ) {
        let mut fx = Effects::default();
        match timer {
            Timer::Election => self.on_election_timeout(id, state, &mut fx),
            Timer::Heartbeat => self.on_heartbeat_timeout(id, state, &mut fx),
            Timer::Retry => {}
        }
        if let Cow::Owned(state) = state {
            state.refresh_digest();
        }
        self.check_invariants(id, state);
        fx.flush(&state.durable, o);
    }

    /// The leadership of the bootstrap ballot, whose Phase 1 is skipped (every member
    /// promised it when the cluster was created), proposing from `next_slot` on.
    fn leadership_without_phase_one(&self, next_slot: Slot) -> Leadership {
        Leadership {
            next_slot,
            proposals: BTreeMap::new(),
            queue: Default::default(),
            promises: Promises {
                by: Votes::from_ids(&self.config.members),
                ..Promises::default()
            },
            adopted: BTreeMap::new(),
            asked: Votes::from_ids(&self.config.members),
        }
    }

    /// Leaves leadership or candidacy (a higher ballot exists) and waits for a leader again.
    fn step_down(&self, state: &mut ReplicaState, fx: &mut Effects) {
        if matches!(state.role, Role::Leader(_)) {
            fx.cancel_timer(Timer::Heartbeat);
        }
        if !matches!(state.role, Role::Follower) {
            state.role = Role::Follower;
            fx.set_timer(Timer::Election, self.config.election_timeout.clone());
        }
    }

    /// Raises the promise to `ballot`, which is higher than the current one: the replica will
    /// refuse lower ballots from now on, and stops leading or campaigning in a lower one.
    fn raise_promise(&self, state: &mut ReplicaState, ballot: Ballot, fx: &mut Effects) {
        debug_assert!(ballot > state.durable.promised);
        state.durable.promised = ballot;
        state.leader = None;
        fx.persist();
        self.step_down(state, fx);
    }

    fn reset_election_timer(&self, fx: &mut Effects) {
        fx.set_timer(Timer::Election, self.config.election_timeout.clone());
    }
}
