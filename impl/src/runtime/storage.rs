//! Durable storage for an actor's `Storage`: a checksummed snapshot plus an append-only log of
//! changes, fsync'd before anything that depends on them is sent.
//!
//! A data directory holds:
//!
//! ```text
//! identity        which cluster and replica the directory belongs to, how it was created and
//!                 whether it ever held state (text; see `runtime::identity`)
//! lock            held (flock) while a process uses the directory
//! damaged-<t>/    what `--recover` moved aside at Unix time t (kept, never read)
//! snapshot.<g>    "SMRSNAP1" | generation u64 | length u64 | crc32 u32 | postcard(Storage)
//! log.<g>         "SMRLOG01" | generation u64 | records... | zeros (preallocated)
//!   record        length u32 | crc32(payload) u32 | crc32(length, crc) u32 | postcard(changes)
//! ```
//!
//! All integers are little-endian. The state is `snapshot.<g>` with the records of `log.<g>`
//! applied in order, for the highest generation `g` (then those of `log.<g+1>` if it is there:
//! a compaction under way, see below). One record holds every change of one group
//! commit, so a group is durable entirely or not at all.
//!
//! Crash safety. Snapshots and new logs are written to a temporary file, fsync'd, renamed into
//! place and the directory fsync'd, so a name never refers to a partial file. Log records are
//! appended and fsync'd (fdatasync) before the runtime sends any message that depends on them.
//! A crash can therefore leave only one thing incomplete: the last record of the newest log,
//! which nobody was told about.
//!
//! Torn writes and damage are told apart by a durability marker: once a record's fsync has
//! returned, an empty record (no changes) is appended after it, without waiting for the disk.
//! So a record that was ever acknowledged is followed by a valid record, and on open an
//! invalid record with no valid record anywhere after it is a torn append: it is zeroed with a
//! warning. Any other damage (an invalid record followed by a valid one, a record whose
//! checksum is right but which does not decode, a bad snapshot, a missing file) is reported
//! with the file, the byte offset and what is wrong, and the replica refuses to start unless
//! told to recover (then the files are moved aside and the replica rebuilds from the others,
//! proofs/RECOVERY.md). The one case the marker cannot decide, a record whose fsync returned,
//! whose marker a power failure then lost, and which is also damaged, is treated as torn.
//!
//! A directory that is missing or empty is never taken for a new one: only
//! [`OpenMode::NewCluster`] creates one, and only [`OpenMode::Recover`] starts over in a
//! directory whose state is gone (see `runtime::identity`).
//!
//! Compaction. When the log grows past [`COMPACT_LOG_BYTES`] and past the snapshot's size (so
//! that compaction costs at most as much as the log it removes), an empty `log.<g+1>` is
//! created and commits go on there at once, while a thread of its own writes the state as it was
//! at that switch as `snapshot.<g+1>` and then deletes generation `g`. The replica's thread
//! never waits for a snapshot of the whole state (seconds for a large one: longer than an
//! election timeout). Until `snapshot.<g+1>` is in place the state is `snapshot.<g>` with
//! `log.<g>` and then `log.<g+1>`, and that is what opening a directory that a crash left so
//! reads (it then writes `snapshot.<g+1>` itself). A crash at any point leaves one of these two
//! complete forms.

use super::identity::{Creation, Identity, IdentityRecord, Mismatch};
use crate::replica::Durable;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The log is compacted into a new snapshot once it is larger than this (and than the snapshot).
pub const COMPACT_LOG_BYTES: u64 = 64 * 1024 * 1024;

/// The log file grows in zero-filled extents of this size, written ahead of the records.
/// An append then overwrites blocks that already exist, so its fdatasync does not have to
/// commit a new file size to the file system journal: on ext4 this roughly halves the
/// latency of the fsync that every acknowledged write waits for.
pub const LOG_EXTENT_BYTES: u64 = 2 * 1024 * 1024;

/// The largest log record or snapshot accepted on reading; anything larger is corruption.
pub const MAX_RECORD_BYTES: u64 = 1 << 30;

const SNAPSHOT_MAGIC: [u8; 8] = *b"SMRSNAP1";
const LOG_MAGIC: [u8; 8] = *b"SMRLOG01";
const SNAPSHOT_HEADER_BYTES: usize = 8 + 8 + 8 + 4;
const LOG_HEADER_BYTES: u64 = 16;
const RECORD_HEADER_BYTES: usize = 12;
const IDENTITY_FILE: &str = "identity";
/// Where `--recover` moves what a damaged directory held.
const DAMAGED_PREFIX: &str = "damaged-";
/// The payload of a durability marker: a postcard-encoded empty list of changes.
const MARKER_PAYLOAD: [u8; 1] = [0];
const MARKER_BYTES: usize = RECORD_HEADER_BYTES + MARKER_PAYLOAD.len();

/// Whether commits wait for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// fsync (fdatasync for log appends) before a commit returns. The default, and the only
    /// setting under which an acknowledged write survives a power failure.
    Fsync,
    /// UNSAFE: never wait for the disk. A crash of the machine (not just the process) can lose
    /// acknowledged writes and break the protocol's guarantees. For experiments only.
    UnsafeNoFsync,
}

/// How to open a data directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// The directory must hold this replica's state, or have been created for a brand-new
    /// cluster and never started.
    Existing,
    /// Create a missing or empty directory for a member of a brand-new cluster (or a spare
    /// that was never a member); refused if it holds state.
    NewCluster,
    /// The replica's storage was lost or damaged: a directory that is missing, empty, damaged
    /// or another replica's is moved aside and the replica starts over, rebuilding its state
    /// from the others; an intact directory is opened as it is.
    Recover,
}

/// What opening a directory found.
#[derive(Debug)]
pub enum Opened<S> {
    /// A directory created for a brand-new cluster and never started: the actor starts fresh.
    New,
    /// The state the directory holds.
    Existing(S),
    /// The state was lost: the actor must rebuild it. `why` says what was wrong, and
    /// `moved_to` where the old files went.
    Lost {
        why: String,
        moved_to: Option<PathBuf>,
    },
}

/// A storage failure: fatal for the process.
#[derive(Debug)]
pub struct StorageError {
    pub path: PathBuf,
    /// Byte offset in the file where the problem is, when it is about a file's content.
    pub offset: Option<u64>,
    pub what: String,
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.offset {
            Some(offset) => write!(
                f,
                "storage {} at byte {offset}: {}",
                self.path.display(),
                self.what
            ),
            None => write!(f, "storage {}: {}", self.path.display(), self.what),
        }
    }
}

impl std::error::Error for StorageError {}

fn failure(path: &Path, offset: Option<u64>, what: impl Into<String>) -> StorageError {
    StorageError {
        path: path.to_path_buf(),
        offset,
        what: what.into(),
    }
}

fn io_failure(path: &Path, doing: &str, error: std::io::Error) -> StorageError {
    failure(path, None, format!("{doing}: {error}"))
}

