//! Renaming replicas: every value that names a replica, rewritten by a permutation of replica
//! ids (stateright's [`Rewrite`]). The model checker uses it for symmetry reduction: two states
//! that differ only by a renaming of interchangeable replicas have the same futures, up to the
//! same renaming, so it explores one of them (`model::symmetry` says when replicas are
//! interchangeable and picks the representative).
//!
//! Commands, service states and checkpoints are copied as they are: they name replicas only in
//! membership changes and configurations, and the model permutes only replicas that no change
//! names and that are members of every configuration (a renaming maps each configuration and
//! change to itself). Client ids are not renamed (the permutation fixes them). Digests are
//! recomputed after the rewrite.

use crate::ballot::Ballot;
use crate::client::ClientState;
use crate::message::{AcceptedEntry, Msg};
use crate::node::NodeState;
use crate::replica::state::{Candidacy, Leadership, Promises, Proposal, ReplicaState, Role, Votes};
use crate::replica::storage::{Accepted, Storage};
use stateright::actor::Id;
use stateright::{Rewrite, RewritePlan};

impl Rewrite<Id> for Ballot {
    fn rewrite<S>(&self, plan: &RewritePlan<Id, S>) -> Self {
        Ballot {
            round: self.round,
            leader: self.leader.rewrite(plan),
        }
    }
}

impl Rewrite<Id> for Votes {
    fn rewrite<S>(&self, plan: &RewritePlan<Id, S>) -> Self {
        let mut votes = Votes::default();
        for id in self.iter() {
            votes.insert(id.rewrite(plan));
        }
        votes
    }
}

impl Rewrite<Id> for Accepted {
    fn rewrite<S>(&self, plan: &RewritePlan<Id, S>) -> Self {
        Accepted {
            ballot: self.ballot.rewrite(plan),
            command: self.command.clone(),
        }
    }
}

impl Rewrite<Id> for Storage {
    fn rewrite<S>(&self, plan: &RewritePlan<Id, S>) -> Self {
        let Storage {
            promised,
            accepted,
            incarnation,
            log_start,
            checkpoint,
            rebuilding,
            rebuilt,
        } = self;
        Storage {
            promised: promised.rewrite(plan),
            accepted: accepted.rewrite(plan),
            incarnation: *incarnation,
            log_start: *log_start,
            checkpoint: checkpoint.clone(),
            rebuilding: *rebuilding,
            rebuilt: rebuilt.rewrite(plan),
        }
    }
}

impl Rewrite<Id> for AcceptedEntry {
    fn rewrite<S>(&self, plan: &RewritePlan<Id, S>) -> Self {
        AcceptedEntry {
            slot: self.slot,
            ballot: self.ballot.rewrite(plan),
            command: self.command.clone(),
        }
    }
}

impl Rewrite<Id> for Msg {
    fn rewrite<S>(&self, plan: &RewritePlan<Id, S>) -> Self {
        match self {
            Msg::Prepare {
                ballot,
                from,
                rebuild,
            } => Msg::Prepare {
                ballot: ballot.rewrite(plan),
                from: *from,
                rebuild: *rebuild,
            },
            Msg::Promise {
                ballot,
                log_start,
                accepted,
                complete,
                checkpoint,
                rebuilt,
            } => Msg::Promise {
                ballot: ballot.rewrite(plan),
                log_start: *log_start,
                accepted: accepted.rewrite(plan),
                complete: *complete,
                checkpoint: *checkpoint,
                rebuilt: rebuilt.rewrite(plan),
            },
            Msg::Nack { ballot } => Msg::Nack {
                ballot: ballot.rewrite(plan),
            },
            Msg::PreVote { ballot } => Msg::PreVote {
                ballot: ballot.rewrite(plan),
            },
            Msg::PreVoteGranted { ballot } => Msg::PreVoteGranted {
                ballot: ballot.rewrite(plan),
            },
            Msg::Accept {
                ballot,
                slot,
                command,
                commit,
                stable,
                electorate,
            } => Msg::Accept {
                ballot: ballot.rewrite(plan),
                slot: *slot,
                command: command.clone(),
                commit: *commit,
                stable: *stable,
                electorate: electorate.rewrite(plan),
            },
            Msg::Accepted {
                ballot,
                slot,
                incarnation,
                epoch,
                pending,
            } => Msg::Accepted {
                ballot: ballot.rewrite(plan),
                slot: *slot,
                incarnation: *incarnation,
                epoch: *epoch,
                pending: *pending,
            },
            Msg::Heartbeat {
                ballot,
                commit,
                stable,
            } => Msg::Heartbeat {
                ballot: ballot.rewrite(plan),
                commit: *commit,
                stable: *stable,
            },
            // Requests and replies name clients only; the rest name no one.
            Msg::Request(_)
            | Msg::Reply { .. }
            | Msg::CatchUp { .. }
            | Msg::CatchUpReply { .. }
            | Msg::CheckpointVote { .. }
            | Msg::Snapshot { .. }
            | Msg::SnapshotRequest { .. }
            | Msg::SnapshotGone { .. } => self.clone(),
        }
    }
}

