//! Traces of real runs, for conformance checking against the model (`model -- conform`).
//!
//! Every process records every step of every actor it runs — the input (the start with the
//! recovered storage, a delivery with its source and message, a timeout, a random choice), the
//! outputs, and the digest of the resulting state — plus when each group commit started and
//! when each group's messages were released. A restart is a new `Begin` of the same actor id.
//!
//! - [`record`]: the records and their framing on disk.
//! - [`sink`]: the buffered trace file.
//! - [`recorder`]: the runtime's step observer that writes traces.
//! - [`describe`]: the serializable description of a [`crate::Node`] the model rebuilds.
//! - [`reader`]: reads a directory of trace files back.

pub mod describe;
pub mod reader;
pub mod record;
pub mod recorder;
pub mod sink;

pub use describe::NodeDescription;
pub use record::{Record, Step, TraceInput, TraceOutput};
pub use recorder::TraceRecorder;
pub use sink::{SharedSink, TraceSink};

use crate::node::{Node, Timer};
use crate::replica::Storage;
use crate::Msg;

/// The records of a [`Node`] trace.
pub type NodeRecord = Record<Msg, Timer, (), Storage>;
/// A step of a [`Node`] trace.
pub type NodeStep = Step<Msg, Timer, (), Storage>;

/// A recorder for `node` running as `id`, writing to `sink`.
pub fn recorder_for(sink: SharedSink, id: stateright::actor::Id, node: &Node) -> TraceRecorder {
    TraceRecorder::begin::<Node>(sink, id, NodeDescription::encode(node))
}

/// Has `runtime` record every step of its node into `sink`.
pub fn traced(
    runtime: crate::runtime::Runtime<Node>,
    sink: SharedSink,
) -> crate::runtime::Runtime<Node> {
    let recorder = recorder_for(sink, runtime.id(), runtime.actor());
    runtime.with_observer(Box::new(recorder))
}
