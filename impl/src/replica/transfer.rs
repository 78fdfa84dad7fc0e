//! State transfer, the receiving side: a replica that is behind the others' truncation point,
//! that restarted from old storage, or whose state diverged, gets a checkpoint from a peer in
//! chunks that each fit a datagram (the sending side is `lending`).
//!
//! The receiver keeps a window of chunk requests in flight (`Limits::transfer_window`) and
//! takes chunks in any order within it, so a transfer runs at the pace of the network, not of
//! one round trip per chunk. Each chunk arrives LZ4-compressed on its own; one that claims to
//! decompress to more than a chunk is ignored unopened. It keeps the decisions it learns
//! meanwhile and executes them after installing the snapshot. Before installing, it decodes the snapshot (which checks the
//! state's invariants) and compares its digest with the announced one; a snapshot that does not
//! match is refused and counted (no correct sender sends one: the model checks that it never
//! happens).
//!
//! Only what differs is sent. The snapshot's header comes first (`replica::snapshot`); it
//! lists the key-value machine's ranges with their digests, and the receiver then asks only for
//! the ranges it does not hold with the same digest, taking the others from its own state. A
//! replica that restarted from storage a little behind, or missed a few writes, so receives
//! little more than the header.
//!
//! Nothing restarts a transfer under way but its sender saying it can no longer serve it
//! (`SnapshotGone`). The first chunk of this transfer again (the sender's next offer) or of
//! another checkpoint (a newer offer) is answered by asking again for every chunk of the window
//! still missing: that is how a lost chunk or request is recovered, and a follower also does it
//! on each heartbeat of its leader (`checkpoint::resend_one_shots`).

use super::snapshot::{
    assemble, decode_layout, decompress_chunk, header_end, IndexCache, RangeSource, LENGTH_BYTES,
};
use super::state::{Plan, ReplicaState, Transfer, TransferStats};
use super::storage::Checkpoint;
use super::Replica;
use crate::effects::Effects;
use crate::marks::{self, Mark};
use crate::message::Msg;
use spec::digest::{digest_of, SetDigest};
use spec::{Digest, KvStore, ServiceState, Slot};
use stateright::actor::Id;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

impl Replica {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_snapshot(
        &self,
        id: Id,
        state: &mut Cow<ReplicaState>,
        src: Id,
        slot: Slot,
        digest: Digest,
        total: u64,
        offset: u64,
        bytes: Vec<u8>,
        fx: &mut Effects,
    ) {
        let limits = &self.config.limits;
        let chunk = limits.max_chunk_bytes as u64;
        let ignored = || marks::hit(Mark::SnapshotChunkIgnored);
        // Guards. A checkpoint no newer than what this replica executed is of no use (unless
        // its state diverged). A chunk must lie inside the snapshot and be cut as senders cut
        // them, and the snapshot be within the size this replica accepts.
        if slot <= state.executed && !state.diverged {
            return ignored();
        }
        if total > limits.max_snapshot_bytes || total < LENGTH_BYTES || offset >= total {
            return ignored();
        }
        let Ok(bytes) = decompress_chunk(&bytes, chunk) else {
            return ignored();
        };
        if bytes.len() as u64 != chunk.min(total - offset) {
            return ignored();
        }
        let under_way = state
            .transfer
            .as_ref()
            .filter(|t| t.slot > state.executed || state.diverged);
        match under_way {
            Some(transfer) if transfer.is_of(slot, digest, total) => {
                if offset == 0 && transfer.chunks.contains_key(&0) {
                    // The first chunk again: the sender offers this transfer again (a
                    // catch-up, or its resend to a joiner), so a chunk or a request of ours
                    // may have been lost. Ask again for every chunk of the window missing.
                    marks::hit(Mark::SnapshotResumed);
                    let transfer = state.to_mut().transfer.as_mut().expect("under way");
                    return self.request_window(transfer, src, true, fx);
                }
            }
            Some(_) if offset == 0 => {
                // Another checkpoint offered while a transfer is under way: keep the transfer
                // (its sender still holds its checkpoint, lent to it) and ask for what it
                // misses. If the sender no longer holds it, it says so, and then this offer
                // is taken up the next time it comes.
                marks::hit(Mark::SnapshotTransferKept);
                let transfer = state.to_mut().transfer.as_mut().expect("under way");
                return self.request_window(transfer, src, true, fx);
            }
            Some(_) => return ignored(),
            // A transfer starts with its first chunk: chunks of an unknown transfer are late
            // copies of one that ended.
            None if offset != 0 => return ignored(),
            None => {
                state.to_mut().transfer = Some(Transfer::new(slot, digest, total, chunk));
            }
        }
        let transfer = state.transfer.as_ref().expect("under way");
        if !transfer.wants(offset, limits.transfer_window) {
            // Received already, or not one of the window's (a request this replica did not
            // make, or a chunk of a range it holds).
            return ignored();
        }
        if transfer.needed[transfer.done] != offset {
            marks::hit(Mark::SnapshotChunkAhead);
        }
        let state = state.to_mut();
        let transfer = state.transfer.as_mut().expect("under way");
        transfer.insert(offset, bytes);
        if plan(transfer, &state.service.machine).is_err() {
            // A header that does not decode: not the snapshot announced (see below).
            state.transfer = None;
            state.snapshots_refused += 1;
            return;
        }
        if !transfer.is_complete() {
            return self.request_window(transfer, src, false, fx);
        }
        let transfer = state.transfer.take().expect("under way");
        match assemble_transfer(&transfer) {
            // The state after the slots below `slot`, as announced: a checkpoint saved under
            // another label would not replay (`StorageChange::CheckpointDelta`).
            Ok(service) if service.digest() == digest && service.applied == slot => {
                self.install(id, state, src, slot, service, &transfer, fx);
            }
            _ => {
                // Not the snapshot announced: damaged, or assembled wrongly. Not marked: no
                // correct replica gets here in the model (see `marks`). The next offer starts
                // over.
                state.snapshots_refused += 1;
            }
        }
    }

