//! What a replica's log says about a rebuild of lost storage: when it starts, how many of the
//! promises it needs it has, that it waits when too few replicas answer, and when it is done.
//! The actor is sans-IO; this hook reads its state after every step (a few fields, nothing
//! copied) and logs only when something changed, or every [`WAITING_EVERY`] while waiting.

use crate::node::{Node, NodeState};
use crate::replica::Role;
use crate::runtime::Hooks;
use std::time::{Duration, Instant};

/// How often a replica that is still rebuilding says so.
pub const WAITING_EVERY: Duration = Duration::from_secs(5);

/// The rebuild's progress as the log last reported it.
#[derive(Debug, Default)]
pub struct RebuildProgress {
    reported: Option<Seen>,
    last_log: Option<Instant>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    rebuilding: bool,
    /// Other replicas whose promise the rebuild counts, and how many it needs.
    promised: usize,
    needed: usize,
    executed: u64,
}

/// The rebuild's progress in a replica state: whether it rebuilds, how many other replicas
/// have promised its rebuild ballot, and how many it needs (a majority of the members, which
/// it cannot count itself in).
pub fn rebuild_progress(state: &NodeState) -> Option<(bool, usize, usize)> {
    let replica = state.replica()?;
    let promised = match &replica.role {
        Role::Candidate(candidacy) if candidacy.rebuild => candidacy.promises.by.count(),
        _ => 0,
    };
    let needed = replica.service.configuration.quorum();
    Some((replica.durable.rebuilding, promised, needed))
}

impl Hooks<Node> for RebuildProgress {
    fn should_stop(&mut self, state: &NodeState) -> bool {
        let Some((rebuilding, promised, needed)) = rebuild_progress(state) else {
            return false;
        };
        let executed = state.replica().map_or(0, |r| r.executed);
        let seen = Seen {
            rebuilding,
            promised,
            needed,
            executed,
        };
        let previous = self.reported;
        let changed = previous.is_none_or(|p| {
            (p.rebuilding, p.promised, p.needed) != (seen.rebuilding, promised, needed)
        });
        let due = self.last_log.is_none_or(|at| at.elapsed() >= WAITING_EVERY);
        match (previous.map(|p| p.rebuilding), rebuilding) {
            (Some(true), false) => {
                tracing::info!(
                    executed,
                    "storage rebuilt from a quorum of the other replicas: this replica votes again"
                );
            }
            (_, true) if changed || due => {
                tracing::warn!(
                    promised,
                    needed,
                    executed,
                    "rebuilding lost storage: casting no vote until {needed} other replicas have told this one what it may have promised or accepted ({promised} so far); it waits for them if fewer are up"
                );
            }
            _ => return false,
        }
        self.reported = Some(seen);
        self.last_log = Some(Instant::now());
        false
    }
}
