//! Goal: state transfer streams (issue 14). A receiver keeps a window of chunks in flight and
//! takes them in any order; a newer checkpoint at the sender, or offered by anyone, does not
//! restart a transfer under way; a sender that lost the checkpoint says so. Each test failed on
//! the stop-and-wait transfer it replaced (one chunk per round trip, a newer checkpoint
//! starting the transfer over).

use smr::replica::snapshot::{compress_chunk, encode_snapshot};
use smr::replica::storage::Checkpoint;
use smr::replica::{ReplicaConfig, Storage};
use smr::Msg;
use spec::{Configuration, KvOp, Operation, Request, ServiceState};
use stateright::actor::{Command, Id};

mod common;
use common::{Output, Stepped};

const CHUNK: usize = 2;

fn ids() -> (Id, Id, Id) {
    (Id::from(0), Id::from(1), Id::from(2))
}

fn config() -> ReplicaConfig {
    let (zero, one, two) = ids();
    let mut config = ReplicaConfig::new(vec![zero, one, two]);
    config.limits.max_chunk_bytes = CHUNK;
    config
}

/// The state after `slots` slots (each a no-op).
fn state_after(slots: u64) -> ServiceState {
    let (zero, one, two) = ids();
    let mut service = ServiceState::new(Configuration::initial([zero, one, two], 1));
    for slot in 0..slots {
        service.begin_slot(slot);
    }
    service
}

/// The chunks of the checkpoint of `service` at `slot`, as a sender sends them.
fn chunks(slot: u64, service: &ServiceState) -> Vec<Msg> {
    let bytes = encode_snapshot(service);
    assert!(
        bytes.len() > 6 * CHUNK,
        "more chunks than a window and two: {}",
        bytes.len()
    );
    (0..bytes.len())
        .step_by(CHUNK)
        .map(|offset| Msg::Snapshot {
            slot,
            digest: service.digest(),
            total: bytes.len() as u64,
            offset: offset as u64,
            bytes: compress_chunk(&bytes[offset..(offset + CHUNK).min(bytes.len())]),
        })
        .collect()
}

/// The snapshot requests in `out`, as (destination, slot, offset).
fn requests(out: &[Output]) -> Vec<(Id, u64, u64)> {
    out.iter()
        .filter_map(|c| match c {
            Command::Send(dst, Msg::SnapshotRequest { slot, offset }) => {
                Some((*dst, *slot, *offset))
            }
            _ => None,
        })
        .collect()
}

