//! Client requests and Phase 2 (Paxos Made Simple, sections 2.2 and 3).
//!
//! The leader queues client requests, packs them into batches, and proposes one batch per slot,
//! keeping at most `window` slots undecided. Each acceptor accepts an Accept unless it promised
//! a higher ballot. A slot is decided when a quorum accepted it in the leader's ballot.

use super::state::{Leadership, Proposal, ReplicaState, Role, Votes};
use super::storage::{Accepted, Storage};
use super::Replica;
use crate::ballot::Ballot;
use crate::bugs::SeededBug;
use crate::effects::Effects;
use crate::marks::{self, Mark};
use crate::message::{Msg, SizeBound};
use spec::{Admission, Command, Request, Slot};
use stateright::actor::Id;
use std::borrow::Cow;

impl Replica {
    pub(super) fn on_request(
        &self,
        id: Id,
        state: &mut Cow<ReplicaState>,
        src: Id,
        request: Request,
        fx: &mut Effects,
    ) {
        let forwarded = self.is_replica(src);
        if request.client != src && !forwarded {
            return; // A request speaks only for its sender, or is forwarded by a replica.
        }
        if request.size_bound() > self.config.limits.max_request_bytes() {
            // It could not be replicated: its batch would not fit an Accept or a promise page.
            // Honest clients refuse it before sending (`deploy::client`).
            return;
        }
        let Some(leadership) = state.leadership() else {
            // Forward it (once) to the leader, which answers the client directly; the client
            // learns the leader from who answers. Without a known leader the request is
            // dropped and the client retries elsewhere.
            if let Some(leader) = state.leader.filter(|leader| *leader != id && !forwarded) {
                marks::hit(Mark::RequestForwarded);
                fx.send(leader, Msg::Request(request));
            }
            return;
        };
        if !self.config.has_bug(SeededBug::SessionNotConsulted) {
            // Judged by the executed state, which may lag the log: a request that looks
            // expired here may belong to a session opened in a slot not executed yet, so only
            // what is certain is answered now; execution judges the rest.
            match state.service.sessions.admit(&request) {
                Admission::Duplicate => {
                    // A retry of an executed request: answer it again, never re-execute it.
                    marks::hit(Mark::RetryAnsweredFromSession);
                    let session = state.service.sessions.get(request.client);
                    let session = session.expect("a duplicate has a session");
                    fx.send(
                        request.client,
                        Msg::Reply {
                            number: session.number,
                            slot: session.slot,
                            output: session.output.clone(),
                        },
                    );
                    return;
                }
                Admission::Stale => {
                    marks::hit(Mark::OlderRequestIgnored);
                    return; // Older than the last answered request: the client moved on.
                }
                Admission::Fresh | Admission::Expired => {}
            }
        }
        if self.config.has_bug(SeededBug::StaleLocalRead) {
            if let spec::Operation::Kv(spec::KvOp::Get { .. }) = &request.op {
                // The bug: answer from the executed state, without the log.
                let output = state.service.clone().apply(state.executed, &request);
                fx.send(
                    request.client,
                    Msg::Reply {
                        number: request.number,
                        slot: state.executed,
                        output,
                    },
                );
                return;
            }
        }
        let in_progress = leadership
            .queue
            .iter()
            .any(|queued| queued.id() == request.id())
            || leadership
                .proposals
                .values()
                .any(|p| p.command.requests().iter().any(|r| r.id() == request.id()));
        if in_progress {
            marks::hit(Mark::RequestInProgress);
            return; // Already on its way.
        }
        if leadership.queue.len() >= self.config.limits.max_queue {
            // No room: the client retries later (back-pressure).
            marks::hit(Mark::QueueFull);
            return;
        }
        let state = state.to_mut();
        if let Role::Leader(leadership) = &mut state.role {
            leadership.queue.push_back(request);
        }
        self.try_propose(id, state, fx);
    }

