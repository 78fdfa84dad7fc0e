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
use spec::Slot;
use stateright::actor::Id;
use std::borrow::Cow;
use std::collections::BTreeMap;

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
        self.start_election(id, state.to_mut(), fx);
    }

    /// Whether this replica may campaign: it is a member of every configuration that decides
    /// a slot of its window (a replica whose QUIT is decided does not; neither does a spare).
    pub(super) fn can_lead(&self, id: Id, state: &ReplicaState) -> bool {
        let configuration = &state.service.configuration;
        configuration.members_at(state.executed).contains(&id)
            && configuration
                .pending
                .as_ref()
                .is_none_or(|p| p.members.contains(&id))
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
        let promised_by = candidacy.promised_by;
        state.role = Role::Candidate(candidacy);
        fx.set_timer(Timer::Election, self.config.election_timeout.clone());
        // Every configuration that decides a slot of the window must promise.
        fx.broadcast(
            self.audience(id, state),
            &Msg::Prepare {
                ballot,
                from: state.executed,
            },
        );
        if self.promises_cover_window(state, promised_by) {
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
        for (slot, entry) in state
            .durable
            .accepted
            .range(from.max(state.durable.log_start)..)
        {
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

    /// A promise for this replica's ballot: counted by a candidate, and by a leader that asked
    /// the members of a new configuration for theirs.
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
        let (promised_by, first_open) = match &state.role {
            Role::Candidate(candidacy) => (candidacy.promised_by, state.executed),
            Role::Leader(leadership) => (leadership.promised_by, leadership.next_slot),
            Role::Follower => return,
        };
        if ballot != state.ballot() || promised_by.contains(src) {
            return;
        }
        let state = state.to_mut();
        if !complete || log_start > state.executed {
            // The acceptor discarded slots this replica has not executed (or could not report
            // all it accepted): it cannot tell what was decided there, so the promise does not
            // count. A candidate catches up from that acceptor instead of leading.
            if let Role::Candidate(_) = state.role {
                state.role = Role::Follower;
                fx.send(
                    src,
                    Msg::CatchUp {
                        from: state.executed,
                    },
                );
            }
            return;
        }
        let (promised_by, adopted) = match &mut state.role {
            Role::Candidate(candidacy) => (&mut candidacy.promised_by, &mut candidacy.adopted),
            Role::Leader(leadership) => (&mut leadership.promised_by, &mut leadership.adopted),
            Role::Follower => unreachable!("checked above"),
        };
        promised_by.insert(src);
        let promised_by = *promised_by;
        for entry in &accepted {
            // Slots a leader already proposed in this ballot keep their proposal: it was
            // chosen from a quorum's promises already.
            if entry.slot >= first_open {
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
        match state.role {
            Role::Candidate(_) if self.promises_cover_window(state, promised_by) => {
                self.become_leader(id, state, fx)
            }
            Role::Leader(_) => self.try_propose(id, state, fx),
            _ => {}
        }
    }

    /// Phase 1 succeeded: lead. `try_propose` re-proposes the adopted values slot by slot,
    /// fills gaps with no-ops, and only then proposes new commands.
    fn become_leader(&self, id: Id, state: &mut ReplicaState, fx: &mut Effects) {
        let Role::Candidate(candidacy) = std::mem::replace(&mut state.role, Role::Follower) else {
            unreachable!("only a candidate becomes leader")
        };
        state.leader = Some(id);
        fx.cancel_timer(Timer::Election);
        self.set_heartbeat_timer(fx);
        let mut asked = Votes::from_ids(&state.service.configuration.audience());
        asked.insert(id);
        state.role = Role::Leader(Leadership {
            next_slot: state.executed,
            proposals: BTreeMap::new(),
            queue: Default::default(),
            promised_by: candidacy.promised_by,
            adopted: candidacy.adopted,
            asked,
        });
        self.execute(id, state, fx);
        self.try_propose(id, state, fx);
    }

    pub(super) fn on_nack(&self, state: &mut Cow<ReplicaState>, ballot: Ballot, fx: &mut Effects) {
        if ballot > state.ballot() {
            self.raise_promise(state.to_mut(), ballot, fx);
        }
    }
}
