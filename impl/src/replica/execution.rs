//! In-order execution of the decided log with exactly-once client sessions.
//!
//! A slot is executed only when every slot below it has been (Schneider 1990: replicas apply
//! the same commands in the same order). Each client request is applied at most once: the
//! session table remembers each client's last applied request number and its answer, so a
//! request decided twice (a retry proposed again) is skipped, and a retry is answered from the
//! table.

use super::state::ReplicaState;
use super::Replica;
use crate::bugs::SeededBug;
use crate::effects::Effects;
use crate::marks::{self, Mark};
use crate::message::Msg;
use spec::{Command, Output, Request, Session, Slot};
use stateright::actor::Id;

impl Replica {
    /// Executes every decided slot that directly follows the executed prefix.
    pub(super) fn execute(&self, id: Id, state: &mut ReplicaState, fx: &mut Effects) {
        while let Some(command) = state.log.get(&state.executed).cloned() {
            let slot = state.executed;
            state.service.begin_slot(slot);
            match &command {
                Command::Noop => {}
                Command::Checkpoint => self.take_checkpoint(id, state, slot, fx),
                Command::Batch(batch) => {
                    let pending = state.service.configuration.pending.clone();
                    for request in batch.requests() {
                        self.apply_request(id, state, slot, request, fx);
                    }
                    if state.service.configuration.pending != pending {
                        // A membership change: checkpoint the state that holds it, so that a
                        // joiner can get it by state transfer.
                        marks::hit(Mark::MembershipChangeExecuted);
                        self.take_checkpoint(id, state, slot, fx);
                        self.send_to_joiners(id, state, fx);
                    }
                }
            }
            state.executed += 1;
            if state.is_leader() && !self.can_lead(id, state) {
                // Its QUIT is in force from here on: a member of the new configuration
                // takes over after an election timeout.
                marks::hit(Mark::QuitLeaderStepsDown);
                self.step_down(state, fx);
            }
        }
    }

    /// The leader starts a state transfer to the replicas a JOIN just added.
    fn send_to_joiners(&self, id: Id, state: &ReplicaState, fx: &mut Effects) {
        let configuration = &state.service.configuration;
        let Some(pending) = configuration.pending.as_ref().filter(|_| state.is_leader()) else {
            return;
        };
        for joiner in pending.members.difference(&configuration.members) {
            if *joiner != id {
                self.send_snapshot_chunk(state, *joiner, 0, fx);
            }
        }
    }

    fn apply_request(
        &self,
        _id: Id,
        state: &mut ReplicaState,
        slot: Slot,
        request: &Request,
        fx: &mut Effects,
    ) {
        // The leader answers; followers execute silently. A client whose answer is lost
        // retries, and the then-leader answers from the session table.
        let answer = state.is_leader() && !self.config.has_bug(SeededBug::ReplyBeforeExecute);
        let session = state.service.sessions.get(request.client);
        let fresh = self.config.has_bug(SeededBug::SessionNotConsulted)
            || session.is_none_or(|session| request.number > session.number);
        if fresh {
            let output = match &request.op {
                spec::Operation::Reconfigure(change)
                    if self.config.has_bug(SeededBug::ConcurrentReconfig) =>
                {
                    // The bug: a change pending is forgotten and replaced by this one.
                    state.service.configuration.pending = None;
                    Output::Reconfigure(state.service.configuration.apply(slot, *change))
                }
                op => state.service.apply(slot, op),
            };
            if answer {
                fx.send(
                    request.client,
                    Msg::Reply {
                        number: request.number,
                        slot,
                        output: output.clone(),
                    },
                );
            }
            state.service.sessions.record(
                request.client,
                Session {
                    number: request.number,
                    slot,
                    output,
                },
            );
        } else if let Some(session) = session.filter(|s| s.number == request.number) {
            marks::hit(Mark::DuplicateNotApplied);
            if answer {
                fx.send(
                    request.client,
                    Msg::Reply {
                        number: session.number,
                        slot: session.slot,
                        output: session.output.clone(),
                    },
                );
            }
        }
    }
}
