//! How decisions reach every replica.
//!
//! The leader does not send a message per decision. Instead every Accept and heartbeat carries
//! `commit`, the leader's executed prefix, and a follower learns from it each slot where it
//! accepted a value in the leader's own ballot:
//!
//! > If the leader of ballot `b` has executed slot `s`, and I accepted `(b, x)` at `s`, then
//! > `x` was decided at `s`.
//!
//! Why: the leader of `b` proposes at most one value per slot in `b`, so `x` is its proposal.
//! The leader either decided `s` itself, in `b`, with that proposal; or it knew `s` decided
//! before it proposed anything (then it never proposed at `s` in `b`, and nobody accepted
//! `(b, _)` there); or it learned a decision for `s` by catch-up while its own proposal was
//! pending, and then it keeps leading only if the decision equals its proposal (a different one
//! proves that a higher ballot exists; it steps down). A follower that cannot learn a slot this
//! way (it missed the Accept, or accepted in another ballot) asks the leader to catch it up
//! when a heartbeat shows it is behind.

use super::state::{ReplicaState, Role};
use super::Replica;
use crate::ballot::Ballot;
use crate::effects::Effects;
use crate::marks::{self, Mark};
use crate::message::{Msg, SizeBound};
use crate::node::Timer;
use spec::{Command, Slot};
use stateright::actor::Id;
use std::borrow::Cow;

impl Replica {
    /// Learns every slot below `commit` that this replica accepted in `ballot`, the current
    /// leader's ballot. Returns whether a slot below `commit` is still unknown.
    pub(super) fn learn_committed(
        &self,
        id: Id,
        state: &mut Cow<ReplicaState>,
        ballot: Ballot,
        commit: Slot,
        fx: &mut Effects,
    ) -> bool {
        let learnable = |state: &ReplicaState, slot: Slot| {
            state
                .durable
                .accepted
                .get(&slot)
                .filter(|accepted| accepted.ballot == ballot)
                .map(|accepted| accepted.command.clone())
        };
        if state.executed < commit && learnable(state, state.executed).is_some() {
            let state = state.to_mut();
            while state.executed < commit {
                let Some(command) = learnable(state, state.executed) else {
                    break;
                };
                marks::hit(Mark::LearnedFromCommit);
                state.log.insert(state.executed, command);
                self.execute(id, state, fx);
            }
        }
        state.executed < commit
    }

    pub(super) fn on_heartbeat_timeout(
        &self,
        id: Id,
        state: &mut Cow<ReplicaState>,
        fx: &mut Effects,
    ) {
        if !state.is_leader() {
            return;
        }
        fx.broadcast(
            self.audience(id, state),
            &Msg::Heartbeat {
                ballot: state.ballot(),
                commit: state.executed,
                stable: self.stable_checkpoint(state),
            },
        );
        self.set_heartbeat_timer(fx);
        // Messages get lost. An undecided proposal is sent again to the members that have not
        // accepted it (without this, one lost Accept or Accepted stalls a window of one until
        // the next election). Members whose promise the leader still needs are asked again,
        // and a joiner that has not promised yet gets the start of the state again (a stale
        // copy is ignored by one that already installed it).
        if let Some(leadership) = state.leadership() {
            let stable = self.stable_checkpoint(state);
            for (slot, proposal) in &leadership.proposals {
                let missing: Vec<Id> = proposal
                    .electorate
                    .iter()
                    .filter(|member| !proposal.votes.contains(*member))
                    .collect();
                if !missing.is_empty() {
                    marks::hit(Mark::AcceptResent);
                }
                fx.broadcast(
                    missing,
                    &Msg::Accept {
                        ballot: state.ballot(),
                        slot: *slot,
                        command: proposal.command.clone(),
                        commit: state.executed,
                        stable,
                        electorate: proposal.electorate,
                    },
                );
            }
            let configuration = &state.service.configuration;
            let unpromised: Vec<(Id, bool)> = self
                .audience(id, state)
                .iter()
                .filter(|member| !leadership.promises.by.contains(**member))
                .map(|member| (*member, !configuration.contains(*member)))
                .collect();
            for (member, joiner) in unpromised {
                if joiner {
                    marks::hit(Mark::JoinerStateResent);
                    self.offer_snapshot_in(state, member, fx);
                }
                marks::hit(Mark::PromiseAskedAgain);
                fx.send(
                    member,
                    Msg::Prepare {
                        ballot: state.ballot(),
                        from: state.executed,
                        rebuild: false,
                    },
                );
            }
        }
    }

