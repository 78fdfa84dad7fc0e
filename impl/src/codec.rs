//! The wire format of every datagram: a fixed header, a postcard-encoded body, and a tag.
//!
//! ```text
//! offset  size  field
//!      0     4  magic "SMR\x00": not one of ours if it differs
//!      4     1  format version: bumped on every incompatible change
//!      5     1  frame kind (protocol message, status request or reply, client address)
//!      6     8  cluster id, little-endian: keeps two clusters on one network apart
//!     14     8  sender's logical id
//!     22     8  receiver's logical id: a datagram meant for an earlier actor on a reused
//!               socket (a client process runs one client actor after another) is dropped
//!     30     4  fingerprint of the key that signed the datagram (0: unsigned, insecure mode)
//!     34     8  sender's boot: grows across the sender's restarts
//!     42     8  sequence number: grows with each datagram the sender sends in one boot
//!     50     -  body (postcard)
//!    end-16 16  tag: keyed BLAKE3 of every byte before it, under the key named at 30
//!               (zeros when unsigned)
//! ```
//!
//! The header is fixed-size and hand-written rather than serialized so that a datagram from
//! another program or another format version is recognised before any body decoding runs.
//! The tag covers the header too, so neither the claimed sender nor the receiver, boot or
//! sequence can be changed without the key ([`crate::runtime::auth`] signs and checks it).
//! Decoding never panics: anything wrong is a [`DecodeError`] that the runtime counts.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// The largest datagram the runtime sends or accepts, header included. Below the 65,507-byte
/// UDP payload limit, and a named bound that the protocol's batch and payload limits stay under.
pub const MAX_DATAGRAM_BYTES: usize = 60_000;

/// The first bytes of every datagram.
pub const MAGIC: [u8; 4] = *b"SMR\x00";

/// The format version this build speaks.
pub const FORMAT_VERSION: u8 = 5;

/// Length of the fixed header.
pub const HEADER_BYTES: usize = 50;

/// Length of the tag that ends every datagram.
pub const TAG_BYTES: usize = 16;

/// What a datagram carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// A protocol message for the actor.
    Protocol = 1,
    /// An operator asks the runtime (not the actor) for its status. Body: a nonce.
    StatusRequest = 2,
    /// The runtime's answer. Body: [`crate::runtime::StatusReply`].
    StatusReply = 3,
    /// A replica tells the other replicas where a client it just heard from is, so that the
    /// leader can answer a request that a follower forwarded. Body: [`ClientAddress`].
    ClientAddress = 4,
    /// A replica tells a client that it may not do what it asked. Body: [`Refusal`].
    Refusal = 5,
}

impl FrameKind {
    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(FrameKind::Protocol),
            2 => Some(FrameKind::StatusRequest),
            3 => Some(FrameKind::StatusReply),
            4 => Some(FrameKind::ClientAddress),
            5 => Some(FrameKind::Refusal),
            _ => None,
        }
    }
}

/// The decoded fixed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: FrameKind,
    pub cluster: u64,
    pub sender: u64,
    pub receiver: u64,
    /// The fingerprint of the key that signs the datagram; 0 when unsigned.
    pub key: u32,
    /// The sender's boot and the datagram's sequence number in it (replay protection).
    pub boot: u64,
    pub sequence: u64,
}

impl Header {
    /// A header whose stamp (key, boot, sequence) the signer fills in.
    pub fn new(kind: FrameKind, cluster: u64, sender: u64, receiver: u64) -> Self {
        Header {
            kind,
            cluster,
            sender,
            receiver,
            key: 0,
            boot: 0,
            sequence: 0,
        }
    }
}

/// Why a datagram was not accepted. Each reason has its own counter in the runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Larger than [`MAX_DATAGRAM_BYTES`].
    Oversized(usize),
    /// Too short for a header, wrong magic, unknown frame kind, or an undecodable body.
    Malformed(String),
    /// A format version this build does not speak.
    WrongVersion(u8),
    /// Another cluster's datagram.
    WrongCluster(u64),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Oversized(n) => write!(f, "{n} bytes exceed {MAX_DATAGRAM_BYTES}"),
            DecodeError::Malformed(why) => write!(f, "malformed: {why}"),
            DecodeError::WrongVersion(v) => {
                write!(f, "format version {v}, this build speaks {FORMAT_VERSION}")
            }
            DecodeError::WrongCluster(c) => write!(f, "cluster id {c:#x} is not ours"),
        }
    }
}

