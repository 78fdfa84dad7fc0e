//! The property checks for long traces: the model's safety properties, judged on what each
//! step changed rather than on the whole state, so that every step costs about as much as the
//! step itself. They use the same auxiliary facts as the model's history (a value is chosen
//! when a quorum accepted it in one ballot; the reference execution of the chosen log; every
//! reply sent) and the pure property functions of `spec` where those apply to one item.
//!
//! Differences from the exact check, all on the side of checking less:
//! - agreement is checked for the log entries a replica adds at its end on every step, and
//!   for its whole log every 1024 of its steps;
//! - linearizability is checked with the chosen log order as the witness: every answer is
//!   the reference execution's output at its place in the log, and an operation that began
//!   after another one returned comes later in the log. (An SMR that passes this is
//!   linearizable; stateright's tester, which searches for any witness, runs in exact mode.)
//! - durability is checked when a write is acknowledged;
//! - reconfiguration safety checks each chosen slot's electorate once the reference knows the
//!   slot's configuration, a replica's configuration on each of its steps, and each vote when
//!   it is sent.
//!
//! Quorums are those of the model: a value is chosen by a majority of the electorate the
//! leader counted for its slot, and reconfiguration safety checks that electorate against the
//! configuration the chosen log gives the slot.

use super::replay::{Applied, FastMap, Observer};
use super::world::World;
use crate::SmrModel;
use smr::{Ballot, Msg, Node};
use spec::properties::{self, ReplicaView};
use spec::reference::ReferenceExecution;
use spec::{Command, Digest, Output, RequestId, RequestNumber, Slot};
use stateright::actor::{Command as Out, Id};
use std::collections::BTreeMap;

/// The properties checked, in report order.
pub const PROPERTIES: &[&str] = &[
    "agreement",
    "validity",
    "prefix execution",
    "exactly-once",
    "linearizability",
    "durability",
    "checkpoint safety",
    "audit digests agree",
    "reconfiguration safety",
];

/// Replica steps between two full scans of a replica's log for agreement.
const FULL_SCAN_EVERY: u64 = 1024;

/// A place in the log: slot, then position in the slot's batch.
type Place = (Slot, usize);

#[derive(Default, Clone, Copy)]
struct ReplicaSeen {
    /// The highest slot of its log checked so far.
    last: Option<Slot>,
    checkpoint: Option<(Slot, Digest)>,
    log_start: Slot,
    /// The slots executed when its configuration was last checked.
    executed: Option<Slot>,
    steps: u64,
}

/// A proposal seen in an Accept: its command, who accepted it, and the electorate the leader
/// counts its quorum in (bit per replica id).
struct Proposal {
    command: Command,
    voters: u64,
    electorate: u64,
}

/// The incremental checker's auxiliary state.
pub struct Incremental<'m> {
    model: &'m SmrModel,
    /// Majority of the initial members: the quorum of a reply whose slot was never seen
    /// chosen (which exactly-once then reports).
    initial_quorum: usize,
    proposals: FastMap<(Slot, Ballot), Proposal>,
    /// The electorate each chosen slot was chosen by, and the ballot (the first time).
    chosen_by: FastMap<Slot, u64>,
    chosen_ballot: FastMap<Slot, Ballot>,
    chosen: BTreeMap<Slot, Command>,
    reference: ReferenceExecution,
    /// The first reply sent to each request: its slot and output.
    replies: FastMap<RequestId, (Slot, Output)>,
    /// Each client's operation in flight: its number and the latest place returned before it
    /// was invoked.
    invoked: FastMap<Id, (RequestNumber, Option<Place>)>,
    /// The latest place of an operation that has returned.
    returned: Option<Place>,
    replicas: Vec<ReplicaSeen>,
    /// How many answers each client had recorded when last seen.
    returned_outputs: FastMap<Id, usize>,
    /// The ids of the replica actors.
    replica_ids: Vec<usize>,
}

