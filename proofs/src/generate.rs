//! Proptest generators of protocol values.
//!
//! Keys, values and ids come from small sets, so that generated operations collide (a get reads
//! what a put wrote, a compare-and-set finds the value it expects) often enough to matter.
//! Ballots, slots and request numbers range widely, so that values far beyond the model
//! checker's bounds are exercised too.

use proptest::collection::{btree_map, btree_set, vec};
use proptest::prelude::*;
use smr::message::AcceptedEntry;
use smr::replica::{Accepted, Checkpoint, Storage, Votes};
use smr::{Ballot, Msg};
use spec::{
    Change, ChangeOutput, Command, Configuration, KvOp, KvOutput, Operation, Output, Request,
    ServiceState, Session, SessionOutput, StateMachine,
};
use stateright::actor::Id;
use std::collections::BTreeSet;

/// Replica and client ids (below 64, the bound of a vote set).
pub fn id() -> impl Strategy<Value = Id> {
    (0usize..8).prop_map(Id::from)
}

/// A ballot: small rounds most of the time, any round sometimes.
pub fn ballot() -> impl Strategy<Value = Ballot> {
    let round = prop_oneof![4 => 0u32..8, 1 => any::<u32>()];
    (round, id()).prop_map(|(round, leader)| Ballot { round, leader })
}

/// A slot: small most of the time, large sometimes.
pub fn slot() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0u64..16, 1 => any::<u64>()]
}

fn key() -> impl Strategy<Value = spec::Key> {
    prop_oneof![Just("a"), Just("b"), Just("k")].prop_map(Into::into)
}

fn value() -> impl Strategy<Value = spec::Value> {
    prop_oneof![
        Just("1"),
        Just("2"),
        Just("a somewhat longer value, stored on the heap")
    ]
    .prop_map(Into::into)
}

/// An operation on the key-value machine.
pub fn kv_op() -> impl Strategy<Value = KvOp> {
    prop_oneof![
        key().prop_map(|key| KvOp::Get { key }),
        (key(), value()).prop_map(|(key, value)| KvOp::Put { key, value }),
        key().prop_map(|key| KvOp::Delete { key }),
        (key(), proptest::option::of(value()), value())
            .prop_map(|(key, expected, new)| KvOp::Cas { key, expected, new }),
    ]
}

/// A membership change.
pub fn change() -> impl Strategy<Value = Change> {
    prop_oneof![id().prop_map(Change::Join), id().prop_map(Change::Quit)]
}

/// Any client operation.
pub fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        4 => kv_op().prop_map(Operation::Kv),
        1 => change().prop_map(Operation::Reconfigure),
        1 => Just(Operation::OpenSession),
    ]
}

/// Members of a configuration: at least two (a QUIT never leaves fewer, see
/// `spec::configuration::MIN_MEMBERS`) of the replicas 0 to 4.
fn members() -> impl Strategy<Value = BTreeSet<Id>> {
    btree_set((0usize..5).prop_map(Id::from), 2..=5)
}

/// Any answer of the service.
pub fn output() -> impl Strategy<Value = Output> {
    let kv = prop_oneof![
        proptest::option::of(value()).prop_map(KvOutput::Value),
        Just(KvOutput::Written),
        any::<bool>().prop_map(KvOutput::Deleted),
        (any::<bool>(), proptest::option::of(value()))
            .prop_map(|(swapped, previous)| KvOutput::Cas { swapped, previous }),
    ];
    let change = prop_oneof![
        (any::<u64>(), members(), slot()).prop_map(|(epoch, members, from)| {
            ChangeOutput::Accepted {
                epoch,
                members,
                from,
            }
        }),
        "[a-z ]{0,20}".prop_map(ChangeOutput::Refused),
    ];
    let session = prop_oneof![
        any::<u64>().prop_map(SessionOutput::Opened),
        Just(SessionOutput::Expired),
    ];
    prop_oneof![
        kv.prop_map(Output::Kv),
        change.prop_map(Output::Reconfigure),
        session.prop_map(Output::Session),
    ]
}