/// An open data directory.
pub struct DurableStore<S: Durable> {
    dir: PathBuf,
    /// Holds the directory's lock for as long as the store lives.
    _lock: File,
    sync: SyncPolicy,
    generation: u64,
    /// The log of the current generation, opened for appending; `None` before the first save.
    log: Option<File>,
    /// The end of the records in the log.
    log_bytes: u64,
    /// The log file's size: records, then zeros.
    log_allocated: u64,
    snapshot_bytes: u64,
    /// Exactly what the files hold, to compute the changes of the next commit.
    image: Option<S>,
    /// The directory's identity, once read or written.
    record: Option<IdentityRecord>,
    /// The compaction under way: the thread writing the new generation's snapshot, which
    /// answers with that snapshot's size.
    compaction: Option<std::thread::JoinHandle<Result<u64, StorageError>>>,
}

impl<S: Durable> std::fmt::Debug for DurableStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableStore")
            .field("dir", &self.dir)
            .field("generation", &self.generation)
            .field("log_bytes", &self.log_bytes)
            .finish()
    }
}

/// What to tell an operator whose replica has no usable state.
const HINT_EMPTY: &str = "If this replica is a member of a brand-new cluster (or a spare that was never a member), start it once with --new-cluster. If it lost its disk, start it with --recover: it then rebuilds its state from the other replicas before it votes again";
const HINT_DAMAGED: &str = "If its disk was damaged or replaced, start it with --recover: what the directory holds is moved aside (kept, in a damaged-* directory) and the replica rebuilds its state from the other replicas before it votes again";

/// What a directory holds, read without changing it.
enum Found<S> {
    /// No identity and no state: an empty directory.
    Nothing,
    /// An identity written when the directory was created, and no state saved since.
    Unstarted(Creation),
    /// This replica's state.
    State(S),
}

impl<S> Opened<S> {
    /// The state to start the actor from, for an actor that has no way to rebuild lost
    /// storage: `None` for a new directory; an error for a lost one.
    pub fn state(self) -> Result<Option<S>, String> {
        match self {
            Opened::New => Ok(None),
            Opened::Existing(state) => Ok(Some(state)),
            Opened::Lost { why, .. } => Err(why),
        }
    }
}

/// Why a directory cannot be used as it is.
enum Problem {
    /// Its state is missing or damaged: recovery applies.
    Lost(StorageError),
    /// It is not this replica's directory, or the configuration disagrees with it: the
    /// operator must fix the command line or the configuration file.
    Refused(StorageError),
}

