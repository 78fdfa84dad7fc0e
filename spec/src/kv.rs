//! The replicated key-value machine: get, put, delete and compare-and-set.

use crate::digest::{digest_of, Digest, SetDigest};
use crate::state_machine::{RestoreError, StateMachine};
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::ops::Bound;
use std::sync::Arc;

/// A key. Short keys are stored inline, without allocation.
pub type Key = SmolStr;
/// A value. Short values are stored inline, without allocation.
pub type Value = SmolStr;

/// An operation on the key-value machine.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum KvOp {
    /// Reads the value of `key`.
    Get { key: Key },
    /// Sets `key` to `value`.
    Put { key: Key, value: Value },
    /// Removes `key`.
    Delete { key: Key },
    /// Sets `key` to `new` if its current value is `expected` (`None`: the key is absent).
    Cas {
        key: Key,
        expected: Option<Value>,
        new: Value,
    },
}

impl KvOp {
    /// Whether the operation can change the state.
    pub fn is_write(&self) -> bool {
        !matches!(self, KvOp::Get { .. })
    }
}

/// The answer of the key-value machine to a [`KvOp`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum KvOutput {
    /// The value read by a get (`None`: absent).
    Value(Option<Value>),
    /// A put was applied.
    Written,
    /// A delete was applied; `true` if the key existed.
    Deleted(bool),
    /// A compare-and-set; `swapped` tells whether it wrote, `previous` is the value it found.
    Cas {
        swapped: bool,
        previous: Option<Value>,
    },
}

/// Keys per range on average: a key starts a new range with probability `1 / RANGE_KEYS`.
pub const RANGE_KEYS: u64 = 16;

/// Whether `key` starts a range of its own (see [`KvStore`]). A property of the key alone, so
/// that every store holding the same entries splits them into the same ranges.
pub fn starts_range(key: &str) -> bool {
    !key.is_empty() && digest_of(&("range", key)) % RANGE_KEYS == 0
}

/// A run of consecutive keys of a [`KvStore`], with the digest of its entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Range {
    entries: BTreeMap<Key, Value>,
    digest: SetDigest,
}

impl Range {
    /// A range of `entries` (see [`KvStore::from_ranges`] for what makes a valid one).
    pub fn new(entries: BTreeMap<Key, Value>) -> Self {
        let mut digest = SetDigest::default();
        for (key, value) in &entries {
            digest.add(entry_digest(key, value));
        }
        Range { entries, digest }
    }

    /// The digest of the range's entries: equal ranges have equal digests.
    pub fn digest(&self) -> Digest {
        self.digest.value()
    }

    /// The range's entries in key order.
    pub fn entries(&self) -> &BTreeMap<Key, Value> {
        &self.entries
    }

    fn insert(&mut self, key: Key, value: Value) -> Option<Value> {
        self.digest.add(entry_digest(&key, &value));
        let previous = self.entries.insert(key.clone(), value);
        if let Some(previous) = &previous {
            self.digest.remove(entry_digest(&key, previous));
        }
        previous
    }

    fn remove(&mut self, key: &str) -> Option<Value> {
        let previous = self.entries.remove(key);
        if let Some(previous) = &previous {
            self.digest.remove(entry_digest(key, previous));
        }
        previous
    }

    /// Moves the entries at or after `key` out of this range.
    fn split_off(&mut self, key: &str) -> Range {
        let mut moved = Range {
            entries: self.entries.split_off(key),
            digest: SetDigest::default(),
        };
        for (key, value) in &moved.entries {
            let entry = entry_digest(key, value);
            self.digest.remove(entry);
            moved.digest.add(entry);
        }
        moved
    }

    fn append(&mut self, other: Range) {
        for (key, value) in other.entries {
            self.insert(key, value);
        }
    }
}

/// The key-value machine.
///
/// Its entries are split into *ranges* of consecutive keys: a range starts at each key for
/// which [`starts_range`] holds (about one key in [`RANGE_KEYS`]), and the keys before the
/// first such key form the head range, filed under the empty key. The split depends on the
/// keys alone, never on the order of writes, so equal stores have equal ranges, and ranges
/// can be compared one by one: a checkpoint is saved as the entries of the ranges that changed
/// since the previous one (`changes_since`), and a state transfer sends only the ranges whose
/// digest the receiver does not hold. Ranges are shared (`Arc`) between copies of the store, so
/// a checkpoint costs a copy of the list of ranges, and a write after it copies one range.
///
/// The digest is kept up to date on every write (an additive hash over the entries), so
/// digesting a large store after every step costs O(1).
#[derive(Clone, Debug, Default)]
pub struct KvStore {
    /// By the range's first key (the empty key for the head range). No range is empty.
    ranges: BTreeMap<Key, Arc<Range>>,
    len: usize,
    digest: SetDigest,
}