    /// Proposes, slot by slot, while the window has room: first the values adopted from
    /// promises, no-ops in the gaps below them, then checkpoints and batches of new requests.
    ///
    /// The window is also the α of reconfiguration: slot `x` is proposed only once every slot
    /// up to `x - window` is executed, so the configuration that decides `x` is known from
    /// decided commands. A slot whose configuration is not yet covered by a quorum of promises
    /// (the members of a JOIN had not been asked) waits for them.
    pub(super) fn try_propose(&self, id: Id, state: &mut ReplicaState, fx: &mut Effects) {
        self.ask_new_members(id, state, fx);
        // α comes from the replicated configuration, never from local settings: every replica
        // must compute the same configuration for every slot.
        let alpha = state.service.configuration.alpha
            + u64::from(self.config.has_bug(SeededBug::ProposeBeyondWindow));
        loop {
            let Role::Leader(leadership) = &state.role else {
                return;
            };
            let slot = leadership.next_slot;
            if slot >= state.executed + alpha {
                break;
            }
            if slot < state.executed || state.log.contains_key(&slot) {
                // Decided already (learned by catch-up, perhaps executed and truncated since:
                // a long Phase 1 in pages lets the executed prefix pass `next_slot`); followers
                // that miss it catch up too. Proposing it again would count the votes in the
                // configuration in force now, not in the slot's own.
                if let Role::Leader(leadership) = &mut state.role {
                    leadership.adopted.remove(&slot);
                    leadership.next_slot += 1;
                }
                continue;
            }
            let electorate = self.electorate(state, slot);
            if !electorate.contains(id) {
                // Not a member there. Unreachable while the leader may lead (`can_lead`: it
                // steps down when it executes its own QUIT, so every slot from its executed
                // prefix on includes it, and slots below are skipped above); a guard, not a
                // marked branch, since proposing here would count the wrong electorate. (It was
                // reached only by re-proposing below the executed prefix, proofs/SAFETY.md §10.)
                break;
            }
            if !self.is_quorum(leadership.promises.by, electorate) {
                // Waiting for promises from new members.
                marks::hit(Mark::WaitsForNewMembers);
                break;
            }
            let adopted = leadership.adopted.get(&slot).map(|a| a.command.clone());
            let gap = adopted.is_none()
                && (leadership.adopted.range(slot..).next().is_some()
                    || state.log.range(slot..).next().is_some());
            let command = match adopted {
                Some(_) if self.config.has_bug(SeededBug::IgnorePromisedValues) => Command::Noop,
                Some(command) => {
                    marks::hit(Mark::AdoptedProposed);
                    command
                }
                None if gap && self.config.has_bug(SeededBug::GapsNotFilled) => {
                    // The bug: treat the empty slot as a no-op locally instead of deciding one.
                    state.log.insert(slot, Command::Noop);
                    continue;
                }
                None if gap => {
                    marks::hit(Mark::GapFilled);
                    Command::Noop
                }
                None => match self.new_command(state, slot, fx) {
                    Some(command) => command,
                    None => break,
                },
            };
            let ReplicaState {
                durable,
                role,
                executed,
                ..
            } = state;
            let Role::Leader(leadership) = role else {
                unreachable!("checked above")
            };
            leadership.adopted.remove(&slot);
            leadership.next_slot += 1;
            self.propose(
                id, durable, leadership, slot, command, electorate, *executed, fx,
            );
            if self.is_quorum(Votes::of(id), electorate) {
                // A quorum of one (a single-member configuration): decided at once, and
                // executing it may open the window for the next slot.
                self.decide_quorate(id, state, fx);
                self.execute(id, state, fx);
            }
        }
        self.decide_quorate(id, state, fx);
    }

    /// Sends a Prepare for the leader's ballot to the members of a pending configuration that
    /// have not been asked yet: their promises are needed before the slots they decide.
    fn ask_new_members(&self, id: Id, state: &mut ReplicaState, fx: &mut Effects) {
        let ballot = state.ballot();
        let from = state.executed;
        let audience = self.audience(id, state);
        let Role::Leader(leadership) = &mut state.role else {
            return;
        };
        for member in audience {
            if !leadership.asked.contains(member) {
                leadership.asked.insert(member);
                marks::hit(Mark::NewMembersAsked);
                fx.send(
                    member,
                    Msg::Prepare {
                        ballot,
                        from,
                        rebuild: false,
                    },
                );
            }
        }
    }

    /// The next new command for `slot`: a checkpoint where one is due, else a batch of queued
    /// requests, else nothing.
    fn new_command(
        &self,
        state: &mut ReplicaState,
        slot: Slot,
        fx: &mut Effects,
    ) -> Option<Command> {
        if let Some(interval) = self.config.checkpoint_interval {
            if (slot + 1) % interval == 0 {
                marks::hit(Mark::CheckpointProposed);
                return Some(Command::Checkpoint);
            }
        }
        let limits = &self.config.limits;
        let Role::Leader(leadership) = &mut state.role else {
            return None;
        };
        if leadership.queue.is_empty() {
            return None;
        }
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(next) = leadership.queue.front() {
            let size = next.size_bound();
            if !batch.is_empty()
                && (batch.len() >= limits.max_batch_requests
                    || bytes + size > limits.max_batch_bytes)
            {
                marks::hit(Mark::BatchSplit);
                break;
            }
            bytes += size;
            batch.extend(leadership.queue.pop_front());
        }
        if self.config.has_bug(SeededBug::ReplyBeforeExecute) {
            // The bug: answer from the current state before the batch is even decided.
            let mut speculative = state.service.clone();
            for request in &batch {
                let output = speculative.apply(slot, request);
                fx.send(
                    request.client,
                    Msg::Reply {
                        number: request.number,
                        slot,
                        output,
                    },
                );
            }
        }
        Some(Command::batch(batch))
    }

