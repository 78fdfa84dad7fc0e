//! Counters of what the runtime dropped, by reason. Bad input from the network is never an
//! error of the process: it is counted here and reported by `status`.

use serde::{Deserialize, Serialize};

/// Dropped datagrams and messages, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Incoming datagrams above the size limit.
    pub oversized: u64,
    /// Incoming datagrams that are not ours or do not decode (short, wrong magic, bad body).
    pub malformed: u64,
    /// Incoming datagrams of another format version.
    pub wrong_version: u64,
    /// Incoming datagrams of another cluster.
    pub wrong_cluster: u64,
    /// Incoming datagrams from a sender id we do not know, or claiming a replica id from an
    /// address that is not that replica's.
    pub unknown_sender: u64,
    /// Incoming datagrams addressed to another actor (for example an earlier client actor
    /// on a reused socket).
    pub wrong_receiver: u64,
    /// Incoming datagrams signed with no key the claimed sender has (unsigned, another
    /// cluster's key, an unknown or revoked credential).
    pub unknown_key: u64,
    /// Incoming datagrams whose tag does not match: forged, or altered on the way.
    pub bad_tag: u64,
    /// Incoming authentic datagrams accepted before, or from an earlier boot of their sender.
    pub replayed: u64,
    /// Incoming authentic datagrams asking for what their credential may not do (a client's
    /// JOIN, QUIT or status request, a request in another client's name, a replica's message).
    pub unauthorized: u64,
    /// Outgoing messages that would exceed the datagram limit; never sent.
    pub oversized_outgoing: u64,
    /// Outgoing messages to an id with no known address.
    pub unroutable: u64,
    /// Outgoing datagrams the operating system refused.
    pub send_errors: u64,
    /// Datagrams received and accepted.
    pub received: u64,
    /// Datagrams sent.
    pub sent: u64,
}

impl Counters {
    /// Incoming datagrams dropped for any reason.
    pub fn dropped_incoming(&self) -> u64 {
        self.oversized
            + self.malformed
            + self.wrong_version
            + self.wrong_cluster
            + self.unknown_sender
            + self.wrong_receiver
            + self.unknown_key
            + self.bad_tag
            + self.replayed
            + self.unauthorized
    }
}

/// Logs a kind of event at most once per interval, saying how many went unlogged: a flood of
/// bad datagrams must not become a flood of log lines.
#[derive(Debug)]
pub struct RateLimited {
    interval: std::time::Duration,
    last: Option<std::time::Instant>,
    suppressed: u64,
}

impl RateLimited {
    pub const fn new(interval: std::time::Duration) -> Self {
        RateLimited {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// Whether to log this event now; if so, also how many were not logged since the last.
    pub fn allow(&mut self, now: std::time::Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_rate_limited_log_says_how_many_it_left_out() {
        let mut log = RateLimited::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(log.allow(start), Some(0));
        for _ in 0..1000 {
            assert_eq!(log.allow(start + Duration::from_secs(1)), None);
        }
        assert_eq!(log.allow(start + Duration::from_secs(11)), Some(1000));
    }
}
