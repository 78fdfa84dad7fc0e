//! Pre-vote and leader stickiness (Raft dissertation, section 9.6). A replica whose election
//! timer fires does not raise its promise at once: raising it is what deposes a leader (the
//! leader's next Accept is refused, and the Nack makes it step down). It first asks the others
//! whether they would promise its next ballot, and campaigns (Phase 1, `election`) only once a
//! quorum of every configuration that decides its window granted it: the quorums Phase 1 needs,
//! so the campaign could win.
//!
//! A replica grants a pre-vote when it takes part (a member that is not rebuilding), could
//! promise the ballot (it is above its own promise), does not lead, has not heard from the
//! leader of its ballot since its own election timer last fired, and counts the candidate as a
//! member of its configuration (it has not executed the candidate's QUIT). So a replica cut off
//! from a live leader, one that lags behind its own QUIT, or one that just restarted cannot
//! depose a leader that the others still hear.
//!
//! An election timeout after news of the leader only makes the replica *suspect* the leader
//! (it then grants pre-votes); the next timeout without news starts its own pre-vote. After a
//! leader fails, every follower suspects it within one timeout, and the first to time out again
//! is granted its pre-vote: an election takes about two election timeouts instead of one. (A
//! replica that asked at its first timeout would be refused by the others until their own
//! timers fired anyway; asking one timeout later costs nothing, and in the model it keeps an
//! election to one ballot: granting does not need a pre-vote of the granter's own.)
//!
//! Safety does not depend on any of this: a pre-vote changes nothing at the replicas that grant
//! it, and Phase 1 is unchanged. A replica rebuilding lost storage runs its rebuild election
//! without a pre-vote: it must rebuild even while a leader is alive (`rebuild`).

use super::state::{ReplicaState, Votes};
use super::Replica;
use crate::ballot::Ballot;
use crate::effects::Effects;
use crate::marks::{self, Mark};
use crate::message::Msg;
use crate::node::Timer;
use stateright::actor::Id;
use std::borrow::Cow;

impl Replica {
    /// The election timer fired while this replica does not lead. If it had heard from the
    /// leader since the timer last fired, it only stops counting on that leader (from now on
    /// it grants pre-votes); otherwise it asks for pre-votes for its next ballot (or campaigns
    /// at once, if its own grant is a quorum).
    pub(super) fn on_leader_silent(&self, id: Id, state: &mut ReplicaState, fx: &mut Effects) {
        if state.leader_heard {
            marks::hit(Mark::LeaderSuspected);
            state.leader_heard = false;
            fx.set_timer(Timer::Election, self.config.election_timeout.clone());
            return;
        }
        self.start_pre_vote(id, state, fx);
    }

    /// Asks for pre-votes for the next ballot (or campaigns at once, if this replica's own
    /// grant is a quorum).
    fn start_pre_vote(&self, id: Id, state: &mut ReplicaState, fx: &mut Effects) {
        marks::hit(Mark::PreVoteStarted);
        let ballot = state.ballot().next_for(id);
        // A pre-vote asked again for the same ballot keeps the grants it has.
        let mut granted = match state.pre_vote {
            Some((asked, granted)) if asked == ballot => granted,
            _ => Votes::default(),
        };
        granted.insert(id);
        if self.promises_cover_window(state, granted) {
            state.pre_vote = None;
            return self.start_election(id, state, fx);
        }
        state.pre_vote = Some((ballot, granted));
        // Asked again at the next timeout, if no quorum grants it before.
        fx.set_timer(Timer::Election, self.config.election_timeout.clone());
        fx.broadcast(self.audience(id, state), &Msg::PreVote { ballot });
    }

    pub(super) fn on_pre_vote(
        &self,
        id: Id,
        state: &ReplicaState,
        src: Id,
        ballot: Ballot,
        fx: &mut Effects,
    ) {
        // Guards: why a pre-vote is not granted (nothing is answered; the candidate asks again
        // at its next timeout).
        if !self.participates(id, state) {
            return; // A spare, a replica whose QUIT is in force, or one rebuilding: no vote.
        }
        if state.is_leader() || state.leader_heard {
            marks::hit(Mark::PreVoteRefusedLeaderAlive);
            return;
        }
        if ballot <= state.ballot() {
            marks::hit(Mark::PreVoteRefusedStale);
            return; // It could not promise that ballot.
        }
        if ballot.leader != src {
            return; // Not its own ballot: no correct replica asks for that.
        }
        if !self.can_lead(src, state) {
            marks::hit(Mark::PreVoteRefusedNonMember);
            return; // The candidate's QUIT is decided here (or it never was a member).
        }
        marks::hit(Mark::PreVoteGranted);
        fx.send(src, Msg::PreVoteGranted { ballot });
    }

    pub(super) fn on_pre_vote_granted(
        &self,
        id: Id,
        state: &mut Cow<ReplicaState>,
        src: Id,
        ballot: Ballot,
        fx: &mut Effects,
    ) {
        // Guards: a grant counts only for the pre-vote under way, for the ballot it asks for.
        let Some((asked, mut granted)) = state.pre_vote else {
            return; // It campaigned already, or heard from a leader since.
        };
        if ballot != asked || asked != state.ballot().next_for(id) {
            return; // A grant for an earlier pre-vote, or the promise moved since.
        }
        granted.insert(src);
        let state = state.to_mut();
        if self.promises_cover_window(state, granted) && self.can_lead(id, state) {
            marks::hit(Mark::PreVoteWon);
            state.pre_vote = None;
            self.start_election(id, state, fx);
        } else {
            state.pre_vote = Some((asked, granted));
        }
    }

    /// This replica heard from the leader of its ballot: it grants no pre-vote until its
    /// election timer fires again, stops its own pre-vote, and restarts the timer.
    pub(super) fn heard_from_leader(&self, state: &mut Cow<ReplicaState>, fx: &mut Effects) {
        if self.config.pre_vote && (!state.leader_heard || state.pre_vote.is_some()) {
            let state = state.to_mut();
            state.leader_heard = true;
            state.pre_vote = None;
        }
        fx.set_timer(Timer::Election, self.config.election_timeout.clone());
    }
}
