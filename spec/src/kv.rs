//! The replicated key-value machine: get, put, delete and compare-and-set.

use crate::digest::{digest_of, Digest, SetDigest};
use crate::state_machine::{RestoreError, StateMachine};
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

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

/// The key-value machine. Its digest is kept up to date on every write (an additive hash over
/// the entries), so digesting a large store after every step costs O(1).
#[derive(Clone, Debug, Default)]
pub struct KvStore {
    entries: BTreeMap<Key, Value>,
    digest: SetDigest,
}

impl PartialEq for KvStore {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest && self.entries == other.entries
    }
}
impl Eq for KvStore {}

impl Hash for KvStore {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The maintained digest stands for the entries; hashing them again would cost O(n).
        self.digest.hash(state);
    }
}

fn entry_digest(key: &Key, value: &Value) -> Digest {
    digest_of(&(key.as_str(), value.as_str()))
}

impl KvStore {
    /// The value of `key`, if any.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.get(key)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the store holds no keys.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Value)> {
        self.entries.iter()
    }

    fn insert(&mut self, key: Key, value: Value) -> Option<Value> {
        self.digest.add(entry_digest(&key, &value));
        let previous = self.entries.insert(key.clone(), value);
        if let Some(previous) = &previous {
            self.digest.remove(entry_digest(&key, previous));
        }
        previous
    }

    fn remove(&mut self, key: &Key) -> Option<Value> {
        let previous = self.entries.remove(key);
        if let Some(previous) = &previous {
            self.digest.remove(entry_digest(key, previous));
        }
        previous
    }
}

impl StateMachine for KvStore {
    type Op = KvOp;
    type Output = KvOutput;
    type Snapshot = Vec<(Key, Value)>;

    fn apply(&mut self, op: &KvOp) -> KvOutput {
        match op {
            KvOp::Get { key } => KvOutput::Value(self.entries.get(key).cloned()),
            KvOp::Put { key, value } => {
                self.insert(key.clone(), value.clone());
                KvOutput::Written
            }
            KvOp::Delete { key } => KvOutput::Deleted(self.remove(key).is_some()),
            KvOp::Cas { key, expected, new } => {
                let previous = self.entries.get(key).cloned();
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
        self.entries
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
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
}