    /// The sender of a transfer under way no longer holds its checkpoint: give it up. The
    /// sender's next offer starts a transfer of a newer one.
    pub(super) fn on_snapshot_gone(&self, state: &mut Cow<ReplicaState>, slot: Slot) {
        if state.transfer.as_ref().is_some_and(|t| t.slot == slot) {
            marks::hit(Mark::SnapshotAbandoned);
            state.to_mut().transfer = None;
        }
    }

    /// Asks `dst` for the chunks of the window that are missing: those not asked for yet, or
    /// (`again`) every one not received.
    pub(super) fn request_window(
        &self,
        transfer: &mut Transfer,
        dst: Id,
        again: bool,
        fx: &mut Effects,
    ) {
        let end = transfer.window_end(self.config.limits.transfer_window);
        let from = if again {
            transfer.done
        } else {
            transfer.requested.max(transfer.done)
        };
        let slot = transfer.slot;
        for &offset in &transfer.needed[from.min(end)..end] {
            if !transfer.chunks.contains_key(&offset) {
                marks::hit(Mark::SnapshotNextChunkRequested);
                fx.send(dst, Msg::SnapshotRequest { slot, offset });
            }
        }
        transfer.requested = transfer.requested.max(end);
    }

    /// Installs a verified snapshot of the state after the slots below `slot`, assembled by
    /// `transfer`.
    #[allow(clippy::too_many_arguments)]
    fn install(
        &self,
        id: Id,
        state: &mut ReplicaState,
        src: Id,
        slot: Slot,
        service: ServiceState,
        transfer: &Transfer,
        fx: &mut Effects,
    ) {
        let joined = !self.participates(id, state) && service.configuration.includes(id);
        let plan = transfer.plan.as_ref().expect("complete");
        state.last_transfer = TransferStats {
            total: transfer.total,
            received: transfer.bytes_received(),
            ranges: plan.layout.ranges() as u64,
            ranges_held: plan.held.len() as u64,
        };
        if !plan.held.is_empty() {
            marks::hit(Mark::SnapshotRangesHeld);
        }
        let checkpoint = Checkpoint {
            slot,
            digest: service.digest(),
            state: Arc::new(service.clone()),
            index: IndexCache::default(),
        };
        state.service = service;
        state.executed = slot;
        state.log = state.log.split_off(&slot);
        state.durable.checkpoint = Some(checkpoint);
        state.diverged = false;
        state.snapshots_installed += 1;
        marks::hit(Mark::SnapshotInstalled);
        fx.persist();
        // Decisions learned while the transfer ran follow the snapshot.
        self.execute(id, state, fx);
        if joined {
            // A joiner now holds a state that includes it: it gets the log suffix from the
            // leader that pushed the state (which then asks it for its promise again, in case
            // the first Prepare arrived before the state did). Its election timer starts with
            // the first Accept or heartbeat of the leader, as every follower's does.
            marks::hit(Mark::JoinerInstalled);
            fx.send(
                src,
                Msg::CatchUp {
                    from: state.executed,
                },
            );
        }
    }
}

/// Extends what `transfer` needs as its beginning arrives: once the header's length is in,
/// the chunks of the header; once the header is in, the chunks of the ranges `machine` does not
/// hold with the digest the header gives. Fails on a header that does not decode.
fn plan(transfer: &mut Transfer, machine: &KvStore) -> Result<(), String> {
    if transfer.plan.is_some() || !transfer.has_needed() {
        return Ok(());
    }
    let end = match transfer.header_end {
        Some(end) => end,
        None => {
            let prefix = transfer.bytes(0, LENGTH_BYTES).expect("needed first");
            let end = header_end(&prefix).expect("long enough");
            if end > transfer.total {
                return Err(format!(
                    "a header of {end} bytes in a snapshot of {}",
                    transfer.total
                ));
            }
            transfer.header_end = Some(end);
            transfer.need(0, end);
            if !transfer.has_needed() {
                return Ok(());
            }
            end
        }
    };
    let header = transfer.bytes(0, end).expect("needed");
    let layout = decode_layout(&header, transfer.total)?;
    let mut held = BTreeMap::new();
    let mut held_digest = SetDigest::default();
    for span in layout.spans() {
        match machine
            .range(span.start)
            .filter(|r| r.digest() == span.digest)
        {
            Some(range) => {
                held.insert(span.start.clone(), range.clone());
                held_digest.add(digest_of(&(span.start, span.digest)));
            }
            None => transfer.need(span.from, span.to),
        }
    }
    transfer.plan = Some(Arc::new(Plan {
        layout,
        held,
        held_digest: held_digest.value(),
    }));
    Ok(())
}

/// The state a complete transfer holds: its ranges from the chunks received, or held here.
fn assemble_transfer(transfer: &Transfer) -> Result<ServiceState, String> {
    let plan = transfer.plan.as_ref().expect("complete");
    assemble(&plan.layout, |span| match plan.held.get(span.start) {
        Some(range) => Ok(RangeSource::Held(range.clone())),
        None => transfer
            .bytes(span.from, span.to)
            .map(|bytes| RangeSource::Bytes(Cow::Owned(bytes)))
            .ok_or_else(|| "a range not received".to_string()),
    })
}
