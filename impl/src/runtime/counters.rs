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
    }
}
