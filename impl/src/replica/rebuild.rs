//! Rebuilding lost storage (proofs/RECOVERY.md).
//!
//! A replica whose storage was lost or damaged starts from [`Storage::lost`]: nothing,
//! marked `rebuilding`. Until the rebuild completes it casts no vote: it answers no Prepare
//! and no Accept, sends no checkpoint vote, serves no client. It learns like any lagging
//! replica (catch-up and state transfer). Then it rebuilds with an election of its own in a
//! fresh ballot `F`, in which its own promise does not count: every acceptor that promises `F`
//! first records `F` as the replica's new life, so that promises from its earlier life are
//! void; and the promises of a quorum of the *other* replicas tell it everything it may have
//! accepted. Winning that election makes their values its accepted ones, and it leads `F`.
//!
//! [`Storage::lost`]: super::storage::Storage::lost

use super::state::{Candidacy, ReplicaState, Role};
use super::Replica;
use crate::ballot::Ballot;
use crate::effects::Effects;
use crate::marks::{self, Mark};
use crate::message::Msg;
use spec::Slot;
use stateright::actor::Id;
use std::borrow::Cow;

impl Replica {
    /// A heartbeat reaches a replica that is rebuilding: it learns who leads and how far, and
    /// catches up; once it is within the leader's window it rebuilds (an election timeout
    /// starts the rebuild too, when no leader is heard from).
    pub(super) fn on_heartbeat_while_rebuilding(
        &self,
        id: Id,
        state: &mut Cow<ReplicaState>,
        src: Id,
        ballot: Ballot,
        commit: Slot,
        fx: &mut Effects,
    ) {
        if ballot < state.ballot() {
            return; // A deposed leader: its commit point says nothing new.
        }
        if state.leader != Some(src) {
            state.to_mut().leader = Some(src);
        }
        if matches!(state.role, Role::Candidate(_)) {
            // A rebuild under way is left to its election timer, which starts it over in a
            // higher ballot if its promises do not come (heartbeats would hold it off forever).
            return;
        }
        self.heard_from_leader(state, fx);
        let alpha = state.service.configuration.alpha;
        if commit > state.executed + alpha {
            if state.transfer.is_none() {
                marks::hit(Mark::RebuildCatchesUp);
                fx.send(
                    src,
                    Msg::CatchUp {
                        from: state.executed,
                    },
                );
            }
            return;
        }
        if self.can_lead(id, state) {
            marks::hit(Mark::RebuildStartedByHeartbeat);
            self.start_election(id, state.to_mut(), fx);
        }
    }

    /// The rebuild election is won: the values the others reported become this replica's
    /// accepted values, their highest log start its log start, and `F` its life.
    pub(super) fn complete_rebuild(
        &self,
        id: Id,
        state: &mut ReplicaState,
        candidacy: &mut Candidacy,
        fx: &mut Effects,
    ) {
        let durable = &mut state.durable;
        debug_assert!(durable.rebuilding && durable.accepted.is_empty());
        debug_assert!(candidacy.log_start <= durable.checkpoint_slot());
        marks::hit(Mark::RebuildCompleted);
        let life = durable.promised;
        durable.rebuilding = false;
        durable.rebuilt.insert(id, life);
        durable.log_start = candidacy.log_start;
        durable.accepted = candidacy.adopted.split_off(&candidacy.log_start);
        fx.persist();
        candidacy.adopted = durable.accepted.clone();
        candidacy.promises.by.insert(id);
        candidacy.promises.lives.insert(id, life);
    }
}