/// A client request.
pub fn request() -> impl Strategy<Value = Request> {
    (
        id(),
        prop_oneof![Just(spec::IMPLICIT), any::<u64>()],
        prop_oneof![1u64..4, any::<u64>()],
        operation(),
    )
        .prop_map(|(client, session, number, op)| Request {
            client,
            session,
            number,
            op,
        })
}

/// A log command.
pub fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        Just(Command::Noop),
        Just(Command::Checkpoint),
        vec(request(), 0..4).prop_map(Command::batch),
    ]
}

/// A set of votes.
pub fn votes() -> impl Strategy<Value = Votes> {
    btree_set(id(), 0..6).prop_map(|ids| Votes::from_ids(&ids))
}

/// The α of generated configurations: a cluster's α is its leaders' pipeline window, so a
/// test that runs a replica on a generated state gives it this window.
pub const ALPHA: u64 = 3;

/// A valid configuration (members, possibly a pending change, α = [`ALPHA`]).
pub fn configuration() -> impl Strategy<Value = Configuration> {
    (
        members(),
        any::<u64>(),
        proptest::option::of((members(), slot())),
    )
        .prop_map(|(members, epoch, pending)| {
            let mut configuration = Configuration::initial(members, ALPHA);
            configuration.epoch = epoch;
            configuration.pending =
                pending.map(|(members, from)| spec::configuration::Pending { from, members });
            configuration
        })
}

/// A valid service state: a machine built by applying operations, sessions (in a table that
/// may be full, so that some were retired), a configuration.
pub fn service_state() -> impl Strategy<Value = ServiceState> {
    (
        vec(kv_op(), 0..12),
        vec((id(), 0u64..3, 1u64..10, slot(), output()), 0..6),
        1usize..6,
        configuration(),
    )
        .prop_map(|(ops, sessions, max_sessions, configuration)| {
            let mut state = ServiceState::new(configuration).with_max_sessions(max_sessions);
            for op in &ops {
                state.machine.apply(op);
            }
            for (client, incarnation, number, slot, output) in sessions {
                let session = Session {
                    incarnation,
                    number,
                    slot,
                    output,
                };
                state.sessions.record(client, session);
            }
            state
        })
}

/// A value accepted in some ballot.
pub fn accepted() -> impl Strategy<Value = Accepted> {
    (ballot(), command()).prop_map(|(ballot, command)| Accepted { ballot, command })
}

/// Durable replica storage. With `consistent`, it satisfies the acceptor's invariants: every
/// accepted ballot is at most the promise, and nothing is accepted below `log_start`, which is
/// the checkpoint's slot.
pub fn storage(consistent: bool) -> impl Strategy<Value = Storage> {
    (
        ballot(),
        btree_map(slot(), accepted(), 0..6),
        0u32..4,
        proptest::option::of((1u64..12, service_state())),
        lives(),
    )
        .prop_map(
            move |(promised, accepted, incarnation, checkpoint, rebuilt)| {
                let checkpoint = checkpoint.map(|(slot, mut state)| {
                    // A checkpoint at `slot` is the state after `slot` slots.
                    state.applied = slot;
                    Checkpoint::of(slot, &state)
                });
                let mut storage = Storage {
                    promised,
                    accepted,
                    incarnation,
                    log_start: checkpoint.as_ref().map_or(0, |c| c.slot),
                    checkpoint,
                    rebuilding: false,
                    rebuilt,
                };
                if consistent {
                    let log_start = storage.log_start;
                    storage
                        .accepted
                        .retain(|slot, a| *slot >= log_start && a.ballot <= promised);
                }
                storage
            },
        )
}

/// A record of replicas' lives (see `Storage::rebuilt`): a few replicas with rebuild ballots
/// (never round 0, which no replica starts).
pub fn lives() -> impl Strategy<Value = std::collections::BTreeMap<Id, Ballot>> {
    let rebuild = ballot().prop_filter("a started ballot", |b| b.round > 0);
    btree_map((0usize..5).prop_map(Id::from), rebuild, 0..3)
}

