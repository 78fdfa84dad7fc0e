//! In-order execution of the decided log with exactly-once client sessions.
//!
//! A slot is executed only when every slot below it has been (Schneider 1990: replicas apply
//! the same commands in the same order). Each client request is applied at most once: the
//! session table remembers each client's last applied request number and its answer, so a
//! request decided twice (a retry proposed again) is skipped, and a retry is answered from the
//! table. The table is bounded; a request of a session it retired is answered "expired", never
//! applied (`spec::session` says why that is safe).

use super::state::ReplicaState;
use super::Replica;
use crate::bugs::SeededBug;
use crate::effects::Effects;
use crate::marks::{self, Mark};
use crate::message::Msg;
use spec::{Admission, Command, Output, Request, Session, SessionOutput, Slot};
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
    fn send_to_joiners(&self, id: Id, state: &mut ReplicaState, fx: &mut Effects) {
        let configuration = &state.service.configuration;
        let Some(pending) = configuration.pending.as_ref().filter(|_| state.is_leader()) else {
            return;
        };
        let joiners: Vec<Id> = pending
            .members
            .difference(&configuration.members)
            .copied()
            .filter(|joiner| *joiner != id)
            .collect();
        for joiner in joiners {
            self.offer_snapshot(state, joiner, fx);
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
        let reply = |number, slot, output| Msg::Reply {
            number,
            slot,
            output,
        };
        match self.admit(state, request) {
            Admission::Fresh => {
                let incarnation = state.service.sessions.incarnation_for(request);
                let output = match &request.op {
                    spec::Operation::Reconfigure(change)
                        if self.config.has_bug(SeededBug::ConcurrentReconfig) =>
                    {
                        // The bug: a change pending is forgotten and replaced by this one.
                        state.service.configuration.pending = None;
                        Output::Reconfigure(state.service.configuration.apply(slot, *change))
                    }
                    _ => state.service.apply(slot, request),
                };
                if answer {
                    fx.send(request.client, reply(request.number, slot, output.clone()));
                }
                let session = Session {
                    incarnation,
                    number: request.number,
                    slot,
                    output,
                };
                if state
                    .service
                    .sessions
                    .record(request.client, session)
                    .is_some()
                {
                    marks::hit(Mark::SessionRetired);
                }
            }
            Admission::Duplicate => {
                marks::hit(Mark::DuplicateNotApplied);
                let session = state.service.sessions.get(request.client);
                if let Some(session) = session.filter(|_| answer) {
                    let output = session.output.clone();
                    fx.send(request.client, reply(session.number, session.slot, output));
                }
            }
            Admission::Stale => {}
            Admission::Expired => {
                // Its session was retired: whether an earlier copy was applied cannot be
                // known any more, so it is not applied now, and the client is told.
                marks::hit(Mark::SessionExpired);
                if answer {
                    let output = Output::Session(SessionOutput::Expired);
                    fx.send(request.client, reply(request.number, slot, output));
                }
            }
        }
    }

    /// What the session table says of `request` (`spec::session`), or what a seeded bug makes
    /// of it.
    fn admit(&self, state: &ReplicaState, request: &Request) -> Admission {
        let admission = state.service.sessions.admit(request);
        let forgets = match admission {
            Admission::Duplicate | Admission::Stale => SeededBug::SessionNotConsulted,
            Admission::Expired => SeededBug::RetiredSessionReexecutes,
            Admission::Fresh => return admission,
        };
        if self.config.has_bug(forgets) {
            Admission::Fresh
        } else {
            admission
        }
    }
}
