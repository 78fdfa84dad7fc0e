//! How a service state is laid out for state transfer: a header, then the key-value machine's
//! ranges one after the other.
//!
//! ```text
//! u32 LE   header length h
//! h bytes  the header: postcard(Header)
//! ...      each range of the header's list in order: postcard(its entries)
//! ```
//!
//! The header holds everything but the machine's entries (the session table, the
//! configuration, the slot) and the list of ranges, each with its first key, its digest and its
//! encoded length. A receiver reads the header first and then asks only for the bytes of the
//! ranges it does not hold already with the same digest: "send only the state components that
//! differ" (the optimized state transfer of Castro and Liskov's PBFT, section 5.3.2, over ranges
//! of keys). Ranges are split by their keys alone (`spec::kv`), so a replica that missed 1% of
//! the writes holds nearly every range of its peer's state. Nothing is trusted from the sender:
//! the assembled state is checked against its invariants and the announced digest before it is
//! installed (`transfer`).
//!
//! The sender never encodes the whole state at once. A checkpoint is *indexed* the first time a
//! transfer needs it ([`SnapshotIndex`]: the header, and where each range starts, which costs
//! one walk over the entries to measure them but no copy of them), and each chunk is cut on
//! demand by encoding the ranges it overlaps. Encoding a 1 GB state whole stalled the replica's
//! thread for 1.5 to 2.2 s, past the election timeout; indexing it takes about 55 ms, and a
//! chunk tens of microseconds. Each chunk is compressed on its own (LZ4) on the wire (`lending`).

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

fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("a service state always encodes")
}

/// A state's snapshot as a transfer serves it: the header encoded, and where each range's
/// bytes start. Chunks are cut from it on demand ([`SnapshotIndex::chunk`]).
#[derive(Debug)]
pub struct SnapshotIndex {
    /// The length prefix and the header.
    header: Vec<u8>,
    /// Each range's first byte in the snapshot, in key order, then the snapshot's size.
    starts: Vec<u64>,
    /// Each range's first key, in the same order: where a chunk's ranges are found.
    keys: Vec<Key>,
}

impl SnapshotIndex {
    /// Indexes `state`: encodes the header, and measures each range's encoding without
    /// making it.
    pub fn of(state: &ServiceState) -> Self {
        let ranges: Vec<(Key, Digest, u64)> = state
            .machine
            .ranges()
            .map(|(start, range)| {
                let length = postcard::experimental::serialized_size(range.entries())
                    .expect("a range always encodes");
                (start.clone(), range.digest(), length as u64)
            })
            .collect();
        let keys: Vec<Key> = ranges.iter().map(|(start, _, _)| start.clone()).collect();
        let lengths: Vec<u64> = ranges.iter().map(|(_, _, length)| *length).collect();
        let header = encode(&Header {
            sessions: state.sessions.snapshot(),
            configuration: state.configuration.clone(),
            applied: state.applied,
            ranges,
        });
        let mut bytes = Vec::with_capacity(LENGTH_BYTES as usize + header.len());
        bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&header);
        let mut starts = Vec::with_capacity(lengths.len() + 1);
        let mut at = bytes.len() as u64;
        for length in lengths {
            starts.push(at);
            at += length;
        }
        starts.push(at);
        SnapshotIndex {
            header: bytes,
            starts,
            keys,
        }
    }

    /// The snapshot's size.
    pub fn total(&self) -> u64 {
        *self.starts.last().expect("the end")
    }

    /// The bytes `offset..offset + len` (cut at the end) of the snapshot of `state`, the state
    /// this index was made of: it encodes only the ranges those bytes overlap.
    pub fn chunk(&self, state: &ServiceState, offset: u64, len: u64) -> Vec<u8> {
        let end = offset.saturating_add(len).min(self.total());
        let mut bytes = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut at = offset;
        let header_end = self.header.len() as u64;
        if at < header_end.min(end) {
            bytes.extend_from_slice(&self.header[at as usize..header_end.min(end) as usize]);
            at = header_end.min(end);
        }
        if at >= end {
            return bytes;
        }
        // The range holding byte `at`: the last one starting at or before it.
        let first = self.starts.partition_point(|start| *start <= at) - 1;
        let ranges = state.machine.ranges_from(&self.keys[first]);
        for ((_, range), start) in ranges.zip(&self.starts[first..]) {
            if *start >= end {
                break;
            }
            let encoded = encode(range.entries());
            let from = (at - start) as usize;
            let to = ((end - start) as usize).min(encoded.len());
            bytes.extend_from_slice(&encoded[from..to]);
            at = start + to as u64;
        }
        bytes
    }
}

/// Lays `state` out for transfer whole (for tests and tools; a transfer cuts chunks from a
/// [`SnapshotIndex`] instead).
pub fn encode_snapshot(state: &ServiceState) -> Vec<u8> {
    let index = SnapshotIndex::of(state);
    index.chunk(state, 0, index.total())
}

/// Where the header ends, from the snapshot's first [`LENGTH_BYTES`] bytes.
pub fn header_end(prefix: &[u8]) -> Option<u64> {
    let length = u32::from_le_bytes(*prefix.first_chunk::<4>()?);
    Some(LENGTH_BYTES + u64::from(length))
}

