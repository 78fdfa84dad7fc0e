//! The model's history: auxiliary variables (in the sense of Lamport's "Auxiliary Variables in
//! TLA+") that record what was observable in a run, so the safety properties can be judged on
//! any state. It records what crosses the network, which survives every crash:
//!
//! - the client-visible history, for the linearizability tester;
//! - every proposal (an Accept) and every vote for it (an Accepted), and so every value
//!   chosen: accepted by a quorum in one ballot, the definition of "chosen" in Paxos;
//! - the reference execution of the chosen log;
//! - every reply sent to a client (the acknowledgements);
//! - whether a replica that had restarted voted in a quorum that chose a value.

use crate::ModelConfig;
use smr::{Ballot, ClientState, Msg};
use spec::digest::{Digest, StableHasher};
use spec::properties;
use spec::reference::ReferenceExecution;
use spec::sequential::KvSpec;
use spec::{Command, Operation, Output, RequestId, RequestNumber, Slot};
use stateright::actor::{Envelope, Id};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester};
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Whether `ballot` is the one replica 0 leads a brand-new cluster in (the model's
/// `initial_leader`).
fn is_bootstrap(ballot: &Ballot) -> bool {
    ballot.round == 1 && usize::from(ballot.leader) == 0
}

/// A proposal as the history sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Proposal {
    pub command: Command,
    /// Replicas that accepted it, as a bit set of ids.
    pub voters: u64,
    /// Whether a replica that had restarted was among the first quorum of voters.
    pub recovered_voter: bool,
    /// The members that decide the slot, as the proposing leader claimed (checked against the
    /// reference configuration by the reconfiguration-safety property).
    pub electorate: u64,
    /// Whether a replica that joined was among the voters.
    pub joiner_voted: bool,
}

/// Auxiliary state of a model run. Large parts sit behind `Arc` so that the many model states
/// sharing them clone cheaply, and `digest` (refreshed on every change) stands for the whole
/// history when a model state is hashed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History {
    /// Client invocations and returns of key-value operations.
    pub tester: LinearizabilityTester<Id, KvSpec>,
    /// Cached verdict of the tester (recomputed only when the history changes).
    pub linearizable: bool,
    /// The request number each client has invoked and not yet seen answered.
    pub in_flight: BTreeMap<Id, RequestNumber>,
    /// Every proposal by (slot, ballot), with its voters.
    pub proposals: Arc<BTreeMap<(Slot, Ballot), Proposal>>,
    /// The value chosen at each slot.
    pub chosen: Arc<BTreeMap<Slot, Command>>,
    /// The ballots in which each slot had a value chosen.
    pub chosen_in: Arc<BTreeMap<Slot, BTreeSet<Ballot>>>,
    /// The first choice that contradicted an earlier one.
    pub chosen_conflict: Option<Arc<str>>,
    /// The first Accept that proposed, at a slot and ballot, another value than an earlier
    /// Accept there (lemma L2: one value per ballot and slot).
    pub ballot_conflict: Option<Arc<str>>,
    /// The reference execution of the chosen log, as far as it is contiguous.
    pub reference: ReferenceExecution,
    /// Every reply sent: where and with what output each request was answered.
    pub replies: Arc<BTreeMap<RequestId, (Slot, Output)>>,
    /// The first reply that contradicted an earlier reply to the same request.
    pub reply_conflict: Option<Arc<str>>,
    /// Replies beyond each request's first answer that may differ from it: "session expired"
    /// (a request answered once may later find its session retired), and the answer to an
    /// opening decided again after its session was retired. Each is judged on its own.
    pub other_replies: Arc<BTreeSet<(RequestId, Slot, Output)>>,
    /// Every ballot a candidate prepared or asked pre-votes for (bounds the number of
    /// elections).
    pub ballots: BTreeSet<Ballot>,
    /// Storage losses so far (the model's `LoseStorage` action).
    pub storage_losses: u32,
    /// The restarts (incarnations) recorded in storages that were lost since: the crash bound
    /// counts them still.
    pub forgotten_restarts: u32,
    /// The first vote (Accepted) cast by a replica whose state did not make it a member (the
    /// reconfiguration-safety property: a joiner votes only once it holds the state that
    /// includes it, and a replica whose QUIT is in force votes no more).
    pub vote_violation: Option<Arc<str>>,
    /// The message of the first step that panicked (an actor's assertion failed): the state
    /// that carries it is the state before that step (see `SmrModel::next_state`).
    pub panic: Option<Arc<str>>,
    /// The replicas that symmetry reduction may rename (`crate::symmetry`): fixed by the
    /// bounds, the same in every state, so left out of the digest.
    pub interchangeable: Arc<Vec<usize>>,
    /// Digest of all of the above.
    pub digest: Digest,
}

impl Hash for History {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.digest.hash(state);
    }
}

