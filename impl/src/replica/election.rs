//! Phase 1 and leadership (Paxos Made Simple, sections 2.2 and 3).
//!
//! A replica that hears from no leader for an election timeout picks a ballot above every one
//! it has promised and asks all replicas to promise it, for every slot from the first one it has
//! not executed. Each promise carries what the acceptor accepted there. With a quorum of
//! promises the candidate leads: for every open slot it re-proposes the value accepted in the
//! highest ballot, fills slots with no value with no-ops, and only then proposes new commands.

use super::state::{Candidacy, Leadership, ReplicaState, Role, Votes};
use super::storage::Accepted;
use super::Replica;
use crate::ballot::Ballot;
use crate::bugs::SeededBug;
use crate::effects::Effects;
use crate::message::{AcceptedEntry, Msg, SizeBound};
use crate::node::Timer;
use spec::{Command, Slot};
use stateright::actor::Id;
use std::borrow::Cow;
use std::collections::BTreeMap;

impl Replica {
    pub(super) fn on_election_timeout(&self, id: Id, state: &mut Cow<ReplicaState>, fx: &mut Effects) {
        if state.is_leader() {
            return;
        }
        self.start_election(id, state.to_mut(), fx);
    }

    /// Starts Phase 1 with the next ballot of this replica.
    pub(super) fn start_election(&self, id: Id, state: &mut ReplicaState, fx: &mut Effects) {
        let ballot = state.ballot().next_for(id);
        state.durable.promised = ballot;
        state.leader = None;
        fx.persist();
        // The candidate promises its own ballot, so its own accepted values count like any
        // other acceptor's.
        let mut candidacy = Candidacy {
            promised_by: Votes::of(id),
            adopted: BTreeMap::new(),
        };
        for (slot, accepted) in state.durable.accepted.range(state.executed..) {
            self.adopt(&mut candidacy.adopted, *slot, accepted);
        }
        state.role = Role::Candidate(candidacy);
        fx.set_timer(Timer::Election, self.config.election_timeout.clone());
        fx.broadcast(
            self.others(id),
            &Msg::Prepare {
                ballot,
                from: state.executed,
            },
        );
        if self.quorum() <= 1 {
            self.become_leader(id, state, fx);
        }
    }

    /// Keeps, for `slot`, the value accepted in the highest ballot seen so far.
    fn adopt(&self, adopted: &mut BTreeMap<Slot, Accepted>, slot: Slot, accepted: &Accepted) {
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

    pub(super) fn on_prepare(
        &self,
        id: Id,
        state: &mut Cow<ReplicaState>,
        src: Id,
        ballot: Ballot,
        from: Slot,
        fx: &mut Effects,
    ) {
        if ballot < state.ballot() {
            fx.send(src, Msg::Nack { ballot: state.ballot() });
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
        // Report everything accepted from the candidate's first unexecuted slot on, within
        // one message. A candidate that is so far behind that it does not fit must catch up
        // before it can lead.
        let mut accepted = Vec::new();
        let mut bytes = 0;
        let mut complete = true;
        let log_start = if self.config.has_bug(SeededBug::PromiseWithoutLogStart) {
            0
        } else {
            state.durable.log_start
        };
        for (slot, entry) in state.durable.accepted.range(from.max(state.durable.log_start)..) {
            bytes += entry.command.size_bound() + 24;
            if bytes > self.config.limits.max_payload_bytes {
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
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_promise(
        &self,
        id: Id,
        state: &mut Cow<ReplicaState>,
        src: Id,
        ballot: Ballot,
        log_start: Slot,
        accepted: Vec<AcceptedEntry>,
        complete: bool,
        fx: &mut Effects,
    ) {
        let Role::Candidate(candidacy) = &state.role else {
            return;
        };
        if ballot != state.ballot() || candidacy.promised_by.contains(src) {
            return;
        }
        let state = state.to_mut();
        if !complete || log_start > state.executed {
            // The acceptor discarded slots this candidate has not executed (or could not
            // report all it accepted): the candidate cannot tell what was decided there, so
            // it must not lead. It catches up from that acceptor instead.
            state.role = Role::Follower;
            fx.send(
                src,
                Msg::CatchUp {
                    from: state.executed,
                },
            );
            return;
        }
        let Role::Candidate(candidacy) = &mut state.role else {
            unreachable!()
        };
        candidacy.promised_by.insert(src);
        for entry in &accepted {
            if entry.slot >= state.executed {
                self.adopt(
                    &mut candidacy.adopted,
                    entry.slot,
                    &Accepted {
                        ballot: entry.ballot,
                        command: entry.command.clone(),
                    },
                );
            }
        }
        if candidacy.promised_by.count() >= self.quorum() {
            self.become_leader(id, state, fx);
        }
    }

    /// Phase 1 succeeded: re-propose every open slot, then serve clients.
    fn become_leader(&self, id: Id, state: &mut ReplicaState, fx: &mut Effects) {
        let Role::Candidate(candidacy) = std::mem::replace(&mut state.role, Role::Follower) else {
            unreachable!("only a candidate becomes leader")
        };
        let adopted = candidacy.adopted;
        state.leader = Some(id);
        fx.cancel_timer(Timer::Election);
        self.set_heartbeat_timer(fx);

        let end = [
            adopted.keys().next_back().map(|s| s + 1),
            state.log.keys().next_back().map(|s| s + 1),
            Some(state.executed),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0);
        let mut leadership = Leadership {
            next_slot: end,
            proposals: BTreeMap::new(),
            queue: Default::default(),
        };
        for slot in state.executed..end {
            if state.log.contains_key(&slot) {
                continue; // Decided already; followers that miss it catch up.
            }
            let adopted_value = adopted.get(&slot);
            if adopted_value.is_none() && self.config.has_bug(SeededBug::GapsNotFilled) {
                // The bug: treat the empty slot as a no-op locally instead of deciding one.
                state.log.insert(slot, Command::Noop);
                continue;
            }
            let command = match adopted_value {
                Some(accepted) if !self.config.has_bug(SeededBug::IgnorePromisedValues) => {
                    accepted.command.clone()
                }
                _ => Command::Noop,
            };
            self.propose(
                id,
                &mut state.durable,
                &mut leadership,
                slot,
                command,
                state.executed,
                fx,
            );
        }
        state.role = Role::Leader(leadership);
        self.decide_quorate(id, state, fx);
        self.execute(id, state, fx);
        self.try_propose(id, state, fx);
    }

    pub(super) fn on_nack(&self, state: &mut Cow<ReplicaState>, ballot: Ballot, fx: &mut Effects) {
        if ballot > state.ballot() {
            self.raise_promise(state.to_mut(), ballot, fx);
        }
    }
}