impl<'m> Incremental<'m> {
    pub fn new(model: &'m SmrModel) -> Self {
        Self {
            model,
            initial_quorum: model.cfg.replicas / 2 + 1,
            proposals: FastMap::default(),
            chosen_by: FastMap::default(),
            chosen_ballot: FastMap::default(),
            chosen: BTreeMap::new(),
            reference: model.init_history.reference.clone(),
            replies: FastMap::default(),
            invoked: FastMap::default(),
            returned: None,
            replicas: vec![ReplicaSeen::default(); model.actors.len()],
            returned_outputs: FastMap::default(),
            replica_ids: (0..model.actors.len())
                .filter(|id| matches!(model.actors[*id], Node::Replica(_)))
                .collect(),
        }
    }

    fn submitted(&self, request: &spec::Request) -> bool {
        match self.model.actors.get(usize::from(request.client)) {
            Some(Node::Client(client)) => client.sends(request),
            _ => false,
        }
    }

    fn choose(&mut self, slot: Slot, command: Command, found: &mut Vec<(&'static str, String)>) {
        match self.chosen.get(&slot) {
            Some(earlier) if *earlier != command => found.push((
                "agreement",
                format!("two values were chosen at slot {slot}: {earlier:?} and {command:?}"),
            )),
            Some(_) => {}
            None => {
                if let Err(why) = properties::validity([(slot, &command)], |r| self.submitted(r)) {
                    found.push(("validity", why));
                }
                self.chosen.insert(slot, command);
                while let Some(next) = self.chosen.get(&self.reference.applied()) {
                    self.reference.apply_next(next);
                }
            }
        }
    }

    fn check_reply(
        &self,
        request: RequestId,
        slot: Slot,
        output: Output,
        found: &mut Vec<(&'static str, String)>,
    ) {
        if let Err(why) = properties::judge_reply(request, slot, &output, &self.reference) {
            found.push(("exactly-once", why));
        }
    }

    /// Where `request` was applied in the chosen log.
    fn place(&self, request: RequestId) -> Option<Place> {
        let (slot, _) = self.reference.application(request)?;
        let position = self
            .chosen
            .get(&slot)?
            .requests()
            .iter()
            .position(|r| r.id() == request)?;
        Some((slot, position))
    }

    fn on_send(
        &mut self,
        src: Id,
        dst: Id,
        msg: &Msg,
        world: &World<'_>,
        found: &mut Vec<(&'static str, String)>,
    ) {
        match msg {
            Msg::Accept {
                ballot,
                slot,
                command,
                electorate,
                ..
            } => {
                self.proposals
                    .entry((*slot, *ballot))
                    .or_insert_with(|| Proposal {
                        command: command.clone(),
                        voters: 1 << usize::from(src),
                        electorate: electorate.bits(),
                    });
            }
            Msg::Accepted {
                ballot,
                slot,
                epoch,
                pending,
                ..
            } => {
                let vote = crate::properties::vote_by_member(
                    &self.reference,
                    src,
                    *slot,
                    *ballot,
                    *epoch,
                    *pending,
                );
                if let Err(why) = vote {
                    found.push(("reconfiguration safety", why));
                }
                let Some(proposal) = self.proposals.get_mut(&(*slot, *ballot)) else {
                    return;
                };
                let electorate = proposal.electorate;
                let quorum = crate::properties::majority(electorate);
                let before = (proposal.voters & electorate).count_ones() as usize;
                proposal.voters |= 1 << usize::from(src);
                let votes = (proposal.voters & electorate).count_ones() as usize;
                if before < quorum && votes == quorum {
                    let command = proposal.command.clone();
                    self.chosen_by.entry(*slot).or_insert(electorate);
                    self.chosen_ballot.entry(*slot).or_insert(*ballot);
                    let judged = crate::properties::electorate_of_slot(
                        &self.reference,
                        *slot,
                        *ballot,
                        electorate,
                    );
                    if let Err(why) = judged {
                        found.push(("reconfiguration safety", why));
                    }
                    self.choose(*slot, command, found);
                }
            }
            // The client's own send (not a follower's forward), and not a retry.
            Msg::Request(request)
                if request.client == src
                    && self.invoked.get(&src).map(|(number, _)| *number)
                        != Some(request.number) =>
            {
                self.invoked.insert(src, (request.number, self.returned));
            }
            Msg::Reply {
                number,
                slot,
                output,
            } => {
                let request = RequestId {
                    client: dst,
                    number: *number,
                };
                // An answer that the session expired is no acknowledgement (a request answered
                // once may later find its session retired), and a reopening may answer an
                // opening again: each reply is judged on its own below.
                let expired = *output == Output::Session(spec::SessionOutput::Expired);
                let reply = (*slot, output.clone());
                if !expired {
                    match self.replies.get(&request) {
                        Some(earlier) if !properties::replies_agree(earlier, &reply) => found.push((
                            "exactly-once",
                            format!("request {request:?} was answered twice, differently (the second time from slot {slot} with {output:?})"),
                        )),
                        Some(_) => {}
                        None => {
                            self.replies.insert(request, reply);
                            self.check_durability(request, *slot, world, found);
                        }
                    }
                }
                // Judged at once: its slot was chosen, with every slot below it, before the
                // reply was sent (a reply for a slot not chosen yet is a violation).
                self.check_reply(request, *slot, output.clone(), found);
            }
            _ => {}
        }
    }

    fn check_durability(
        &self,
        request: RequestId,
        slot: Slot,
        world: &World<'_>,
        found: &mut Vec<(&'static str, String)>,
    ) {
        let reference = &self.reference;
        // Holders among the slot's electorate only (every replica while it is unknown).
        let holders = |request: RequestId, slot: Slot| {
            let electorate = self.chosen_by.get(&slot).copied().unwrap_or(u64::MAX);
            let since = self.chosen_ballot.get(&slot).copied();
            self.replica_ids
                .iter()
                .filter(|id| **id < 64 && electorate & (1 << **id) != 0)
                .filter_map(|id| world.slots[*id].storage.as_ref())
                .filter(|storage| {
                    crate::properties::counts_as_holder(storage, reference, request, slot, since)
                })
                .count()
        };
        // A quorum of the electorate that chose the slot.
        let quorum = |slot: Slot| {
            self.chosen_by
                .get(&slot)
                .map_or(self.initial_quorum, |electorate| {
                    crate::properties::majority(*electorate)
                })
        };
        if let Err(why) = properties::durability([(request, slot)], holders, quorum) {
            found.push(("durability", why));
        }
    }

    /// A client recorded `recorded` as the answer to its request `number`.
    fn on_return(
        &mut self,
        client: Id,
        number: RequestNumber,
        recorded: &(Slot, Output),
        found: &mut Vec<(&'static str, String)>,
    ) {
        let request = RequestId { client, number };
        match self.invoked.remove(&client) {
            Some((invoked, floor)) if invoked == number => self.check_return(request, floor, found),
            _ => found.push((
                "linearizability",
                format!("client {client:?} recorded an answer to request {number}, which it had not invoked"),
            )),
        }
        if let Some((slot, output)) = self.reference.application(request) {
            if (slot, output) != (recorded.0, &recorded.1) {
                found.push((
                    "linearizability",
                    format!(
                        "client {client:?} recorded {recorded:?} as the answer to request {number}, but the chosen log applied it at slot {slot} with {output:?}"
                    ),
                ));
            }
        }
    }

    fn check_return(
        &mut self,
        request: RequestId,
        floor: Option<Place>,
        found: &mut Vec<(&'static str, String)>,
    ) {
        match self.place(request) {
            None => found.push((
                "linearizability",
                format!("request {request:?} returned, but the chosen log has not applied it"),
            )),
            Some(place) if floor.is_some_and(|floor| place <= floor) => found.push((
                "linearizability",
                format!(
                    "request {request:?} took effect at {place:?} in the log, before an operation (at {:?}) that had returned before it was invoked",
                    floor.unwrap_or_default()
                ),
            )),
            Some(place) => self.returned = self.returned.max(Some(place)),
        }
    }

    fn check_replica(
        &mut self,
        id: usize,
        world: &World<'_>,
        found: &mut Vec<(&'static str, String)>,
    ) {
        let Some(replica) = world.slots[id].state.as_ref().and_then(|s| s.replica()) else {
            return;
        };
        let seen = &mut self.replicas[id];
        seen.steps += 1;
        // Configurations form one chain: the replica's is the chosen log's after the slots
        // it executed (its configuration changes only by executing, or installing, slots).
        let known = self
            .reference
            .configuration_after(replica.executed)
            .is_some();
        if known && seen.executed != Some(replica.executed) {
            seen.executed = Some(replica.executed);
            if let Err(why) =
                crate::properties::configuration_in_chain(&self.reference, id, replica)
            {
                found.push(("reconfiguration safety", why));
            }
        }
        let full = seen.steps % FULL_SCAN_EVERY == 0;
        let from = if full {
            0
        } else {
            seen.last.map_or(0, |last| last + 1)
        };
        let mut fresh = BTreeMap::new();
        for (slot, command) in replica.log.range(from..) {
            fresh.insert(*slot, command.clone());
        }
        seen.last = replica.log.keys().next_back().copied().max(seen.last);
        let view = |log| ReplicaView {
            id: Id::from(id),
            log,
            executed: replica.executed,
            service_digest: replica.service.digest(),
        };
        if let Err(why) = properties::agreement(&[view(&fresh)], &self.chosen, None) {
            found.push(("agreement", why));
        }
        if let Err(why) = properties::prefix_execution(&[view(&fresh)], &self.reference) {
            found.push(("prefix execution", why));
        }
        if let Err(why) = crate::properties::states_agree_where_compared(id, replica) {
            found.push(("audit digests agree", why));
        }
        let checkpoint = replica.durable.checkpoint.as_ref();
        let held = checkpoint.map(|c| (c.slot, c.digest));
        if held != seen.checkpoint {
            seen.checkpoint = held;
            if let Some(c) = checkpoint {
                if c.state.digest() != c.digest
                    || self.reference.digest_after(c.slot) != Some(c.digest)
                {
                    found.push((
                        "checkpoint safety",
                        format!("replica {id} holds a checkpoint at slot {} that is not the state after the chosen slots below it", c.slot),
                    ));
                }
            }
        }
        let log_start = replica.durable.log_start;
        if log_start != seen.log_start {
            seen.log_start = log_start;
            let holds = |member: Id| {
                world
                    .slots
                    .get(usize::from(member))
                    .and_then(|slot| slot.storage.as_ref())
                    .is_some_and(|s| crate::properties::covers_truncation(s, log_start))
            };
            let covered =
                crate::properties::truncation_covered(&self.reference, id, log_start, holds);
            if let Err(why) = covered {
                found.push(("checkpoint safety", why));
            }
        }
    }
}

impl Observer for Incremental<'_> {
    fn after_step(
        &mut self,
        world: &World<'_>,
        applied: &Applied<'_>,
    ) -> Vec<(&'static str, String)> {
        let mut found = Vec::new();
        if applied.is_crash() {
            return found;
        }
        let id = Id::from(applied.id);
        // A client's answers first: it may invoke its next operation in the same step.
        if let Some(client) = world.slots[applied.id]
            .state
            .as_ref()
            .and_then(|s| s.client())
        {
            let seen = self.returned_outputs.entry(id).or_default();
            let fresh: Vec<_> = client.outputs.iter().enumerate().skip(*seen).collect();
            *seen = client.outputs.len();
            for (index, recorded) in fresh {
                self.on_return(id, index as RequestNumber + 1, recorded, &mut found);
            }
        }
        for command in applied.out.iter() {
            if let Out::Send(dst, msg) = command {
                self.on_send(id, *dst, msg, world, &mut found);
            }
        }
        self.check_replica(applied.id, world, &mut found);
        found
    }
}