    /// Arms the heartbeat timer, if this cluster uses heartbeats.
    pub(super) fn set_heartbeat_timer(&self, fx: &mut Effects) {
        if let Some(interval) = &self.config.heartbeat_interval {
            fx.set_timer(Timer::Heartbeat, interval.clone());
        }
    }

    pub(super) fn on_heartbeat(
        &self,
        id: Id,
        state: &mut Cow<ReplicaState>,
        src: Id,
        ballot: Ballot,
        commit: Slot,
        fx: &mut Effects,
    ) {
        if ballot < state.ballot() {
            // A deposed leader that missed the election: tell it.
            marks::hit(Mark::DeposedLeaderNacked);
            fx.send(
                src,
                Msg::Nack {
                    ballot: state.ballot(),
                },
            );
            return;
        }
        if ballot > state.ballot() || state.leader != Some(src) {
            let state = state.to_mut();
            if ballot > state.ballot() {
                self.raise_promise(state, ballot, fx);
            }
            state.leader = Some(src);
        }
        self.heard_from_leader(state, fx);
        if self.learn_committed(id, state, ballot, commit, fx) {
            marks::hit(Mark::HeartbeatShowsGap);
            fx.send(
                src,
                Msg::CatchUp {
                    from: state.executed,
                },
            );
        }
    }

    pub(super) fn on_catch_up(
        &self,
        id: Id,
        state: &mut Cow<ReplicaState>,
        src: Id,
        from: Slot,
        fx: &mut Effects,
    ) {
        self.end_loan(state, src, from);
        if let Some(leadership) = state.leadership() {
            // A new member that was asked for its promise before it held its state (and so
            // ignored the Prepare) asks to catch up once it holds it: ask again.
            let waiting =
                !leadership.promises.by.contains(src) && self.audience(id, state).contains(&src);
            if waiting {
                marks::hit(Mark::CatchUpAsksPromise);
                fx.send(
                    src,
                    Msg::Prepare {
                        ballot: state.ballot(),
                        from: state.executed,
                        rebuild: false,
                    },
                );
            }
        }
        let mut from = from;
        if from < state.executed && !state.log.contains_key(&from) {
            // Those slots are truncated here: send the checkpoint, then the log after it.
            match state.durable.checkpoint.as_ref() {
                Some(checkpoint) if checkpoint.slot > from => {
                    marks::hit(Mark::CatchUpSendsSnapshot);
                    from = checkpoint.slot;
                    self.offer_snapshot_in(state, src, fx);
                }
                _ => return,
            }
        }
        let mut commands = Vec::new();
        let mut bytes = 0;
        let mut slot = from;
        while let Some(command) = state.log.get(&slot) {
            bytes += command.size_bound();
            if !commands.is_empty() && bytes > self.config.limits.max_payload_bytes {
                marks::hit(Mark::CatchUpPaged);
                break;
            }
            commands.push(command.clone());
            slot += 1;
        }
        if !commands.is_empty() {
            fx.send(src, Msg::CatchUpReply { from, commands });
        }
    }

    pub(super) fn on_catch_up_reply(
        &self,
        id: Id,
        state: &mut Cow<ReplicaState>,
        from: Slot,
        commands: Vec<Command>,
        fx: &mut Effects,
    ) {
        let new = |state: &ReplicaState, slot: Slot| {
            slot >= state.executed && !state.log.contains_key(&slot)
        };
        if !(from..from + commands.len() as Slot).any(|slot| new(state, slot)) {
            return;
        }
        marks::hit(Mark::CatchUpApplied);
        let state = state.to_mut();
        for (slot, command) in (from..).zip(commands) {
            if !new(state, slot) {
                continue;
            }
            if let Role::Leader(leadership) = &mut state.role {
                if let Some(proposal) = leadership.proposals.remove(&slot) {
                    if proposal.command != command {
                        // Something else was decided where this leader proposed: a higher
                        // ballot exists. Step down rather than vouch for the proposal.
                        marks::hit(Mark::CatchUpConflictStepsDown);
                        self.step_down(state, fx);
                    }
                }
            }
            state.log.insert(slot, command);
        }
        self.execute(id, state, fx);
    }
}