/// Decodes the header (the snapshot's bytes up to [`header_end`]) of a snapshot of `total`
/// bytes, refusing one whose ranges do not fill the snapshot exactly.
pub fn decode_layout(header: &[u8], total: u64) -> Result<Layout, String> {
    let end = header_end(header).ok_or("a snapshot shorter than its header's length")?;
    let bytes = header
        .get(LENGTH_BYTES as usize..end as usize)
        .ok_or("a header shorter than its length")?;
    let header: Header = postcard::from_bytes(bytes).map_err(|e| e.to_string())?;
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
/// replica holds), checking each range's digest and the state's invariants.
pub fn assemble<'a>(
    layout: &Layout,
    mut range: impl FnMut(&Span) -> Result<RangeSource<'a>, String>,
) -> Result<ServiceState, String> {
    let mut ranges = Vec::with_capacity(layout.ranges());
    for span in layout.spans() {
        let decoded = match range(&span)? {
            RangeSource::Held(held) => held,
            RangeSource::Bytes(bytes) => {
                let entries: BTreeMap<Key, Value> =
                    postcard::from_bytes(&bytes).map_err(|e| e.to_string())?;
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

/// Decodes a whole snapshot, checking its invariants, and refusing one larger than
/// `max_bytes`.
pub fn decode_snapshot(bytes: &[u8], max_bytes: u64) -> Result<ServiceState, String> {
    if bytes.len() as u64 > max_bytes {
        return Err(format!(
            "a snapshot of {} bytes, above the limit of {max_bytes}",
            bytes.len()
        ));
    }
    let layout = decode_layout(bytes, bytes.len() as u64)?;
    assemble(&layout, |span| {
        Ok(RangeSource::Bytes(Cow::Borrowed(
            &bytes[span.from as usize..span.to as usize],
        )))
    })
}

/// Compresses a chunk for the wire (LZ4, its size first).
pub fn compress_chunk(bytes: &[u8]) -> Vec<u8> {
    lz4_flex::compress_prepend_size(bytes)
}

/// Decompresses a chunk from the wire, refusing before any allocation one that says it is
/// larger than `max_bytes`.
pub fn decompress_chunk(bytes: &[u8], max_bytes: u64) -> Result<Vec<u8>, String> {
    let size = bytes
        .first_chunk::<4>()
        .map(|prefix| u32::from_le_bytes(*prefix))
        .ok_or("a chunk shorter than its size prefix")?;
    if u64::from(size) > max_bytes {
        return Err(format!(
            "a chunk of {size} bytes decompressed, above the limit of {max_bytes}"
        ));
    }
    lz4_flex::decompress_size_prepended(bytes).map_err(|e| e.to_string())
}

/// A checkpoint's [`SnapshotIndex`], made the first time a transfer needs it and shared by
/// every copy of the checkpoint (`Checkpoint::index`). It is derived from the checkpoint's
/// state, so it takes no part in comparing checkpoints.
#[derive(Clone, Default)]
pub struct IndexCache(Arc<OnceLock<Arc<SnapshotIndex>>>);

impl IndexCache {
    /// The index of `state`, made at the first call.
    pub fn get_or_index(&self, state: &ServiceState) -> Arc<SnapshotIndex> {
        self.0
            .get_or_init(|| Arc::new(SnapshotIndex::of(state)))
            .clone()
    }

    /// The snapshot's size, if it was indexed already (without indexing it).
    pub fn total_if_indexed(&self) -> Option<u64> {
        self.0.get().map(|index| index.total())
    }
}

impl PartialEq for IndexCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for IndexCache {}

impl std::fmt::Debug for IndexCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.get() {
            Some(index) => write!(f, "IndexCache({} bytes)", index.total()),
            None => write!(f, "IndexCache(not yet)"),
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
        let layout = decode_layout(&bytes, bytes.len() as u64).unwrap();
        assert_eq!(layout.ranges(), state.machine.ranges().count());
        assert!(layout.ranges() > 10);
    }

    #[test]
    fn held_ranges_stand_in_for_their_bytes() {
        let state = state_with(500);
        let bytes = encode_snapshot(&state);
        let layout = decode_layout(&bytes, bytes.len() as u64).unwrap();
        let assembled = assemble(&layout, |span| match state.machine.range(span.start) {
            Some(held) => Ok(RangeSource::Held(held.clone())),
            None => Err("missing".into()),
        })
        .unwrap();
        assert_eq!(assembled, state);
        // A held range with another digest is refused.
        let other = state_with(501);
        let result = assemble(&layout, |span| {
            Ok(RangeSource::Held(
                other.machine.range(span.start).unwrap().clone(),
            ))
        });
        assert!(result.is_err());
    }

    #[test]
    fn chunks_cut_on_demand_are_the_bytes_of_the_whole_snapshot() {
        let state = state_with(300);
        let index = SnapshotIndex::of(&state);
        let whole = encode_snapshot(&state);
        assert_eq!(whole.len() as u64, index.total());
        for chunk in [1, 7, 64, 1000] {
            let mut joined = Vec::new();
            for offset in (0..index.total()).step_by(chunk) {
                joined.extend(index.chunk(&state, offset, chunk as u64));
            }
            assert_eq!(joined, whole, "chunks of {chunk} bytes");
        }
        // Any offset, not only multiples of the chunk size.
        assert_eq!(index.chunk(&state, 13, 100), whole[13..113]);
    }

    #[test]
    fn a_chunk_that_claims_to_decompress_beyond_the_limit_is_refused_before_allocating() {
        let mut bytes = compress_chunk(&[7; 100]);
        assert_eq!(decompress_chunk(&bytes, 100).unwrap(), vec![7; 100]);
        assert!(decompress_chunk(&bytes, 99).is_err());
        bytes[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        let error = decompress_chunk(&bytes, 1 << 20).unwrap_err();
        assert!(error.contains("above the limit"), "{error}");
        assert!(decompress_chunk(&[1, 2], 1 << 20).is_err(), "too short");
        assert!(decode_snapshot(&[1, 2], 1 << 20).is_err(), "too short");
    }
}