    /// Proposes `command` at `slot` in the leader's ballot, accepting it locally first.
    /// `commit` is the leader's executed prefix.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn propose(
        &self,
        id: Id,
        durable: &mut Storage,
        leadership: &mut Leadership,
        slot: Slot,
        command: Command,
        electorate: Votes,
        commit: Slot,
        fx: &mut Effects,
    ) {
        let ballot = durable.promised;
        let stable = durable.stable_checkpoint();
        durable.accepted.insert(
            slot,
            Accepted {
                ballot,
                command: command.clone(),
            },
        );
        fx.persist();
        leadership.proposals.insert(
            slot,
            Proposal {
                command: command.clone(),
                votes: Votes::of(id),
                electorate,
            },
        );
        fx.broadcast(
            electorate.iter().filter(|member| *member != id),
            &Msg::Accept {
                ballot,
                slot,
                command,
                commit,
                stable,
                electorate,
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_accept(
        &self,
        id: Id,
        state: &mut Cow<ReplicaState>,
        src: Id,
        ballot: Ballot,
        slot: Slot,
        command: Command,
        commit: Slot,
        fx: &mut Effects,
    ) {
        if slot < state.durable.log_start {
            // Decided, checkpointed and truncated: a leader that proposes it is stale, and
            // learns the outcome by catching up.
            marks::hit(Mark::AcceptBelowLogStartIgnored);
            return;
        }
        if ballot < state.ballot() && !self.config.has_bug(SeededBug::AcceptLowerBallot) {
            // Refused silently: a deposed leader learns of the higher ballot from the new
            // candidate's Prepare, or from the Nack to its next heartbeat. Answering every stale
            // Accept would only multiply messages.
            marks::hit(Mark::AcceptLowerBallotIgnored);
            return;
        }
        {
            let state = state.to_mut();
            if ballot > state.ballot() {
                marks::hit(Mark::AcceptRaisesPromise);
                self.raise_promise(state, ballot, fx);
            }
            if ballot == state.ballot() {
                state.leader = Some(ballot.leader);
                if self.config.pre_vote {
                    state.leader_heard = true;
                    state.pre_vote = None;
                }
                self.reset_election_timer(fx);
            }
            let same_value = state
                .durable
                .accepted
                .get(&slot)
                .is_some_and(|held| held.command == command);
            if !(same_value && self.config.has_bug(SeededBug::AcceptKeepsOlderBallot)) {
                state
                    .durable
                    .accepted
                    .insert(slot, Accepted { ballot, command });
            }
            if !self.config.has_bug(SeededBug::AcceptNotPersisted) {
                fx.persist();
            }
            fx.send(
                src,
                Msg::Accepted {
                    ballot,
                    slot,
                    incarnation: state.durable.incarnation,
                    epoch: state.service.configuration.epoch,
                    pending: state.service.configuration.pending.is_some(),
                },
            );
        }
        if ballot == state.ballot() {
            self.learn_committed(id, state, ballot, commit, fx);
        }
    }

    pub(super) fn on_accepted(
        &self,
        id: Id,
        state: &mut Cow<ReplicaState>,
        src: Id,
        ballot: Ballot,
        slot: Slot,
        fx: &mut Effects,
    ) {
        let Some(leadership) = state.leadership() else {
            return;
        };
        if ballot != state.ballot()
            || leadership
                .proposals
                .get(&slot)
                .is_none_or(|p| p.votes.contains(src))
        {
            return;
        }
        let state = state.to_mut();
        if let Role::Leader(leadership) = &mut state.role {
            if let Some(proposal) = leadership.proposals.get_mut(&slot) {
                proposal.votes.insert(src);
            }
        }
        self.decide_quorate(id, state, fx);
        self.execute(id, state, fx);
        self.try_propose(id, state, fx);
    }

    /// Decides every proposal that a quorum accepted. Followers learn it from the `commit`
    /// of later Accepts and heartbeats.
    pub(super) fn decide_quorate(&self, _id: Id, state: &mut ReplicaState, _fx: &mut Effects) {
        let Role::Leader(leadership) = &mut state.role else {
            return;
        };
        let decided: Vec<Slot> = leadership
            .proposals
            .iter()
            .filter(|(_, p)| self.is_quorum(p.votes, p.electorate))
            .map(|(slot, _)| *slot)
            .collect();
        for slot in decided {
            if let Some(proposal) = leadership.proposals.remove(&slot) {
                marks::hit(Mark::ProposalDecided);
                state.log.insert(slot, proposal.command);
            }
        }
    }
}