impl<S: Durable> DurableStore<S> {
    /// Opens replica `identity`'s data directory `dir` as `mode` says (see [`OpenMode`]) and
    /// reads back what it holds.
    pub fn open(
        dir: &Path,
        identity: &Identity,
        sync: SyncPolicy,
        mode: OpenMode,
    ) -> Result<(Self, Opened<S>), StorageError> {
        if !dir.exists() && mode == OpenMode::Existing {
            return Err(failure(
                dir,
                None,
                format!("the data directory does not exist. {HINT_EMPTY}"),
            ));
        }
        fs::create_dir_all(dir).map_err(|e| io_failure(dir, "cannot create the directory", e))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_failure(&lock_path, "cannot open", e))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |_| {
                failure(
                    dir,
                    None,
                    "the data directory is in use by another process (its lock is held)",
                )
            },
        )?;
        let mut store = Self {
            dir: dir.to_path_buf(),
            _lock: lock,
            sync,
            generation: 0,
            log: None,
            log_bytes: 0,
            log_allocated: 0,
            snapshot_bytes: 0,
            image: None,
            record: None,
            compaction: None,
        };
        let opened = match (store.read(identity), mode) {
            (Ok(Found::Nothing), OpenMode::Existing) => {
                return Err(failure(
                    dir,
                    None,
                    format!("the data directory is empty. {HINT_EMPTY}"),
                ))
            }
            (Ok(Found::Nothing), OpenMode::NewCluster) => {
                store.create_identity(identity, Creation::NewCluster)?;
                Opened::New
            }
            (Ok(Found::Unstarted(Creation::NewCluster)), OpenMode::Existing)
            | (Ok(Found::Unstarted(Creation::NewCluster)), OpenMode::NewCluster) => Opened::New,
            (Ok(Found::Unstarted(Creation::Recovered)), _) => Opened::Lost {
                why: "a rebuild of this replica's lost storage began here and has not saved anything yet".into(),
                moved_to: None,
            },
            (Ok(Found::Nothing | Found::Unstarted(Creation::NewCluster)), OpenMode::Recover) => {
                store.create_identity(identity, Creation::Recovered)?;
                Opened::Lost {
                    why: "the data directory held no state".into(),
                    moved_to: None,
                }
            }
            (Ok(Found::State(_)), OpenMode::NewCluster) => {
                return Err(failure(
                    dir,
                    None,
                    "the data directory already holds this replica's state: start it without --new-cluster",
                ))
            }
            (Ok(Found::State(state)), _) => Opened::Existing(state),
            (Err(Problem::Refused(error)), _) => return Err(error),
            (Err(Problem::Lost(error)), OpenMode::Recover) => {
                let moved_to = store.move_aside()?;
                store.create_identity(identity, Creation::Recovered)?;
                Opened::Lost {
                    why: error.to_string(),
                    moved_to: Some(moved_to),
                }
            }
            (Err(Problem::Lost(error)), _) => {
                return Err(StorageError {
                    what: format!("{}. {HINT_DAMAGED}", error.what),
                    ..error
                })
            }
        };
        Ok((store, opened))
    }

    /// Reads the directory: its identity, then its state, leaving the store ready to append
    /// to it. Touches nothing but a torn final log record, leftover temporary files, and a
    /// compaction a stop cut short (which it finishes).
    fn read(&mut self, expected: &Identity) -> Result<Found<S>, Problem> {
        let dir = self.dir.clone();
        let files = Generations::scan(&dir).map_err(Problem::Refused)?;
        if let Some(stranger) = files.strangers.first() {
            return Err(Problem::Refused(failure(
                &dir.join(stranger),
                None,
                "the data directory holds files that are not a replica's: is --data-dir right?",
            )));
        }
        let has_state = !files.snapshots.is_empty() || !files.logs.is_empty();
        let identity_path = dir.join(IDENTITY_FILE);
        let record = match fs::read_to_string(&identity_path) {
            Ok(text) => IdentityRecord::parse(&text, has_state).map_err(|why| {
                Problem::Lost(failure(
                    &identity_path,
                    None,
                    format!("the identity file is damaged ({why})"),
                ))
            })?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && !has_state => {
                return Ok(Found::Nothing)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(Problem::Lost(failure(
                    &identity_path,
                    None,
                    "missing, but the directory holds replica state: refusing to guess whose it is",
                )))
            }
            Err(error) => {
                return Err(Problem::Lost(io_failure(
                    &identity_path,
                    "cannot read",
                    error,
                )))
            }
        };
        match record.mismatch(expected) {
            Some(Mismatch::Owner(why)) => {
                return Err(Problem::Refused(failure(
                    &identity_path,
                    None,
                    format!("{why}. Give this replica its own --data-dir"),
                )))
            }
            Some(Mismatch::Genesis(why)) => {
                return Err(Problem::Refused(failure(&identity_path, None, why)))
            }
            None => {}
        }
        let creation = record.creation;
        let started = record.started;
        self.record = Some(record);
        let Some(&generation) = files.snapshots.last() else {
            if let Some(log) = files.logs.first() {
                return Err(Problem::Lost(failure(
                    &dir.join(format!("log.{log}")),
                    None,
                    "a log without any snapshot: the directory is damaged",
                )));
            }
            if started {
                return Err(Problem::Lost(failure(
                    &dir,
                    None,
                    "the identity says this replica saved state here, but the state files are gone",
                )));
            }
            return Ok(Found::Unstarted(creation));
        };
        self.read_state(&files, generation)
            .map(Found::State)
            .map_err(Problem::Lost)
    }

    /// Reads generation `generation`'s snapshot and log.
    fn read_state(&mut self, files: &Generations, generation: u64) -> Result<S, StorageError> {
        let dir = self.dir.clone();
        let sync = self.sync;
        // A log one generation past the newest snapshot is a compaction's that a crash cut
        // short, before its snapshot was in place (see the module documentation).
        let interrupted = files.logs.contains(&(generation + 1));
        if let Some(log) = files
            .logs
            .iter()
            .find(|log| **log > generation + u64::from(interrupted))
        {
            return Err(failure(
                &dir.join(format!("log.{log}")),
                None,
                format!("a log newer than the newest snapshot (snapshot.{generation}): the directory is damaged"),
            ));
        }
        let snapshot_path = dir.join(format!("snapshot.{generation}"));
        let (mut state, mut snapshot_bytes) = read_snapshot::<S>(&snapshot_path, generation)?;
        let mut log_path = dir.join(format!("log.{generation}"));
        let mut log_bytes = if files.logs.contains(&generation) {
            replay_log(&log_path, generation, &mut state, Some(sync))?
        } else {
            // The crash came between the snapshot's rename and the new log's.
            create_log(&dir, generation, sync)?
        };
        let mut generation = generation;
        if interrupted {
            // Finish the compaction: the state at its switch is the snapshot and log read so
            // far; then the new log follows.
            tracing::info!(
                dir = %dir.display(),
                generation = generation + 1,
                "finishing a compaction that a stop interrupted"
            );
            snapshot_bytes = write_snapshot(&dir, generation + 1, &state, sync)?;
            remove(&snapshot_path)?;
            remove(&log_path)?;
            generation += 1;
            log_path = dir.join(format!("log.{generation}"));
            log_bytes = replay_log(&log_path, generation, &mut state, Some(sync))?;
        }
        // Older generations are superseded by the verified newest one.
        for old in files.snapshots.iter().filter(|g| **g < generation) {
            remove(&dir.join(format!("snapshot.{old}")))?;
        }
        for old in files.logs.iter().filter(|g| **g < generation) {
            remove(&dir.join(format!("log.{old}")))?;
        }
        self.generation = generation;
        self.snapshot_bytes = snapshot_bytes;
        self.log_bytes = log_bytes;
        let log = open_log(&log_path)?;
        self.log_allocated = file_size(&log, &log_path)?;
        self.log = Some(log);
        self.image = Some(state.clone());
        self.mark_started()?;
        Ok(state)
    }

    /// Writes the identity of a directory created now.
    fn create_identity(
        &mut self,
        identity: &Identity,
        creation: Creation,
    ) -> Result<(), StorageError> {
        let record = IdentityRecord::new(identity.clone(), creation);
        write_atomically(
            &self.dir,
            &self.dir.join(IDENTITY_FILE),
            record.format().as_bytes(),
            self.sync,
        )?;
        self.record = Some(record);
        Ok(())
    }

    /// Records in the identity that the replica has saved state here (once).
    fn mark_started(&mut self) -> Result<(), StorageError> {
        let Some(record) = self.record.as_mut().filter(|r| !r.started) else {
            return Ok(());
        };
        record.started = true;
        let text = record.format();
        write_atomically(
            &self.dir,
            &self.dir.join(IDENTITY_FILE),
            text.as_bytes(),
            self.sync,
        )
    }

    /// Moves everything the directory holds (but its lock and earlier moved-aside files) into
    /// a new `damaged-<unix seconds>` directory inside it, and returns its path.
    fn move_aside(&mut self) -> Result<PathBuf, StorageError> {
        let seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut aside = self.dir.join(format!("{DAMAGED_PREFIX}{seconds}"));
        let mut suffix = 1;
        while aside.exists() {
            aside = self.dir.join(format!("{DAMAGED_PREFIX}{seconds}-{suffix}"));
            suffix += 1;
        }
        fs::create_dir(&aside).map_err(|e| io_failure(&aside, "cannot create", e))?;
        let entries =
            fs::read_dir(&self.dir).map_err(|e| io_failure(&self.dir, "cannot list", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_failure(&self.dir, "cannot list", e))?;
            let name = entry.file_name();
            let text = name.to_string_lossy();
            if text == "lock" || text.starts_with(DAMAGED_PREFIX) {
                continue;
            }
            fs::rename(entry.path(), aside.join(&name))
                .map_err(|e| io_failure(&entry.path(), "cannot move aside", e))?;
        }
        sync_dir(&aside, self.sync)?;
        sync_dir(&self.dir, self.sync)?;
        self.generation = 0;
        self.log = None;
        self.log_bytes = 0;
        self.log_allocated = 0;
        self.snapshot_bytes = 0;
        self.image = None;
        self.record = None;
        Ok(aside)
    }

    /// Reads what the directory holds without locking or repairing it (a torn final record
    /// is ignored, not truncated): for tools and tests that look at a live replica's files.
    pub fn inspect(dir: &Path) -> Result<Option<S>, StorageError> {
        let files = Generations::scan_read_only(dir)?;
        let Some(&generation) = files.snapshots.last() else {
            return Ok(None);
        };
        let (mut state, _) =
            read_snapshot::<S>(&dir.join(format!("snapshot.{generation}")), generation)?;
        for log in [generation, generation + 1] {
            // `log.<g+1>` without its snapshot: a compaction under way.
            if files.logs.contains(&log) {
                replay_log(&dir.join(format!("log.{log}")), log, &mut state, None)?;
            }
        }
        Ok(Some(state))
    }

    /// What the newest snapshot holds, without the log's records after it: an older state than
    /// [`DurableStore::open`] reads. Only for the seeded stale-restart bug.
    pub fn snapshot_only(dir: &Path) -> Result<Option<S>, StorageError> {
        let files = Generations::scan_read_only(dir)?;
        let Some(&generation) = files.snapshots.last() else {
            return Ok(None);
        };
        let path = dir.join(format!("snapshot.{generation}"));
        Ok(Some(read_snapshot::<S>(&path, generation)?.0))
    }

    /// Makes `latest` durable: appends its changes since the last commit as one record and
    /// waits for the disk (unless the policy is unsafe). Compacts when the log is large.
    pub fn commit(&mut self, latest: S) -> Result<(), StorageError> {
        if self.image.is_none() {
            // The first save of a brand-new directory is a snapshot of its own; from then on
            // the directory is marked as holding state.
            self.write_generation(self.generation + 1, &latest)?;
            self.image = Some(latest);
            return self.mark_started();
        }
        // A compaction that ended: its failure stops this commit before anything is appended.
        self.finish_compaction(false)?;
        let image = self.image.as_ref().expect("saved before");
        let changes = latest.changes_since(image);
        if changes.is_empty() {
            return Ok(());
        }
        let log_path = self.log_path(self.generation);
        let payload = postcard::to_stdvec(&changes)
            .map_err(|e| failure(&log_path, None, format!("cannot encode changes: {e}")))?;
        let record = encode_record(&payload);
        let marker_at = self.log_bytes + record.len() as u64;
        let end = marker_at + MARKER_BYTES as u64;
        if end > self.log_allocated {
            self.extend_log(end)?;
        }
        let log = self.log.as_ref().expect("a store with an image has a log");
        log.write_all_at(&record, self.log_bytes)
            .map_err(|e| io_failure(&log_path, "cannot append", e))?;
        if self.sync == SyncPolicy::Fsync {
            log.sync_data()
                .map_err(|e| io_failure(&log_path, "cannot fsync", e))?;
        }
        // The durability marker: the record is on disk, so damage to it found later is
        // corruption, not a torn append (see the module documentation). It reaches the disk
        // with the next commit's fsync, or the page cache's write-back (or, for the last
        // record of a log that a compaction leaves, the fsync before the switch).
        log.write_all_at(&encode_record(&MARKER_PAYLOAD), marker_at)
            .map_err(|e| io_failure(&log_path, "cannot append", e))?;
        self.log_bytes = end;
        if self.log_bytes > COMPACT_LOG_BYTES
            && self.log_bytes > self.snapshot_bytes
            && self.compaction.is_none()
        {
            self.start_compaction(latest.clone())?;
        }
        self.image = Some(latest);
        Ok(())
    }

    /// Starts a compaction: commits go to a new, empty log from now on, and a thread writes
    /// `state` (what the files hold at this switch) as the new generation's snapshot, then
    /// removes the old generation.
    fn start_compaction(&mut self, state: S) -> Result<(), StorageError> {
        let previous = self.generation;
        let generation = previous + 1;
        if self.sync == SyncPolicy::Fsync {
            // The old log's last durability marker must be on disk before commits move on: a
            // stop before the snapshot is written makes opening read this log again, and damage
            // to its last record must then show as damage, not as a torn append.
            let path = self.log_path(previous);
            let log = self.log.as_ref().expect("a store with an image has a log");
            log.sync_data()
                .map_err(|e| io_failure(&path, "cannot fsync", e))?;
        }
        self.switch_log(generation)?;
        let (dir, sync) = (self.dir.clone(), self.sync);
        self.compaction = Some(std::thread::spawn(move || {
            let bytes = write_snapshot(&dir, generation, &state, sync)?;
            remove(&dir.join(format!("snapshot.{previous}")))?;
            remove(&dir.join(format!("log.{previous}")))?;
            Ok(bytes)
        }));
        Ok(())
    }

    /// Collects a compaction that has ended (or, with `wait`, waits for it): its snapshot's
    /// size from now on, or its failure.
    fn finish_compaction(&mut self, wait: bool) -> Result<(), StorageError> {
        let ended = self.compaction.as_ref().is_some_and(|t| t.is_finished());
        if !(ended || wait) {
            return Ok(());
        }
        let Some(thread) = self.compaction.take() else {
            return Ok(());
        };
        let written = thread
            .join()
            .unwrap_or_else(|_| Err(failure(&self.dir, None, "the compaction thread panicked")))?;
        self.snapshot_bytes = written;
        Ok(())
    }

    /// Creates generation `generation`'s empty log and appends to it from now on.
    fn switch_log(&mut self, generation: u64) -> Result<(), StorageError> {
        let log_bytes = create_log(&self.dir, generation, self.sync)?;
        let log_path = self.log_path(generation);
        let log = open_log(&log_path)?;
        self.log_allocated = file_size(&log, &log_path)?;
        self.log = Some(log);
        self.log_bytes = log_bytes;
        self.generation = generation;
        Ok(())
    }

    /// Grows the log with zeros to whole extents past `end`, and makes the new size durable.
    fn extend_log(&mut self, end: u64) -> Result<(), StorageError> {
        let path = self.log_path(self.generation);
        let log = self.log.as_ref().expect("a store with an image has a log");
        let target = (end / LOG_EXTENT_BYTES + 1) * LOG_EXTENT_BYTES;
        write_zeros(log, &path, self.log_allocated, target)?;
        if self.sync == SyncPolicy::Fsync {
            log.sync_all()
                .map_err(|e| io_failure(&path, "cannot fsync", e))?;
        }
        self.log_allocated = target;
        Ok(())
    }

    /// The current generation (for diagnostics and tests).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn log_path(&self, generation: u64) -> PathBuf {
        self.dir.join(format!("log.{generation}"))
    }

    /// Writes `state` as snapshot `generation` with an empty log, then removes the previous
    /// generation: the first save of a new directory (and tests).
    fn write_generation(&mut self, generation: u64, state: &S) -> Result<(), StorageError> {
        self.finish_compaction(true)?;
        self.snapshot_bytes = write_snapshot(&self.dir, generation, state, self.sync)?;
        let previous = self.generation;
        self.switch_log(generation)?;
        if previous > 0 && previous != generation {
            remove(&self.dir.join(format!("snapshot.{previous}")))?;
            remove(&self.log_path(previous))?;
        }
        Ok(())
    }

    /// Waits for a compaction under way (tests, and a store about to be dropped).
    pub fn wait_for_compaction(&mut self) -> Result<(), StorageError> {
        self.finish_compaction(true)
    }
}

