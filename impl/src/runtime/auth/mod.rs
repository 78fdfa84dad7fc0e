//! Who may speak for the cluster: every datagram is signed, and checked on arrival.
//!
//! A datagram's tag is the keyed BLAKE3 hash (BLAKE3's MAC mode) of everything before it,
//! header included, truncated to 16 bytes; the header names the key by its fingerprint and
//! carries the sender's boot and a sequence number for replay protection ([`replay`]).
//!
//! Three kinds of keys ([`Keyring`]):
//! - the **cluster key**, held by replicas only: replica-to-replica datagrams (protocol
//!   messages, client addresses) are signed with it;
//! - **credentials**, each a number (0 to 65,535), a role (client or administrator) and its
//!   key: a client signs with its credential's key, and a replica answers it under the same
//!   key. A client's id carries its credential's number in its top 16 bits
//!   ([`credential_of`]), so a client credential can use only its own ids: holders of different
//!   credentials cannot take over each other's sessions (holders of one shared credential
//!   trust each other). An administrator's credential may use any client id: it is the
//!   cluster's root anyway (it can remove every replica);
//! - **insecure mode** signs nothing and checks nothing, for local experiments only.
//!
//! During a key rotation a replica accepts every key listed and signs with the first
//! (docs/DEPLOY.md, "Securing a cluster"). The runtime checks *who* sent a datagram here; what
//! each role may ask (administrators alone change the configuration or read the status) is
//! the caller's rule ([`crate::runtime::event_loop::ClientRule`]) and the runtime's status
//! handler. The actors never see any of it: the model and conformance are unaffected.

pub mod boot;
pub mod keys;
pub mod replay;

pub use keys::{Key, KeyError};
pub use replay::{Replay, ReplayGuard};

use crate::codec::{self, EncodeError, Header, TAG_BYTES};
use crate::runtime::bounded::FifoMap;
use crate::runtime::peers::FIRST_LOGICAL_CLIENT_ID;
use serde::Serialize;
use std::collections::BTreeMap;

/// A credential's number in a client id: the id's top 16 bits.
pub fn credential_of(client: u64) -> u16 {
    (client >> 48) as u16
}

/// A client id of credential `credential` with the given low bits.
pub fn client_id_of(credential: u16, low: u64) -> u64 {
    (u64::from(credential) << 48) | (low & ((1 << 48) - 1))
}

/// What a credential may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Reads and writes the service.
    Client,
    /// Also changes the configuration (JOIN, QUIT) and reads replicas' status.
    Admin,
}

/// A credential: its number, role and keys (the first signs; all are accepted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub id: u16,
    pub role: Role,
    pub keys: Vec<Key>,
}

/// The keys one runtime holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Keyring {
    /// Signs nothing, checks nothing: anyone who can reach a replica can do anything.
    Insecure,
    /// A replica: the cluster keys (the first signs) and every credential.
    Replica {
        cluster: Vec<Key>,
        credentials: BTreeMap<u16, Credential>,
    },
    /// A client or administrator: its own credential.
    Client(Credential),
}

impl Keyring {
    /// The credential this keyring's client ids must carry (0 in insecure mode).
    pub fn own_credential(&self) -> u16 {
        match self {
            Keyring::Client(credential) => credential.id,
            _ => 0,
        }
    }
}

/// Who a datagram was shown to come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proven {
    /// Signed with the cluster key (or, at a client, with its own credential by a replica).
    Replica,
    /// Signed with a credential of this role.
    Client(Role),
    /// Insecure mode: nothing was checked.
    Unchecked,
}

impl Proven {
    /// Whether the sender may do what administrators may.
    pub fn is_admin(self) -> bool {
        matches!(
            self,
            Proven::Replica | Proven::Client(Role::Admin) | Proven::Unchecked
        )
    }
}

/// Why a datagram was not believed. Each has its own counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// No key of the claimed sender has the fingerprint in the header (an unsigned datagram,
    /// another cluster key, an unknown or revoked credential).
    UnknownKey,
    /// The tag does not match: forged, or altered on the way.
    BadTag,
    /// Authentic, but accepted before (or from an earlier boot of its sender).
    Replayed(Replay),
}

/// Signs what a runtime sends and checks what it receives.
#[derive(Debug)]
pub struct Auth {
    keyring: Keyring,
    boot: u64,
    sequence: u64,
    replay: ReplayGuard,
    /// The fingerprint each client last signed with: a replica answers under the same key,
    /// so that a client in the middle of a key rotation understands its answers.
    client_keys: FifoMap<u64, u32>,
}

impl Auth {
    /// Signs with `keyring` as a sender in boot `boot` (see [`boot`]).
    pub fn new(keyring: Keyring, boot: u64) -> Self {
        Auth {
            keyring,
            boot,
            sequence: 0,
            replay: ReplayGuard::default(),
            client_keys: FifoMap::new(crate::runtime::MAX_CLIENT_ADDRESSES),
        }
    }

