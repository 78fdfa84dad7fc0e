//! State transfer, the receiving side: a replica that is behind the others' truncation point,
//! that restarted from old storage, or whose state diverged, gets a checkpoint from a peer in
//! chunks that each fit a datagram (the sending side is `lending`).
//!
//! The receiver keeps a window of chunk requests in flight (`Limits::transfer_window`) and
//! takes chunks in any order within it, so a transfer runs at the pace of the network, not of
//! one round trip per chunk. It keeps the decisions it learns meanwhile and executes them after
//! installing the snapshot. Before installing, it decodes the snapshot (which checks the
//! state's invariants) and compares its digest with the announced one; a snapshot that does not
//! match is refused and counted (no correct sender sends one: the model checks that it never
//! happens).
//!
//! Nothing restarts a transfer under way but its sender saying it can no longer serve it
//! (`SnapshotGone`). The first chunk of this transfer again (the sender's next offer) or of
//! another checkpoint (a newer offer) is answered by asking again for every chunk of the window
//! still missing: that is how a lost chunk or request is recovered, and a follower also does it
//! on each heartbeat of its leader (`checkpoint::resend_one_shots`).

use super::state::{ReplicaState, Transfer};
use super::storage::Checkpoint;
use super::Replica;
use crate::effects::Effects;
use crate::marks::{self, Mark};
use crate::message::Msg;
use spec::{Digest, ServiceState, Slot};
use stateright::actor::Id;
use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

/// Encodes a service state for transfer: postcard, compressed with LZ4 (keys, values and
/// session answers are often repetitive text; LZ4 costs little CPU either way), prefixed with
/// the uncompressed size.
pub fn encode_snapshot(state: &ServiceState) -> Vec<u8> {
    let encoded = postcard::to_allocvec(state).expect("a service state always encodes");
    lz4_flex::compress_prepend_size(&encoded)
}

/// Decodes a transferred service state, checking its invariants, and refusing before any
/// allocation a snapshot that says it decompresses to more than `max_bytes`.
pub fn decode_snapshot(bytes: &[u8], max_bytes: u64) -> Result<ServiceState, String> {
    let size = bytes
        .first_chunk::<4>()
        .map(|prefix| u32::from_le_bytes(*prefix))
        .ok_or("a snapshot shorter than its size prefix")?;
    if u64::from(size) > max_bytes {
        return Err(format!(
            "a snapshot of {size} bytes decompressed, above the limit of {max_bytes}"
        ));
    }
    let encoded = lz4_flex::decompress_size_prepended(bytes).map_err(|e| e.to_string())?;
    postcard::from_bytes(&encoded).map_err(|e| e.to_string())
}

/// A checkpoint's encoding for transfer, made once and shared by every copy of the checkpoint
/// (`Checkpoint::encoded`). It is derived from the checkpoint's state, so it takes no part in
/// comparing checkpoints.
#[derive(Clone, Default)]
pub struct EncodedSnapshot(Arc<OnceLock<Arc<[u8]>>>);

impl EncodedSnapshot {
    /// The encoding of `state`, made at the first call.
    pub fn get_or_encode(&self, state: &ServiceState) -> Arc<[u8]> {
        self.0.get_or_init(|| encode_snapshot(state).into()).clone()
    }

    /// The encoding's length, if it was made already (without making it).
    pub fn len_if_encoded(&self) -> Option<usize> {
        self.0.get().map(|bytes| bytes.len())
    }

    /// An encoding already known (the bytes a transfer received), kept for later transfers.
    fn known(bytes: Vec<u8>) -> Self {
        let cell = OnceLock::new();
        let _ = cell.set(bytes.into());
        EncodedSnapshot(Arc::new(cell))
    }
}