/// Any protocol message, every variant of [`Msg`] (see [`variant`]).
pub fn msg() -> impl Strategy<Value = Msg> {
    let entry = (slot(), ballot(), command()).prop_map(|(slot, ballot, command)| AcceptedEntry {
        slot,
        ballot,
        command,
    });
    let stable = || proptest::option::of((slot(), any::<u64>()));
    prop_oneof![
        request().prop_map(Msg::Request),
        (any::<u64>(), slot(), output()).prop_map(|(number, slot, output)| Msg::Reply {
            number,
            slot,
            output
        }),
        (ballot(), slot(), any::<bool>()).prop_map(|(ballot, from, rebuild)| Msg::Prepare {
            ballot,
            from,
            rebuild
        }),
        (
            (ballot(), slot()),
            vec(entry, 0..4),
            any::<bool>(),
            slot(),
            lives()
        )
            .prop_map(
                |((ballot, log_start), accepted, complete, checkpoint, rebuilt)| {
                    Msg::Promise {
                        ballot,
                        log_start,
                        accepted,
                        complete,
                        checkpoint,
                        rebuilt,
                    }
                }
            ),
        ballot().prop_map(|ballot| Msg::Nack { ballot }),
        (ballot(), slot(), command(), slot(), stable(), votes()).prop_map(
            |(ballot, slot, command, commit, stable, electorate)| Msg::Accept {
                ballot,
                slot,
                command,
                commit,
                stable,
                electorate
            }
        ),
        (ballot(), slot(), any::<u32>(), any::<u64>(), any::<bool>()).prop_map(
            |(ballot, slot, incarnation, epoch, pending)| Msg::Accepted {
                ballot,
                slot,
                incarnation,
                epoch,
                pending
            }
        ),
        (ballot(), slot(), stable()).prop_map(|(ballot, commit, stable)| Msg::Heartbeat {
            ballot,
            commit,
            stable
        }),
        slot().prop_map(|from| Msg::CatchUp { from }),
        (slot(), vec(command(), 0..4))
            .prop_map(|(from, commands)| Msg::CatchUpReply { from, commands }),
        (slot(), any::<u64>()).prop_map(|(slot, digest)| Msg::CheckpointVote { slot, digest }),
        (
            slot(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            vec(any::<u8>(), 0..64)
        )
            .prop_map(|(slot, digest, total, offset, bytes)| Msg::Snapshot {
                slot,
                digest,
                total,
                offset,
                bytes
            }),
        (slot(), any::<u64>()).prop_map(|(slot, offset)| Msg::SnapshotRequest { slot, offset }),
        slot().prop_map(|slot| Msg::SnapshotGone { slot }),
        ballot().prop_map(|ballot| Msg::PreVote { ballot }),
        ballot().prop_map(|ballot| Msg::PreVoteGranted { ballot }),
    ]
}

/// The number of [`Msg`] variants.
pub const MSG_VARIANTS: usize = 16;

/// The variant of `msg`, numbered in declaration order. The match has no wildcard, so a new
/// variant does not compile until it is numbered here, and then the test that every variant is
/// generated fails until [`msg`] generates it.
pub fn variant(msg: &Msg) -> usize {
    match msg {
        Msg::Request(_) => 0,
        Msg::Reply { .. } => 1,
        Msg::Prepare { .. } => 2,
        Msg::Promise { .. } => 3,
        Msg::Nack { .. } => 4,
        Msg::PreVote { .. } => 14,
        Msg::PreVoteGranted { .. } => 15,
        Msg::Accept { .. } => 5,
        Msg::Accepted { .. } => 6,
        Msg::Heartbeat { .. } => 7,
        Msg::CatchUp { .. } => 8,
        Msg::CatchUpReply { .. } => 9,
        Msg::CheckpointVote { .. } => 10,
        Msg::Snapshot { .. } => 11,
        Msg::SnapshotRequest { .. } => 12,
        Msg::SnapshotGone { .. } => 13,
    }
}