    /// No authentication (insecure mode, and runtimes in unit tests).
    pub fn insecure() -> Self {
        Self::new(Keyring::Insecure, 0)
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Whether this runtime signs and checks anything.
    pub fn is_insecure(&self) -> bool {
        self.keyring == Keyring::Insecure
    }

    /// The key to sign a datagram to `receiver` with: `None` if there is none (a client whose
    /// credential this replica does not know).
    fn signing_key(&self, receiver: u64) -> Option<&Key> {
        match &self.keyring {
            Keyring::Insecure => None,
            Keyring::Client(credential) => credential.keys.first(),
            Keyring::Replica { cluster, .. } if receiver < FIRST_LOGICAL_CLIENT_ID => {
                cluster.first()
            }
            Keyring::Replica { credentials, .. } => {
                let own = credentials.get(&credential_of(receiver));
                match self.client_keys.get(&receiver).copied() {
                    Some(used) => client_key(credentials, receiver, used).map(|(key, _)| key),
                    None => own.and_then(|credential| credential.keys.first()),
                }
            }
        }
    }

    /// Encodes `body` under `header` into `buffer` and signs it. Refuses a receiver this
    /// runtime has no key for ([`EncodeError::NoKey`]).
    pub fn frame<T: Serialize + ?Sized>(
        &mut self,
        mut header: Header,
        body: &T,
        buffer: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let key = match self.signing_key(header.receiver) {
            Some(key) => Some(key.clone()),
            None if self.is_insecure() => None,
            None => return Err(EncodeError::NoKey(header.receiver)),
        };
        self.sequence += 1;
        header.key = key.as_ref().map_or(0, Key::fingerprint);
        header.boot = self.boot;
        header.sequence = self.sequence;
        codec::encode(&header, body, buffer)?;
        if let Some(key) = key {
            let (signed, _) = codec::signed_and_tag(buffer);
            let tag = tag_of(&key, signed);
            let at = buffer.len() - TAG_BYTES;
            buffer[at..].copy_from_slice(&tag);
        }
        Ok(())
    }

    /// Checks the tag and stamp of a datagram whose header [`codec::decode_header`] accepted.
    /// The cheap checks come first: a forged datagram costs a table lookup and, if it names a
    /// key that exists, one hash.
    pub fn verify(&mut self, header: &Header, datagram: &[u8]) -> Result<Proven, Refused> {
        let (key, proven) = match &self.keyring {
            Keyring::Insecure => return Ok(Proven::Unchecked),
            Keyring::Replica { cluster, .. } if header.sender < FIRST_LOGICAL_CLIENT_ID => {
                (find(cluster, header.key), Proven::Replica)
            }
            Keyring::Replica { credentials, .. } => {
                match client_key(credentials, header.sender, header.key) {
                    Some((key, role)) => (Some(key), Proven::Client(role)),
                    None => (None, Proven::Replica),
                }
            }
            // A client hears from replicas only, which answer under its own credential.
            Keyring::Client(credential) if header.sender < FIRST_LOGICAL_CLIENT_ID => {
                (find(&credential.keys, header.key), Proven::Replica)
            }
            Keyring::Client(_) => (None, Proven::Replica),
        };
        let key = key.ok_or(Refused::UnknownKey)?;
        let (signed, tag) = codec::signed_and_tag(datagram);
        let expected = tag_of(key, signed);
        let tag: &[u8; TAG_BYTES] = tag.try_into().map_err(|_| Refused::BadTag)?;
        if !constant_time_eq::constant_time_eq_16(&expected, tag) {
            return Err(Refused::BadTag);
        }
        self.replay
            .accept(header.sender, header.boot, header.sequence)
            .map_err(Refused::Replayed)?;
        if let Proven::Client(_) = proven {
            self.client_keys.insert(header.sender, header.key);
        }
        Ok(proven)
    }

    /// Records the key a client signs with, as another replica saw it (a follower that
    /// forwards the client's request tells the leader where the client is and which key it
    /// uses, so that the leader's answer is one the client can check).
    pub fn learn_client_key(&mut self, client: u64, key: u32) {
        if key != 0 {
            self.client_keys.insert(client, key);
        }
    }

    /// The key a client last signed with, if known.
    pub fn client_key(&self, client: u64) -> u32 {
        self.client_keys.get(&client).copied().unwrap_or(0)
    }
}

/// The key named `fingerprint` that client `client` may sign with, and its role: one of its
/// own credential's, or an administrator's.
fn client_key(
    credentials: &BTreeMap<u16, Credential>,
    client: u64,
    fingerprint: u32,
) -> Option<(&Key, Role)> {
    let own = credentials
        .get(&credential_of(client))
        .and_then(|c| Some((find(&c.keys, fingerprint)?, c.role)));
    own.or_else(|| {
        credentials
            .values()
            .filter(|c| c.role == Role::Admin)
            .find_map(|c| Some((find(&c.keys, fingerprint)?, Role::Admin)))
    })
}

fn find(keys: &[Key], fingerprint: u32) -> Option<&Key> {
    keys.iter().find(|key| key.fingerprint() == fingerprint)
}

fn tag_of(key: &Key, signed: &[u8]) -> [u8; TAG_BYTES] {
    let hash = blake3::keyed_hash(key.bytes(), signed);
    let mut tag = [0u8; TAG_BYTES];
    tag.copy_from_slice(&hash.as_bytes()[..TAG_BYTES]);
    tag
}

#[cfg(test)]
mod tests;
