//! State transfer, the sending side (the receiving side is `transfer`).
//!
//! A replica offers its latest checkpoint by sending its first chunk, and *lends* that
//! checkpoint to the receiver for the length of the transfer: the checkpoint stays available
//! to that receiver while newer ones replace it here. Under load a large transfer outlives
//! many checkpoints (one every `checkpoint_interval` slots); without the loan each newer
//! checkpoint would restart it, and a large state might never arrive. Offers to a receiver
//! that holds a loan are offers of the lent checkpoint, so they resume its transfer.
//!
//! A loan ends when the receiver asks to catch up from the checkpoint's slot or later (it
//! installed it). Loans are not durable: after a crash, a request for a checkpoint this replica
//! no longer holds is answered with `SnapshotGone` and an offer of the latest one. A loan holds
//! one state per receiver at most, shared with the checkpoint it was (`Arc`).
//!
//! Each checkpoint is indexed for transfer once (`Checkpoint::index`); a chunk costs the
//! encoding of the ranges it overlaps and its compression, never an encoding of the whole
//! state (`replica::snapshot`).

use super::snapshot::{compress_chunk, SnapshotIndex};
use super::state::ReplicaState;
use super::storage::Checkpoint;
use super::Replica;
use crate::bugs::SeededBug;
use crate::effects::Effects;
use crate::marks::{self, Mark};
use crate::message::Msg;
use spec::Slot;
use stateright::actor::Id;
use std::borrow::Cow;

impl Replica {
    /// [`Replica::offer_snapshot`], from a step that may not change the state otherwise: the
    /// state is copied only for a new loan.
    pub(super) fn offer_snapshot_in(
        &self,
        state: &mut Cow<ReplicaState>,
        dst: Id,
        fx: &mut Effects,
    ) {
        match state.lent.get(&dst) {
            Some(lent) => self.send_chunk(lent, dst, 0, fx),
            None => self.offer_snapshot(state.to_mut(), dst, fx),
        }
    }

    /// Offers `dst` a snapshot: the first chunk of the checkpoint lent to it, or of the latest
    /// checkpoint, which is then lent to it.
    pub(super) fn offer_snapshot(&self, state: &mut ReplicaState, dst: Id, fx: &mut Effects) {
        let checkpoint = match state.lent.get(&dst) {
            Some(lent) => lent.clone(),
            None => {
                let Some(latest) = state.durable.checkpoint.clone() else {
                    return;
                };
                state.lent.insert(dst, latest.clone());
                latest
            }
        };
        self.send_chunk(&checkpoint, dst, 0, fx);
    }

    pub(super) fn on_snapshot_request(
        &self,
        state: &mut Cow<ReplicaState>,
        src: Id,
        slot: Slot,
        offset: u64,
        fx: &mut Effects,
    ) {
        if let Some(lent) = state.lent.get(&src).filter(|c| c.slot == slot) {
            if state.durable.checkpoint_slot() != slot {
                // The point of the loan: a newer checkpoint replaced this one here.
                marks::hit(Mark::SnapshotLentServed);
                if self
                    .config
                    .has_bug(SeededBug::TransferResumesFromWrongChunk)
                {
                    // The bug: the chunk at `offset` of the latest checkpoint, sent as the lent
                    // one's.
                    let latest = state.durable.checkpoint.as_ref().expect("newer");
                    let total = lent.index().total();
                    let len = (self.config.limits.max_chunk_bytes as u64)
                        .min(total.saturating_sub(offset));
                    let bytes = latest.index().chunk(&latest.state, offset, len);
                    let chunk = Msg::Snapshot {
                        slot,
                        digest: lent.digest,
                        total,
                        offset,
                        bytes: compress_chunk(&bytes),
                    };
                    return fx.send(src, chunk);
                }
            } else {
                marks::hit(Mark::SnapshotContinued);
            }
            return self.send_chunk(lent, src, offset, fx);
        }
        match state.durable.checkpoint.as_ref() {
            Some(latest) if latest.slot == slot => {
                // A transfer this replica did not offer (a diverged replica asks for the
                // stable checkpoint), or whose loan ended: lend the checkpoint now.
                marks::hit(Mark::SnapshotContinued);
                let latest = latest.clone();
                state.to_mut().lent.insert(src, latest.clone());
                self.send_chunk(&latest, src, offset, fx);
            }
            Some(latest) if latest.slot > slot => {
                // Gone (a crash ended its loan): say so, and offer the latest.
                marks::hit(Mark::SnapshotRestartedNewer);
                fx.send(src, Msg::SnapshotGone { slot });
                let state = state.to_mut();
                state.lent.remove(&src);
                self.offer_snapshot(state, src, fx);
            }
            _ => {}
        }
    }

    /// `dst` asks to catch up from slot `from`: it holds the state before it, so a loan of a
    /// checkpoint at or below it has served its purpose.
    pub(super) fn end_loan(&self, state: &mut Cow<ReplicaState>, dst: Id, from: Slot) {
        if state.lent.get(&dst).is_some_and(|c| c.slot <= from) {
            state.to_mut().lent.remove(&dst);
        }
    }

    /// Sends the chunk of `checkpoint` at `offset` to `dst`, compressed.
    fn send_chunk(&self, checkpoint: &Checkpoint, dst: Id, offset: u64, fx: &mut Effects) {
        let chunk = self.config.limits.max_chunk_bytes as u64;
        let (digest, total, bytes) = if self.config.has_bug(SeededBug::SnapshotWithoutSessions) {
            // The bug: the snapshot leaves the session table out (and is digested as sent).
            let mut partial = (*checkpoint.state).clone();
            partial.sessions = Default::default();
            let index = SnapshotIndex::of(&partial);
            let bytes = index.chunk(&partial, offset, chunk);
            (partial.digest(), index.total(), bytes)
        } else {
            let index = checkpoint.index();
            let bytes = index.chunk(&checkpoint.state, offset, chunk);
            (checkpoint.digest, index.total(), bytes)
        };
        fx.send(
            dst,
            Msg::Snapshot {
                slot: checkpoint.slot,
                digest,
                total,
                offset: offset.min(total),
                bytes: compress_chunk(&bytes),
            },
        );
    }
}