impl PartialEq for KvStore {
    fn eq(&self, other: &Self) -> bool {
        // Equal entries make equal ranges; shared ranges compare by pointer.
        self.digest == other.digest && self.len == other.len && self.ranges == other.ranges
    }
}
impl Eq for KvStore {}

impl Hash for KvStore {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The maintained digest stands for the entries; hashing them again would cost O(n).
        self.digest.hash(state);
    }
}

fn entry_digest(key: &str, value: &str) -> Digest {
    digest_of(&(key, value))
}

impl KvStore {
    /// The value of `key`, if any.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.range_of(key)?.1.entries.get(key)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the store holds no keys.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// All entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Value)> {
        self.ranges.values().flat_map(|range| range.entries.iter())
    }

    /// The ranges in key order, each by its first key (the empty key for the head range).
    pub fn ranges(&self) -> impl Iterator<Item = (&Key, &Arc<Range>)> {
        self.ranges.iter()
    }

    /// The ranges from the one under `start` on, in key order.
    pub fn ranges_from(&self, start: &str) -> impl Iterator<Item = (&Key, &Arc<Range>)> {
        self.ranges
            .range::<str, _>((Bound::Included(start), Bound::Unbounded))
    }

    /// The range under `start`, if the store has one.
    pub fn range(&self, start: &str) -> Option<&Arc<Range>> {
        self.ranges.get(start)
    }

    /// The store made of `ranges` (by first key), refusing ranges that are empty, overlap,
    /// are out of order or are not split where [`starts_range`] says.
    pub fn from_ranges(
        ranges: impl IntoIterator<Item = (Key, Arc<Range>)>,
    ) -> Result<Self, RestoreError> {
        let mut store = KvStore::default();
        let mut last: Option<Key> = None;
        for (start, range) in ranges {
            let (Some(first), Some(end)) = (
                range.entries.keys().next(),
                range.entries.keys().next_back(),
            ) else {
                return Err(RestoreError(format!("range {start:?} is empty")));
            };
            let head = start.is_empty() && !starts_range(first) && last.is_none();
            if !(head || *first == start && starts_range(&start))
                || last.as_ref().is_some_and(|last| last >= first)
                || range.entries.keys().skip(1).any(|key| starts_range(key))
            {
                return Err(RestoreError(format!(
                    "range {start:?} does not start at its first key, overlaps another or \
                     should have been split"
                )));
            }
            last = Some(end.clone());
            store.len += range.entries.len();
            store.digest.add_all(range.digest);
            store.ranges.insert(start, range);
        }
        Ok(store)
    }

    /// The changes that turn `earlier` into `self`: each key written since, with its value
    /// (`None`: removed). It looks only into the ranges not shared with `earlier`, so it costs
    /// the ranges written since, not the size of the store.
    pub fn changes_since(&self, earlier: &KvStore) -> Vec<(Key, Option<Value>)> {
        let unshared = |a: &KvStore, b: &KvStore| -> Vec<Arc<Range>> {
            a.ranges
                .iter()
                .filter(|(start, range)| {
                    !b.ranges.get(*start).is_some_and(|r| Arc::ptr_eq(r, range))
                })
                .map(|(_, range)| range.clone())
                .collect()
        };
        // A key in a range of `self` not shared with `earlier` is, if `earlier` has it, in a
        // range of `earlier` not shared with `self` (a shared range holds the same keys in
        // both), and the other way round: so these ranges hold every change.
        let mut changes = Vec::new();
        for range in unshared(self, earlier) {
            for (key, value) in &range.entries {
                if earlier.get(key) != Some(value) {
                    changes.push((key.clone(), Some(value.clone())));
                }
            }
        }
        for range in unshared(earlier, self) {
            for key in range.entries.keys() {
                if self.get(key).is_none() {
                    changes.push((key.clone(), None));
                }
            }
        }
        changes
    }

    /// Applies changes made by [`KvStore::changes_since`].
    pub fn apply_changes(&mut self, changes: impl IntoIterator<Item = (Key, Option<Value>)>) {
        for (key, value) in changes {
            match value {
                Some(value) => {
                    self.insert(key, value);
                }
                None => {
                    self.remove(&key);
                }
            }
        }
    }

    /// The range holding `key`'s place: the one with the greatest first key at or below it.
    fn range_of(&self, key: &str) -> Option<(&Key, &Arc<Range>)> {
        self.ranges
            .range::<str, _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()
    }

    fn insert(&mut self, key: Key, value: Value) -> Option<Value> {
        if starts_range(&key) && !self.ranges.contains_key(&key) {
            // A new first key: the entries after it in the range it falls in move to its own.
            let split = match self.range_of(&key).map(|(start, _)| start.clone()) {
                Some(start) => {
                    let range = Arc::make_mut(self.ranges.get_mut(&start).expect("found"));
                    let moved = range.split_off(&key);
                    if range.entries.is_empty() {
                        self.ranges.remove(&start);
                    }
                    moved
                }
                None => Range::default(),
            };
            self.ranges.insert(key.clone(), Arc::new(split));
        }
        let start = match self.range_of(&key) {
            Some((start, _)) => start.clone(),
            None => Key::default(),
        };
        let range = Arc::make_mut(self.ranges.entry(start).or_default());
        self.digest.add(entry_digest(&key, &value));
        let previous = range.insert(key.clone(), value);
        match &previous {
            Some(previous) => self.digest.remove(entry_digest(&key, previous)),
            None => self.len += 1,
        }
        previous
    }

    fn remove(&mut self, key: &str) -> Option<Value> {
        let (start, range) = self.range_of(key)?;
        if !range.entries.contains_key(key) {
            // Nothing to remove: leave a shared range shared.
            return None;
        }
        let start = start.clone();
        let range = Arc::make_mut(self.ranges.get_mut(&start).expect("found"));
        let previous = range.remove(key)?;
        self.digest.remove(entry_digest(key, &previous));
        self.len -= 1;
        if *key == *start && !start.is_empty() {
            // The range loses its first key: what remains of it joins the range before it.
            let rest = self.ranges.remove(&start).expect("found");
            if !rest.entries.is_empty() {
                let before = match self.range_of(key) {
                    Some((before, _)) => before.clone(),
                    None => Key::default(),
                };
                let rest = Arc::unwrap_or_clone(rest);
                Arc::make_mut(self.ranges.entry(before).or_default()).append(rest);
            }
        } else if range.entries.is_empty() {
            self.ranges.remove(&start);
        }
        Some(previous)
    }
}

