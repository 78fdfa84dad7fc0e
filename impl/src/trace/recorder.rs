//! The step observer that writes a trace.
//!
//! When records reach the file matters as much as what they say. The rule mirrors the one for
//! storage: nothing of a step becomes visible outside the process before the step is in the
//! trace file. The runtime calls [`TraceRecorder::on_commit`] before it starts a group commit
//! and [`StepObserver::flush`] before it sends a group's messages, and both write the buffer
//! out. So after a `kill -9` the trace holds every step whose messages anyone received, and
//! every commit whose storage a restart can read back; steps after that are either in the
//! trace or had no effect outside the process, and conformance treats them as never taken if
//! the recovered storage says so.

use super::record::{Record, Step, TraceInput, TraceOutput};
use super::sink::SharedSink;
use crate::runtime::{Input, StepObserver};
use serde::Serialize;
use spec::digest_of;
use stateright::actor::{Actor, Command, Id, Out};
use std::hash::Hash;

/// Records every step of one actor instance into a shared sink.
pub struct TraceRecorder {
    sink: SharedSink,
    id: u64,
    /// Steps recorded so far; the next step is `seq + 1`.
    seq: u64,
}

/// The record type of an actor's trace.
pub type RecordOf<A> =
    Record<<A as Actor>::Msg, <A as Actor>::Timer, <A as Actor>::Random, <A as Actor>::Storage>;

impl TraceRecorder {
    /// Starts the trace of actor `id`'s new instance with a `Begin` record that describes the
    /// actor (`actor`: the encoded description the model rebuilds it from).
    pub fn begin<A: Actor>(sink: SharedSink, id: Id, actor: Vec<u8>) -> Self
    where
        A::Msg: Serialize,
        A::Timer: Serialize,
        A::Random: Serialize,
        A::Storage: Serialize,
    {
        let id = usize::from(id) as u64;
        let record: RecordOf<A> = Record::Begin {
            id,
            instance: now_nanos(),
            actor,
        };
        if let Ok(mut sink) = sink.lock() {
            sink.append(&record);
        }
        Self { sink, id, seq: 0 }
    }

    fn append<T: Serialize>(&self, record: &T) {
        // A poisoned lock means another actor's recorder panicked; its runtime stops, and this
        // trace is marked incomplete by the missing records, which conformance reports.
        if let Ok(mut sink) = self.sink.lock() {
            sink.append(record);
        }
    }
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64)
}

impl<A> StepObserver<A> for TraceRecorder
where
    A: Actor,
    A::Msg: Serialize + Hash,
    A::Timer: Serialize,
    A::Random: Serialize,
    A::Storage: Serialize + Hash,
{
    fn on_step(&mut self, _: Id, input: &Input<A>, out: &Out<A>, digest: u64) {
        self.seq += 1;
        let input = match input {
            Input::Start { storage } => TraceInput::Start {
                storage: storage.clone(),
            },
            Input::Deliver { src, msg } => TraceInput::Deliver {
                src: usize::from(*src) as u64,
                msg: msg.clone(),
            },
            Input::Timeout { timer } => TraceInput::Timeout {
                timer: timer.clone(),
            },
            Input::Random { random } => TraceInput::Random {
                random: random.clone(),
            },
        };
        let outputs = out.iter().map(trace_output::<A>).collect();
        let record: RecordOf<A> = Record::Step(Step {
            id: self.id,
            seq: self.seq,
            time: now_nanos(),
            input,
            outputs,
            digest,
        });
        self.append(&record);
    }

    fn on_commit(&mut self, through: u64, storage: &A::Storage) -> Result<(), String> {
        let record: RecordOf<A> = Record::Commit {
            id: self.id,
            through,
            storage: digest_of(storage),
        };
        self.append(&record);
        <Self as StepObserver<A>>::flush(self)
    }

    fn on_durable(&mut self, through: u64) {
        let record: RecordOf<A> = Record::Durable {
            id: self.id,
            through,
        };
        self.append(&record);
    }

    fn on_release(&mut self, through: u64) {
        let record: RecordOf<A> = Record::Released {
            id: self.id,
            through,
        };
        self.append(&record);
    }

    fn flush(&mut self) -> Result<(), String> {
        match self.sink.lock() {
            Ok(mut sink) => sink.flush(),
            Err(_) => Err("the trace sink's lock is poisoned".into()),
        }
    }
}

/// The trace form of one output.
pub fn trace_output<A>(
    command: &Command<A::Msg, A::Timer, A::Random, A::Storage>,
) -> TraceOutput<A::Timer, A::Random>
where
    A: Actor,
    A::Msg: Hash,
{
    match command {
        Command::Send(dst, msg) => TraceOutput::Send {
            dst: usize::from(*dst) as u64,
            msg: digest_of(msg),
        },
        Command::SetTimer(timer, _) => TraceOutput::SetTimer {
            timer: timer.clone(),
        },
        Command::CancelTimer(timer) => TraceOutput::CancelTimer {
            timer: timer.clone(),
        },
        Command::Save(_) => TraceOutput::Save,
        Command::ChooseRandom(key, choices) => TraceOutput::ChooseRandom {
            key: key.clone(),
            choices: choices.clone(),
        },
    }
}