/// Why a frame was not encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The encoded frame would exceed [`MAX_DATAGRAM_BYTES`]; it must not be sent.
    Oversized(usize),
    /// The body could not be serialized (a bug in a `Serialize` impl).
    Serialize(String),
    /// No key to sign a datagram to this receiver with (a client of an unknown credential).
    NoKey(u64),
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EncodeError::Oversized(n) => {
                write!(f, "encoded frame is {n} bytes, above {MAX_DATAGRAM_BYTES}")
            }
            EncodeError::Serialize(why) => write!(f, "cannot serialize: {why}"),
            EncodeError::NoKey(receiver) => write!(
                f,
                "no key to sign for receiver {receiver:#x} (credential {} is not configured)",
                crate::runtime::auth::credential_of(*receiver)
            ),
        }
    }
}

/// Encodes a frame into `buffer` (cleared first) with a zero tag, for the signer to fill in
/// ([`crate::runtime::auth::Auth::frame`] does both). On error nothing may be sent.
pub fn encode<T: Serialize + ?Sized>(
    header: &Header,
    body: &T,
    buffer: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    buffer.clear();
    buffer.extend_from_slice(&MAGIC);
    buffer.push(FORMAT_VERSION);
    buffer.push(header.kind as u8);
    buffer.extend_from_slice(&header.cluster.to_le_bytes());
    buffer.extend_from_slice(&header.sender.to_le_bytes());
    buffer.extend_from_slice(&header.receiver.to_le_bytes());
    buffer.extend_from_slice(&header.key.to_le_bytes());
    buffer.extend_from_slice(&header.boot.to_le_bytes());
    buffer.extend_from_slice(&header.sequence.to_le_bytes());
    // The protocol bounds its messages below the limit, so encoding first and checking after
    // costs nothing in the common case; an oversized frame is refused whole.
    let buffer_after = std::mem::take(buffer);
    match postcard::to_extend(body, buffer_after) {
        Ok(encoded) => *buffer = encoded,
        Err(error) => return Err(EncodeError::Serialize(error.to_string())),
    }
    buffer.extend_from_slice(&[0; TAG_BYTES]);
    if buffer.len() > MAX_DATAGRAM_BYTES {
        let size = buffer.len();
        buffer.clear();
        return Err(EncodeError::Oversized(size));
    }
    Ok(())
}

/// Decodes and checks the fixed header of `datagram`.
pub fn decode_header(datagram: &[u8], cluster: u64) -> Result<Header, DecodeError> {
    if datagram.len() > MAX_DATAGRAM_BYTES {
        return Err(DecodeError::Oversized(datagram.len()));
    }
    if datagram.len() < HEADER_BYTES + TAG_BYTES {
        return Err(DecodeError::Malformed(format!(
            "{} bytes, shorter than the {HEADER_BYTES}-byte header and {TAG_BYTES}-byte tag",
            datagram.len()
        )));
    }
    if datagram[0..4] != MAGIC {
        return Err(DecodeError::Malformed("wrong magic".into()));
    }
    if datagram[4] != FORMAT_VERSION {
        return Err(DecodeError::WrongVersion(datagram[4]));
    }
    let kind = FrameKind::from_byte(datagram[5])
        .ok_or_else(|| DecodeError::Malformed(format!("unknown frame kind {}", datagram[5])))?;
    let word = |at: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&datagram[at..at + 8]);
        u64::from_le_bytes(bytes)
    };
    let mut key = [0u8; 4];
    key.copy_from_slice(&datagram[30..34]);
    let header = Header {
        kind,
        cluster: word(6),
        sender: word(14),
        receiver: word(22),
        key: u32::from_le_bytes(key),
        boot: word(34),
        sequence: word(42),
    };
    if header.cluster != cluster {
        return Err(DecodeError::WrongCluster(header.cluster));
    }
    Ok(header)
}