impl StateMachine for KvStore {
    type Op = KvOp;
    type Output = KvOutput;
    type Snapshot = Vec<(Key, Value)>;

    fn apply(&mut self, op: &KvOp) -> KvOutput {
        match op {
            KvOp::Get { key } => KvOutput::Value(self.get(key).cloned()),
            KvOp::Put { key, value } => {
                self.insert(key.clone(), value.clone());
                KvOutput::Written
            }
            KvOp::Delete { key } => KvOutput::Deleted(self.remove(key).is_some()),
            KvOp::Cas { key, expected, new } => {
                let previous = self.get(key).cloned();
                let swapped = previous == *expected;
                if swapped {
                    self.insert(key.clone(), new.clone());
                }
                KvOutput::Cas { swapped, previous }
            }
        }
    }

    fn digest(&self) -> Digest {
        self.digest.value()
    }

    fn snapshot(&self) -> Self::Snapshot {
        self.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    fn restore(snapshot: Self::Snapshot) -> Result<Self, RestoreError> {
        let mut store = KvStore::default();
        let mut last: Option<&Key> = None;
        for (key, _) in &snapshot {
            if last.is_some_and(|last| last >= key) {
                return Err(RestoreError(format!(
                    "keys out of order or repeated at {key:?}"
                )));
            }
            last = Some(key);
        }
        for (key, value) in snapshot {
            store.insert(key, value);
        }
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &str) -> KvOp {
        KvOp::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn operations_follow_their_definitions() {
        let mut kv = KvStore::default();
        assert_eq!(
            kv.apply(&KvOp::Get { key: "a".into() }),
            KvOutput::Value(None)
        );
        assert_eq!(kv.apply(&put("a", "1")), KvOutput::Written);
        assert_eq!(
            kv.apply(&KvOp::Cas {
                key: "a".into(),
                expected: Some("2".into()),
                new: "3".into()
            }),
            KvOutput::Cas {
                swapped: false,
                previous: Some("1".into())
            }
        );
        assert_eq!(
            kv.apply(&KvOp::Cas {
                key: "a".into(),
                expected: Some("1".into()),
                new: "3".into()
            }),
            KvOutput::Cas {
                swapped: true,
                previous: Some("1".into())
            }
        );
        assert_eq!(
            kv.apply(&KvOp::Get { key: "a".into() }),
            KvOutput::Value(Some("3".into()))
        );
        assert_eq!(
            kv.apply(&KvOp::Delete { key: "a".into() }),
            KvOutput::Deleted(true)
        );
        assert_eq!(
            kv.apply(&KvOp::Delete { key: "a".into() }),
            KvOutput::Deleted(false)
        );
        assert!(kv.is_empty());
    }

    #[test]
    fn digest_depends_on_contents_not_history() {
        let mut a = KvStore::default();
        a.apply(&put("x", "1"));
        a.apply(&put("y", "2"));
        let mut b = KvStore::default();
        b.apply(&put("y", "0"));
        b.apply(&put("y", "2"));
        b.apply(&put("x", "1"));
        assert_eq!(a.digest(), b.digest());
        b.apply(&KvOp::Delete { key: "x".into() });
        assert_ne!(a.digest(), b.digest());
        assert_eq!(KvStore::default().digest(), {
            b.apply(&KvOp::Delete { key: "y".into() });
            b.digest()
        });
    }

    #[test]
    fn snapshot_restores_an_equal_machine_and_rejects_bad_ones() {
        let mut a = KvStore::default();
        a.apply(&put("x", "1"));
        a.apply(&put("a", "2"));
        let restored = KvStore::restore(a.snapshot()).unwrap();
        assert_eq!(restored, a);
        assert_eq!(restored.digest(), a.digest());
        let bad = vec![("b".into(), "1".into()), ("a".into(), "1".into())];
        assert!(KvStore::restore(bad).is_err());
    }

    /// Checks the split into ranges against its definition.
    fn assert_ranges(store: &KvStore) {
        let rebuilt = KvStore::from_ranges(
            store
                .ranges()
                .map(|(start, range)| (start.clone(), range.clone())),
        )
        .expect("ranges as defined");
        assert_eq!(rebuilt.digest(), store.digest());
        assert_eq!(rebuilt.len(), store.iter().count());
        assert!(store.ranges().all(|(_, range)| !range.entries().is_empty()));
    }

    #[test]
    fn ranges_depend_on_the_keys_only_and_changes_since_replays() {
        let keys: Vec<String> = (0..400).map(|i| format!("k{}", (i * 7919) % 400)).collect();
        let boundaries = keys.iter().filter(|key| starts_range(key)).count();
        assert!(boundaries > 5, "the test splits ranges: {boundaries}");
        let mut a = KvStore::default();
        for key in &keys {
            a.apply(&put(key, "1"));
            assert_ranges(&a);
        }
        let mut b = KvStore::default();
        for key in keys.iter().rev() {
            b.apply(&put(key, "0"));
            b.apply(&put(key, "1"));
        }
        assert_ranges(&b);
        assert_eq!(a, b);
        assert!(a.ranges().count() > 5);
        let earlier = a.clone();
        // Deleting a range's first key joins what is left of it to the range before.
        for key in keys.iter().step_by(3) {
            a.apply(&KvOp::Delete { key: key.into() });
            assert_ranges(&a);
        }
        a.apply(&put("k1", "2"));
        a.apply(&put("new", "3"));
        let changes = a.changes_since(&earlier);
        let mut replayed = earlier.clone();
        replayed.apply_changes(changes.clone());
        assert_eq!(replayed, a);
        assert_eq!(KvStore::restore(a.snapshot()).unwrap(), a);
        assert!(a.changes_since(&a).is_empty());
        let written = keys
            .iter()
            .map(String::as_str)
            .chain(["new"])
            .filter(|key| earlier.get(key) != a.get(key))
            .count();
        assert_eq!(changes.len(), written, "each change once");
    }

    #[test]
    fn changes_since_a_copy_look_only_at_the_ranges_written() {
        let mut store = KvStore::default();
        for key in 0..10_000 {
            store.apply(&put(&format!("key-{key}"), "v"));
        }
        let copy = store.clone();
        store.apply(&put("key-5", "w"));
        let shared = store
            .ranges()
            .filter(|(start, range)| Arc::ptr_eq(copy.range(start).unwrap(), range))
            .count();
        assert_eq!(shared, store.ranges().count() - 1, "one range copied");
        assert_eq!(
            store.changes_since(&copy),
            vec![("key-5".into(), Some("w".into()))]
        );
    }

    #[test]
    fn ranges_that_break_the_split_are_refused() {
        let range = |keys: &[&str]| {
            Arc::new(Range::new(
                keys.iter()
                    .map(|k| (Key::from(*k), Value::from("v")))
                    .collect(),
            ))
        };
        let boundary: Key = (0..)
            .map(|i| Key::from(format!("b{i}")))
            .find(|key| starts_range(key))
            .unwrap();
        let plain: Key = (0..)
            .map(|i| Key::from(format!("b{i}")))
            .find(|key| !starts_range(key) && *key > boundary)
            .unwrap();
        assert!(KvStore::from_ranges([(boundary.clone(), range(&[&boundary, &plain]))]).is_ok());
        // Not split at a first key, an empty range, a head after a range.
        assert!(KvStore::from_ranges([(Key::default(), range(&[&boundary]))]).is_err());
        assert!(KvStore::from_ranges([(boundary.clone(), range(&[]))]).is_err());
        assert!(KvStore::from_ranges([
            (boundary.clone(), range(&[&boundary])),
            (Key::default(), range(&[&plain]))
        ])
        .is_err());
    }
}
