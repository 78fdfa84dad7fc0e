//! An independent record of the client-visible history, for linearizability along a schedule.
//!
//! The model's own record (`model::history`) reads the messages that cross the network. This one
//! reads only the clients' states: a client invokes an operation when it starts (its first) or
//! when it accepts the answer to the previous one (its next), and the operation returns when the
//! client accepts its answer. Two records built from different observations cross-check each
//! other, and this one cannot mistake a replica's forwarding of a request for an invocation.

use model::{ModelState, SmrModel};
use smr::{Node, NodeState};
use spec::sequential::KvSpec;
use spec::{Operation, Output};
use stateright::actor::Id;
use stateright::semantics::{ConsistencyTester, LinearizabilityTester};

/// The history of the key-value operations that clients invoked and saw answered.
#[derive(Clone, Debug)]
pub struct ClientHistory {
    tester: LinearizabilityTester<Id, KvSpec>,
}

impl ClientHistory {
    /// The history at the model's initial state `init`: every client has invoked its first
    /// operation.
    pub fn new(model: &SmrModel, init: &ModelState) -> Self {
        let mut history = ClientHistory {
            tester: LinearizabilityTester::new(KvSpec::default()),
        };
        for (index, node) in init.actor_states.iter().enumerate() {
            if let (Node::Client(client), NodeState::Client(state)) =
                (&model.actors[index], &**node)
            {
                history.invoke(Id::from(index), client.ops.get(state.next));
            }
        }
        history
    }

    fn invoke(&mut self, client: Id, op: Option<&Operation>) {
        // Membership changes are not key-value operations; exactly-once covers them.
        if let Some(Operation::Kv(op)) = op {
            let _ = self.tester.on_invoke(client, op.clone());
        }
    }

    /// Records what the clients did in the step from `before` to `after`.
    pub fn step(&mut self, model: &SmrModel, before: &ModelState, after: &ModelState) {
        let pairs = before
            .actor_states
            .iter()
            .zip(&after.actor_states)
            .enumerate();
        for (index, (was, is)) in pairs {
            let (Node::Client(client), NodeState::Client(was), NodeState::Client(is)) =
                (&model.actors[index], &**was, &**is)
            else {
                continue;
            };
            let id = Id::from(index);
            for answered in was.next..is.next {
                if let (Some(Operation::Kv(_)), Some((_, Output::Kv(output)))) =
                    (client.ops.get(answered), is.outputs.get(answered))
                {
                    let _ = self.tester.on_return(id, output.clone());
                }
                self.invoke(id, client.ops.get(answered + 1));
            }
        }
    }

    /// Whether the history is linearizable, with the tester's state if not.
    pub fn check(&self) -> Result<(), String> {
        if self.tester.is_consistent() {
            Ok(())
        } else {
            Err(format!(
                "the clients' history is not linearizable: {:?}",
                self.tester
            ))
        }
    }
}
