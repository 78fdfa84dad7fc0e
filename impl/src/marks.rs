//! Coverage marks: a named record that a branch of the protocol ran, in the style of
//! rust-analyzer's `cov-mark` crate and TigerBeetle's `testing/marks`. Each branch of the
//! replica and the client that matters to the argument calls [`hit`] with its mark; the model
//! checker reports which marks a run reached, and `model/tests/coverage.rs` fails when a mark is
//! reached by none of its runs. So a branch that no check explores cannot go unnoticed, and a
//! test that claims to cover a branch can show that it does.
//!
//! Guards against input from outside the protocol (messages from ids that are not replicas,
//! requests on behalf of another client) are not marked: the model's actors never send such
//! input, and the end-to-end tests of hostile datagrams cover them. Neither is the audit's
//! divergence path: it runs only when a replica's state differs from a quorum's, which a
//! correct replica never reaches in the model (the audit tests in `impl` and the seeded bugs do).
//!
//! A hit costs one relaxed atomic load once the mark was hit: the flags are shared by every
//! thread of a checker run, and only the first hit writes.

use std::sync::atomic::{AtomicBool, Ordering};

macro_rules! marks {
    ($($(#[doc = $doc:literal])* $mark:ident = $name:literal,)*) => {
        /// A marked branch of the protocol.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Mark {
            $($(#[doc = $doc])* $mark,)*
        }

        impl Mark {
            /// Every mark, in declaration order (grouped by the file whose branch it marks).
            pub const ALL: &'static [Mark] = &[$(Mark::$mark,)*];

            /// The mark's name: the file it is in, a dot, and what happened.
            pub fn name(self) -> &'static str {
                match self {
                    $(Mark::$mark => $name,)*
                }
            }
        }
    };
}

marks! {
    // --- replica/mod.rs ---
    /// A restarted replica asks a peer at once for what was decided while it was down.
    RestartAsksCatchUp = "replica.restart-asks-catch-up",
    /// A replica that does not participate (spare, quitter, rebuilding) ignores a vote request.
    NonParticipantIgnores = "replica.non-participant-ignores",

    // --- replica/election.rs ---
    /// An election timeout starts Phase 1 in a new ballot.
    ElectionStarted = "election.started",
    /// A Prepare below the promise is refused with a Nack.
    PrepareRefused = "election.prepare-refused",
    /// An ordinary Prepare of a ballot recorded as a rebuild comes from the sender's earlier life.
    PrepareFromEarlierLifeIgnored = "election.prepare-from-earlier-life-ignored",
    /// An acceptor records the ballot of a rebuild as the sender's new life.
    RebuildLifeRecorded = "election.rebuild-life-recorded",
    /// A promise cut at the payload limit: more pages follow.
    PromisePaged = "election.promise-paged",
    /// A promise that is stale, counted already, or a page out of turn.
    PromiseIgnored = "election.promise-ignored",
    /// A promise from a life of its sender that has since been rebuilt is void.
    PromiseFromVoidLifeIgnored = "election.promise-from-void-life-ignored",
    /// A counted promise turned out to come from a rebuilt life: the ballot is given up.
    VoidLifeStepsDown = "election.void-life-steps-down",
    /// A promise of a rebuild ballot that does not record the rebuild is not counted.
    RebuildPromiseWithoutRecordIgnored = "election.rebuild-promise-without-record-ignored",
    /// A promise from an acceptor truncated beyond the candidate: it catches up instead.
    PromiseNotCovering = "election.promise-not-covering",
    /// The next page of an incomplete promise is asked for.
    PromisePageRequested = "election.promise-page-requested",
    /// A leader counts the promise of a member of a new configuration.
    LeaderCountsNewMember = "election.leader-counts-new-member",
    /// A candidate with a quorum of promises becomes leader.
    LeaderElected = "election.leader-elected",
    /// A candidate that learned it is no longer a member wins its ballot but does not lead.
    NonMemberDoesNotLead = "election.non-member-does-not-lead",
    /// A Nack shows a higher ballot: the promise is raised.
    NackRaisesPromise = "election.nack-raises-promise",
    /// A rebuild ballot refused at an equal promise: the rebuild starts over above it.
    RebuildRefusedStartsOver = "election.rebuild-refused-starts-over",

    // --- replica/replication.rs ---
    /// A follower forwards a client's request to the leader it knows.
    RequestForwarded = "replication.request-forwarded",
    /// A retry of an executed request is answered from the session table.
    RetryAnsweredFromSession = "replication.retry-answered-from-session",
    /// A request older than its client's last applied one is ignored.
    OlderRequestIgnored = "replication.older-request-ignored",
    /// A request already queued or proposed is not queued again.
    RequestInProgress = "replication.request-in-progress",
    /// The queue is full: the request is dropped and the client retries.
    QueueFull = "replication.queue-full",
    /// A value adopted from the promises is proposed again.
    AdoptedProposed = "replication.adopted-proposed",
    /// A gap below adopted or decided slots is filled with a no-op.
    GapFilled = "replication.gap-filled",
    /// A checkpoint command is proposed.
    CheckpointProposed = "replication.checkpoint-proposed",
    /// A batch stopped at its request or byte limit with requests still queued.
    BatchSplit = "replication.batch-split",
    /// A slot waits for the promises of a new configuration's members.
    WaitsForNewMembers = "replication.waits-for-new-members",
    /// A new configuration's members are asked for their promises.
    NewMembersAsked = "replication.new-members-asked",
    /// An Accept below the acceptor's log start is ignored.
    AcceptBelowLogStartIgnored = "replication.accept-below-log-start-ignored",
    /// An Accept of a ballot below the promise is ignored.
    AcceptLowerBallotIgnored = "replication.accept-lower-ballot-ignored",
    /// An Accept of a higher ballot raises the promise.
    AcceptRaisesPromise = "replication.accept-raises-promise",
    /// A proposal accepted by a quorum is decided.
    ProposalDecided = "replication.proposal-decided",

    // --- replica/learning.rs ---
    /// A follower learns a slot from the leader's commit point.
    LearnedFromCommit = "learning.learned-from-commit",
    /// A heartbeat from a deposed leader is answered with a Nack.
    DeposedLeaderNacked = "learning.deposed-leader-nacked",
    /// A heartbeat shows a gap: the follower asks to catch up.
    HeartbeatShowsGap = "learning.heartbeat-shows-gap",
    /// An undecided proposal is sent again to the members that have not accepted it.
    AcceptResent = "learning.accept-resent",
    /// A member whose promise the leader still needs is asked again.
    PromiseAskedAgain = "learning.promise-asked-again",
    /// A joiner that has not promised gets the start of the state again.
    JoinerStateResent = "learning.joiner-state-resent",
    /// A new member asks to catch up before it promised: the leader asks for its promise again.
    CatchUpAsksPromise = "learning.catch-up-asks-promise",
    /// A catch-up below the log start is answered with the checkpoint.
    CatchUpSendsSnapshot = "learning.catch-up-sends-snapshot",
    /// A catch-up reply cut at the payload limit.
    CatchUpPaged = "learning.catch-up-paged",
    /// A leader learns by catch-up that another value was decided where it proposed.
    CatchUpConflictStepsDown = "learning.catch-up-conflict-steps-down",
    /// Decided commands learned from a catch-up reply.
    CatchUpApplied = "learning.catch-up-applied",

    // --- replica/execution.rs ---
    /// A request decided a second time is not applied again.
    DuplicateNotApplied = "execution.duplicate-not-applied",
    /// A new session in a full session table retires the least recently used one.
    SessionRetired = "execution.session-retired",
    /// A request of a retired session is answered "expired", not applied.
    SessionExpired = "execution.session-expired",
    /// A leader whose QUIT is in force steps down.
    QuitLeaderStepsDown = "execution.quit-leader-steps-down",
    /// A membership change is executed: checkpointed for the joiner.
    MembershipChangeExecuted = "execution.membership-change-executed",

    // --- replica/checkpoint.rs ---
    /// A checkpoint is taken.
    CheckpointTaken = "checkpoint.taken",
    /// A follower votes for its checkpoint.
    CheckpointVoteSent = "checkpoint.vote-sent",
    /// A follower sends its checkpoint vote again, on a heartbeat that does not yet announce
    /// that checkpoint stable.
    CheckpointVoteResent = "checkpoint.vote-resent",
    /// A transfer that has not moved since the leader's last heartbeat asks again for the
    /// chunks it misses.
    SnapshotWindowResent = "checkpoint.transfer-window-resent",
    /// Checkpoint votes beyond the number of slots kept are dropped.
    CheckpointVotesFull = "checkpoint.votes-full",
    /// The leader truncates at a stable checkpoint.
    LeaderTruncates = "checkpoint.leader-truncates",
    /// A follower truncates at the stable checkpoint the leader announced.
    FollowerTruncates = "checkpoint.follower-truncates",

    // --- replica/transfer.rs ---
    /// A chunk of the window is asked for.
    SnapshotNextChunkRequested = "transfer.next-chunk-requested",
    /// A chunk that is stale, out of order, or of an older transfer is ignored.
    SnapshotChunkIgnored = "transfer.chunk-ignored",
    /// A complete snapshot is installed.
    SnapshotInstalled = "transfer.snapshot-installed",
    /// A joiner installs the state that makes it a member.
    JoinerInstalled = "transfer.joiner-installed",

    /// The first chunk of the transfer under way arrives again: the receiver asks again for
    /// the chunks of its window that are missing.
    SnapshotResumed = "transfer.snapshot-resumed",
    /// A chunk arrives ahead of a missing one (chunks of a window arrive in any order).
    SnapshotChunkAhead = "transfer.chunk-ahead",
    /// Another checkpoint is offered while a transfer is under way: the transfer is kept.
    SnapshotTransferKept = "transfer.kept",
    /// The sender no longer holds the checkpoint of the transfer under way: it is given up.
    SnapshotAbandoned = "transfer.abandoned",
    /// A snapshot is installed with ranges this replica held already (not sent).
    SnapshotRangesHeld = "transfer.ranges-held",

    // --- replica/pre_vote.rs ---
    /// An election timeout after news of the leader: the replica suspects it.
    LeaderSuspected = "pre-vote.leader-suspected",
    /// An election timeout starts a pre-vote.
    PreVoteStarted = "pre-vote.started",
    /// A pre-vote is refused: the receiver leads, or heard from its leader since its timer.
    PreVoteRefusedLeaderAlive = "pre-vote.refused-leader-alive",
    /// A pre-vote is refused: the receiver could not promise its ballot.
    PreVoteRefusedStale = "pre-vote.refused-stale",
    /// A pre-vote is refused: the candidate is no member of the receiver's configuration.
    PreVoteRefusedNonMember = "pre-vote.refused-non-member",
    /// A pre-vote is granted.
    PreVoteGranted = "pre-vote.granted",
    /// A quorum granted the pre-vote: the replica campaigns.
    PreVoteWon = "pre-vote.won",

    // --- replica/lending.rs ---
    /// A snapshot request continues the checkpoint it asks for.
    SnapshotContinued = "lending.snapshot-continued",
    /// A snapshot request for a checkpoint no longer held: gone, and the latest is offered.
    SnapshotRestartedNewer = "lending.snapshot-restarted-newer",
    /// A chunk is sent from a lent checkpoint that a newer one has replaced.
    SnapshotLentServed = "lending.lent-served",

    // --- replica/rebuild.rs ---
    /// A rebuilding replica learns of a leader that is too far ahead: it catches up first.
    RebuildCatchesUp = "rebuild.catches-up",
    /// A heartbeat shows the rebuilding replica caught up: it starts its rebuild.
    RebuildStartedByHeartbeat = "rebuild.started-by-heartbeat",
    /// A rebuild election is won: the rebuilt storage is saved.
    RebuildCompleted = "rebuild.completed",

    // --- client.rs ---
    /// A client records an answer and moves on.
    ClientAnswered = "client.answered",
    /// A client learns the incarnation of the session it opened.
    ClientOpenedSession = "client.opened-session",
    /// A client is told its session expired, and stops with the error.
    ClientSessionExpired = "client.session-expired",
    /// A client retries at the same replica.
    ClientRetriesSameReplica = "client.retries-same-replica",
    /// A client retries at the next replica.
    ClientRetriesNextReplica = "client.retries-next-replica",
    /// A client used every attempt and stops sending.
    ClientOutOfAttempts = "client.out-of-attempts",
    /// A client's first request waits for its timer (a staggered start).
    ClientDelayedStart = "client.delayed-start",
}

static HITS: [AtomicBool; Mark::ALL.len()] = [const { AtomicBool::new(false) }; Mark::ALL.len()];

/// Records that the branch of `mark` ran.
#[inline]
pub fn hit(mark: Mark) {
    let flag = &HITS[mark as usize];
    if !flag.load(Ordering::Relaxed) {
        flag.store(true, Ordering::Relaxed);
    }
}

/// The marks hit since the process started or the last [`reset`], in declaration order.
pub fn hits() -> Vec<Mark> {
    Mark::ALL
        .iter()
        .copied()
        .filter(|mark| HITS[*mark as usize].load(Ordering::Relaxed))
        .collect()
}

/// Forgets every hit, to measure one run.
pub fn reset() {
    for flag in &HITS {
        flag.store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_names_are_unique_and_name_their_file() {
        let mut names: Vec<&str> = Mark::ALL.iter().map(|m| m.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Mark::ALL.len(), "two marks share a name");
        for mark in Mark::ALL {
            let (file, what) = mark.name().split_once('.').expect("file.what");
            assert!(!file.is_empty() && !what.is_empty(), "{mark:?}");
        }
    }

    #[test]
    fn every_mark_is_hit_somewhere_in_the_code() {
        // A mark declared here but called nowhere would be reported as never reached, which
        // is right, but the source says so sooner: each variant appears in a `hit` call.
        let sources = [
            include_str!("replica/mod.rs"),
            include_str!("replica/election.rs"),
            include_str!("replica/replication.rs"),
            include_str!("replica/learning.rs"),
            include_str!("replica/execution.rs"),
            include_str!("replica/checkpoint.rs"),
            include_str!("replica/transfer.rs"),
            include_str!("replica/lending.rs"),
            include_str!("replica/pre_vote.rs"),
            include_str!("replica/rebuild.rs"),
            include_str!("client.rs"),
        ]
        .concat();
        for mark in Mark::ALL {
            let call = format!("marks::hit(Mark::{mark:?})");
            assert!(sources.contains(&call), "no `{call}` in the protocol code");
        }
    }
}
