//! The safety properties, as pure functions of what can be observed of a run: the replicas'
//! logs and digests, the record of every decision announced and every reply sent, and the
//! durable storage. The model checker evaluates them on every state it reaches, and trace
//! conformance evaluates them on every state of a replayed real run.
//!
//! Each returns `Err` with a sentence that says what went wrong, so that a counterexample
//! explains itself.

use crate::command::{Command, Output, Request, RequestId, Slot};
use crate::digest::Digest;
use crate::reference::ReferenceExecution;
use crate::session::SessionOutput;
use stateright::actor::Id;
use std::collections::BTreeMap;

/// A violated property, explained.
pub type Violation = String;

/// What the properties need to see of one replica.
#[derive(Clone, Copy, Debug)]
pub struct ReplicaView<'a> {
    pub id: Id,
    /// Decided commands the replica still holds (older ones may be truncated).
    pub log: &'a BTreeMap<Slot, Command>,
    /// The replica has applied slots `0..executed`.
    pub executed: Slot,
    /// Digest of its service state (machine and sessions).
    pub service_digest: Digest,
}

/// Agreement: at most one value is ever chosen for a slot (`chosen_conflict` reports the
/// contrary), and every command a replica holds as decided is the value chosen there (so no two
/// replicas disagree, and no replica decides what no quorum accepted). `chosen` records every
/// choice ever made, so it also covers decisions that a crashed replica forgot.
pub fn agreement(
    replicas: &[ReplicaView<'_>],
    chosen: &BTreeMap<Slot, Command>,
    chosen_conflict: Option<&str>,
) -> Result<(), Violation> {
    if let Some(conflict) = chosen_conflict {
        return Err(conflict.to_string());
    }
    let mut first_seen: BTreeMap<Slot, (Id, &Command)> = BTreeMap::new();
    for replica in replicas {
        for (slot, command) in replica.log {
            match chosen.get(slot) {
                Some(value) if value != command => {
                    return Err(format!(
                        "replica {:?} holds {command:?} at slot {slot} but {value:?} was chosen there",
                        replica.id
                    ));
                }
                Some(_) => {}
                None => {
                    return Err(format!(
                        "replica {:?} holds {command:?} as decided at slot {slot}, but no quorum accepted a value there",
                        replica.id
                    ));
                }
            }
            match first_seen.get(slot) {
                Some((other, theirs)) if *theirs != command => {
                    return Err(format!(
                        "replicas {other:?} and {:?} decided different commands at slot {slot}: {theirs:?} and {command:?}",
                        replica.id
                    ));
                }
                Some(_) => {}
                None => {
                    first_seen.insert(*slot, (replica.id, command));
                }
            }
        }
    }
    Ok(())
}

/// Validity: every decided command is a system command or a batch of requests that clients
/// really submitted (`submitted` tells which requests those are).
pub fn validity<'a>(
    decided: impl IntoIterator<Item = (Slot, &'a Command)>,
    submitted: impl Fn(&Request) -> bool,
) -> Result<(), Violation> {
    for (slot, command) in decided {
        for request in command.requests() {
            if !submitted(request) {
                return Err(format!(
                    "slot {slot} holds request {request:?}, which no client submitted"
                ));
            }
        }
    }
    Ok(())
}

/// Prefix execution: a replica that applied `n` slots is in exactly the state of the reference
/// execution of the first `n` decided slots. So its executed sequence is a prefix of the decided
/// sequence, and two replicas that executed the same number of slots have the same digest.
pub fn prefix_execution(
    replicas: &[ReplicaView<'_>],
    reference: &ReferenceExecution,
) -> Result<(), Violation> {
    for replica in replicas {
        match reference.digest_after(replica.executed) {
            None => {
                return Err(format!(
                    "replica {:?} executed {} slots but only {} have been decided in order",
                    replica.id,
                    replica.executed,
                    reference.applied()
                ))
            }
            Some(expected) if expected != replica.service_digest => {
                return Err(format!(
                    "replica {:?} executed {} slots and has state digest {:#018x}, but executing the decided log gives {expected:#018x}",
                    replica.id, replica.executed, replica.service_digest
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Exactly-once: every reply for a request names the slot where the reference execution applied
/// it and carries the output it produced there; replies to retries are identical to the first.
/// A request applied twice is answered from a second slot, and so is caught here. A reply that
/// says the request's session expired must name a slot where the reference found it so.
///
/// A reply is sent only after its slot was executed, so by then that slot and every slot below
/// it were chosen: a reply naming a slot the reference has not reached is reported at once (it
/// was sent before its slot was decided, or names the wrong slot), not left for a later state
/// that may never come.
pub fn exactly_once<'a>(
    replies: impl IntoIterator<Item = (&'a RequestId, &'a (Slot, Output))>,
    reply_conflict: Option<&str>,
    reference: &ReferenceExecution,
) -> Result<(), Violation> {
    if let Some(conflict) = reply_conflict {
        return Err(conflict.to_string());
    }
    for (request, (slot, output)) in replies {
        judge_reply(*request, *slot, output, reference)?;
    }
    Ok(())
}

/// Whether two replies to the same request may both be right: they are equal, or both answer
/// an opening of a session, which is applied again when it is decided again after its session
/// was retired (`crate::session`). Each is still judged by [`judge_reply`].
pub fn replies_agree(earlier: &(Slot, Output), later: &(Slot, Output)) -> bool {
    let opened =
        |(_, output): &(Slot, Output)| matches!(output, Output::Session(SessionOutput::Opened(_)));
    earlier == later || (opened(earlier) && opened(later))
}

/// The rule of [`exactly_once`] for one reply.
pub fn judge_reply(
    request: RequestId,
    slot: Slot,
    output: &Output,
    reference: &ReferenceExecution,
) -> Result<(), Violation> {
    if slot >= reference.applied() {
        return Err(format!(
            "request {request:?} was answered from slot {slot}, but only slots below {} have been chosen in order",
            reference.applied()
        ));
    }
    if *output == Output::Session(SessionOutput::Expired) {
        return if reference.expired_at(request, slot) {
            Ok(())
        } else {
            Err(format!(
                "request {request:?} was answered that its session expired at slot {slot}, but its session was current there"
            ))
        };
    }
    match reference.application(request) {
        Some((applied_at, expected)) if applied_at == slot && expected == output => Ok(()),
        // An opening decided again after its session was retired opens a new incarnation.
        Some(_) if reference.reopened_at(request, slot) == Some(output) => Ok(()),
        Some((applied_at, expected)) => Err(format!(
            "request {request:?} was answered from slot {slot} with {output:?}, but it was applied at slot {applied_at} with {expected:?}"
        )),
        None => Err(format!(
            "request {request:?} was answered from slot {slot}, where it was not applied"
        )),
    }
}

/// Durability: every acknowledged request is held durably, at the slot where it was applied, by
/// at least a quorum (`holders` counts the replicas whose storage holds it), so no set of
/// crashes and recoveries can make a later leader decide something else there.
pub fn durability(
    acknowledged: impl IntoIterator<Item = (RequestId, Slot)>,
    holders: impl Fn(RequestId, Slot) -> usize,
    quorum: impl Fn(Slot) -> usize,
) -> Result<(), Violation> {
    for (request, slot) in acknowledged {
        let held = holders(request, slot);
        let quorum = quorum(slot);
        if held < quorum {
            return Err(format!(
                "request {request:?} was acknowledged at slot {slot} but only {held} replicas hold it durably (quorum {quorum})"
            ));
        }
    }
    Ok(())
}
