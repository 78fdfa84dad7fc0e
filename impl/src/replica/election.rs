//! Phase 1 and leadership (Paxos Made Simple, sections 2.2 and 3).
//!
//! A replica that hears from no leader for an election timeout picks a ballot above every one
//! it has promised and asks all replicas to promise it, for every slot from the first one it has
//! not executed. Each promise carries what the acceptor accepted there, in pages when that does
//! not fit one message. With a quorum of complete promises the candidate leads: for every open
//! slot it re-proposes the value accepted in the highest ballot, fills slots with no value with
//! no-ops, and only then proposes new commands.
//!
//! A replica that lost its storage runs the same Phase 1 to rebuild it, with its own promise not
//! counted (see `rebuild`).

use super::state::{Candidacy, Leadership, Promises, ReplicaState, Role, Votes};
use super::storage::Accepted;
use super::Replica;
use crate::ballot::Ballot;
use crate::bugs::SeededBug;
use crate::effects::Effects;
use crate::marks::{self, Mark};
use crate::message::{AcceptedEntry, Msg, SizeBound};
use crate::node::Timer;
use spec::Slot;
use stateright::actor::Id;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// A promise as it arrived, with the fields the candidate judges.
pub(super) struct PromiseMsg {
    pub ballot: Ballot,
    pub log_start: Slot,
    pub accepted: Vec<AcceptedEntry>,
    pub complete: bool,
    pub checkpoint: Slot,
    pub rebuilt: BTreeMap<Id, Ballot>,
}

impl Replica {
    pub(super) fn on_election_timeout(
        &self,
        id: Id,
        state: &mut Cow<ReplicaState>,
        fx: &mut Effects,
    ) {
        if state.is_leader() || !self.can_lead(id, state) {
            return;
        }
        if state.durable.rebuilding || !self.config.pre_vote {
            // A rebuild runs without a pre-vote (see `pre_vote`).
            self.start_election(id, state.to_mut(), fx);
        } else {
            self.on_leader_silent(id, state.to_mut(), fx);
        }
    }

    /// Whether this replica may campaign: it is a member of every configuration that decides
    /// a slot of its window (a replica whose QUIT is decided does not; neither does a spare).
    /// A replica rebuilding its storage campaigns only to rebuild it (`start_election`).
    pub(super) fn can_lead(&self, id: Id, state: &ReplicaState) -> bool {
        let configuration = &state.service.configuration;
        configuration.members_at(state.executed).contains(&id)
            && configuration
                .pending
                .as_ref()
                .is_none_or(|p| p.members.contains(&id))
    }

    /// Starts Phase 1 with the next ballot of this replica. A replica whose storage is being
    /// rebuilt asks for everything every acceptor holds and does not count itself.
    pub(super) fn start_election(&self, id: Id, state: &mut ReplicaState, fx: &mut Effects) {
        let rebuild = state.durable.rebuilding;
        if !rebuild {
            marks::hit(Mark::ElectionStarted);
        }
        let ballot = state.ballot().next_for(id);
        state.durable.promised = ballot;
        state.leader = None;
        fx.persist();
        let mut candidacy = Candidacy {
            promises: Promises::default(),
            from: if rebuild { 0 } else { state.executed },
            adopted: BTreeMap::new(),
            rebuild,
            log_start: 0,
        };
        // The candidate promises its own ballot, so its own accepted values count like any
        // other acceptor's; not when it rebuilds, as it has forgotten them.
        let counts_itself = !rebuild || self.config.has_bug(SeededBug::RebuildCountsItself);
        if counts_itself {
            candidacy.promises.by.insert(id);
            // (With the seeded bug, the rebuilding replica counts itself in the life it is
            // rebuilding into.)
            let life = if rebuild {
                ballot
            } else {
                state.durable.life(id)
            };
            if life != Ballot::default() {
                candidacy.promises.lives.insert(id, life);
            }
            for (slot, accepted) in state.durable.accepted.range(state.executed..) {
                self.adopt(&mut candidacy.adopted, *slot, accepted);
            }
        }
        let (promised_by, from) = (candidacy.promises.by, candidacy.from);
        state.role = Role::Candidate(candidacy);
        fx.set_timer(Timer::Election, self.config.election_timeout.clone());
        // Every configuration that decides a slot of the window must promise.
        fx.broadcast(
            self.audience(id, state),
            &Msg::Prepare {
                ballot,
                from,
                rebuild,
            },
        );
        if counts_itself && self.promises_cover_window(state, promised_by) {
            self.become_leader(id, state, fx);
        }
    }

