//! How a service state is encoded for state transfer: a header, then the key-value machine's
//! ranges one after the other, each compressed on its own (LZ4).
//!
//! ```text
//! u32 LE   header length h
//! h bytes  the header: LZ4(postcard(Header)), with its uncompressed size first
//! ...      each range of the header's list in order: LZ4(postcard(entries)), likewise
//! ```
//!
//! The header holds everything but the machine's entries (the session table, the
//! configuration, the slot) and the list of ranges, each with its first key, its digest and
//! where its bytes lie. A receiver reads the header first and then asks only for the bytes of
//! the ranges it does not hold already with the same digest: "send only the state components
//! that differ" (the optimized state transfer of Castro and Liskov's PBFT, section 5.3.2, over
//! ranges of keys). Ranges are split by their keys alone (`spec::kv`), so a replica that
//! missed 1% of the writes holds nearly every range of its peer's state. Nothing is trusted
//! from the sender: the assembled state is checked against its invariants and the announced
//! digest before it is installed (`transfer`).

use serde::{Deserialize, Serialize};
use spec::kv::Range;
use spec::session::SessionsSnapshot;
use spec::{Configuration, Digest, Key, KvStore, ServiceState, Sessions, Slot, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// The bytes of the header's length, first in every snapshot.
pub const LENGTH_BYTES: u64 = 4;

/// Everything of a service state but the machine's entries, and where those lie.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Header {
    sessions: SessionsSnapshot,
    configuration: Configuration,
    applied: Slot,
    /// Each range's first key, digest and encoded length, in key order.
    ranges: Vec<(Key, Digest, u64)>,
}

/// A decoded header: the state's parts other than the entries, and each range's place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    header: Header,
    /// Where each range's bytes start and end in the snapshot, in the header's order.
    spans: Vec<(u64, u64)>,
}

/// A range of the layout: its first key, its digest and where its bytes lie.
pub struct Span<'a> {
    pub start: &'a Key,
    pub digest: Digest,
    pub from: u64,
    pub to: u64,
}

impl Layout {
    /// The ranges in order.
    pub fn spans(&self) -> impl Iterator<Item = Span<'_>> {
        self.header
            .ranges
            .iter()
            .zip(&self.spans)
            .map(|((start, digest, _), (from, to))| Span {
                start,
                digest: *digest,
                from: *from,
                to: *to,
            })
    }

    /// The number of ranges.
    pub fn ranges(&self) -> usize {
        self.spans.len()
    }
}

fn compress<T: Serialize>(value: &T) -> Vec<u8> {
    let encoded = postcard::to_allocvec(value).expect("a service state always encodes");
    lz4_flex::compress_prepend_size(&encoded)
}

/// Decompresses what [`compress`] made, refusing before any allocation one that says it
/// decompresses to more than `max_bytes`.
fn decompress<T: for<'de> Deserialize<'de>>(bytes: &[u8], max_bytes: u64) -> Result<T, String> {
    let size = declared_size(bytes).ok_or("a part shorter than its size prefix")?;
    if size > max_bytes {
        return Err(format!(
            "a part of {size} bytes decompressed, above the limit of {max_bytes}"
        ));
    }
    let encoded = lz4_flex::decompress_size_prepended(bytes).map_err(|e| e.to_string())?;
    postcard::from_bytes(&encoded).map_err(|e| e.to_string())
}

/// The size a compressed part says it decompresses to.
fn declared_size(bytes: &[u8]) -> Option<u64> {
    Some(u32::from_le_bytes(*bytes.first_chunk::<4>()?).into())
}

