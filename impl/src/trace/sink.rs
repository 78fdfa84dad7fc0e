//! The trace file of one process (or of one thread's actors): records are encoded into a
//! buffer as steps run, and the buffer is written to the file at the points where something
//! of those steps is about to become visible outside the process (see [`super::recorder`]).
//!
//! Writes go to the page cache with `write(2)`; no fsync. A process killed with `kill -9`
//! keeps everything it had written, which is the failure traces are for; a machine crash may
//! lose the end of a trace, and conformance then reports the deliveries it cannot explain.

use super::record::encode_frame;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The buffer is written out once it holds this much, even before a flush point: writing
/// early is always safe, and it bounds the memory a busy process spends on its trace.
pub const MAX_TRACE_BUFFER_BYTES: usize = 1 << 20;

/// A trace file with its write buffer. Dropping it does not write the buffer out: the
/// runtime flushes when it stops, and a runtime that dies without stopping loses what it had
/// not flushed, as a killed process does.
#[derive(Debug)]
pub struct TraceSink {
    path: PathBuf,
    file: File,
    buffer: Vec<u8>,
    /// The first write error; the trace is unusable after it, and the runtime stops.
    failed: Option<String>,
}

/// A trace sink shared by the actors of one thread (the bench's client lanes share one).
pub type SharedSink = Arc<Mutex<TraceSink>>;

impl TraceSink {
    /// Creates `path` (which must not exist: two runs never mix in one file).
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().write(true).create_new(true).open(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            buffer: Vec::with_capacity(64 * 1024),
            failed: None,
        })
    }

    /// Creates a new file `<prefix>-<n>.trace` in `dir` with the first free `n`.
    pub fn create_in(dir: &Path, prefix: &str) -> std::io::Result<SharedSink> {
        std::fs::create_dir_all(dir)?;
        for n in 0u32.. {
            let path = dir.join(format!("{prefix}-{n}.trace"));
            match Self::create(&path) {
                Ok(sink) => return Ok(Arc::new(Mutex::new(sink))),
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(error) => return Err(error),
            }
        }
        Err(std::io::Error::other("no free trace file name"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a record to the buffer, writing the buffer out if it is full.
    pub fn append<T: Serialize>(&mut self, record: &T) {
        if self.failed.is_some() {
            return;
        }
        if let Err(error) = encode_frame(record, &mut self.buffer) {
            self.failed = Some(format!("cannot encode a trace record: {error}"));
            return;
        }
        if self.buffer.len() >= MAX_TRACE_BUFFER_BYTES {
            let _ = self.flush();
        }
    }

    /// Writes the buffer to the file. After an error every later call fails too.
    pub fn flush(&mut self) -> Result<(), String> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        if self.buffer.is_empty() {
            return Ok(());
        }
        match self.file.write_all(&self.buffer) {
            Ok(()) => {
                self.buffer.clear();
                Ok(())
            }
            Err(error) => {
                let error = format!("trace {}: cannot write: {error}", self.path.display());
                self.failed = Some(error.clone());
                Err(error)
            }
        }
    }
}
