//! Checkpoints, log truncation and the audit.
//!
//! The leader proposes a CHECKPOINT command every `checkpoint_interval` slots. Every replica
//! that executes it at slot `s` records a checkpoint at `s + 1` (the state after every slot up
//! to `s`) and saves it durably; a follower then sends the leader a vote with the state's
//! digest (after the save, like every message of the step).
//!
//! A checkpoint is *stable* once a quorum holds it durably with the same digest: a quorum can
//! then always hand it to a replica that needs it, so the accepted values and decided commands
//! below it are no longer needed. The leader counts the votes, truncates, and announces the
//! stable checkpoint (slot and digest) in every Accept and heartbeat; a follower truncates when
//! it holds that checkpoint itself, or a later one. Nobody discards what it has not executed.
//!
//! The same digests audit the replicas (Schneider 1990, section 7: replicas can check each
//! other by comparing states at the same point). A follower whose checkpoint differs from the
//! stable one, or a leader whose checkpoint differs from the one a quorum of followers agrees on,
//! has diverged: it counts the failure (the runtime logs it) and re-syncs by state transfer.

use super::state::{ReplicaState, Role, Votes};
use super::storage::Checkpoint;
use super::Replica;
use crate::bugs::SeededBug;
use crate::effects::Effects;
use crate::marks::{self, Mark};
use crate::message::Msg;
use spec::{Digest, Slot};
use stateright::actor::Id;
use std::borrow::Cow;

impl Replica {
    /// Executing the CHECKPOINT command at `slot`: checkpoint the state after it.
    pub(super) fn take_checkpoint(
        &self,
        id: Id,
        state: &mut ReplicaState,
        slot: Slot,
        fx: &mut Effects,
    ) {
        let label = if self.config.has_bug(SeededBug::CheckpointLabelOffByOne) {
            slot
        } else {
            slot + 1
        };
        let checkpoint = Checkpoint::of(label, &state.service);
        let (at, digest) = (checkpoint.slot, checkpoint.digest);
        marks::hit(Mark::CheckpointTaken);
        state.durable.checkpoint = Some(checkpoint);
        fx.persist();
        if state.is_leader() {
            state
                .checkpoint_votes
                .entry(at)
                .or_default()
                .insert(id, digest);
            self.count_checkpoint_votes(id, state, at, fx);
        } else if let Some(leader) = state.leader.filter(|leader| *leader != id) {
            // A replica rebuilding its storage holds this checkpoint but casts no vote.
            if !state.durable.rebuilding {
                marks::hit(Mark::CheckpointVoteSent);
                fx.send(leader, Msg::CheckpointVote { slot: at, digest });
            }
        }
        if self.config.has_bug(SeededBug::TruncateBeforeStable) {
            self.truncate(state, at, fx);
        }
    }

    /// The stable checkpoint this leader announces, if any.
    pub(super) fn stable_checkpoint(&self, state: &ReplicaState) -> Option<(Slot, Digest)> {
        state.durable.stable_checkpoint()
    }

    /// A leader receives a follower's vote.
    pub(super) fn on_checkpoint_vote(
        &self,
        id: Id,
        state: &mut Cow<ReplicaState>,
        src: Id,
        slot: Slot,
        digest: Digest,
        fx: &mut Effects,
    ) {
        let known = state
            .checkpoint_votes
            .get(&slot)
            .is_some_and(|votes| votes.get(&src) == Some(&digest));
        if !state.is_leader() || slot <= state.durable.log_start || known {
            return;
        }
        let full = state.checkpoint_votes.len() >= self.config.limits.max_pending_checkpoints;
        if full
            && !state.checkpoint_votes.contains_key(&slot)
            && state
                .checkpoint_votes
                .keys()
                .next()
                .is_some_and(|first| slot < *first)
        {
            marks::hit(Mark::CheckpointVotesFull);
            return; // Older than every slot kept, and no room.
        }
        let state = state.to_mut();
        state
            .checkpoint_votes
            .entry(slot)
            .or_default()
            .insert(src, digest);
        while state.checkpoint_votes.len() > self.config.limits.max_pending_checkpoints {
            marks::hit(Mark::CheckpointVotesFull);
            state.checkpoint_votes.pop_first();
        }
        self.count_checkpoint_votes(id, state, slot, fx);
    }

    /// The leader: truncates when its checkpoint at `slot` is stable, and audits itself.
    fn count_checkpoint_votes(
        &self,
        id: Id,
        state: &mut ReplicaState,
        slot: Slot,
        fx: &mut Effects,
    ) {
        let Some(votes) = state.checkpoint_votes.get(&slot) else {
            return;
        };
        let Some(own) = state
            .durable
            .checkpoint
            .as_ref()
            .filter(|c| c.slot == slot)
            .map(|c| c.digest)
        else {
            return;
        };
        // Votes count among the members in force (a joiner's vote counts once it is one).
        let electorate = Votes::from_ids(&state.service.configuration.members);
        let agreeing = |digest: Digest| {
            Votes::from_ids(
                votes
                    .iter()
                    .filter(|(_, d)| **d == digest)
                    .map(|(voter, _)| voter),
            )
        };
        let stable = if self
            .config
            .has_bug(SeededBug::CheckpointVotesFromNonMembers)
        {
            // The bug: every agreeing vote counts, whoever cast it.
            agreeing(own).count() > electorate.count() / 2
        } else {
            self.is_quorum(agreeing(own), electorate)
        };
        if stable {
            if slot > state.durable.log_start {
                marks::hit(Mark::LeaderTruncates);
                self.truncate(state, slot, fx);
            }
            return;
        }
        // A quorum of followers agrees on another digest: this leader's state has diverged.
        if let Some((peer, _)) = votes.iter().find(|(voter, digest)| {
            **voter != id && **digest != own && self.is_quorum(agreeing(**digest), electorate)
        }) {
            let peer = *peer;
            self.report_divergence(state, peer, slot, fx);
            self.step_down(state, fx);
        }
    }