/// Decodes the body of a datagram whose header [`decode_header`] accepted. Trailing bytes are
/// refused: a well-formed sender never adds any.
pub fn decode_body<T: DeserializeOwned>(datagram: &[u8]) -> Result<T, DecodeError> {
    let end = datagram.len().saturating_sub(TAG_BYTES);
    let body = datagram.get(HEADER_BYTES..end).unwrap_or_default();
    match postcard::take_from_bytes::<T>(body) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(DecodeError::Malformed(format!(
            "{} trailing bytes after the body",
            rest.len()
        ))),
        Err(error) => Err(DecodeError::Malformed(format!("body: {error}"))),
    }
}

/// What the tag covers, and the tag, of a datagram that [`decode_header`] accepted.
pub fn signed_and_tag(datagram: &[u8]) -> (&[u8], &[u8]) {
    datagram.split_at(datagram.len().saturating_sub(TAG_BYTES))
}

/// The body of a status request: a nonce that the reply echoes, so that a reply to an earlier
/// request is not taken for the answer to this one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRequest {
    pub nonce: u64,
}

/// The body of a [`FrameKind::ClientAddress`] frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientAddress {
    pub client: u64,
    pub address: std::net::SocketAddr,
    /// The fingerprint of the key the client signs with: the leader answers under it.
    pub key: u32,
}

/// The body of a [`FrameKind::Refusal`] frame: what the client may not do, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: u64 = 0xfeed;

    fn header() -> Header {
        Header {
            key: 7,
            boot: 8,
            sequence: 9,
            ..Header::new(FrameKind::Protocol, CLUSTER, 1, 2)
        }
    }

    #[test]
    fn a_frame_decodes_to_what_was_encoded() {
        let mut buffer = Vec::new();
        encode(&header(), &("hello", 7u32), &mut buffer).unwrap();
        assert_eq!(decode_header(&buffer, CLUSTER).unwrap(), header());
        let body: (String, u32) = decode_body(&buffer).unwrap();
        assert_eq!(body, ("hello".to_string(), 7));
    }

    #[test]
    fn every_kind_of_bad_datagram_is_refused_with_its_reason() {
        let mut good = Vec::new();
        encode(&header(), &42u64, &mut good).unwrap();
        assert!(matches!(
            decode_header(&good[..10], CLUSTER),
            Err(DecodeError::Malformed(_))
        ));
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(matches!(
            decode_header(&bad, CLUSTER),
            Err(DecodeError::Malformed(_))
        ));
        let mut bad = good.clone();
        bad[4] = FORMAT_VERSION + 1;
        assert_eq!(
            decode_header(&bad, CLUSTER),
            Err(DecodeError::WrongVersion(FORMAT_VERSION + 1))
        );
        let mut bad = good.clone();
        bad[5] = 99;
        assert!(matches!(
            decode_header(&bad, CLUSTER),
            Err(DecodeError::Malformed(_))
        ));
        assert_eq!(
            decode_header(&good, 1),
            Err(DecodeError::WrongCluster(CLUSTER))
        );
        let huge = vec![0u8; MAX_DATAGRAM_BYTES + 1];
        assert!(matches!(
            decode_header(&huge, CLUSTER),
            Err(DecodeError::Oversized(_))
        ));
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decode_body::<u64>(&trailing).is_err());
        assert!(decode_body::<String>(&good[..HEADER_BYTES + TAG_BYTES]).is_err());
    }

    #[test]
    fn a_frame_above_the_limit_is_never_encoded() {
        let mut buffer = Vec::new();
        let big = vec![7u8; MAX_DATAGRAM_BYTES];
        assert!(matches!(
            encode(&header(), &big, &mut buffer),
            Err(EncodeError::Oversized(_))
        ));
        assert!(buffer.is_empty());
    }

    /// A state-transfer chunk of the default size that does not compress at all still fits a
    /// datagram once LZ4 has framed it (LZ4 grows such input by under 1%).
    #[test]
    fn a_full_chunk_of_incompressible_bytes_fits_a_datagram() {
        let limits = crate::replica::Limits::default();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let noise: Vec<u8> = (0..limits.max_chunk_bytes)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let message = crate::Msg::Snapshot {
            slot: u64::MAX,
            digest: u64::MAX,
            total: u64::MAX,
            offset: u64::MAX,
            bytes: crate::replica::snapshot::compress_chunk(&noise),
        };
        let mut buffer = Vec::new();
        encode(&header(), &message, &mut buffer).unwrap();
        assert!(
            buffer.len() > limits.max_chunk_bytes,
            "the noise did not compress"
        );
    }
}