impl<S: Durable> Drop for DurableStore<S> {
    fn drop(&mut self) {
        // A compaction cut short is harmless (opening finishes it), but a clean stop leaves
        // the directory in its simpler form.
        if let Err(error) = self.finish_compaction(true) {
            tracing::warn!(%error, "a compaction failed while the store was closing");
        }
    }
}

/// Writes `state` as snapshot `generation` (atomically: a temporary file, fsync'd, renamed);
/// returns its size.
fn write_snapshot<S: Durable>(
    dir: &Path,
    generation: u64,
    state: &S,
    sync: SyncPolicy,
) -> Result<u64, StorageError> {
    let snapshot_path = dir.join(format!("snapshot.{generation}"));
    let payload = postcard::to_stdvec(state)
        .map_err(|e| failure(&snapshot_path, None, format!("cannot encode: {e}")))?;
    let mut bytes = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + payload.len());
    bytes.extend_from_slice(&SNAPSHOT_MAGIC);
    bytes.extend_from_slice(&generation.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    write_atomically(dir, &snapshot_path, &bytes, sync)?;
    Ok(bytes.len() as u64)
}

/// The generations present in a directory.
struct Generations {
    snapshots: Vec<u64>,
    logs: Vec<u64>,
    /// Names that no replica writes (a file system's `lost+found` and hidden files aside).
    strangers: Vec<String>,
}

