//! How the runtime steps [`Node`]: the replica's and the client's own handlers, on a state the
//! runtime owns.
//!
//! `Node`'s `Actor` impl hands its inner handlers a *borrowed* inner state, as the model checker
//! needs (it keeps every state it visits), so a step that changes a replica first copies the
//! whole replica state: its logs, its key-value store, its session table. The runtime keeps only
//! the current state, so here the inner state is handed over owned and changed in place. The
//! handlers called are exactly those `Node::on_msg` and `Node::on_timeout` call; only the
//! ownership of the state differs, which the handlers do not observe (the test below checks
//! that both paths give the same states and outputs).

use crate::node::{Node, NodeState};
use crate::runtime::Stepper;
use stateright::actor::{Actor, Id, Out};
use std::borrow::Cow;

impl Stepper for Node {
    fn step_msg(
        &self,
        id: Id,
        state: NodeState,
        src: Id,
        msg: crate::Msg,
        o: &mut Out<Self>,
    ) -> NodeState {
        match (self, state) {
            (Node::Replica(replica), NodeState::Replica(inner)) => {
                let mut cow = Cow::Owned(inner);
                replica.on_msg(id, &mut cow, src, msg, o);
                NodeState::Replica(cow.into_owned())
            }
            (Node::Client(client), NodeState::Client(inner)) => {
                let mut cow = Cow::Owned(inner);
                client.on_msg(id, &mut cow, src, msg, o);
                NodeState::Client(cow.into_owned())
            }
            // Cannot happen (a state always matches its actor); the generic path handles it
            // exactly as the model would.
            (_, state) => {
                let mut cow = Cow::Owned(state);
                self.on_msg(id, &mut cow, src, msg, o);
                cow.into_owned()
            }
        }
    }

    fn step_timeout(
        &self,
        id: Id,
        state: NodeState,
        timer: &crate::Timer,
        o: &mut Out<Self>,
    ) -> NodeState {
        match (self, state) {
            (Node::Replica(replica), NodeState::Replica(inner)) => {
                let mut cow = Cow::Owned(inner);
                replica.on_timeout(id, &mut cow, *timer, o);
                NodeState::Replica(cow.into_owned())
            }
            (Node::Client(client), NodeState::Client(inner)) => {
                let mut cow = Cow::Owned(inner);
                client.on_timeout(id, &mut cow, *timer, o);
                NodeState::Client(cow.into_owned())
            }
            (_, state) => {
                let mut cow = Cow::Owned(state);
                self.on_timeout(id, &mut cow, timer, o);
                cow.into_owned()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Client;
    use crate::replica::{Replica, ReplicaConfig};
    use stateright::actor::Command;
    use std::time::Duration;

    /// Runs a small cluster by delivering every message in order, stepping each node through
    /// both the model's path (`Actor` on a borrowed state) and the runtime's (`Stepper` on an
    /// owned state), and checks after every step that states and outputs agree.
    #[test]
    fn owned_stepping_gives_the_same_states_and_outputs_as_the_model_path() {
        let members: Vec<Id> = (0..3).map(Id::from).collect();
        let config = ReplicaConfig::new(members.clone());
        let mut nodes: Vec<Node> = members
            .iter()
            .map(|_| Node::Replica(Replica::new(config.clone())))
            .collect();
        let ops = (0..6)
            .map(|n| {
                spec::Operation::Kv(spec::KvOp::Put {
                    key: format!("k{}", n % 2).into(),
                    value: n.to_string().into(),
                })
            })
            .collect();
        nodes.push(Node::Client(Client {
            replicas: members.clone(),
            ops,
            max_attempts: 3,
            retry_timeout: Duration::from_millis(1)..Duration::from_millis(1),
            delay_start: false,
            bug: None,
        }));
        let mut states = Vec::new();
        let mut queue = std::collections::VecDeque::new();
        for (index, node) in nodes.iter().enumerate() {
            let mut out = Out::new();
            states.push(node.on_start(Id::from(index), &None, &mut out));
            queue.extend(sends(Id::from(index), out));
        }
        let mut steps = 0;
        while let Some((src, dst, msg)) = queue.pop_front() {
            let index = usize::from(dst);
            let node = &nodes[index];
            let mut model_out = Out::new();
            let mut cow = Cow::Borrowed(&states[index]);
            node.on_msg(dst, &mut cow, src, msg.clone(), &mut model_out);
            let model_state = cow.into_owned();
            let mut runtime_out = Out::new();
            let runtime_state =
                node.step_msg(dst, states[index].clone(), src, msg, &mut runtime_out);
            assert_eq!(model_state, runtime_state);
            assert_eq!(format!("{model_out:?}"), format!("{runtime_out:?}"));
            states[index] = runtime_state;
            queue.extend(sends(dst, runtime_out));
            steps += 1;
        }
        let client = states[3].client().expect("a client");
        assert_eq!(
            client.outputs.len(),
            6,
            "every operation was answered in {steps} steps"
        );
        // Timeouts too: an election timeout at a follower.
        let mut model_out = Out::new();
        let mut cow = Cow::Borrowed(&states[1]);
        nodes[1].on_timeout(
            Id::from(1),
            &mut cow,
            &crate::Timer::Election,
            &mut model_out,
        );
        let model_state = cow.into_owned();
        let mut runtime_out = Out::new();
        let runtime_state = nodes[1].step_timeout(
            Id::from(1),
            states[1].clone(),
            &crate::Timer::Election,
            &mut runtime_out,
        );
        assert_eq!(model_state, runtime_state);
        assert_eq!(format!("{model_out:?}"), format!("{runtime_out:?}"));
    }

    fn sends(src: Id, out: Out<Node>) -> Vec<(Id, Id, crate::Msg)> {
        out.into_iter()
            .filter_map(|command| match command {
                Command::Send(dst, msg) => Some((src, dst, msg)),
                _ => None,
            })
            .collect()
    }
}