/// Encodes a service state for transfer.
pub fn encode_snapshot(state: &ServiceState) -> Vec<u8> {
    let ranges: Vec<Vec<u8>> = state
        .machine
        .ranges()
        .map(|(_, range)| compress(range.entries()))
        .collect();
    let header = Header {
        sessions: state.sessions.snapshot(),
        configuration: state.configuration.clone(),
        applied: state.applied,
        ranges: state
            .machine
            .ranges()
            .zip(&ranges)
            .map(|((start, range), bytes)| (start.clone(), range.digest(), bytes.len() as u64))
            .collect(),
    };
    let header = compress(&header);
    let total = LENGTH_BYTES as usize + header.len() + ranges.iter().map(Vec::len).sum::<usize>();
    let mut bytes = Vec::with_capacity(total);
    bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&header);
    for range in ranges {
        bytes.extend_from_slice(&range);
    }
    bytes
}

/// Where the header ends, from the snapshot's first [`LENGTH_BYTES`] bytes.
pub fn header_end(prefix: &[u8]) -> Option<u64> {
    let length = u32::from_le_bytes(*prefix.first_chunk::<4>()?);
    Some(LENGTH_BYTES + u64::from(length))
}

/// Decodes the header (the snapshot's bytes up to [`header_end`]) of a snapshot of `total`
/// bytes, refusing one whose ranges do not fill the snapshot exactly.
pub fn decode_layout(header: &[u8], total: u64, max_bytes: u64) -> Result<Layout, String> {
    let end = header_end(header).ok_or("a snapshot shorter than its header's length")?;
    let bytes = header
        .get(LENGTH_BYTES as usize..end as usize)
        .ok_or("a header shorter than its length")?;
    let header: Header = decompress(bytes, max_bytes)?;
    let mut spans = Vec::with_capacity(header.ranges.len());
    let mut from = end;
    for (_, _, length) in &header.ranges {
        let to = from
            .checked_add(*length)
            .filter(|to| *to <= total)
            .ok_or("ranges beyond the end of the snapshot")?;
        spans.push((from, to));
        from = to;
    }
    if from != total {
        return Err(format!(
            "ranges end at byte {from} of a snapshot of {total}"
        ));
    }
    Ok(Layout { header, spans })
}

/// Assembles the state a layout describes, each range from `range` (its bytes, or one this
/// replica holds), checking the state's invariants. `max_bytes` bounds what the ranges
/// decompress to, together.
pub fn assemble<'a>(
    layout: &Layout,
    max_bytes: u64,
    mut range: impl FnMut(&Span) -> Result<RangeSource<'a>, String>,
) -> Result<ServiceState, String> {
    let mut budget = max_bytes;
    let mut ranges = Vec::with_capacity(layout.ranges());
    for span in layout.spans() {
        let decoded = match range(&span)? {
            RangeSource::Held(held) => held,
            RangeSource::Bytes(bytes) => {
                let entries: BTreeMap<Key, Value> = decompress(&bytes, budget)?;
                budget -= declared_size(&bytes).expect("decompressed");
                Arc::new(Range::new(entries))
            }
        };
        if decoded.digest() != span.digest {
            return Err(format!("range {:?} does not have its digest", span.start));
        }
        ranges.push((span.start.clone(), decoded));
    }
    let machine = KvStore::from_ranges(ranges).map_err(|e| e.to_string())?;
    let header = &layout.header;
    let sessions = Sessions::restore(header.sessions.clone())?;
    if header.configuration.members.is_empty() || header.configuration.alpha == 0 {
        return Err("the configuration has no members or no α".into());
    }
    Ok(ServiceState {
        machine,
        sessions,
        configuration: header.configuration.clone(),
        applied: header.applied,
    })
}

/// Where [`assemble`] takes a range from.
pub enum RangeSource<'a> {
    /// A range this replica holds with the digest the layout gives.
    Held(Arc<Range>),
    /// The range's bytes as received.
    Bytes(Cow<'a, [u8]>),
}

/// Decodes a whole snapshot, checking its invariants, and refusing before any allocation one
/// whose parts say they decompress to more than `max_bytes`.
pub fn decode_snapshot(bytes: &[u8], max_bytes: u64) -> Result<ServiceState, String> {
    let layout = decode_layout(bytes, bytes.len() as u64, max_bytes)?;
    assemble(&layout, max_bytes, |span| {
        Ok(RangeSource::Bytes(Cow::Borrowed(
            &bytes[span.from as usize..span.to as usize],
        )))
    })
}