impl Generations {
    /// Lists the generations, removing leftover temporary files.
    fn scan(dir: &Path) -> Result<Self, StorageError> {
        Self::list(dir, true)
    }

    fn scan_read_only(dir: &Path) -> Result<Self, StorageError> {
        Self::list(dir, false)
    }

    fn list(dir: &Path, clean: bool) -> Result<Self, StorageError> {
        let mut files = Generations {
            snapshots: Vec::new(),
            logs: Vec::new(),
            strangers: Vec::new(),
        };
        let entries = fs::read_dir(dir).map_err(|e| io_failure(dir, "cannot list", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_failure(dir, "cannot list", e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                // A write that a crash interrupted before its rename: never part of the state.
                if clean {
                    remove(&entry.path())?;
                }
                continue;
            }
            let ours = name == IDENTITY_FILE
                || name == super::auth::boot::BOOT_FILE
                || name == "lock"
                || name == "lost+found"
                || name.starts_with('.')
                || name.starts_with(DAMAGED_PREFIX);
            let generation = name
                .split_once('.')
                .and_then(|(kind, number)| Some((kind, number.parse::<u64>().ok()?)));
            match generation {
                Some(("snapshot", number)) => files.snapshots.push(number),
                Some(("log", number)) => files.logs.push(number),
                _ if ours => {}
                _ => files.strangers.push(name),
            }
        }
        files.snapshots.sort_unstable();
        files.logs.sort_unstable();
        Ok(files)
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, StorageError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut file| file.read_to_end(&mut bytes))
        .map_err(|e| io_failure(path, "cannot read", e))?;
    Ok(bytes)
}

fn read_snapshot<S: Durable>(path: &Path, generation: u64) -> Result<(S, u64), StorageError> {
    let bytes = read_file(path)?;
    if bytes.len() < SNAPSHOT_HEADER_BYTES {
        return Err(failure(
            path,
            Some(0),
            format!("{} bytes, shorter than a snapshot header", bytes.len()),
        ));
    }
    if bytes[0..8] != SNAPSHOT_MAGIC {
        return Err(failure(path, Some(0), "not a snapshot (wrong magic)"));
    }
    let found_generation = u64_at(&bytes, 8);
    if found_generation != generation {
        return Err(failure(
            path,
            Some(8),
            format!("holds generation {found_generation}, its name says {generation}"),
        ));
    }
    let length = u64_at(&bytes, 16);
    let crc = u32_at(&bytes, 24);
    let payload = &bytes[SNAPSHOT_HEADER_BYTES..];
    if payload.len() as u64 != length {
        return Err(failure(
            path,
            Some(16),
            format!(
                "the header says {length} bytes of state, the file has {}",
                payload.len()
            ),
        ));
    }
    if crc32fast::hash(payload) != crc {
        return Err(failure(
            path,
            Some(SNAPSHOT_HEADER_BYTES as u64),
            "checksum mismatch: the snapshot is corrupt",
        ));
    }
    let state = postcard::from_bytes(payload).map_err(|e| {
        failure(
            path,
            Some(SNAPSHOT_HEADER_BYTES as u64),
            format!("checksum ok but the state does not decode: {e}"),
        )
    })?;
    Ok((state, bytes.len() as u64))
}

/// Applies the records of a log to `state`; drops a torn final record, truncating the file
/// unless `repair` is `None` (read-only). Returns the log's valid length.
fn replay_log<S: Durable>(
    path: &Path,
    generation: u64,
    state: &mut S,
    repair: Option<SyncPolicy>,
) -> Result<u64, StorageError> {
    let bytes = read_file(path)?;
    if bytes.len() < LOG_HEADER_BYTES as usize || bytes[0..8] != LOG_MAGIC {
        return Err(failure(path, Some(0), "not a log (short or wrong magic)"));
    }
    if u64_at(&bytes, 8) != generation {
        return Err(failure(
            path,
            Some(8),
            format!(
                "holds generation {}, its name says {generation}",
                u64_at(&bytes, 8)
            ),
        ));
    }
    // Past the last non-zero byte there is only preallocated space.
    let data_end = bytes
        .iter()
        .rposition(|b| *b != 0)
        .map_or(0, |last| last + 1);
    let mut offset = LOG_HEADER_BYTES as usize;
    while offset < data_end {
        let why = match parse_record(&bytes, offset) {
            Ok((payload, next)) => {
                let changes: Vec<S::Change> = postcard::from_bytes(payload).map_err(|e| {
                    failure(
                        path,
                        Some(offset as u64),
                        format!("record checksum ok but it does not decode: {e}"),
                    )
                })?;
                for change in changes {
                    state.apply(change).map_err(|why| {
                        failure(
                            path,
                            Some(offset as u64),
                            format!("record checksum ok but it does not apply: {why}"),
                        )
                    })?;
                }
                offset = next;
                continue;
            }
            Err(why) => why,
        };
        // Appends are sequential and each waits for the previous one's fsync, so only the
        // last can be incomplete. A bad record with a good one after it is damage.
        if let Some(later) = (offset + 1..data_end).find(|at| parse_record(&bytes, *at).is_ok()) {
            return Err(failure(
                path,
                Some(offset as u64),
                format!("{why}, and a valid record follows at byte {later}: the log is corrupt"),
            ));
        }
        let Some(sync) = repair else {
            break;
        };
        tracing::warn!(
            file = %path.display(),
            offset,
            dropped_bytes = data_end - offset,
            "dropping a torn final log record ({why}); it was never acknowledged"
        );
        // Zero it, so that later appends never sit next to its remains.
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| io_failure(path, "cannot open to repair", e))?;
        write_zeros(&file, path, offset as u64, data_end as u64)?;
        if sync == SyncPolicy::Fsync {
            file.sync_all()
                .map_err(|e| io_failure(path, "cannot fsync", e))?;
        }
        break;
    }
    Ok(offset as u64)
}