impl History {
    /// The history of a run that starts with the replicas of `cfg`.
    pub fn new(cfg: &ModelConfig) -> Self {
        let members = (0..cfg.replicas).map(stateright::actor::Id::from);
        let initial =
            spec::ServiceState::new(spec::Configuration::initial(members, cfg.window as u64))
                .with_max_sessions(cfg.limits.max_sessions);
        Self {
            tester: LinearizabilityTester::new(KvSpec::default()),
            linearizable: true,
            in_flight: BTreeMap::new(),
            proposals: Arc::default(),
            chosen: Arc::default(),
            chosen_in: Arc::default(),
            chosen_conflict: None,
            ballot_conflict: None,
            reference: ReferenceExecution::new(initial),
            replies: Arc::default(),
            reply_conflict: None,
            other_replies: Arc::default(),
            ballots: BTreeSet::new(),
            storage_losses: 0,
            forgotten_restarts: 0,
            vote_violation: None,
            panic: None,
            interchangeable: Arc::new(crate::symmetry::interchangeable(cfg)),
            digest: 0,
        }
        .refreshed()
    }

    /// Records a message as it is sent. Returns the new history, or `None` if the message
    /// changes nothing (which keeps model states cheap).
    pub fn record_out(
        cfg: &ModelConfig,
        history: &History,
        env: Envelope<&Msg>,
    ) -> Option<History> {
        Self::on_send(cfg, history, env).map(History::refreshed)
    }

    /// The history after a step panicked with `message`.
    pub fn panicked(&self, message: String) -> History {
        let mut next = self.clone();
        next.panic = Some(message.into());
        next.refreshed()
    }

    /// The history after a replica's storage was lost, with the restarts it had recorded.
    pub fn storage_lost(&self, forgotten_restarts: u32) -> History {
        let mut next = self.clone();
        next.storage_losses += 1;
        next.forgotten_restarts += forgotten_restarts;
        next.refreshed()
    }

    pub(crate) fn refreshed(mut self) -> History {
        let History {
            tester,
            linearizable,
            in_flight,
            proposals,
            chosen,
            chosen_in,
            chosen_conflict,
            ballot_conflict,
            reference,
            replies,
            reply_conflict,
            other_replies,
            ballots,
            storage_losses,
            forgotten_restarts,
            vote_violation,
            panic,
            interchangeable: _,
            digest: _,
        } = &self;
        let mut hasher = StableHasher::new();
        tester.hash(&mut hasher);
        linearizable.hash(&mut hasher);
        in_flight.hash(&mut hasher);
        proposals.hash(&mut hasher);
        chosen.hash(&mut hasher);
        chosen_in.hash(&mut hasher);
        chosen_conflict.hash(&mut hasher);
        ballot_conflict.hash(&mut hasher);
        reference.hash(&mut hasher);
        replies.hash(&mut hasher);
        reply_conflict.hash(&mut hasher);
        other_replies.hash(&mut hasher);
        ballots.hash(&mut hasher);
        storage_losses.hash(&mut hasher);
        forgotten_restarts.hash(&mut hasher);
        vote_violation.hash(&mut hasher);
        panic.hash(&mut hasher);
        self.digest = hasher.finish();
        self
    }

