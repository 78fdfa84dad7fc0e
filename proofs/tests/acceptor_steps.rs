//! Goal: the acceptor's local rules hold inductively: from *any* durable state that satisfies
//! them (generated, not reached: arbitrary ballots up to 2^32, slots up to 2^64, five replicas),
//! after *any* input (an arbitrary message from anyone, a timer, or a reply that matches the
//! replica's current ballot, so that candidacy and leadership are exercised too), the replica
//! never panics and its step:
//!
//! - A1 accepts a value only in a ballot at least its promise before the step (Paxos Made
//!   Simple, P1a) and holds nothing accepted above its promise, A2 never lowers its promise,
//!   and A3 never replaces an accepted value with one of a lower ballot;
//! - A4 saves any change to its durable state before anything else it outputs, and saves
//!   exactly the state it holds (the runtime sends nothing of a step before its save is on
//!   disk);
//! - A5 promises only the ballot it holds, reporting exactly what it accepted from the
//!   candidate's first slot and its own truncation point (the candidate's Phase 1 relies on it);
//! - A6 votes (Accepted) only for what it now holds as accepted in that ballot (or has since
//!   executed and truncated below a stable checkpoint);
//! - A7 proposes (Accept) only in its own ballot, as leader, what it accepted itself;
//! - A8 answers a stale ballot with its own promise (Nack);
//! - and keeps its state digest up to date (what the model checker and the traces hash).
//!
//! These are the acceptor-side lemmas L1 and L4 of `SAFETY.md`, checked one step at a time from
//! arbitrary states; the random schedules check them along runs, with the global lemmas.

use proofs::generate::{ballot, command, msg, request, slot, storage, ALPHA};
use proptest::collection::vec;
use proptest::prelude::*;
use smr::message::AcceptedEntry;
use smr::replica::{ReplicaConfig, Storage};
use smr::{Msg, Node, NodeState, Replica, ReplicaState, SeededBug, Timer};
use stateright::actor::{Actor, Command as Output, Id, Out};
use std::borrow::Cow;

const REPLICAS: usize = 5;

/// One input to a replica.
#[derive(Clone, Debug)]
enum Input {
    Timer(Timer),
    /// Any message, from any sender (ids beyond the members are ignored by design).
    Message(Id, Msg),
    /// A promise for the replica's current ballot, as a candidate would need.
    PromiseForCurrent(Id, Vec<(u64, smr::Ballot, spec::Command)>, u64, bool),
    /// A vote for the replica's current ballot.
    AcceptedForCurrent(Id, u64),
    /// An Accept in the replica's current ballot (from its owner, if a member), announcing the
    /// replica's own checkpoint as stable if the flag says so.
    AcceptForCurrent(u64, spec::Command, u64, bool),
    /// A heartbeat in the replica's current ballot, likewise.
    HeartbeatForCurrent(u64, bool),
    /// A vote for the replica's own latest checkpoint.
    VoteForOwnCheckpoint(Id),
    /// A grant of the pre-vote the replica runs, if any (so that candidacies start).
    PreVoteGrant(Id),
    /// A client's request.
    Request(spec::Request),
}

fn input() -> impl Strategy<Value = Input> {
    let member = (0..REPLICAS).prop_map(Id::from);
    let entries = vec((slot(), ballot(), command()), 0..3);
    prop_oneof![
        1 => prop_oneof![Just(Timer::Election), Just(Timer::Heartbeat)].prop_map(Input::Timer),
        4 => ((0usize..8).prop_map(Id::from), msg()).prop_map(|(src, msg)| Input::Message(src, msg)),
        // Mostly from the start of the log, so that the candidate can use the promise.
        4 => (member.clone(), entries, prop_oneof![3 => Just(0u64), 1 => slot()], any::<bool>())
            .prop_map(|(src, e, log_start, complete)| Input::PromiseForCurrent(src, e, log_start, complete)),
        3 => (member.clone(), slot()).prop_map(|(src, slot)| Input::AcceptedForCurrent(src, slot)),
        2 => (slot(), command(), slot(), any::<bool>())
            .prop_map(|(slot, c, commit, stable)| Input::AcceptForCurrent(slot, c, commit, stable)),
        1 => (slot(), any::<bool>()).prop_map(|(commit, stable)| Input::HeartbeatForCurrent(commit, stable)),
        1 => member.clone().prop_map(Input::VoteForOwnCheckpoint),
        2 => member.prop_map(Input::PreVoteGrant),
        1 => request().prop_map(|mut r| {
            r.client = Id::from(REPLICAS + usize::from(r.client) % 3);
            Input::Request(r)
        }),
    ]
}