/// Checks the record at `offset`: its payload and where the next record starts, or what is
/// wrong with it.
fn parse_record(bytes: &[u8], offset: usize) -> Result<(&[u8], usize), String> {
    let rest = &bytes[offset..];
    if rest.len() < RECORD_HEADER_BYTES {
        return Err("incomplete record header".into());
    }
    let length = u32_at(rest, 0);
    let crc = u32_at(rest, 4);
    if crc32fast::hash(&rest[0..8]) != u32_at(rest, 8) {
        return Err("record header checksum mismatch".into());
    }
    if length == 0 || u64::from(length) > MAX_RECORD_BYTES {
        // Every record holds at least one change, so an empty one is never written.
        return Err(format!("record length {length} is impossible"));
    }
    let end = RECORD_HEADER_BYTES + length as usize;
    if rest.len() < end {
        return Err("record extends past the end of the file".into());
    }
    let payload = &rest[RECORD_HEADER_BYTES..end];
    if crc32fast::hash(payload) != crc {
        return Err("record checksum mismatch".into());
    }
    Ok((payload, offset + end))
}

fn encode_record(payload: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(RECORD_HEADER_BYTES + payload.len());
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    let header_crc = crc32fast::hash(&record[0..8]);
    record.extend_from_slice(&header_crc.to_le_bytes());
    record.extend_from_slice(payload);
    record
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

/// Creates the empty log of `generation`, one extent long; returns where its records start.
fn create_log(dir: &Path, generation: u64, sync: SyncPolicy) -> Result<u64, StorageError> {
    let mut bytes = vec![0u8; LOG_EXTENT_BYTES as usize];
    bytes[0..8].copy_from_slice(&LOG_MAGIC);
    bytes[8..16].copy_from_slice(&generation.to_le_bytes());
    write_atomically(dir, &dir.join(format!("log.{generation}")), &bytes, sync)?;
    Ok(LOG_HEADER_BYTES)
}

fn open_log(path: &Path) -> Result<File, StorageError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| io_failure(path, "cannot open for writing", e))
}

fn file_size(file: &File, path: &Path) -> Result<u64, StorageError> {
    file.metadata()
        .map(|metadata| metadata.len())
        .map_err(|e| io_failure(path, "cannot stat", e))
}

/// Writes zeros over `from..to` of `file`.
fn write_zeros(file: &File, path: &Path, from: u64, to: u64) -> Result<(), StorageError> {
    const CHUNK: u64 = 256 * 1024;
    let zeros = vec![0u8; CHUNK.min(to.saturating_sub(from)) as usize];
    let mut at = from;
    while at < to {
        let length = CHUNK.min(to - at) as usize;
        file.write_all_at(&zeros[..length], at)
            .map_err(|e| io_failure(path, "cannot write", e))?;
        at += length as u64;
    }
    Ok(())
}

/// Writes `bytes` to `path` so that `path` holds either its old content or all of `bytes`:
/// temporary file, fsync, rename, directory fsync.
fn write_atomically(
    dir: &Path,
    path: &Path,
    bytes: &[u8],
    sync: SyncPolicy,
) -> Result<(), StorageError> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut file =
        File::create(&temporary).map_err(|e| io_failure(&temporary, "cannot create", e))?;
    file.write_all(bytes)
        .map_err(|e| io_failure(&temporary, "cannot write", e))?;
    if sync == SyncPolicy::Fsync {
        file.sync_all()
            .map_err(|e| io_failure(&temporary, "cannot fsync", e))?;
    }
    fs::rename(&temporary, path).map_err(|e| io_failure(path, "cannot rename into place", e))?;
    sync_dir(dir, sync)
}

fn sync_dir(dir: &Path, sync: SyncPolicy) -> Result<(), StorageError> {
    if sync == SyncPolicy::Fsync {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_failure(dir, "cannot fsync the directory", e))?;
    }
    Ok(())
}