impl Rewrite<Id> for Proposal {
    fn rewrite<S>(&self, plan: &RewritePlan<Id, S>) -> Self {
        Proposal {
            command: self.command.clone(),
            votes: self.votes.rewrite(plan),
            electorate: self.electorate.rewrite(plan),
        }
    }
}

impl Rewrite<Id> for Promises {
    fn rewrite<S>(&self, plan: &RewritePlan<Id, S>) -> Self {
        Promises {
            by: self.by.rewrite(plan),
            paging: self.paging.rewrite(plan),
            lives: self.lives.rewrite(plan),
        }
    }
}

impl Rewrite<Id> for Role {
    fn rewrite<S>(&self, plan: &RewritePlan<Id, S>) -> Self {
        match self {
            Role::Follower => Role::Follower,
            Role::Candidate(candidacy) => Role::Candidate(Candidacy {
                promises: candidacy.promises.rewrite(plan),
                from: candidacy.from,
                adopted: candidacy.adopted.rewrite(plan),
                rebuild: candidacy.rebuild,
                log_start: candidacy.log_start,
            }),
            Role::Leader(leadership) => Role::Leader(Leadership {
                next_slot: leadership.next_slot,
                proposals: leadership.proposals.rewrite(plan),
                queue: leadership.queue.clone(),
                promises: leadership.promises.rewrite(plan),
                adopted: leadership.adopted.rewrite(plan),
                asked: leadership.asked.rewrite(plan),
            }),
        }
    }
}

impl Rewrite<Id> for ReplicaState {
    fn rewrite<S>(&self, plan: &RewritePlan<Id, S>) -> Self {
        let ReplicaState {
            durable,
            role,
            leader,
            leader_heard,
            pre_vote,
            log,
            executed,
            service,
            checkpoint_votes,
            transfer,
            lent,
            diverged,
            snapshots_installed,
            audit_failures,
            snapshots_refused,
            last_transfer,
            digest: _,
        } = self;
        let mut state = ReplicaState {
            durable: durable.rewrite(plan),
            role: role.rewrite(plan),
            leader: leader.rewrite(plan),
            leader_heard: *leader_heard,
            pre_vote: pre_vote
                .map(|(ballot, granted)| (ballot.rewrite(plan), granted.rewrite(plan))),
            log: log.clone(),
            executed: *executed,
            service: service.clone(),
            checkpoint_votes: checkpoint_votes.rewrite(plan),
            transfer: transfer.clone(),
            lent: lent
                .iter()
                .map(|(id, checkpoint)| (id.rewrite(plan), checkpoint.clone()))
                .collect(),
            diverged: *diverged,
            snapshots_installed: *snapshots_installed,
            audit_failures: *audit_failures,
            snapshots_refused: *snapshots_refused,
            last_transfer: *last_transfer,
            digest: 0,
        };
        state.refresh_digest();
        state
    }
}

impl Rewrite<Id> for ClientState {
    fn rewrite<S>(&self, plan: &RewritePlan<Id, S>) -> Self {
        // The client's replicas are every replica in id order, so the index of the one it
        // believes leads is that replica's id.
        let mut state = ClientState {
            target: usize::from(Id::from(self.target).rewrite(plan)),
            ..self.clone()
        };
        state.digest = state.compute_digest();
        state
    }
}

impl Rewrite<Id> for NodeState {
    fn rewrite<S>(&self, plan: &RewritePlan<Id, S>) -> Self {
        match self {
            NodeState::Replica(state) => NodeState::Replica(state.rewrite(plan)),
            NodeState::Client(state) => NodeState::Client(state.rewrite(plan)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stateright::util::DenseNatMap;

    /// Swaps replicas 1 and 2 among four actors.
    fn swap_one_and_two() -> RewritePlan<Id, DenseNatMap<Id, Id>> {
        let map: DenseNatMap<Id, Id> = vec![0, 2, 1, 3]
            .into_iter()
            .map(Id::from)
            .collect::<Vec<_>>()
            .into();
        RewritePlan::new(map, |id, map| *map.get(*id).expect("every actor"))
    }

    #[test]
    fn a_renaming_renames_every_replica_id_and_keeps_the_rest() {
        let plan = swap_one_and_two();
        let ballot = Ballot {
            round: 2,
            leader: Id::from(1),
        };
        assert_eq!(ballot.rewrite(&plan).leader, Id::from(2));
        let votes = Votes::from_ids(&[Id::from(0), Id::from(1)]);
        assert_eq!(
            votes.rewrite(&plan),
            Votes::from_ids(&[Id::from(0), Id::from(2)])
        );
        let msg = Msg::Accept {
            ballot,
            slot: 3,
            command: spec::Command::Noop,
            commit: 2,
            stable: None,
            electorate: votes,
        };
        let Msg::Accept {
            ballot: renamed,
            electorate,
            slot,
            ..
        } = msg.rewrite(&plan)
        else {
            panic!("an Accept stays an Accept")
        };
        assert_eq!((renamed.leader, slot), (Id::from(2), 3));
        assert_eq!(electorate, Votes::from_ids(&[Id::from(0), Id::from(2)]));
        // Renaming twice by a swap gives the original back.
        assert_eq!(msg.rewrite(&plan).rewrite(&plan), msg);
    }
}