/// The message an input stands for, given the replica's current state; `None` for a timer, or
/// for a message that nobody could send this replica. Only a ballot's owner sends Accepts and
/// heartbeats in it, and never to itself, so an Accept or heartbeat in a ballot this replica
/// owns is a forgery, outside the crash-fault model that Paxos assumes.
fn resolve(input: Input, id: Id, state: &ReplicaState) -> Option<(Id, Msg)> {
    let ballot = state.durable.promised;
    Some(match input {
        Input::Timer(_) => return None,
        Input::Message(_, Msg::Accept { ballot, .. } | Msg::Heartbeat { ballot, .. })
            if ballot.leader == id =>
        {
            return None
        }
        Input::Message(src, msg) => (src, msg),
        Input::PromiseForCurrent(src, entries, log_start, complete) => {
            // An acceptor cannot have accepted above the ballot it now promises.
            let accepted = entries
                .into_iter()
                .map(|(slot, accepted, command)| AcceptedEntry {
                    slot,
                    ballot: accepted.min(ballot),
                    command,
                })
                .collect();
            (
                src,
                Msg::Promise {
                    ballot,
                    log_start,
                    accepted,
                    complete,
                    checkpoint: 0,
                    rebuilt: Default::default(),
                },
            )
        }
        Input::AcceptedForCurrent(src, slot) => (
            src,
            Msg::Accepted {
                ballot,
                slot,
                incarnation: 0,
                epoch: 0,
                pending: false,
            },
        ),
        Input::AcceptForCurrent(..) | Input::HeartbeatForCurrent(..) if ballot.leader == id => {
            return None
        }
        Input::AcceptForCurrent(slot, command, commit, announce) => {
            let electorate =
                smr::replica::Votes::from_ids(&(0..REPLICAS).map(Id::from).collect::<Vec<_>>());
            let stable = own_checkpoint(state).filter(|_| announce);
            (
                ballot.leader,
                Msg::Accept {
                    ballot,
                    slot,
                    command,
                    commit,
                    stable,
                    electorate,
                },
            )
        }
        Input::HeartbeatForCurrent(commit, announce) => {
            let stable = own_checkpoint(state).filter(|_| announce);
            (
                ballot.leader,
                Msg::Heartbeat {
                    ballot,
                    commit,
                    stable,
                },
            )
        }
        Input::PreVoteGrant(src) => {
            let (ballot, _) = state.pre_vote?;
            (src, Msg::PreVoteGranted { ballot })
        }
        Input::VoteForOwnCheckpoint(src) => {
            let (slot, digest) = own_checkpoint(state)?;
            (src, Msg::CheckpointVote { slot, digest })
        }
        Input::Request(request) => (request.client, Msg::Request(request)),
    })
}

/// The replica's latest checkpoint, as announced and voted for.
fn own_checkpoint(state: &ReplicaState) -> Option<(u64, u64)> {
    state
        .durable
        .checkpoint
        .as_ref()
        .map(|c| (c.slot, c.digest))
}

fn replica_state(node: &NodeState) -> &ReplicaState {
    node.replica().expect("a replica")
}