    /// A follower learns the leader's stable checkpoint from an Accept or heartbeat.
    pub(super) fn on_stable_checkpoint(
        &self,
        state: &mut Cow<ReplicaState>,
        leader: Id,
        stable: Option<(Slot, Digest)>,
        fx: &mut Effects,
    ) {
        let Some((slot, digest)) = stable else {
            return;
        };
        if slot <= state.durable.log_start || state.diverged {
            return;
        }
        let Some(held) = state
            .durable
            .checkpoint
            .as_ref()
            .map(|c| (c.slot, c.digest))
        else {
            return;
        };
        match held {
            (at, own) if at == slot && own != digest => {
                self.report_divergence(state.to_mut(), leader, slot, fx)
            }
            (at, _) if at >= slot => {
                marks::hit(Mark::FollowerTruncates);
                self.truncate(state.to_mut(), slot, fx)
            }
            _ => {}
        }
    }

    /// A follower hears its leader's heartbeat, which announces the stable checkpoint: the
    /// cadence at which it sends again what it sends once otherwise, since one lost datagram
    /// must not leave it waiting. Its vote for its latest checkpoint, while the leader does
    /// not announce that checkpoint (or a later one) stable: without it, truncation waits for
    /// the next checkpoint. The requests of a transfer under way for the chunks it misses, and
    /// a diverged replica's request for a correct snapshot: without them, it would wait for
    /// ever (a diverged replica is not behind, so no catch-up offers it a snapshot).
    pub(super) fn resend_one_shots(
        &self,
        state: &mut Cow<ReplicaState>,
        leader: Id,
        stable: Option<(Slot, Digest)>,
        fx: &mut Effects,
    ) {
        if state.is_leader() || state.durable.rebuilding {
            return;
        }
        let stable_slot = stable.map(|(slot, _)| slot);
        let under_way = state
            .transfer
            .as_ref()
            .is_some_and(|t| t.slot > state.executed || state.diverged);
        if under_way {
            // Only a stalled transfer asks again: one that moved since the last heartbeat has
            // its requests in flight.
            let transfer = state.to_mut().transfer.as_mut().expect("under way");
            let progress = transfer.done;
            if std::mem::replace(&mut transfer.at_last_heartbeat, progress) == progress {
                marks::hit(Mark::SnapshotWindowResent);
                self.request_window(transfer, leader, true, fx);
            }
        } else if state.diverged {
            // Not marked: the audit's divergence path (see `marks`).
            if let Some(slot) = stable_slot {
                fx.send(leader, Msg::SnapshotRequest { slot, offset: 0 });
            }
        }
        if state.diverged {
            return;
        }
        let Some(checkpoint) = state.durable.checkpoint.as_ref() else {
            return;
        };
        if checkpoint.slot > state.durable.log_start
            && stable_slot.is_none_or(|stable| stable < checkpoint.slot)
        {
            marks::hit(Mark::CheckpointVoteResent);
            fx.send(
                leader,
                Msg::CheckpointVote {
                    slot: checkpoint.slot,
                    digest: checkpoint.digest,
                },
            );
        }
    }

    /// The audit failed: count it, and fetch a correct snapshot from `peer`.
    fn report_divergence(&self, state: &mut ReplicaState, peer: Id, slot: Slot, fx: &mut Effects) {
        if !state.diverged {
            state.diverged = true;
            state.audit_failures += 1;
            fx.send(peer, Msg::SnapshotRequest { slot, offset: 0 });
        }
    }

    /// Discards everything below the stable checkpoint at `slot`.
    fn truncate(&self, state: &mut ReplicaState, slot: Slot, fx: &mut Effects) {
        state.durable.log_start = slot;
        state.durable.accepted = state.durable.accepted.split_off(&slot);
        // The decided commands after a checkpoint lent to a transfer stay (they are volatile
        // and not the acceptor's), so that its receiver catches up by log once it installs
        // it, instead of needing another transfer of a later checkpoint (`lending`).
        let kept_from = state
            .lent
            .values()
            .map(|c| c.slot)
            .fold(slot, Slot::min)
            .max(slot.saturating_sub(self.config.limits.max_lent_log_slots));
        state.log = state.log.split_off(&kept_from);
        state.checkpoint_votes = state.checkpoint_votes.split_off(&(slot + 1));
        if let Role::Leader(leadership) = &mut state.role {
            leadership.proposals = leadership.proposals.split_off(&slot);
        }
        fx.persist();
    }
}
