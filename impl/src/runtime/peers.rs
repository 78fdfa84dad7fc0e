//! Maps logical ids to socket addresses, and decides whose datagrams to believe.
//!
//! Replica ids are below [`FIRST_LOGICAL_CLIENT_ID`] (the protocol's `MAX_REPLICAS`) and have
//! fixed addresses from the cluster configuration: a datagram claiming a replica id is accepted
//! only from that replica's address, so one replica cannot be impersonated by a stray process
//! (this is a guard against mistakes, not against an attacker, who can forge source addresses).
//! Every id from [`FIRST_LOGICAL_CLIENT_ID`] on is a client, accepted from any address; the
//! runtime remembers where each client is, for the replies, in a bounded table.
//!
//! Two kinds of client ids are in use. A lone client process (the `smr` command) picks a random
//! id at or above [`FIRST_CLIENT_ID`], so that independent processes practically never collide.
//! A harness that runs many clients (the bench, the end-to-end tests) numbers them densely from
//! [`FIRST_LOGICAL_CLIENT_ID`]: the model indexes actors by id, so a traced run whose ids are
//! dense replays in the model without translating a single id.

use super::bounded::FifoMap;
use stateright::actor::Id;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Randomly chosen client ids start here.
pub const FIRST_CLIENT_ID: u64 = 1 << 32;

/// Client ids start here; replica ids are below (see `replica::config::MAX_REPLICAS`).
pub const FIRST_LOGICAL_CLIENT_ID: u64 = crate::replica::config::MAX_REPLICAS as u64;

/// The most client addresses a runtime remembers; the oldest is forgotten first. A forgotten
/// client that retries is learned again from its next request.
pub const MAX_CLIENT_ADDRESSES: usize = 16_384;

/// The numeric value of an id on the wire.
pub fn wire_id(id: Id) -> u64 {
    usize::from(id) as u64
}

/// The id of a numeric wire value.
pub fn id_of_wire(value: u64) -> Id {
    Id::from(value as usize)
}

/// Why a datagram's claimed sender is not believed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SenderRejected {
    /// A replica id (below [`FIRST_LOGICAL_CLIENT_ID`]) not in the configuration.
    UnknownReplica,
    /// A configured replica id, from another address.
    WrongAddress,
}

/// A believed sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admitted {
    Replica(Id),
    /// A client; `new` if its address was not known before.
    Client {
        id: Id,
        new: bool,
    },
}

impl Admitted {
    pub fn id(self) -> Id {
        match self {
            Admitted::Replica(id) | Admitted::Client { id, .. } => id,
        }
    }
}

/// The address book of one runtime.
#[derive(Debug, Clone)]
pub struct AddressBook {
    replicas: BTreeMap<Id, SocketAddr>,
    /// Where each client was last heard from; the client first seen longest ago is forgotten.
    clients: FifoMap<Id, SocketAddr>,
}

impl AddressBook {
    /// A book with the configured replica addresses.
    pub fn new(replicas: BTreeMap<Id, SocketAddr>) -> Self {
        Self {
            replicas,
            clients: FifoMap::new(MAX_CLIENT_ADDRESSES),
        }
    }

    /// The configured replicas.
    pub fn replicas(&self) -> &BTreeMap<Id, SocketAddr> {
        &self.replicas
    }

    /// Where to send a message for `id`.
    pub fn address_of(&self, id: Id) -> Option<SocketAddr> {
        self.replicas
            .get(&id)
            .or_else(|| self.clients.get(&id))
            .copied()
    }

    /// Checks the claimed `sender` of a datagram from `from`, learning a client's address.
    pub fn admit(&mut self, sender: u64, from: SocketAddr) -> Result<Admitted, SenderRejected> {
        let id = id_of_wire(sender);
        if sender < FIRST_LOGICAL_CLIENT_ID {
            return match self.replicas.get(&id) {
                Some(address) if *address == from => Ok(Admitted::Replica(id)),
                Some(_) => Err(SenderRejected::WrongAddress),
                None => Err(SenderRejected::UnknownReplica),
            };
        }
        let new = self.learn_client(sender, from);
        Ok(Admitted::Client { id, new })
    }

    /// Records where client `client` is (a client id at or above [`FIRST_LOGICAL_CLIENT_ID`]);
    /// returns whether it was unknown or had moved.
    pub fn learn_client(&mut self, client: u64, address: SocketAddr) -> bool {
        if client < FIRST_LOGICAL_CLIENT_ID {
            return false;
        }
        let id = id_of_wire(client);
        self.clients.insert(id, address) != Some(address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn replicas_only_from_their_address_clients_from_anywhere_and_bounded() {
        let mut book = AddressBook::new(BTreeMap::from([(Id::from(0), address(1000))]));
        assert_eq!(
            book.admit(0, address(1000)),
            Ok(Admitted::Replica(Id::from(0)))
        );
        assert_eq!(
            book.admit(0, address(1001)),
            Err(SenderRejected::WrongAddress)
        );
        assert_eq!(
            book.admit(5, address(1000)),
            Err(SenderRejected::UnknownReplica)
        );
        let logical = FIRST_LOGICAL_CLIENT_ID + 2;
        assert!(matches!(
            book.admit(logical, address(2001)),
            Ok(Admitted::Client { new: true, .. })
        ));
        let client = FIRST_CLIENT_ID + 9;
        assert_eq!(
            book.admit(client, address(2000)),
            Ok(Admitted::Client {
                id: id_of_wire(client),
                new: true
            })
        );
        assert!(!book.learn_client(client, address(2000)));
        assert_eq!(book.address_of(id_of_wire(client)), Some(address(2000)));
        for n in 0..MAX_CLIENT_ADDRESSES as u64 {
            book.admit(FIRST_CLIENT_ID + 100 + n, address(3000))
                .unwrap();
        }
        assert_eq!(
            book.address_of(id_of_wire(client)),
            None,
            "the oldest is evicted"
        );
        assert_eq!(book.clients.len(), MAX_CLIENT_ADDRESSES);
    }
}
