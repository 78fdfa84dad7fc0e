//! What a trace holds, and how records are framed in a trace file.
//!
//! A trace file is a sequence of frames `length u32 | crc32(payload) u32 | payload`, each
//! payload one postcard-encoded [`Record`]. A process killed in the middle of a write leaves at
//! most a torn final frame; the reader drops it (its steps released nothing: see
//! [`super::recorder`] for when records reach the file).

use serde::{Deserialize, Serialize};
use spec::Digest;

/// The largest frame a reader accepts: anything larger is damage, not a record.
pub const MAX_FRAME_BYTES: usize = 64 << 20;

/// One record of a trace. Generic over the actor's message, timer, random-choice and storage
/// types, so that the runtime records any actor; the model reads traces of [`crate::Node`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record<M, T, R, S> {
    /// A runtime began running actor `id`: its first start, or a restart after a crash.
    /// `instance` orders the runtimes that ran the same id (wall-clock nanoseconds at start);
    /// `actor` describes the actor (for [`crate::Node`], a postcard
    /// [`super::NodeDescription`]) so that the model can rebuild the very same actor.
    Begin {
        id: u64,
        instance: u64,
        actor: Vec<u8>,
    },
    /// One actor step.
    Step(Step<M, T, R, S>),
    /// A group commit starts: the storage saved by the steps up to `through` (this instance's
    /// step numbers, from 1) is being made durable; its digest is `storage`. Written before the
    /// fsync, so that a restart can tell which commit its recovered storage came from.
    Commit {
        id: u64,
        through: u64,
        storage: Digest,
    },
    /// The commit of the steps up to `through` is durable (the fsync returned).
    Durable { id: u64, through: u64 },
    /// The messages of the steps up to `through` may leave the process from now on (their
    /// storage is durable).
    Released { id: u64, through: u64 },
}

/// One actor step: its input, its outputs, and the digest of the state it led to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step<M, T, R, S> {
    pub id: u64,
    /// This instance's step number, from 1.
    pub seq: u64,
    /// Wall-clock nanoseconds when the step ran: only a hint for ordering independent steps of
    /// different processes; causality (a delivery after its send) decides where it matters.
    pub time: u64,
    pub input: TraceInput<M, T, R, S>,
    pub outputs: Vec<TraceOutput<T, R>>,
    /// The digest of the actor state after the step.
    pub digest: Digest,
}

/// The input of a step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TraceInput<M, T, R, S> {
    /// The actor starts, with the storage read back from disk (`None`: a fresh start).
    Start { storage: Option<S> },
    /// A message from `src`.
    Deliver { src: u64, msg: M },
    /// A timer fired.
    Timeout { timer: T },
    /// The runtime's pick among the choices the actor offered.
    Random { random: R },
}

/// One output of a step, in the order the actor produced them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TraceOutput<T, R> {
    /// A message to `dst`, by digest: the receiver's delivery records the message itself.
    Send {
        dst: u64,
        msg: Digest,
    },
    SetTimer {
        timer: T,
    },
    CancelTimer {
        timer: T,
    },
    /// The step saved its storage (the digest of the state covers what was saved).
    Save,
    ChooseRandom {
        key: String,
        choices: Vec<R>,
    },
}

impl<M, T, R, S> Record<M, T, R, S> {
    /// The actor the record is about.
    pub fn id(&self) -> u64 {
        match self {
            Record::Begin { id, .. }
            | Record::Commit { id, .. }
            | Record::Durable { id, .. }
            | Record::Released { id, .. } => *id,
            Record::Step(step) => step.id,
        }
    }
}

/// Appends the frame of `record` to `buffer`.
pub fn encode_frame<T: Serialize>(record: &T, buffer: &mut Vec<u8>) -> Result<(), postcard::Error> {
    let start = buffer.len();
    buffer.extend_from_slice(&[0u8; 8]);
    let taken = std::mem::take(buffer);
    *buffer = postcard::to_extend(record, taken)?;
    let length = (buffer.len() - start - 8) as u32;
    let crc = crc32fast::hash(&buffer[start + 8..]);
    buffer[start..start + 4].copy_from_slice(&length.to_le_bytes());
    buffer[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// What is wrong with a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The bytes end inside the frame: a write that a kill interrupted, if it is the last.
    Torn,
    /// The frame's checksum or length is wrong, or its payload does not decode.
    Corrupt(String),
}

/// Decodes the frame at the start of `bytes`: the record and the bytes it took.
pub fn decode_frame<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<(T, usize), FrameError> {
    if bytes.len() < 8 {
        return Err(FrameError::Torn);
    }
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let length = word(0) as usize;
    let crc = word(4);
    if length > MAX_FRAME_BYTES {
        return Err(FrameError::Corrupt(format!(
            "frame length {length} is impossible"
        )));
    }
    let Some(payload) = bytes.get(8..8 + length) else {
        return Err(FrameError::Torn);
    };
    if crc32fast::hash(payload) != crc {
        return Err(FrameError::Corrupt("frame checksum mismatch".into()));
    }
    let record = postcard::from_bytes(payload).map_err(|error| {
        FrameError::Corrupt(format!(
            "record does not decode (written by another build?): {error}"
        ))
    })?;
    Ok((record, 8 + length))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Plain = Record<String, u8, u8, u64>;

    #[test]
    fn frames_round_trip_and_a_torn_or_damaged_frame_is_told_apart() {
        let records: Vec<Plain> = vec![
            Record::Begin {
                id: 3,
                instance: 9,
                actor: vec![1, 2],
            },
            Record::Step(Step {
                id: 3,
                seq: 1,
                time: 5,
                input: TraceInput::Deliver {
                    src: 1,
                    msg: "hello".into(),
                },
                outputs: vec![TraceOutput::Send { dst: 1, msg: 77 }, TraceOutput::Save],
                digest: 42,
            }),
            Record::Released { id: 3, through: 1 },
        ];
        let mut bytes = Vec::new();
        for record in &records {
            encode_frame(record, &mut bytes).unwrap();
        }
        let mut decoded = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let (record, used): (Plain, usize) = decode_frame(&bytes[at..]).unwrap();
            decoded.push(record);
            at += used;
        }
        assert_eq!(decoded, records);
        let last = bytes.len() - 1;
        assert_eq!(
            decode_frame::<Plain>(&bytes[..5]).unwrap_err(),
            FrameError::Torn
        );
        let mut damaged = bytes.clone();
        damaged[last] ^= 1;
        let (_, first) = decode_frame::<Plain>(&damaged).unwrap();
        let (_, second) = decode_frame::<Plain>(&damaged[first..]).unwrap();
        assert!(matches!(
            decode_frame::<Plain>(&damaged[first + second..]),
            Err(FrameError::Corrupt(_))
        ));
    }
}