/// The snapshot chunks in `out`, as (destination, slot, offset).
fn chunks_sent(out: &[Output]) -> Vec<(Id, u64, u64)> {
    out.iter()
        .filter_map(|c| match c {
            Command::Send(dst, Msg::Snapshot { slot, offset, .. }) => Some((*dst, *slot, *offset)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_receiver_keeps_a_window_of_chunk_requests_in_flight() {
    let (zero, _, two) = ids();
    let config = config();
    let window = config.limits.transfer_window as u64;
    assert!(window >= 2);
    let (mut receiver, _) = Stepped::start(config, two, Storage::default());
    let chunks = chunks(5, &state_after(5));
    // The header's length first (4 bytes: two chunks here).
    let out = receiver.deliver(zero, chunks[0].clone());
    assert_eq!(requests(&out), vec![(zero, 5, CHUNK as u64)]);
    let out = receiver.deliver(zero, chunks[1].clone());
    let expected: Vec<_> = (2..2 + window)
        .map(|k| (zero, 5, k * CHUNK as u64))
        .collect();
    assert_eq!(
        requests(&out),
        expected,
        "a window of chunks asked for at once"
    );
    // Each chunk that arrives in order opens the window by one more.
    let out = receiver.deliver(zero, chunks[2].clone());
    assert_eq!(requests(&out), vec![(zero, 5, (window + 2) * CHUNK as u64)]);
}

#[test]
fn chunks_arriving_out_of_order_are_kept_and_the_snapshot_installs() {
    let (zero, _, two) = ids();
    let (mut receiver, _) = Stepped::start(config(), two, Storage::default());
    let mut chunks = chunks(5, &state_after(5));
    receiver.deliver(zero, chunks.remove(0));
    receiver.deliver(zero, chunks.remove(0));
    // The rest arrive in reverse order, each within the window by the time it comes (the
    // window grows as the first missing chunk arrives): deliver pairs swapped.
    for pair in chunks.chunks(2) {
        for chunk in pair.iter().rev() {
            receiver.deliver(zero, chunk.clone());
        }
    }
    assert_eq!(receiver.replica().executed, 5, "the snapshot is installed");
    assert_eq!(receiver.replica().snapshots_refused, 0);
    assert!(
        smr::marks::hits().contains(&smr::marks::Mark::SnapshotChunkAhead),
        "the test reached the branch it is about"
    );
}

#[test]
fn another_checkpoint_offered_during_a_transfer_does_not_restart_it() {
    let (zero, one, two) = ids();
    let (mut receiver, _) = Stepped::start(config(), two, Storage::default());
    let older = chunks(5, &state_after(5));
    let newer = chunks(9, &state_after(9));
    receiver.deliver(zero, older[0].clone());
    receiver.deliver(zero, older[1].clone());
    // Replica 1 offers its newer checkpoint: the transfer of the older one goes on, and asks
    // the offerer for what it misses (the offerer says if it cannot serve it).
    let out = receiver.deliver(one, newer[0].clone());
    let transfer = receiver.replica().transfer.as_ref().expect("under way");
    assert_eq!(transfer.slot, 5, "the transfer under way is kept");
    assert!(smr::marks::hits().contains(&smr::marks::Mark::SnapshotTransferKept));
    assert_eq!(transfer.done, 2, "two chunks received");
    assert!(requests(&out)
        .iter()
        .all(|(dst, slot, _)| *dst == one && *slot == 5));
    assert!(requests(&out).contains(&(one, 5, 2 * CHUNK as u64)));
    for chunk in &older[2..] {
        receiver.deliver(zero, chunk.clone());
    }
    assert_eq!(
        receiver.replica().executed,
        5,
        "the older snapshot installed"
    );
}

#[test]
fn a_newer_checkpoint_at_the_sender_does_not_restart_a_transfer_under_way() {
    let (zero, one, two) = ids();
    let storage = Storage {
        checkpoint: Some(Checkpoint::of(5, &state_after(5))),
        ..Storage::default()
    };
    let (mut sender, _) = Stepped::start(config(), zero, storage);
    assert_eq!(sender.replica().executed, 5);
    // Replica 2 is behind: the sender offers it checkpoint 5.
    let out = sender.deliver(two, Msg::CatchUp { from: 0 });
    assert_eq!(chunks_sent(&out), vec![(two, 5, 0)]);
    // Meanwhile the sender moves on to checkpoint 9 (here by a transfer of its own).
    for chunk in chunks(9, &state_after(9)) {
        sender.deliver(one, chunk);
    }
    assert_eq!(sender.replica().durable.checkpoint_slot(), 9);
    // Replica 2's requests for checkpoint 5 are still served, from the lent checkpoint.
    let out = sender.deliver(
        two,
        Msg::SnapshotRequest {
            slot: 5,
            offset: CHUNK as u64,
        },
    );
    assert_eq!(chunks_sent(&out), vec![(two, 5, CHUNK as u64)]);
    assert!(smr::marks::hits().contains(&smr::marks::Mark::SnapshotLentServed));
    // So are its offers: an offer to a receiver with a loan is the lent checkpoint again.
    let out = sender.deliver(two, Msg::CatchUp { from: 0 });
    assert_eq!(chunks_sent(&out), vec![(two, 5, 0)]);
    // Once it catches up from slot 5, it installed it: the loan ends. This sender holds no
    // log after slot 5 (it got checkpoint 9 by transfer), so it offers checkpoint 9.
    let out = sender.deliver(two, Msg::CatchUp { from: 5 });
    assert_eq!(sender.replica().lent.get(&two).map(|c| c.slot), Some(9));
    assert_eq!(chunks_sent(&out), vec![(two, 9, 0)]);
}

#[test]
fn a_sender_that_no_longer_holds_the_checkpoint_says_so_and_the_transfer_starts_over() {
    let (zero, _, two) = ids();
    let storage = Storage {
        checkpoint: Some(Checkpoint::of(9, &state_after(9))),
        ..Storage::default()
    };
    // The sender restarted: checkpoint 5, lent before, is gone.
    let (mut sender, _) = Stepped::start(config(), zero, storage);
    let out = sender.deliver(
        two,
        Msg::SnapshotRequest {
            slot: 5,
            offset: CHUNK as u64,
        },
    );
    assert!(out
        .iter()
        .any(|c| matches!(c, Command::Send(dst, Msg::SnapshotGone { slot: 5 }) if *dst == two)));
    assert_eq!(
        chunks_sent(&out),
        vec![(two, 9, 0)],
        "and offers the latest"
    );

    let (mut receiver, _) = Stepped::start(config(), two, Storage::default());
    let older = chunks(5, &state_after(5));
    let newer = chunks(9, &state_after(9));
    receiver.deliver(zero, older[0].clone());
    receiver.deliver(zero, Msg::SnapshotGone { slot: 5 });
    assert!(receiver.replica().transfer.is_none(), "given up");
    assert!(smr::marks::hits().contains(&smr::marks::Mark::SnapshotAbandoned));
    for chunk in newer {
        receiver.deliver(zero, chunk);
    }
    assert_eq!(receiver.replica().executed, 9);
}

/// The state after `slots` slots, each a put of one of `keys` keys (in turn).
fn state_with_keys(slots: u64, keys: u64) -> ServiceState {
    let (zero, one, two) = ids();
    let mut service = ServiceState::new(Configuration::initial([zero, one, two], 1));
    for slot in 0..slots {
        service.begin_slot(slot);
        let op = KvOp::Put {
            key: format!("key-{}", slot % keys).into(),
            value: format!("value {slot} {}", "x".repeat(40)).into(),
        };
        let request = Request {
            client: Id::from(9),
            session: 0,
            number: slot + 1,
            op: Operation::Kv(op),
        };
        service.apply(slot, &request);
    }
    service
}

/// Runs a transfer of the checkpoint of `service` at `slot` from `sender` to `receiver`,
/// answering each request with its chunk, as a sender does; returns the bytes sent.
fn transfer(
    receiver: &mut Stepped,
    sender: Id,
    slot: u64,
    service: &ServiceState,
    chunk: usize,
) -> u64 {
    let bytes = encode_snapshot(service);
    let chunk_at = |offset: u64| {
        let start = offset as usize;
        Msg::Snapshot {
            slot,
            digest: service.digest(),
            total: bytes.len() as u64,
            offset,
            bytes: compress_chunk(&bytes[start..(start + chunk).min(bytes.len())]),
        }
    };
    let mut sent = 0;
    let mut pending = vec![0];
    while let Some(offset) = pending.pop() {
        sent += (chunk as u64).min(bytes.len() as u64 - offset);
        let message = chunk_at(offset);
        let out = receiver.deliver(sender, message);
        pending.extend(requests(&out).into_iter().map(|(_, _, offset)| offset));
    }
    sent
}

#[test]
fn a_receiver_asks_only_for_the_ranges_it_does_not_hold() {
    const BIG_CHUNK: usize = 64;
    let (zero, _, two) = ids();
    let mut config = config();
    config.limits.max_chunk_bytes = BIG_CHUNK;
    // The receiver holds the state after 2,000 puts to 2,000 keys; the sender's checkpoint is
    // 10 puts later (to the first 10 keys).
    let held = state_with_keys(2_000, 2_000);
    let newer = state_with_keys(2_010, 2_000);
    let storage = Storage {
        checkpoint: Some(Checkpoint::of(2_000, &held)),
        ..Storage::default()
    };
    let (mut receiver, _) = Stepped::start(config.clone(), two, storage);
    assert_eq!(receiver.replica().executed, 2_000);
    let sent = transfer(&mut receiver, zero, 2_010, &newer, BIG_CHUNK);
    let replica = receiver.replica();
    assert_eq!(replica.executed, 2_010, "installed");
    assert_eq!(replica.service.digest(), newer.digest());
    let stats = replica.last_transfer;
    let ranges = newer.machine.ranges().count() as u64;
    // Ten keys written since: at most ten ranges differ.
    let written = 10;
    assert_eq!(stats.ranges, ranges);
    assert!(ranges > 20, "the state has many ranges: {ranges}");
    assert!(
        stats.ranges_held >= ranges - written,
        "every range without a write is held: {stats:?}"
    );
    assert_eq!(stats.received, sent);
    assert!(
        sent * 4 < stats.total,
        "sent {sent} bytes of a snapshot of {}",
        stats.total
    );
    assert!(smr::marks::hits().contains(&smr::marks::Mark::SnapshotRangesHeld));

    // A replica that holds nothing receives every byte.
    let (mut empty, _) = Stepped::start(config, two, Storage::default());
    let sent = transfer(&mut empty, zero, 2_010, &newer, BIG_CHUNK);
    assert_eq!(empty.replica().service.digest(), newer.digest());
    assert_eq!(sent, empty.replica().last_transfer.total);
    assert_eq!(empty.replica().last_transfer.ranges_held, 0);
}

/// A snapshot whose state is not the state after the slots below the slot it is announced
/// with is refused, however well its digest matches: installed, it would be saved as a
/// checkpoint that storage refuses to replay at the next restart.
#[test]
fn a_snapshot_announced_with_another_slot_is_refused() {
    let (zero, _, two) = ids();
    let (mut receiver, _) = Stepped::start(config(), two, Storage::default());
    let service = state_after(5);
    for chunk in chunks(6, &service) {
        receiver.deliver(zero, chunk);
    }
    assert_eq!(receiver.replica().executed, 0, "not installed");
    assert_eq!(receiver.replica().snapshots_refused, 1);
}
