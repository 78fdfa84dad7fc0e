//! Seeded runtime bugs: deliberate mistakes in the runtime (not the protocol) that trace
//! conformance must catch. The switch exists in every build, but the broken code paths are
//! compiled only with the `runtime-bugs` feature, which no shipped binary enables; without it
//! [`RuntimeBug::active`] is always false.

/// A seeded runtime bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuntimeBug {
    /// A group's messages are sent when its commit starts, before its storage is durable.
    SendBeforeDurable,
    /// Timer cancellations are ignored, so a cancelled timer still fires.
    TimerCancelLost,
    /// Now and then a received datagram has a byte flipped before it is decoded, and the
    /// altered message is delivered.
    CorruptDelivery,
    /// A restarting replica reads its storage without the log, so it starts from the state of
    /// its last snapshot: older than what it had made durable and acknowledged.
    StaleRestart,
}

impl RuntimeBug {
    pub const ALL: &'static [RuntimeBug] = &[
        RuntimeBug::SendBeforeDurable,
        RuntimeBug::TimerCancelLost,
        RuntimeBug::CorruptDelivery,
        RuntimeBug::StaleRestart,
    ];

    /// Whether `bug` is `wanted` and seeded bugs are compiled in.
    #[inline]
    pub fn active(wanted: Option<RuntimeBug>, bug: RuntimeBug) -> bool {
        cfg!(feature = "runtime-bugs") && wanted == Some(bug)
    }
}