    /// Keeps, for `slot`, the value accepted in the highest ballot seen so far.
    pub(super) fn adopt(
        &self,
        adopted: &mut BTreeMap<Slot, Accepted>,
        slot: Slot,
        accepted: &Accepted,
    ) {
        let replace = match adopted.get(&slot) {
            None => true,
            Some(current) if self.config.has_bug(SeededBug::AdoptLowestBallot) => {
                accepted.ballot < current.ballot
            }
            Some(current) => accepted.ballot > current.ballot,
        };
        if replace {
            adopted.insert(slot, accepted.clone());
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_prepare(
        &self,
        id: Id,
        state: &mut Cow<ReplicaState>,
        src: Id,
        ballot: Ballot,
        from: Slot,
        rebuild: bool,
        fx: &mut Effects,
    ) {
        // A rebuild ballot is promised only strictly above the current promise (so that the
        // rebuilding replica never leads a ballot it led before its loss); an equal one only as
        // the next page of a rebuild already recorded.
        let recorded = state.durable.rebuilt.get(&src) == Some(&ballot);
        if recorded && !rebuild {
            // The sender's earlier life prepared the very ballot it now rebuilds with (its
            // Prepare was still in flight): an answer would pass for part of the rebuild.
            marks::hit(Mark::PrepareFromEarlierLifeIgnored);
            return;
        }
        let refused = ballot < state.ballot()
            || (rebuild && (ballot.leader != src || (ballot == state.ballot() && !recorded)));
        if refused {
            marks::hit(Mark::PrepareRefused);
            fx.send(
                src,
                Msg::Nack {
                    ballot: state.ballot(),
                },
            );
            return;
        }
        if ballot > state.ballot() {
            let state = state.to_mut();
            state.durable.promised = ballot;
            state.leader = None;
            if !self.config.has_bug(SeededBug::PromiseNotPersisted) {
                fx.persist();
            }
            self.step_down(state, fx);
        } else if ballot.leader == id {
            // Our own ballot echoed back: nothing to promise.
            return;
        }
        if rebuild && !recorded {
            // The sender's earlier life is void from now on: saved before the promise leaves,
            // so that every later promise of this acceptor says so (RECOVERY.md, RC2).
            marks::hit(Mark::RebuildLifeRecorded);
            let state = state.to_mut();
            state.durable.rebuilt.insert(src, ballot);
            fx.persist();
        }
        // Report what was accepted from the candidate's `from` on, within one message; the
        // candidate asks for the rest from where this page ends. A page holds at least one entry
        // (an entry fits one message, as its Accept did), so paging always advances.
        let mut accepted = Vec::new();
        let mut bytes = 0;
        let mut complete = true;
        let log_start = if self.config.has_bug(SeededBug::PromiseWithoutLogStart) {
            0
        } else {
            state.durable.log_start
        };
        for (slot, entry) in state
            .durable
            .accepted
            .range(from.max(state.durable.log_start)..)
        {
            bytes += entry.command.size_bound() + 24;
            if bytes > self.config.limits.max_payload_bytes && !accepted.is_empty() {
                marks::hit(Mark::PromisePaged);
                complete = false;
                break;
            }
            accepted.push(AcceptedEntry {
                slot: *slot,
                ballot: entry.ballot,
                command: entry.command.clone(),
            });
        }
        self.reset_election_timer(fx);
        fx.send(
            src,
            Msg::Promise {
                ballot,
                log_start,
                accepted,
                complete,
                // Only a rebuild needs it; leaving it out elsewhere keeps promises alike.
                checkpoint: if rebuild {
                    state.durable.checkpoint_slot()
                } else {
                    0
                },
                rebuilt: state.durable.rebuilt.clone(),
            },
        );
    }

    /// A promise for this replica's ballot: counted by a candidate, and by a leader that asked
    /// the members of a new configuration for theirs.
    pub(super) fn on_promise(
        &self,
        id: Id,
        state: &mut Cow<ReplicaState>,
        src: Id,
        promise: PromiseMsg,
        fx: &mut Effects,
    ) {
        let (promises, first_open, rebuild) = match &state.role {
            Role::Candidate(c) => (&c.promises, state.executed, c.rebuild),
            Role::Leader(l) => (&l.promises, l.next_slot, false),
            Role::Follower => return,
        };
        // A page after the first answers the candidate's request for the rest: it starts at
        // or after the slot the previous page ended at (an earlier page delivered again does
        // not).
        let in_turn = match promises.paging.get(&src) {
            Some(next) => promise.accepted.first().is_none_or(|e| e.slot >= *next),
            None => true,
        };
        if promise.ballot != state.ballot() || promises.by.contains(src) || !in_turn {
            marks::hit(Mark::PromiseIgnored);
            return; // Stale, counted already, or a page out of turn.
        }
        let state = state.to_mut();
        if state.durable.learn_lives(&promise.rebuilt) {
            fx.persist();
        }
        let life = promise.rebuilt.get(&src).copied().unwrap_or_default();
        if life < state.durable.life(src) {
            marks::hit(Mark::PromiseFromVoidLifeIgnored);
            return; // From a life of the sender that has since been rebuilt: void.
        }
        if self.counts_a_void_life(state) {
            // A promise already counted came from a life since rebuilt: this ballot's quorum
            // may rest on an acceptor that no longer remembers it (RECOVERY.md, RC2).
            marks::hit(Mark::VoidLifeStepsDown);
            self.step_down(state, fx);
            return;
        }
        if rebuild && promise.rebuilt.get(&id) != Some(&promise.ballot) {
            // A promise of this ballot that does not record this rebuild (it answered a Prepare
            // of this replica's earlier life) cannot void that life's promises.
            marks::hit(Mark::RebuildPromiseWithoutRecordIgnored);
            return;
        }
        if !self.promise_covers(state, rebuild, &promise) {
            // The acceptor discarded slots this replica has not executed, or holds a checkpoint
            // a rebuilding replica does not hold yet: it cannot tell what was decided there,
            // so the promise does not count. A candidate catches up from that acceptor instead
            // of leading; a rebuilding one goes on counting the others meanwhile.
            marks::hit(Mark::PromiseNotCovering);
            if !rebuild {
                if let Role::Candidate(_) = state.role {
                    state.role = Role::Follower;
                }
            }
            if matches!(state.role, Role::Candidate(_) | Role::Follower) {
                fx.send(
                    src,
                    Msg::CatchUp {
                        from: state.executed,
                    },
                );
            }
            return;
        }
        let (promises, adopted, log_start) = match &mut state.role {
            Role::Candidate(c) => (&mut c.promises, &mut c.adopted, Some(&mut c.log_start)),
            Role::Leader(l) => (&mut l.promises, &mut l.adopted, None),
            Role::Follower => unreachable!("checked above"),
        };
        for entry in &promise.accepted {
            // Slots a leader already proposed in this ballot keep their proposal: it was
            // chosen from a quorum's promises already. A rebuild keeps every slot.
            if rebuild || entry.slot >= first_open {
                self.adopt(
                    adopted,
                    entry.slot,
                    &Accepted {
                        ballot: entry.ballot,
                        command: entry.command.clone(),
                    },
                );
            }
        }
        if !promise.complete {
            // An incomplete page holds at least one entry (see `on_prepare`).
            let next = promise.accepted.last().map_or(0, |e| e.slot + 1);
            marks::hit(Mark::PromisePageRequested);
            promises.paging.insert(src, next);
            fx.send(
                src,
                Msg::Prepare {
                    ballot: promise.ballot,
                    from: next,
                    rebuild,
                },
            );
            return;
        }
        promises.paging.remove(&src);
        promises.by.insert(src);
        if life != Ballot::default() {
            promises.lives.insert(src, life);
        }
        if let Some(log_start) = log_start {
            *log_start = (*log_start).max(promise.log_start);
        }
        let promised_by = promises.by;
        match state.role {
            Role::Candidate(_) if self.promises_cover_window(state, promised_by) => {
                self.become_leader(id, state, fx)
            }
            Role::Leader(_) => {
                marks::hit(Mark::LeaderCountsNewMember);
                self.try_propose(id, state, fx)
            }
            _ => {}
        }
    }

    /// Whether a promise tells a candidate everything it must know: what the acceptor accepted
    /// from the candidate's first open slot on. An ordinary candidate needs the acceptor not to
    /// have truncated beyond its executed prefix; a rebuilding one (which asked for everything
    /// from the acceptor's log start) needs to hold the acceptor's latest checkpoint itself, so
    /// that it holds a checkpoint at its new log start and restores the stable checkpoints it
    /// held before its loss (RECOVERY.md, RC3 and RC4).
    fn promise_covers(&self, state: &ReplicaState, rebuild: bool, promise: &PromiseMsg) -> bool {
        if rebuild {
            promise.checkpoint <= state.durable.checkpoint_slot()
        } else {
            promise.log_start <= state.executed
        }
    }

    /// Whether a promise counted for the current ballot came from a replica's life that this
    /// replica now knows was rebuilt since.
    fn counts_a_void_life(&self, state: &ReplicaState) -> bool {
        let promises = match &state.role {
            Role::Candidate(c) => &c.promises,
            Role::Leader(l) => &l.promises,
            Role::Follower => return false,
        };
        promises.by.iter().any(|voter| {
            let counted = promises.lives.get(&voter).copied().unwrap_or_default();
            counted < state.durable.life(voter)
        })
    }

    /// Phase 1 succeeded: lead. `try_propose` re-proposes the adopted values slot by slot,
    /// fills gaps with no-ops, and only then proposes new commands.
    fn become_leader(&self, id: Id, state: &mut ReplicaState, fx: &mut Effects) {
        let Role::Candidate(mut candidacy) = std::mem::replace(&mut state.role, Role::Follower)
        else {
            unreachable!("only a candidate becomes leader")
        };
        if candidacy.rebuild {
            self.complete_rebuild(id, state, &mut candidacy, fx);
        }
        if !self.can_lead(id, state) {
            // While it campaigned, the candidate executed a QUIT of its own (a rebuilding
            // replica catches up to a state without it): it is not a member of the slots it
            // would propose. Leading, it would propose nothing and yet hold every follower off
            // with its heartbeats, so the cluster would stall (found by `model simulate`).
            marks::hit(Mark::NonMemberDoesNotLead);
            state.role = Role::Follower;
            return;
        }
        marks::hit(Mark::LeaderElected);
        state.leader = Some(id);
        fx.cancel_timer(Timer::Election);
        self.set_heartbeat_timer(fx);
        let mut asked = Votes::from_ids(&state.service.configuration.audience());
        asked.insert(id);
        let adopted = candidacy.adopted.split_off(&state.executed);
        state.role = Role::Leader(Leadership {
            next_slot: state.executed,
            proposals: BTreeMap::new(),
            queue: Default::default(),
            promises: candidacy.promises,
            adopted,
            asked,
        });
        self.execute(id, state, fx);
        self.try_propose(id, state, fx);
    }

    pub(super) fn on_nack(&self, state: &mut Cow<ReplicaState>, ballot: Ballot, fx: &mut Effects) {
        if ballot > state.ballot() {
            marks::hit(Mark::NackRaisesPromise);
            self.raise_promise(state.to_mut(), ballot, fx);
        } else if ballot == state.ballot() && matches!(&state.role, Role::Candidate(c) if c.rebuild)
        {
            marks::hit(Mark::RebuildRefusedStartsOver);
            // A rebuild ballot is promised only strictly above an acceptor's promise: this one
            // was refused by an acceptor that promised it already. Start over above it.
            self.step_down(state.to_mut(), fx);
        }
    }
}
