//! Goal: no disruptive candidates (issue 14). A replica whose election timer fires while the
//! others still hear a live leader, or whose QUIT the others have executed, cannot depose the
//! leader: it asks for pre-votes, is refused, and never raises a promise. Before pre-vote, the
//! timeout sent a Prepare of a higher ballot at once, and every replica that promised it
//! refused the leader's next Accept.

use smr::replica::{ReplicaConfig, Storage};
use smr::{Ballot, Msg, Timer};
use spec::{Change, Command};
use stateright::actor::{Command as Output, Id};

mod common;
use common::Stepped;

fn ids() -> (Id, Id, Id) {
    (Id::from(0), Id::from(1), Id::from(2))
}

fn config() -> ReplicaConfig {
    let (zero, one, two) = ids();
    ReplicaConfig::new(vec![zero, one, two])
}

/// The first leader's ballot (replica 0 leads round 1 of a new cluster).
fn first_ballot() -> Ballot {
    Ballot {
        round: 1,
        leader: Id::from(0),
    }
}

fn accept(slot: u64, command: Command) -> Msg {
    Msg::Accept {
        ballot: first_ballot(),
        slot,
        command,
        commit: slot,
        stable: None,
        electorate: smr::replica::state::Votes::from_ids(&[Id::from(0), Id::from(1), Id::from(2)]),
    }
}

fn prepares(out: &[common::Output]) -> usize {
    out.iter()
        .filter(|c| matches!(c, Output::Send(_, Msg::Prepare { .. })))
        .count()
}

fn grants(out: &[common::Output]) -> usize {
    out.iter()
        .filter(|c| matches!(c, Output::Send(_, Msg::PreVoteGranted { .. })))
        .count()
}

#[test]
fn a_timeout_asks_for_pre_votes_and_raises_no_promise() {
    let (_, one, _) = ids();
    let (mut replica, _) = Stepped::start(config(), one, Storage::default());
    let promised = replica.replica().ballot();
    let out = replica.fire(Timer::Election);
    assert_eq!(prepares(&out), 0, "no Prepare before a pre-vote");
    assert_eq!(replica.replica().ballot(), promised, "the promise stays");
    let asked: Vec<_> = out
        .iter()
        .filter_map(|c| match c {
            Output::Send(dst, Msg::PreVote { ballot }) => Some((*dst, *ballot)),
            _ => None,
        })
        .collect();
    let next = promised.next_for(one);
    assert_eq!(asked, vec![(Id::from(0), next), (Id::from(2), next)]);
}

#[test]
fn a_replica_that_hears_the_leader_refuses_a_pre_vote_until_its_own_timer_fires() {
    let (zero, one, two) = ids();
    let (mut follower, _) = Stepped::start(config(), two, Storage::default());
    follower.deliver(zero, accept(0, Command::Noop));
    assert!(follower.replica().leader_heard);
    let ballot = first_ballot().next_for(one);
    // Replica 1 lost touch with the leader (or lags): its pre-vote is refused.
    let out = follower.deliver(one, Msg::PreVote { ballot });
    assert_eq!(grants(&out), 0, "refused while the leader is heard");
    assert_eq!(follower.replica().ballot(), first_ballot());
    assert!(smr::marks::hits().contains(&smr::marks::Mark::PreVoteRefusedLeaderAlive));
    // Once its own timer fires without news of the leader, it grants.
    follower.fire(Timer::Election);
    let out = follower.deliver(one, Msg::PreVote { ballot });
    assert_eq!(grants(&out), 1, "granted once the leader is silent");
    assert_eq!(
        follower.replica().ballot(),
        first_ballot(),
        "a grant changes no promise"
    );
}

#[test]
fn a_replica_whose_quit_is_decided_gets_no_pre_vote() {
    let (zero, one, two) = ids();
    let (mut follower, _) = Stepped::start(config(), two, Storage::default());
    // The QUIT of replica 1 is decided at slot 0 (in force from slot 1), and executed.
    let quit = spec::Request {
        client: Id::from(3),
        session: spec::IMPLICIT,
        number: 1,
        op: spec::Operation::Reconfigure(Change::Quit(one)),
    };
    follower.deliver(zero, accept(0, Command::batch(vec![quit])));
    follower.deliver(
        zero,
        Msg::Heartbeat {
            ballot: first_ballot(),
            commit: 1,
            stable: None,
        },
    );
    assert_eq!(follower.replica().executed, 1);
    follower.fire(Timer::Election);
    let out = follower.deliver(
        one,
        Msg::PreVote {
            ballot: first_ballot().next_for(one),
        },
    );
    assert_eq!(grants(&out), 0, "the quitter is refused");
    assert!(smr::marks::hits().contains(&smr::marks::Mark::PreVoteRefusedNonMember));
}

#[test]
fn a_quorum_of_grants_starts_the_campaign() {
    let (zero, one, _) = ids();
    let (mut replica, _) = Stepped::start(config(), one, Storage::default());
    replica.fire(Timer::Election);
    let next = replica.replica().ballot().next_for(one);
    // A grant for another ballot does not count.
    let out = replica.deliver(
        zero,
        Msg::PreVoteGranted {
            ballot: next.next_for(one),
        },
    );
    assert_eq!(prepares(&out), 0);
    let out = replica.deliver(zero, Msg::PreVoteGranted { ballot: next });
    assert_eq!(prepares(&out), 2, "Phase 1 in the ballot granted");
    assert_eq!(replica.replica().ballot(), next);
}