/// Checks A1 to A8 for one step from `pre` to `post` on `msg` (`None`: a timer).
fn check_step(
    id: Id,
    pre: &ReplicaState,
    post: &ReplicaState,
    msg: Option<&Msg>,
    out: &Out<Node>,
) -> Result<(), String> {
    let (before, after) = (&pre.durable, &post.durable);
    // A1, A2, A3.
    let newly = after
        .accepted
        .iter()
        .filter(|(slot, a)| before.accepted.get(slot) != Some(a));
    if let Some((slot, a)) = newly.clone().find(|(_, a)| a.ballot < before.promised) {
        return Err(format!(
            "A1: accepted {:?} at slot {slot} below the promise {:?}",
            a.ballot, before.promised
        ));
    }
    if let Some((slot, a)) = after
        .accepted
        .iter()
        .find(|(_, a)| a.ballot > after.promised)
    {
        return Err(format!(
            "A1: accepted {:?} at slot {slot} above the promise {:?}",
            a.ballot, after.promised
        ));
    }
    if after.promised < before.promised {
        return Err(format!(
            "A2: promise lowered from {:?} to {:?}",
            before.promised, after.promised
        ));
    }
    for (slot, a) in &after.accepted {
        if let Some(earlier) = before.accepted.get(slot) {
            if a.ballot < earlier.ballot {
                return Err(format!(
                    "A3: slot {slot} went from ballot {:?} back to {:?}",
                    earlier.ballot, a.ballot
                ));
            }
        }
    }
    // A4: a changed durable state is saved, first, exactly.
    let saves: Vec<(usize, &Storage)> = out
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match c {
            Output::Save(storage) => Some((i, storage)),
            _ => None,
        })
        .collect();
    if before != after && saves.is_empty() {
        return Err("A4: the durable state changed but the step saves nothing".into());
    }
    if let Some((at, saved)) = saves.last() {
        if *saved != after {
            return Err("A4: the step saves a state other than the one it holds".into());
        }
        if let Some(send) = out.iter().position(|c| matches!(c, Output::Send(..))) {
            if send < *at {
                return Err("A4: a message goes out before the save".into());
            }
        }
    }
    // A5 to A8: what the step sends.
    for command in out.iter() {
        let Output::Send(_, sent) = command else {
            continue;
        };
        match sent {
            Msg::Promise {
                ballot,
                log_start,
                accepted,
                complete,
                checkpoint,
                rebuilt,
            } => {
                if after.rebuilding {
                    return Err("A5: a replica rebuilding its storage promised".into());
                }
                let Some(Msg::Prepare { from, rebuild, .. }) = msg else {
                    return Err("A5: a promise sent without a prepare".into());
                };
                let reported = if *rebuild { after.checkpoint_slot() } else { 0 };
                if *rebuilt != after.rebuilt || *checkpoint != reported {
                    return Err(format!(
                        "A5: promise reports lives {rebuilt:?} and checkpoint {checkpoint} while holding {:?} and {}",
                        after.rebuilt, reported
                    ));
                }
                if *ballot != after.promised || *log_start != after.log_start {
                    return Err(format!(
                        "A5: promise {ballot:?} from {log_start} while holding {:?} from {}",
                        after.promised, after.log_start
                    ));
                }
                for entry in accepted {
                    let held = after.accepted.get(&entry.slot);
                    if held.is_none_or(|a| a.ballot != entry.ballot || a.command != entry.command) {
                        return Err(format!(
                            "A5: promise reports {entry:?}, which is not what is held"
                        ));
                    }
                }
                // A9: a rebuild ballot is promised only once it is recorded as the sender's life.
                let sender = ballot.leader;
                if *rebuild && after.life(sender) != *ballot {
                    return Err(format!(
                        "A9: promised the rebuild ballot {ballot:?} without recording it as replica {sender:?}'s life"
                    ));
                }
                let owed = after.accepted.range((*from).max(after.log_start)..).count();
                if *complete && owed != accepted.len() {
                    return Err(format!(
                        "A5: a complete promise reports {} of {owed} accepted values",
                        accepted.len()
                    ));
                }
            }
            Msg::Accepted { ballot, slot, .. } => {
                if after.rebuilding {
                    return Err("A6: a replica rebuilding its storage voted".into());
                }
                let Some(Msg::Accept { command, .. }) = msg else {
                    return Err("A6: a vote sent without an accept".into());
                };
                // Unless the same step executed the slot and truncated it below a stable
                // checkpoint (which a one-member configuration makes at once).
                let held = after.accepted.get(slot);
                let truncated = *slot < after.log_start;
                if !truncated && held.is_none_or(|a| a.ballot != *ballot || a.command != *command) {
                    return Err(format!(
                        "A6: voted for slot {slot} in {ballot:?} without holding that value"
                    ));
                }
            }
            Msg::Accept {
                ballot,
                slot,
                command,
                ..
            } => {
                let held = after.accepted.get(slot);
                if *ballot != after.promised || ballot.leader != id || !post.is_leader() {
                    return Err(format!(
                        "A7: proposed in {ballot:?} while holding {:?}",
                        after.promised
                    ));
                }
                if held.is_none_or(|a| a.ballot != *ballot || a.command != *command) {
                    return Err(format!(
                        "A7: proposed at slot {slot} what it did not accept itself"
                    ));
                }
            }
            Msg::Nack { ballot } if *ballot != after.promised => {
                return Err(format!(
                    "A8: nack with {ballot:?} while holding {:?}",
                    after.promised
                ));
            }
            _ => {}
        }
    }
    if post.digest != post.compute_digest() {
        return Err("the state changed without its digest being refreshed".into());
    }
    Ok(())
}

/// What the generated steps exercised, over all cases.
#[derive(Debug, Default)]
struct Coverage {
    steps: usize,
    saves: usize,
    promises: usize,
    votes: usize,
    proposals: usize,
    nacks: usize,
    leaderships: usize,
    truncations: usize,
}

