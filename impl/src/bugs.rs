//! The catalogue of deliberately broken protocol variants.
//!
//! Each variant names one mistake that real implementations have made. The switch that turns a
//! bug on exists only when the crate is built with the `seeded-bugs` feature, which no shipped
//! binary enables; the model checker's tests enable it to show that every bug is caught with a
//! counterexample (see `proofs/BUGS.md`).

use serde::{Deserialize, Serialize};

/// A seeded protocol bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SeededBug {
    /// Quorums of n/2 instead of a majority: two quorums need not intersect.
    QuorumHalf,
    /// An acceptor accepts a ballot lower than the one it promised.
    AcceptLowerBallot,
    /// A new leader ignores the values reported in promises and proposes its own.
    IgnorePromisedValues,
    /// A new leader fills gaps with its own client requests instead of re-proposing the highest
    /// accepted value (it takes the lowest-ballot value instead of the highest).
    AdoptLowestBallot,
    /// An acceptor replies to a prepare before its promise is in durable storage.
    PromiseNotPersisted,
    /// An acceptor replies to an accept before the accepted value is in durable storage.
    AcceptNotPersisted,
    /// The session table is not consulted on execution, so a retried request runs twice.
    SessionNotConsulted,
    /// The leader replies to a client as soon as it proposes, before the request is decided
    /// and executed.
    ReplyBeforeExecute,
    /// A new leader leaves gaps in the log empty instead of filling them with no-ops, and
    /// executes past them.
    GapsNotFilled,
    /// A replica truncates its log at its own checkpoint before a quorum holds the checkpoint.
    TruncateBeforeStable,
    /// Snapshots sent in a state transfer leave out the session table.
    SnapshotWithoutSessions,
    /// Promises do not carry the acceptor's truncation point.
    PromiseWithoutLogStart,
    /// A joining replica promises and accepts before it holds the state that includes it.
    JoinerVotesEarly,
    /// The leader counts a slot's votes in the configuration in force, even where a decided
    /// change already governs the slot.
    OldQuorumForNewConfig,
    /// A second membership change is executed while another is still pending: the second is
    /// computed from the members in force and replaces the first.
    ConcurrentReconfig,
    /// A replica whose storage was lost starts as a brand-new replica instead of rebuilding
    /// it first: it promises and accepts having forgotten what it promised and accepted.
    VoteAfterDiskLoss,
    /// A candidate that rebuilds its lost storage counts its own (empty) promise like any
    /// other acceptor's.
    RebuildCountsItself,
    /// The leader answers a read at once from the state it has executed, outside the log and
    /// without confirming that it still leads.
    StaleLocalRead,
    /// A client takes a late reply to an earlier request as the answer to its current one.
    ClientTakesStaleReply,
    /// An acceptor that already holds the value of an Accept at its slot keeps the entry as it
    /// is, with its older ballot, instead of recording the Accept's ballot (a write saved).
    AcceptKeepsOlderBallot,
    /// The leader proposes one slot beyond its window: slot `x` before it has executed every
    /// slot up to `x - α`, so before it can know the configuration that decides `x`.
    ProposeBeyondWindow,
    /// A checkpoint taken when executing the CHECKPOINT command at slot `s` is labelled `s`
    /// instead of `s + 1`, the number of slots its state covers.
    CheckpointLabelOffByOne,
    /// A replica that led before a crash leads its old ballot again as soon as it restarts,
    /// without a new Phase 1, so it may propose a second value in a ballot at a slot.
    ReuseBallotAfterRestart,
    /// The leader counts checkpoint votes from any replica towards the quorum of the members
    /// in force, a joiner's included before it is one.
    CheckpointVotesFromNonMembers,
    /// A request of a session the bounded table retired is taken for a new client's first
    /// request and applied, so a retry of an applied request runs again.
    RetiredSessionReexecutes,
    /// A sender serves a transfer of a checkpoint that a newer one replaced from the newer
    /// checkpoint's bytes at the offset asked for (as a sender that streams "the current
    /// snapshot file" by offset does): the transfer resumes with chunks of another snapshot.
    TransferResumesFromWrongChunk,
}