impl PartialEq for EncodedSnapshot {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for EncodedSnapshot {}

impl std::fmt::Debug for EncodedSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.get() {
            Some(bytes) => write!(f, "EncodedSnapshot({} bytes)", bytes.len()),
            None => write!(f, "EncodedSnapshot(not yet)"),
        }
    }
}

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
        let ignored = || marks::hit(Mark::SnapshotChunkIgnored);
        // Guards. A checkpoint no newer than what this replica executed is of no use (unless
        // its state diverged). A chunk must lie inside the snapshot, at a chunk boundary, and
        // the snapshot within the size this replica accepts.
        if slot <= state.executed && !state.diverged {
            return ignored();
        }
        let len = bytes.len() as u64;
        if total > limits.max_snapshot_bytes
            || offset.checked_add(len).is_none_or(|end| end > total)
            || offset % limits.max_chunk_bytes as u64 != 0
            || (len == 0 && total > 0)
        {
            return ignored();
        }
        let under_way = state
            .transfer
            .as_ref()
            .filter(|t| t.slot > state.executed || state.diverged);
        match under_way {
            Some(transfer) if transfer.is_of(slot, digest, total) => {
                if offset == 0 && transfer.received_in_order() > 0 {
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
            None => state.to_mut().transfer = Some(Transfer::new(slot, digest, total)),
        }
        let window_end = |t: &Transfer| t.received_in_order() + self.window_bytes();
        let transfer = state.transfer.as_ref().expect("under way");
        if offset < transfer.received_in_order()
            || transfer.ahead.contains_key(&offset)
            || offset >= window_end(transfer)
        {
            // Received already, or beyond the window (a request this replica did not make).
            return ignored();
        }
        if offset > transfer.received_in_order() {
            marks::hit(Mark::SnapshotChunkAhead);
        }
        let state = state.to_mut();
        let transfer = state.transfer.as_mut().expect("under way");
        transfer.insert(offset, bytes);
        if !transfer.is_complete() {
            return self.request_window(transfer, src, false, fx);
        }
        let transfer = state.transfer.take().expect("under way");
        match decode_snapshot(&transfer.bytes, limits.max_snapshot_bytes) {
            Ok(service) if service.digest() == digest => {
                self.install(id, state, src, slot, service, transfer.bytes, fx);
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

    /// The bytes of a window of chunks.
    fn window_bytes(&self) -> u64 {
        let limits = &self.config.limits;
        (limits.transfer_window * limits.max_chunk_bytes) as u64
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
        let chunk = self.config.limits.max_chunk_bytes as u64;
        let start = transfer.received_in_order();
        let end = transfer.total.min(start + self.window_bytes());
        let from = if again {
            start
        } else {
            transfer.requested.max(start)
        };
        let slot = transfer.slot;
        for offset in (from..end).step_by(chunk as usize) {
            if !transfer.ahead.contains_key(&offset) {
                marks::hit(Mark::SnapshotNextChunkRequested);
                fx.send(dst, Msg::SnapshotRequest { slot, offset });
            }
        }
        transfer.requested = transfer.requested.max(end);
    }

    /// Installs a verified snapshot of the state after the slots below `slot`; `encoded` is
    /// its encoding, kept for this replica's own transfers.
    #[allow(clippy::too_many_arguments)]
    fn install(
        &self,
        id: Id,
        state: &mut ReplicaState,
        src: Id,
        slot: Slot,
        service: ServiceState,
        encoded: Vec<u8>,
        fx: &mut Effects,
    ) {
        let joined = !self.participates(id, state) && service.configuration.includes(id);
        let checkpoint = Checkpoint {
            slot,
            digest: service.digest(),
            state: Arc::new(service.clone()),
            encoded: EncodedSnapshot::known(encoded),
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

#[cfg(test)]
mod tests {
    use super::*;
    use spec::Configuration;

    #[test]
    fn a_checkpoint_is_encoded_once_and_its_copies_share_the_encoding() {
        let state = ServiceState::new(Configuration::initial([Id::from(0)], 1));
        let checkpoint = Checkpoint::of(1, &state);
        let copy = checkpoint.clone();
        let first = checkpoint.encoded();
        assert!(Arc::ptr_eq(&first, &checkpoint.encoded()), "encoded once");
        assert!(Arc::ptr_eq(&first, &copy.encoded()), "shared by copies");
        assert_eq!(decode_snapshot(&first, 1 << 20).unwrap(), state);
    }

    #[test]
    fn a_snapshot_that_claims_to_decompress_beyond_the_limit_is_refused_before_allocating() {
        let state = ServiceState::new(Configuration::initial([Id::from(0)], 1));
        let mut bytes = encode_snapshot(&state);
        bytes[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        let error = decode_snapshot(&bytes, 1 << 20).unwrap_err();
        assert!(error.contains("above the limit"), "{error}");
        assert!(decode_snapshot(&[1, 2], 1 << 20).is_err(), "too short");
    }
}