fn remove(path: &Path) -> Result<(), StorageError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(io_failure(path, "cannot remove", error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ballot::Ballot;
    use crate::replica::{Accepted, Storage, StorageChange};
    use spec::Command;
    use stateright::actor::Id;

    const IDENTITY: Identity = Identity::plain(7, 1);

    fn storage_with(slots: u64) -> Storage {
        let mut storage = Storage {
            promised: Ballot {
                round: 2,
                leader: Id::from(1),
            },
            ..Storage::default()
        };
        for slot in 0..slots {
            storage.accepted.insert(
                slot,
                Accepted {
                    ballot: storage.promised,
                    command: Command::Noop,
                },
            );
        }
        storage
    }

    /// Opens `dir` as a replica does: created for a new cluster the first time, its state
    /// afterwards.
    fn open(dir: &Path) -> Result<(DurableStore<Storage>, Option<Storage>), StorageError> {
        let mode = if dir.join(IDENTITY_FILE).exists() {
            OpenMode::Existing
        } else {
            OpenMode::NewCluster
        };
        let (store, opened) = DurableStore::open(dir, &IDENTITY, SyncPolicy::Fsync, mode)?;
        Ok((store, found(opened)))
    }

    fn found(opened: Opened<Storage>) -> Option<Storage> {
        match opened {
            Opened::New => None,
            Opened::Existing(storage) => Some(storage),
            Opened::Lost { why, .. } => panic!("unexpectedly lost: {why}"),
        }
    }

    fn open_as(
        dir: &Path,
        mode: OpenMode,
    ) -> Result<(DurableStore<Storage>, Opened<Storage>), StorageError> {
        DurableStore::open(dir, &IDENTITY, SyncPolicy::Fsync, mode)
    }

    #[test]
    fn what_was_committed_is_read_back_and_a_new_directory_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, loaded) = open(dir.path()).unwrap();
        assert!(loaded.is_none());
        for slots in 1..=5 {
            store.commit(storage_with(slots)).unwrap();
        }
        drop(store);
        let (_, loaded) = open(dir.path()).unwrap();
        assert_eq!(loaded, Some(storage_with(5)));
    }

    /// Checkpoints after the first are saved as changes (`StorageChange::CheckpointDelta`):
    /// read back, they rebuild the same checkpoint; applied to another one, they are refused as
    /// damage with the file and offset, not applied.
    #[test]
    fn checkpoints_saved_as_changes_are_read_back_and_misplaced_ones_refused() {
        use crate::replica::Checkpoint;
        use spec::{Configuration, KvOp, Operation, Request, ServiceState};
        let put = |service: &mut ServiceState, key: u64| {
            let slot = service.applied;
            service.begin_slot(slot);
            let op = KvOp::Put {
                key: format!("key-{key}").into(),
                value: format!("value-{key}-{slot}").into(),
            };
            let request = Request {
                client: Id::from(9),
                session: 0,
                number: slot + 1,
                op: Operation::Kv(op),
            };
            service.apply(slot, &request);
        };
        let mut service = ServiceState::new(Configuration::initial([Id::from(0)], 1));
        let mut storage = storage_with(1);
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = open(dir.path()).unwrap();
        for round in 0..4 {
            for key in 0..500 {
                put(&mut service, key * (round + 1) % 700);
            }
            storage.checkpoint = Some(Checkpoint::of(service.applied, &service));
            store.commit(storage.clone()).unwrap();
        }
        drop(store);
        let (_, loaded) = open(dir.path()).unwrap();
        assert_eq!(loaded.as_ref(), Some(&storage));
        let loaded = loaded.unwrap().checkpoint.unwrap();
        assert_eq!(loaded.state.digest(), service.digest());

        // A delta record whose base is not the checkpoint held.
        let mut other = storage.clone();
        put(&mut service, 1);
        other.checkpoint = Some(Checkpoint::of(service.applied, &service));
        let change = other.changes_since(&storage).pop().unwrap();
        assert!(matches!(change, StorageChange::CheckpointDelta { .. }));
        let mut elsewhere = storage_with(1);
        elsewhere.checkpoint = Some(Checkpoint::of(
            0,
            &ServiceState::new(Configuration::initial([Id::from(0)], 1)),
        ));
        let why = elsewhere.apply(change).unwrap_err();
        assert!(why.contains("saved as changes"), "{why}");
    }

    #[test]
    fn a_torn_final_record_is_dropped_and_the_rest_kept() {
        // Goal: whatever part of the last append a crash kept, the earlier records are kept,
        // the torn one is dropped, and appending afterwards works.
        for tear in ["payload", "header", "garbage after"] {
            let dir = tempfile::tempdir().unwrap();
            let (mut store, _) = open(dir.path()).unwrap();
            store.commit(storage_with(1)).unwrap();
            store.commit(storage_with(2)).unwrap();
            let before_last = store.log_bytes as usize;
            store.commit(storage_with(3)).unwrap();
            let end = store.log_bytes as usize;
            let record_end = end - MARKER_BYTES;
            let log = dir.path().join(format!("log.{}", store.generation()));
            drop(store);
            let mut bytes = fs::read(&log).unwrap();
            // A torn append never got its durability marker (the crash came before its
            // fsync returned).
            match tear {
                "payload" => bytes[record_end - 3..end].fill(0),
                "header" => {
                    bytes[before_last..before_last + 4].fill(0xaa);
                    bytes[record_end..end].fill(0);
                }
                _ => bytes[end + 100..end + 110].fill(0x55),
            }
            fs::write(&log, &bytes).unwrap();
            let (mut store, loaded) = open(dir.path()).unwrap();
            let expected = if tear == "garbage after" { 3 } else { 2 };
            assert_eq!(loaded, Some(storage_with(expected)), "{tear}");
            store.commit(storage_with(4)).unwrap();
            drop(store);
            assert_eq!(open(dir.path()).unwrap().1, Some(storage_with(4)), "{tear}");
        }
    }

    #[test]
    fn the_log_grows_past_its_first_extent() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = open(dir.path()).unwrap();
        store.commit(storage_with(1)).unwrap();
        let mut storage = storage_with(1);
        let mut slot = 1;
        while store.log_bytes < LOG_EXTENT_BYTES + 1000 {
            for _ in 0..200 {
                storage.accepted.insert(
                    slot,
                    Accepted {
                        ballot: storage.promised,
                        command: Command::Noop,
                    },
                );
                slot += 1;
            }
            // Re-accepting every slot in a new ballot makes large records.
            storage.promised.round += 1;
            let ballot = storage.promised;
            for accepted in storage.accepted.values_mut() {
                accepted.ballot = ballot;
            }
            store.commit(storage.clone()).unwrap();
        }
        drop(store);
        assert_eq!(open(dir.path()).unwrap().1, Some(storage));
    }

    #[test]
    fn a_corrupt_record_in_the_middle_refuses_to_open_and_says_where() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = open(dir.path()).unwrap();
        store.commit(storage_with(1)).unwrap();
        store.commit(storage_with(2)).unwrap();
        store.commit(storage_with(3)).unwrap();
        let log = dir.path().join(format!("log.{}", store.generation()));
        drop(store);
        let mut bytes = fs::read(&log).unwrap();
        let at = LOG_HEADER_BYTES as usize + RECORD_HEADER_BYTES + 1;
        bytes[at] ^= 0xff;
        fs::write(&log, &bytes).unwrap();
        let error = open(dir.path()).unwrap_err().to_string();
        assert!(error.contains("checksum mismatch"), "{error}");
        assert!(error.contains("at byte 16"), "{error}");
    }

    #[test]
    fn a_corrupt_snapshot_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = open(dir.path()).unwrap();
        store.commit(storage_with(3)).unwrap();
        let snapshot = dir.path().join(format!("snapshot.{}", store.generation()));
        drop(store);
        let mut bytes = fs::read(&snapshot).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        fs::write(&snapshot, &bytes).unwrap();
        let error = open(dir.path()).unwrap_err().to_string();
        assert!(error.contains("snapshot is corrupt"), "{error}");
    }

    #[test]
    fn compaction_keeps_the_state_and_removes_the_old_generation() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = open(dir.path()).unwrap();
        store.commit(storage_with(1)).unwrap();
        let first = store.generation();
        store.write_generation(first + 1, &storage_with(2)).unwrap();
        store.image = Some(storage_with(2));
        store.commit(storage_with(3)).unwrap();
        drop(store);
        assert!(!dir.path().join(format!("snapshot.{first}")).exists());
        assert_eq!(open(dir.path()).unwrap().1, Some(storage_with(3)));
    }

    /// Compaction writes its snapshot on a thread of its own while commits go on; the
    /// directory always reads back as the last commit, and a stop during a compaction (the new
    /// log there, its snapshot not yet) is finished on opening.
    #[test]
    fn a_compaction_runs_beside_commits_and_one_cut_short_is_finished_on_opening() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = open(dir.path()).unwrap();
        store.commit(storage_with(1)).unwrap();
        let first = store.generation();
        store.start_compaction(storage_with(1)).unwrap();
        for slots in 2..=20 {
            store.commit(storage_with(slots)).unwrap();
        }
        store.wait_for_compaction().unwrap();
        assert!(!dir.path().join(format!("snapshot.{first}")).exists());
        assert!(!dir.path().join(format!("log.{first}")).exists());
        assert!(dir.path().join(format!("snapshot.{}", first + 1)).exists());
        drop(store);
        assert_eq!(open(dir.path()).unwrap().1, Some(storage_with(20)));

        // Cut short: the switch to the new log happened, the snapshot was never written.
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = open(dir.path()).unwrap();
        store.commit(storage_with(1)).unwrap();
        store.commit(storage_with(2)).unwrap();
        let first = store.generation();
        store.switch_log(first + 1).unwrap();
        store.commit(storage_with(3)).unwrap();
        drop(store);
        assert_eq!(
            DurableStore::<Storage>::inspect(dir.path()).unwrap(),
            Some(storage_with(3)),
            "read without repairing: snapshot, old log, new log"
        );
        let (mut store, loaded) = open(dir.path()).unwrap();
        assert_eq!(loaded, Some(storage_with(3)));
        assert_eq!(store.generation(), first + 1);
        assert!(dir.path().join(format!("snapshot.{}", first + 1)).exists());
        assert!(!dir.path().join(format!("snapshot.{first}")).exists());
        store.commit(storage_with(4)).unwrap();
        drop(store);
        assert_eq!(open(dir.path()).unwrap().1, Some(storage_with(4)));

        // Two logs past the newest snapshot are damage, not a compaction.
        fs::copy(
            dir.path().join(format!("log.{}", first + 1)),
            dir.path().join(format!("log.{}", first + 3)),
        )
        .unwrap();
        let error = open(dir.path()).unwrap_err();
        assert!(
            error.to_string().contains("newer than the newest snapshot"),
            "{error}"
        );
    }

    #[test]
    fn a_directory_is_never_used_by_another_replica_nor_by_two_processes() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = open(dir.path()).unwrap();
        store.commit(storage_with(1)).unwrap();
        let busy = open(dir.path()).unwrap_err().to_string();
        assert!(busy.contains("in use"), "{busy}");
        drop(store);
        let other = Identity::plain(7, 2);
        for mode in [OpenMode::Existing, OpenMode::Recover] {
            let error = DurableStore::<Storage>::open(dir.path(), &other, SyncPolicy::Fsync, mode)
                .unwrap_err()
                .to_string();
            // Not even --recover moves another replica's state aside.
            assert!(error.contains("belongs to another replica"), "{error}");
        }
    }

    #[test]
    fn a_damaged_durable_record_is_not_taken_for_a_torn_one() {
        // Goal: a record whose fsync returned is followed by its durability marker, so
        // damage to it, even in the last record, refuses to open instead of dropping it.
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = open(dir.path()).unwrap();
        store.commit(storage_with(1)).unwrap();
        store.commit(storage_with(2)).unwrap();
        let record_end = store.log_bytes as usize - MARKER_BYTES;
        let log = dir.path().join(format!("log.{}", store.generation()));
        drop(store);
        let mut bytes = fs::read(&log).unwrap();
        bytes[record_end - 1] ^= 0x20;
        fs::write(&log, &bytes).unwrap();
        let error = open(dir.path()).unwrap_err().to_string();
        assert!(error.contains("checksum mismatch"), "{error}");
        assert!(error.contains("--recover"), "says how to recover: {error}");
    }

    #[test]
    fn a_missing_or_empty_directory_is_never_taken_for_a_new_one() {
        let root = tempfile::tempdir().unwrap();
        let missing = root.path().join("gone");
        for dir in [missing.clone(), root.path().to_path_buf()] {
            let error = open_as(&dir, OpenMode::Existing).unwrap_err().to_string();
            assert!(error.contains("--new-cluster"), "{error}");
            assert!(error.contains("--recover"), "{error}");
        }
        // Created for a new cluster, it opens as new until its first save, then never again.
        let (mut store, opened) = open_as(&missing, OpenMode::NewCluster).unwrap();
        assert!(matches!(opened, Opened::New));
        drop(store);
        let (store_again, opened) = open_as(&missing, OpenMode::Existing).unwrap();
        assert!(matches!(opened, Opened::New));
        store = store_again;
        store.commit(storage_with(2)).unwrap();
        drop(store);
        let refused = open_as(&missing, OpenMode::NewCluster)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("without --new-cluster"), "{refused}");
        // Its state files gone, the identity still says it started: lost, not new.
        for entry in fs::read_dir(&missing).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("snapshot.") || name.starts_with("log.") {
                fs::remove_file(path).unwrap();
            }
        }
        let error = open_as(&missing, OpenMode::Existing)
            .unwrap_err()
            .to_string();
        assert!(error.contains("state files are gone"), "{error}");
    }

    #[test]
    fn recover_moves_damage_aside_and_stays_a_rebuild_until_the_first_save() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = open(dir.path()).unwrap();
        store.commit(storage_with(3)).unwrap();
        let snapshot = dir.path().join(format!("snapshot.{}", store.generation()));
        drop(store);
        let mut bytes = fs::read(&snapshot).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&snapshot, &bytes).unwrap();
        let (store, opened) = open_as(dir.path(), OpenMode::Recover).unwrap();
        let Opened::Lost { why, moved_to } = opened else {
            panic!("a damaged directory is lost");
        };
        assert!(why.contains("corrupt"), "{why}");
        let moved_to = moved_to.expect("the damaged files were moved");
        assert!(moved_to.join(snapshot.file_name().unwrap()).exists());
        drop(store);
        // A restart before the rebuild saved anything is still a rebuild, even without
        // --recover.
        let (mut store, opened) = open_as(dir.path(), OpenMode::Existing).unwrap();
        assert!(matches!(opened, Opened::Lost { .. }));
        store.commit(storage_with(1)).unwrap();
        drop(store);
        let (_, opened) = open_as(dir.path(), OpenMode::Recover).unwrap();
        assert_eq!(
            found(opened),
            Some(storage_with(1)),
            "an intact directory opens as it is"
        );
    }

    #[test]
    fn a_cluster_file_that_changes_the_first_configuration_or_window_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let with = |members: Vec<u64>, window| Identity {
            genesis: Some(super::super::identity::Genesis {
                members,
                window,
                max_sessions: None,
            }),
            ..IDENTITY
        };
        let created = with(vec![0, 1, 2], 1);
        let (mut store, _) = DurableStore::<Storage>::open(
            dir.path(),
            &created,
            SyncPolicy::Fsync,
            OpenMode::NewCluster,
        )
        .unwrap();
        store.commit(storage_with(1)).unwrap();
        drop(store);
        for (changed, what) in [
            (with(vec![0, 1, 2], 8), "window 8"),
            (with(vec![0, 1], 1), "[0, 1]"),
        ] {
            for mode in [OpenMode::Existing, OpenMode::Recover] {
                let error =
                    DurableStore::<Storage>::open(dir.path(), &changed, SyncPolicy::Fsync, mode)
                        .unwrap_err()
                        .to_string();
                assert!(
                    error.contains(what) && error.contains("cannot change"),
                    "{error}"
                );
            }
        }
        assert!(DurableStore::<Storage>::open(
            dir.path(),
            &created,
            SyncPolicy::Fsync,
            OpenMode::Existing
        )
        .is_ok());
    }

    #[test]
    fn a_directory_of_other_files_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        for mode in [OpenMode::NewCluster, OpenMode::Recover] {
            let error = open_as(dir.path(), mode).unwrap_err().to_string();
            assert!(error.contains("not a replica's"), "{error}");
        }
        assert!(dir.path().join("notes.txt").exists());
    }
}
