//! State transfer: a replica that is behind the others' truncation point, that restarted from
//! old storage, or whose state diverged, gets a checkpoint from a peer, in chunks that each fit
//! a datagram. It keeps the decisions it learns meanwhile and executes them after installing the
//! snapshot. Before installing, it decodes the snapshot (which checks the state's invariants)
//! and compares its digest with the announced one; a bad or stale snapshot is refused. A lost
//! chunk or request does not stall a transfer: the sender sends the first chunk again (on the
//! next catch-up, or to a joiner on its heartbeat), and the receiver answers it with a request
//! for the chunk it is missing.

use super::state::{ReplicaState, Transfer};
use super::storage::Checkpoint;
use super::Replica;
use crate::bugs::SeededBug;
use crate::effects::Effects;
use crate::marks::{self, Mark};
use crate::message::Msg;
use spec::{Digest, ServiceState, Slot};
use stateright::actor::Id;
use std::borrow::Cow;
use std::sync::Arc;

/// Encodes a service state for transfer.
pub fn encode_snapshot(state: &ServiceState) -> Vec<u8> {
    postcard::to_allocvec(state).expect("a service state always encodes")
}

/// Decodes a transferred service state, checking its invariants.
pub fn decode_snapshot(bytes: &[u8]) -> Result<ServiceState, String> {
    postcard::from_bytes(bytes).map_err(|e| e.to_string())
}

impl Replica {
    /// The snapshot this replica hands out: its latest checkpoint, encoded.
    fn outgoing_snapshot(&self, state: &ReplicaState) -> Option<(Slot, Digest, Vec<u8>)> {
        let checkpoint = state.durable.checkpoint.as_ref()?;
        if self.config.has_bug(SeededBug::SnapshotWithoutSessions) {
            // The bug: the snapshot leaves the session table out (and is digested as sent).
            let mut partial = (*checkpoint.state).clone();
            partial.sessions = Default::default();
            let digest = partial.digest();
            return Some((checkpoint.slot, digest, encode_snapshot(&partial)));
        }
        Some((
            checkpoint.slot,
            checkpoint.digest,
            encode_snapshot(&checkpoint.state),
        ))
    }

    /// Sends the chunk at `offset` of this replica's latest checkpoint to `dst`.
    pub(super) fn send_snapshot_chunk(
        &self,
        state: &ReplicaState,
        dst: Id,
        offset: u64,
        fx: &mut Effects,
    ) {
        let Some((slot, digest, bytes)) = self.outgoing_snapshot(state) else {
            return;
        };
        let total = bytes.len() as u64;
        let start = offset.min(total) as usize;
        let end = (start + self.config.limits.max_chunk_bytes).min(bytes.len());
        fx.send(
            dst,
            Msg::Snapshot {
                slot,
                digest,
                total,
                offset: start as u64,
                bytes: bytes[start..end].to_vec(),
            },
        );
    }

    pub(super) fn on_snapshot_request(
        &self,
        state: &mut Cow<ReplicaState>,
        src: Id,
        slot: Slot,
        offset: u64,
        fx: &mut Effects,
    ) {
        match state.durable.checkpoint.as_ref() {
            // The same checkpoint: continue it. A newer one: start that one over.
            Some(c) if c.slot == slot => {
                marks::hit(Mark::SnapshotContinued);
                self.send_snapshot_chunk(state, src, offset, fx)
            }
            Some(c) if c.slot > slot => {
                marks::hit(Mark::SnapshotRestartedNewer);
                self.send_snapshot_chunk(state, src, 0, fx)
            }
            _ => {}
        }
    }

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
        let stale = slot <= state.executed && !state.diverged;
        let too_large = total > self.config.limits.max_snapshot_bytes;
        let expected_offset = match &state.transfer {
            Some(t) if t.slot == slot && t.digest == digest && t.total == total => {
                t.bytes.len() as u64
            }
            Some(t) if t.slot > slot => {
                marks::hit(Mark::SnapshotChunkIgnored);
                return; // A newer transfer is under way.
            }
            _ => 0,
        };
        let same_transfer = state
            .transfer
            .as_ref()
            .is_some_and(|t| t.slot == slot && t.digest == digest && t.total == total);
        if same_transfer && offset == 0 && expected_offset > 0 && !stale {
            // The first chunk again: the sender started over (a catch-up, or the first chunk
            // resent to a joiner), so a chunk or a request of ours may have been lost. Resume
            // where this transfer is. Only the first chunk does this: a late copy of any other
            // chunk is dropped, so a resumed stream dies at its first duplicate instead of
            // running alongside the first one.
            marks::hit(Mark::SnapshotResumed);
            fx.send(
                src,
                Msg::SnapshotRequest {
                    slot,
                    offset: expected_offset,
                },
            );
            return;
        }
        let fits = offset + bytes.len() as u64 <= total;
        if stale
            || too_large
            || offset != expected_offset
            || !fits
            || (bytes.is_empty() && total > 0)
        {
            marks::hit(Mark::SnapshotChunkIgnored);
            return;
        }
        let state = state.to_mut();
        let transfer = state.transfer.get_or_insert_with(|| Transfer {
            slot,
            digest,
            total,
            bytes: Vec::new(),
        });
        if transfer.slot != slot || transfer.digest != digest || transfer.total != total {
            *transfer = Transfer {
                slot,
                digest,
                total,
                bytes: Vec::new(),
            };
        }
        transfer.bytes.extend_from_slice(&bytes);
        if (transfer.bytes.len() as u64) < total {
            marks::hit(Mark::SnapshotNextChunkRequested);
            fx.send(
                src,
                Msg::SnapshotRequest {
                    slot,
                    offset: transfer.bytes.len() as u64,
                },
            );
            return;
        }
        let transfer = state.transfer.take().expect("present above");
        match decode_snapshot(&transfer.bytes) {
            Ok(service) if service.digest() == digest => {
                self.install(id, state, src, slot, service, fx);
            }
            // Refused: damaged in transit or inconsistent. A later catch-up starts over.
            _ => {}
        }
    }

    /// Installs a verified snapshot of the state after the slots below `slot`.
    fn install(
        &self,
        id: Id,
        state: &mut ReplicaState,
        src: Id,
        slot: Slot,
        service: ServiceState,
        fx: &mut Effects,
    ) {
        let joined = !self.participates(id, state) && service.configuration.includes(id);
        let checkpoint = Checkpoint {
            slot,
            digest: service.digest(),
            state: Arc::new(service.clone()),
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