    fn on_send(cfg: &ModelConfig, history: &History, env: Envelope<&Msg>) -> Option<History> {
        match env.msg {
            // A replica forwarding a client's request to the leader invokes nothing.
            Msg::Request(request) if request.client != env.src => None,
            Msg::Request(request) => {
                if history.in_flight.get(&env.src) == Some(&request.number) {
                    return None; // A retry: the operation was invoked once.
                }
                // Membership changes are not key-value operations: the linearizability
                // tester does not see them (exactly-once still covers them).
                let Operation::Kv(op) = &request.op else {
                    return None;
                };
                let mut next = history.clone();
                next.in_flight.insert(env.src, request.number);
                // An invocation while another is in flight would be a client bug; the tester
                // then marks the history invalid, which fails linearizability.
                let _ = next.tester.on_invoke(env.src, op.clone());
                next.linearizable = next.tester.is_consistent();
                Some(next)
            }
            Msg::Reply {
                number,
                slot,
                output,
            } => {
                let request = RequestId {
                    client: env.dst,
                    number: *number,
                };
                let reply = (*slot, output.clone());
                let other = |history: &History| {
                    if history
                        .other_replies
                        .contains(&(request, *slot, output.clone()))
                    {
                        return None;
                    }
                    let mut next = history.clone();
                    Arc::make_mut(&mut next.other_replies).insert((request, *slot, output.clone()));
                    Some(next)
                };
                if *output == Output::Session(spec::SessionOutput::Expired) {
                    return other(history);
                }
                match history.replies.get(&request) {
                    Some(earlier) if *earlier == reply => None,
                    Some(earlier) if properties::replies_agree(earlier, &reply) => other(history),
                    Some(earlier) => {
                        if history.reply_conflict.is_some() {
                            return None;
                        }
                        let mut next = history.clone();
                        next.reply_conflict = Some(
                            format!(
                                "request {request:?} was answered with {earlier:?} and later with {:?}",
                                (slot, output)
                            )
                            .into(),
                        );
                        Some(next)
                    }
                    None => {
                        let mut next = history.clone();
                        Arc::make_mut(&mut next.replies).insert(request, (*slot, output.clone()));
                        Some(next)
                    }
                }
            }
            Msg::Accept {
                ballot,
                slot,
                command,
                electorate,
                ..
            } => {
                if let Some(earlier) = history.proposals.get(&(*slot, *ballot)) {
                    if earlier.command == *command || history.ballot_conflict.is_some() {
                        return None;
                    }
                    let mut next = history.clone();
                    next.ballot_conflict = Some(
                        format!(
                            "two values were proposed at slot {slot} in ballot {ballot:?}: {:?}, and later {command:?}",
                            earlier.command
                        )
                        .into(),
                    );
                    return Some(next);
                }
                // The leader accepted its own proposal before sending it.
                let mut next = history.clone();
                Arc::make_mut(&mut next.proposals).insert(
                    (*slot, *ballot),
                    Proposal {
                        command: command.clone(),
                        voters: 1 << usize::from(env.src),
                        recovered_voter: false,
                        electorate: electorate.bits(),
                        joiner_voted: false,
                    },
                );
                Some(next)
            }
            Msg::Accepted {
                ballot,
                slot,
                incarnation,
                epoch,
                pending,
            } => {
                let proposal = history.proposals.get(&(*slot, *ballot))?;
                let voter = 1u64 << usize::from(env.src);
                let vote = crate::properties::vote_by_member(
                    &history.reference,
                    env.src,
                    *slot,
                    *ballot,
                    *epoch,
                    *pending,
                );
                let violation = vote.is_err() && history.vote_violation.is_none();
                if proposal.voters & voter != 0 && !violation {
                    return None;
                }
                let mut next = history.clone();
                if let (true, Err(why)) = (violation, vote) {
                    next.vote_violation = Some(why.into());
                }
                let proposal = Arc::make_mut(&mut next.proposals)
                    .get_mut(&(*slot, *ballot))
                    .expect("present above");
                if proposal.voters & voter != 0 {
                    return Some(next);
                }
                // Chosen: a majority of the slot's electorate accepted it in one ballot.
                let electorate = proposal.electorate;
                let quorum = crate::properties::majority(electorate);
                let before = (proposal.voters & electorate).count_ones() as usize;
                proposal.voters |= voter;
                let votes = (proposal.voters & electorate).count_ones() as usize;
                if *incarnation > 0 && votes <= quorum && votes > before {
                    proposal.recovered_voter = true;
                }
                if usize::from(env.src) >= cfg.replicas {
                    proposal.joiner_voted = true;
                }
                if votes == quorum && before < quorum {
                    let command = proposal.command.clone();
                    next.choose(*slot, *ballot, &command);
                }
                Some(next)
            }
            // The bootstrap ballot (round 1 of replica 0) is no election, even when its leader
            // asks the members of a new configuration for their promises. Every other ballot
            // is, the rebuild of a replica that lost its storage included, and so is a ballot
            // asked for in a pre-vote: the pre-vote is the election's first round.
            Msg::Prepare { ballot, .. } | Msg::PreVote { ballot }
                if !is_bootstrap(ballot) && !history.ballots.contains(ballot) =>
            {
                let mut next = history.clone();
                next.ballots.insert(*ballot);
                Some(next)
            }
            _ => None,
        }
    }

    /// Records what `client` returned in a step, as the client itself recorded it: the
    /// outputs it holds beyond those it held `before` the step. (Not the replies the network
    /// delivered: a client that took a reply for the wrong request shows here.)
    pub fn record_returns(
        &self,
        client: Id,
        before: &ClientState,
        after: &ClientState,
    ) -> Option<History> {
        let fresh = after.outputs.get(before.outputs.len()..)?;
        if fresh.is_empty() {
            return None;
        }
        let mut next = self.clone();
        for (_, output) in fresh {
            next.in_flight.remove(&client);
            // Membership changes are not key-value operations (see `on_send`).
            if let Output::Kv(output) = output {
                // A return without an invocation makes the tester's history invalid, which
                // fails linearizability.
                let _ = next.tester.on_return(client, output.clone());
            }
        }
        next.linearizable = next.tester.is_consistent();
        Some(next.refreshed())
    }

    /// Records that a quorum accepted `command` at `slot` in `ballot`: it is chosen.
    fn choose(&mut self, slot: Slot, ballot: Ballot, command: &Command) {
        Arc::make_mut(&mut self.chosen_in)
            .entry(slot)
            .or_default()
            .insert(ballot);
        match self.chosen.get(&slot) {
            Some(earlier) if earlier != command => {
                if self.chosen_conflict.is_none() {
                    self.chosen_conflict = Some(
                        format!(
                            "two values were chosen at slot {slot}: {earlier:?}, and {command:?} in ballot {ballot:?}"
                        )
                        .into(),
                    );
                }
            }
            Some(_) => {}
            None => {
                Arc::make_mut(&mut self.chosen).insert(slot, command.clone());
                // Extend the reference execution over the now contiguous prefix.
                while let Some(command) = self.chosen.get(&self.reference.applied()) {
                    self.reference.apply_next(command);
                }
            }
        }
    }
}
