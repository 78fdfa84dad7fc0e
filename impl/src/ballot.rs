//! Ballots order leaderships (Lamport, "Paxos Made Simple", section 2.2): a ballot is a round
//! number with the proposing replica's id as tie-breaker, so two replicas never use the same
//! ballot and any two ballots are ordered.

use serde::{Deserialize, Serialize};
use stateright::actor::Id;
use std::fmt;

/// A ballot: ordered by round, then by the id of the replica that owns it.
/// `Ballot::default()` is round 0, lower than every ballot a replica can start, and the initial
/// promise of every acceptor.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Ballot {
    pub round: u32,
    pub leader: Id,
}

impl Ballot {
    /// The first ballot of `leader` above `self`.
    pub fn next_for(self, leader: Id) -> Ballot {
        Ballot {
            round: self.round + 1,
            leader,
        }
    }
}

impl fmt::Debug for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b{}.{}", self.round, usize::from(self.leader))
    }
}