impl Coverage {
    fn add(&mut self, pre: &ReplicaState, post: &ReplicaState, out: &Out<Node>) {
        self.steps += 1;
        for command in out.iter() {
            match command {
                Output::Save(_) => self.saves += 1,
                Output::Send(_, Msg::Promise { .. }) => self.promises += 1,
                Output::Send(_, Msg::Accepted { .. }) => self.votes += 1,
                Output::Send(_, Msg::Accept { .. }) => self.proposals += 1,
                Output::Send(_, Msg::Nack { .. }) => self.nacks += 1,
                _ => {}
            }
        }
        self.leaderships += usize::from(!pre.is_leader() && post.is_leader());
        self.truncations += usize::from(post.durable.log_start > pre.durable.log_start);
    }
}

/// Runs one case: a replica recovered from `durable`, then `inputs` one by one.
fn run_case(
    bug: Option<SeededBug>,
    index: usize,
    durable: Storage,
    inputs: Vec<Input>,
    coverage: &mut Coverage,
) -> Result<(), TestCaseError> {
    let members: Vec<Id> = (0..REPLICAS).map(Id::from).collect();
    let mut config = ReplicaConfig::new(members);
    config.checkpoint_interval = Some(2);
    config.limits.window = ALPHA as usize;
    config.bug = bug;
    let node = Node::Replica(Replica::new(config));
    let id = Id::from(index);
    let mut out = Out::new();
    let mut state = node.on_start(id, &Some(durable), &mut out);
    let started = replica_state(&state);
    prop_assert!(out
        .iter()
        .any(|c| matches!(c, Output::Save(s) if *s == started.durable)));
    for input in inputs {
        let pre = replica_state(&state).clone();
        let mut out = Out::new();
        let mut next = Cow::Borrowed(&state);
        let timer = match &input {
            Input::Timer(t) => Some(*t),
            _ => None,
        };
        let message = resolve(input, id, &pre);
        match (&timer, &message) {
            (Some(timer), _) => node.on_timeout(id, &mut next, timer, &mut out),
            (None, Some((src, msg))) => node.on_msg(id, &mut next, *src, msg.clone(), &mut out),
            (None, None) => continue,
        }
        let next = next.into_owned();
        let post = replica_state(&next);
        if let Err(error) = check_step(id, &pre, post, message.as_ref().map(|(_, m)| m), &out) {
            prop_assert!(
                false,
                "{error}\ninput {message:?}\nbefore {pre:?}\nafter {post:?}\nout {out:?}"
            );
        }
        coverage.add(&pre, post, &out);
        state = next;
    }
    Ok(())
}

/// Runs `cases` generated cases (a fixed seed: the same ones every run), with `bug` on.
fn explore(bug: Option<SeededBug>, cases: u32) -> Result<Coverage, String> {
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    use std::cell::RefCell;
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(cases);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let coverage = RefCell::new(Coverage::default());
    let strategy = (0..REPLICAS, storage(true), vec(input(), 1..60));
    runner
        .run(&strategy, |(index, durable, inputs)| {
            run_case(bug, index, durable, inputs, &mut coverage.borrow_mut())
        })
        .map_err(|error| error.to_string())?;
    Ok(coverage.into_inner())
}

#[test]
fn every_step_from_any_consistent_state_keeps_the_acceptor_rules() {
    let coverage = explore(None, 2000).unwrap_or_else(|error| panic!("{error}"));
    println!("{coverage:?}");
    // Not vacuous: every rule was exercised, many times.
    for (what, count) in [
        ("saves", coverage.saves),
        ("promises", coverage.promises),
        ("votes", coverage.votes),
        ("proposals", coverage.proposals),
        ("nacks", coverage.nacks),
        ("leaderships", coverage.leaderships),
        ("truncations", coverage.truncations),
    ] {
        assert!(count >= 10, "only {count} {what}: {coverage:?}");
    }
}

#[test]
fn the_rules_catch_the_seeded_acceptor_bugs() {
    // The rules can fail: each seeded acceptor bug breaks the rule it is about.
    for (bug, rule) in [
        (SeededBug::AcceptLowerBallot, "A1:"),
        (SeededBug::PromiseNotPersisted, "A4:"),
        (SeededBug::AcceptNotPersisted, "A4:"),
    ] {
        match explore(Some(bug), 2000) {
            Ok(_) => panic!("{} broke no rule", bug.name()),
            Err(error) => assert!(
                error.contains(rule),
                "{} broke another rule: {error}",
                bug.name()
            ),
        }
    }
}
