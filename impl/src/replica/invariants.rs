//! Local invariants of a replica, checked after every step in debug builds, in builds with
//! the `invariants` feature (the workspace's tests), and wherever [`check_always`] turned them
//! on (`model simulate` does). A violation is a bug in this code, so it panics with the broken
//! invariant named.

use super::state::{ReplicaState, Role};
use super::Replica;
use stateright::actor::Id;
use std::sync::atomic::{AtomicBool, Ordering};

static ALWAYS: AtomicBool = AtomicBool::new(false);

/// Checks the invariants after every step from now on, whatever the build.
pub fn check_always() {
    ALWAYS.store(true, Ordering::Relaxed);
}

impl Replica {
    pub(super) fn check_invariants(&self, id: Id, state: &ReplicaState) {
        let enabled = cfg!(debug_assertions)
            || cfg!(feature = "invariants")
            || ALWAYS.load(Ordering::Relaxed);
        if !enabled || self.seeded_bug_active() {
            return;
        }
        assert_eq!(
            state.digest,
            state.compute_digest(),
            "replica {id:?}: the state changed without its digest being refreshed"
        );
        let promised = state.durable.promised;
        for (slot, accepted) in &state.durable.accepted {
            assert!(
                accepted.ballot <= promised,
                "replica {id:?} accepted {:?} at slot {slot} above its promise {promised:?}",
                accepted.ballot
            );
        }
        assert!(
            state.durable.log_start <= state.executed,
            "replica {id:?} truncated at {} beyond its executed prefix {}",
            state.durable.log_start,
            state.executed
        );
        assert_eq!(
            state.service.applied, state.executed,
            "replica {id:?}: its service state does not cover exactly the executed slots"
        );
        if let Some(checkpoint) = &state.durable.checkpoint {
            assert_eq!(
                checkpoint.state.applied, checkpoint.slot,
                "replica {id:?}: a checkpoint labelled with another slot than its state's"
            );
        }
        if state.durable.rebuilding {
            assert!(
                state.durable.accepted.is_empty(),
                "replica {id:?} accepted a value while rebuilding its storage"
            );
        }
        assert!(
            !state.log.contains_key(&state.executed),
            "replica {id:?} left decided slot {} unexecuted",
            state.executed
        );
        match &state.role {
            Role::Follower => {}
            Role::Candidate(candidacy) => {
                assert_eq!(
                    promised.leader, id,
                    "a candidate campaigns in its own ballot"
                );
                assert_eq!(
                    candidacy.promises.by.contains(id),
                    !candidacy.rebuild,
                    "replica {id:?}: a candidate counts itself unless it rebuilds its storage"
                );
                assert_eq!(candidacy.rebuild, state.durable.rebuilding);
            }
            Role::Leader(leadership) => {
                assert_eq!(promised.leader, id, "a leader leads in its own ballot");
                assert!(
                    !state.durable.rebuilding,
                    "replica {id:?} leads while rebuilding its storage"
                );
                // The α-window: nothing is proposed whose configuration is not known yet.
                let alpha = state.service.configuration.alpha;
                assert!(
                    leadership.next_slot <= state.executed + alpha,
                    "replica {id:?} proposed up to slot {} but executed only {} (alpha {alpha})",
                    leadership.next_slot,
                    state.executed
                );
                assert!(
                    state.service.configuration.includes(id),
                    "replica {id:?} leads without being a member"
                );
                assert_eq!(state.leader, Some(id));
                assert!(leadership.queue.len() <= self.config.limits.max_queue);
                for (slot, proposal) in &leadership.proposals {
                    assert!(
                        *slot < leadership.next_slot && !state.log.contains_key(slot),
                        "replica {id:?} still proposes decided or future slot {slot}"
                    );
                    assert!(proposal.votes.contains(id));
                    if *slot >= state.executed {
                        let members = state.service.configuration.members_at(*slot);
                        assert_eq!(
                            proposal.electorate,
                            super::Votes::from_ids(members),
                            "replica {id:?} counts slot {slot} in a configuration not its own"
                        );
                    }
                    let own = state.durable.accepted.get(slot);
                    assert!(
                        own.is_some_and(|a| a.ballot == promised && a.command == proposal.command),
                        "replica {id:?} proposes at slot {slot} what it did not accept itself"
                    );
                }
            }
        }
    }

    fn seeded_bug_active(&self) -> bool {
        #[cfg(feature = "seeded-bugs")]
        {
            self.config.bug.is_some()
        }
        #[cfg(not(feature = "seeded-bugs"))]
        {
            false
        }
    }
}