/// A checkpoint's encoding for transfer, made once and shared by every copy of the checkpoint
/// (`Checkpoint::encoded`). It is derived from the checkpoint's state, so it takes no part in
/// comparing checkpoints.
#[derive(Clone, Default)]
pub struct EncodedSnapshot(Arc<OnceLock<Arc<[u8]>>>);

impl EncodedSnapshot {
    /// The encoding of `state`, made at the first call.
    pub fn get_or_encode(&self, state: &ServiceState) -> Arc<[u8]> {
        self.0.get_or_init(|| encode_snapshot(state).into()).clone()
    }

    /// The encoding's length, if it was made already (without making it).
    pub fn len_if_encoded(&self) -> Option<usize> {
        self.0.get().map(|bytes| bytes.len())
    }

    /// An encoding already known (the bytes a transfer received), kept for later transfers.
    pub fn known(bytes: Vec<u8>) -> Self {
        let cell = OnceLock::new();
        let _ = cell.set(bytes.into());
        EncodedSnapshot(Arc::new(cell))
    }
}

impl PartialEq for EncodedSnapshot {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for EncodedSnapshot {}

impl std::fmt::Debug for EncodedSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.get() {
            Some(bytes) => write!(f, "EncodedSnapshot({} bytes)", bytes.len()),
            None => write!(f, "EncodedSnapshot(not yet)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spec::{KvOp, Operation, Request};
    use stateright::actor::Id;

    fn state_with(keys: u64) -> ServiceState {
        let mut state = ServiceState::new(Configuration::initial([Id::from(0)], 1));
        for key in 0..keys {
            let slot = state.applied;
            state.begin_slot(slot);
            let op = KvOp::Put {
                key: format!("key-{key}").into(),
                value: format!("value-{key}").into(),
            };
            let request = Request {
                client: Id::from(9),
                session: 0,
                number: slot + 1,
                op: Operation::Kv(op),
            };
            state.apply(slot, &request);
        }
        state
    }

    #[test]
    fn a_snapshot_decodes_to_its_state_and_its_layout_names_every_range() {
        let state = state_with(500);
        let bytes = encode_snapshot(&state);
        assert_eq!(decode_snapshot(&bytes, 1 << 30).unwrap(), state);
        let layout = decode_layout(&bytes, bytes.len() as u64, 1 << 30).unwrap();
        assert_eq!(layout.ranges(), state.machine.ranges().count());
        assert!(layout.ranges() > 10);
    }

    #[test]
    fn held_ranges_stand_in_for_their_bytes() {
        let state = state_with(500);
        let bytes = encode_snapshot(&state);
        let layout = decode_layout(&bytes, bytes.len() as u64, 1 << 30).unwrap();
        let assembled = assemble(&layout, 1 << 30, |span| {
            match state.machine.range(span.start) {
                Some(held) => Ok(RangeSource::Held(held.clone())),
                None => Err("missing".into()),
            }
        })
        .unwrap();
        assert_eq!(assembled, state);
        // A held range with another digest is refused.
        let other = state_with(501);
        let result = assemble(&layout, 1 << 30, |span| {
            Ok(RangeSource::Held(
                other.machine.range(span.start).unwrap().clone(),
            ))
        });
        assert!(result.is_err());
    }

    #[test]
    fn a_snapshot_that_claims_to_decompress_beyond_the_limit_is_refused_before_allocating() {
        let state = state_with(3);
        let mut bytes = encode_snapshot(&state);
        bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        let error = decode_snapshot(&bytes, 1 << 20).unwrap_err();
        assert!(error.contains("above the limit"), "{error}");
        assert!(decode_snapshot(&[1, 2], 1 << 20).is_err(), "too short");
    }
}
