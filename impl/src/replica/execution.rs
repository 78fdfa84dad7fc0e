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
use crate::message::Msg;
use spec::{Command, Output, Request, Session, Slot, StateMachine};
use stateright::actor::Id;

impl Replica {
    /// Executes every decided slot that directly follows the executed prefix.
    pub(super) fn execute(&self, id: Id, state: &mut ReplicaState, fx: &mut Effects) {
        while let Some(command) = state.log.get(&state.executed).cloned() {
            let slot = state.executed;
            match &command {
                Command::Noop => {}
                Command::Checkpoint => self.take_checkpoint(id, state, slot, fx),
                Command::Batch(batch) => {
                    for request in batch.requests() {
                        self.apply_request(id, state, slot, request, fx);
                    }
                }
            }
            state.executed += 1;
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
                spec::Operation::Kv(op) => Output::Kv(state.service.machine.apply(op)),
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
