//! Reads a directory of trace files back, grouped by actor and instance.

use super::record::{decode_frame, FrameError, Record, Step};
use serde::de::DeserializeOwned;
use spec::Digest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One runtime's run of one actor: from its `Begin` to its last record.
#[derive(Clone, Debug)]
pub struct Instance<M, T, R, S> {
    pub id: u64,
    /// Orders the instances of one id (see [`Record::Begin`]).
    pub instance: u64,
    /// The encoded actor description.
    pub actor: Vec<u8>,
    pub steps: Vec<Step<M, T, R, S>>,
    /// Commits, durability and releases, in the order they were recorded.
    pub marks: Vec<Mark>,
    /// The file it was read from, for messages.
    pub file: PathBuf,
}

/// What the runtime recorded about making steps durable and visible.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// A commit of the storage saved by the steps up to `through` started.
    Commit { through: u64, storage: Digest },
    /// The commit of the steps up to `through` is durable.
    Durable { through: u64 },
    /// The messages of the steps up to `through` were released.
    Released { through: u64 },
}

impl<M, T, R, S> Instance<M, T, R, S> {
    /// The highest step whose messages were released.
    pub fn released(&self) -> u64 {
        self.marks
            .iter()
            .filter_map(|mark| match mark {
                Mark::Released { through } => Some(*through),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }
}

/// Every instance of every actor in a trace directory, each id's instances in order.
#[derive(Clone, Debug)]
pub struct TraceSet<M, T, R, S> {
    pub actors: BTreeMap<u64, Vec<Instance<M, T, R, S>>>,
    /// Torn final frames dropped (one per file at most), for the report.
    pub torn: Vec<PathBuf>,
    pub files: usize,
    pub bytes: u64,
}

/// Reads every `*.trace` file in `dir`.
pub fn read_dir<M, T, R, S>(dir: &Path) -> Result<TraceSet<M, T, R, S>, String>
where
    M: DeserializeOwned,
    T: DeserializeOwned,
    R: DeserializeOwned,
    S: DeserializeOwned,
{
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "trace"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(format!("no *.trace files in {}", dir.display()));
    }
    let mut set = TraceSet {
        actors: BTreeMap::new(),
        torn: Vec::new(),
        files: paths.len(),
        bytes: 0,
    };
    for path in paths {
        read_file(&path, &mut set)?;
    }
    for instances in set.actors.values_mut() {
        instances.sort_by_key(|instance| instance.instance);
    }
    Ok(set)
}

fn read_file<M, T, R, S>(path: &Path, set: &mut TraceSet<M, T, R, S>) -> Result<(), String>
where
    M: DeserializeOwned,
    T: DeserializeOwned,
    R: DeserializeOwned,
    S: DeserializeOwned,
{
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    set.bytes += bytes.len() as u64;
    // The instance each id's records belong to in this file: (id, index in set.actors[id]).
    let mut current: BTreeMap<u64, usize> = BTreeMap::new();
    let mut at = 0;
    while at < bytes.len() {
        let (record, used): (Record<M, T, R, S>, usize) = match decode_frame(&bytes[at..]) {
            Ok(decoded) => decoded,
            Err(FrameError::Torn) => {
                set.torn.push(path.to_path_buf());
                break;
            }
            Err(FrameError::Corrupt(why)) => {
                return Err(format!("{} at byte {at}: {why}", path.display()));
            }
        };
        at += used;
        let id = record.id();
        if let Record::Begin {
            instance, actor, ..
        } = record
        {
            let instances = set.actors.entry(id).or_default();
            instances.push(Instance {
                id,
                instance,
                actor,
                steps: Vec::new(),
                marks: Vec::new(),
                file: path.to_path_buf(),
            });
            current.insert(id, instances.len() - 1);
            continue;
        }
        let Some(instance) = current
            .get(&id)
            .and_then(|index| set.actors.get_mut(&id).and_then(|i| i.get_mut(*index)))
        else {
            return Err(format!(
                "{} at byte {at}: a record of actor {id} before its Begin record",
                path.display()
            ));
        };
        match record {
            Record::Step(step) => instance.steps.push(step),
            Record::Commit {
                through, storage, ..
            } => instance.marks.push(Mark::Commit { through, storage }),
            Record::Durable { through, .. } => instance.marks.push(Mark::Durable { through }),
            Record::Released { through, .. } => instance.marks.push(Mark::Released { through }),
            Record::Begin { .. } => unreachable!("handled above"),
        }
    }
    Ok(())
}