impl SeededBug {
    /// Every seeded bug, in catalogue order.
    pub const ALL: &'static [SeededBug] = &[
        SeededBug::QuorumHalf,
        SeededBug::AcceptLowerBallot,
        SeededBug::IgnorePromisedValues,
        SeededBug::AdoptLowestBallot,
        SeededBug::PromiseNotPersisted,
        SeededBug::AcceptNotPersisted,
        SeededBug::SessionNotConsulted,
        SeededBug::ReplyBeforeExecute,
        SeededBug::GapsNotFilled,
        SeededBug::TruncateBeforeStable,
        SeededBug::SnapshotWithoutSessions,
        SeededBug::PromiseWithoutLogStart,
        SeededBug::JoinerVotesEarly,
        SeededBug::OldQuorumForNewConfig,
        SeededBug::ConcurrentReconfig,
        SeededBug::VoteAfterDiskLoss,
        SeededBug::RebuildCountsItself,
        SeededBug::StaleLocalRead,
        SeededBug::ClientTakesStaleReply,
        SeededBug::AcceptKeepsOlderBallot,
        SeededBug::ProposeBeyondWindow,
        SeededBug::CheckpointLabelOffByOne,
        SeededBug::ReuseBallotAfterRestart,
        SeededBug::CheckpointVotesFromNonMembers,
        SeededBug::RetiredSessionReexecutes,
        SeededBug::TransferResumesFromWrongChunk,
    ];

    /// The bug's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SeededBug::QuorumHalf => "quorum-half",
            SeededBug::AcceptLowerBallot => "accept-lower-ballot",
            SeededBug::IgnorePromisedValues => "ignore-promised-values",
            SeededBug::AdoptLowestBallot => "adopt-lowest-ballot",
            SeededBug::PromiseNotPersisted => "promise-not-persisted",
            SeededBug::AcceptNotPersisted => "accept-not-persisted",
            SeededBug::SessionNotConsulted => "session-not-consulted",
            SeededBug::ReplyBeforeExecute => "reply-before-execute",
            SeededBug::GapsNotFilled => "gaps-not-filled",
            SeededBug::TruncateBeforeStable => "truncate-before-stable",
            SeededBug::SnapshotWithoutSessions => "snapshot-without-sessions",
            SeededBug::PromiseWithoutLogStart => "promise-without-log-start",
            SeededBug::JoinerVotesEarly => "joiner-votes-early",
            SeededBug::OldQuorumForNewConfig => "old-quorum-for-new-config",
            SeededBug::ConcurrentReconfig => "concurrent-reconfig",
            SeededBug::VoteAfterDiskLoss => "vote-after-disk-loss",
            SeededBug::RebuildCountsItself => "rebuild-counts-itself",
            SeededBug::StaleLocalRead => "stale-local-read",
            SeededBug::ClientTakesStaleReply => "client-takes-stale-reply",
            SeededBug::AcceptKeepsOlderBallot => "accept-keeps-older-ballot",
            SeededBug::ProposeBeyondWindow => "propose-beyond-window",
            SeededBug::CheckpointLabelOffByOne => "checkpoint-label-off-by-one",
            SeededBug::ReuseBallotAfterRestart => "reuse-ballot-after-restart",
            SeededBug::CheckpointVotesFromNonMembers => "checkpoint-votes-from-non-members",
            SeededBug::RetiredSessionReexecutes => "retired-session-reexecutes",
            SeededBug::TransferResumesFromWrongChunk => "transfer-resumes-from-wrong-chunk",
        }
    }

    /// The bug with the given command-line name.
    pub fn from_name(name: &str) -> Option<SeededBug> {
        Self::ALL.iter().copied().find(|bug| bug.name() == name)
    }
}
