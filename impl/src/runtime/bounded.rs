//! A map that keeps at most a fixed number of entries and forgets the one inserted longest
//! ago: the runtime's tables of what it learns from the network (client addresses, the keys
//! clients sign with, replay windows), which strangers must not be able to grow without bound.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// A bounded map, evicting first-in first-out.
#[derive(Clone, Debug)]
pub struct FifoMap<K, V> {
    entries: HashMap<K, V>,
    /// Keys in the order they were first inserted.
    order: VecDeque<K>,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V> FifoMap<K, V> {
    pub fn new(capacity: usize) -> Self {
        FifoMap {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// Inserts or replaces; returns the previous value. A new key may evict the oldest.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let previous = self.entries.insert(key.clone(), value);
        if previous.is_none() {
            self.order.push_back(key);
            while self.order.len() > self.capacity {
                if let Some(oldest) = self.order.pop_front() {
                    self.entries.remove(&oldest);
                }
            }
        }
        previous
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key)
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.entries.get_mut(key)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_is_forgotten_first_and_replacing_keeps_a_place() {
        let mut map = FifoMap::new(2);
        assert_eq!(map.insert(1, "a"), None);
        assert_eq!(map.insert(2, "b"), None);
        assert_eq!(map.insert(1, "c"), Some("a"));
        assert_eq!(map.insert(3, "d"), None);
        assert_eq!(map.get(&1), None, "1 was inserted first");
        assert_eq!(
            (map.get(&2), map.get(&3), map.len()),
            (Some(&"b"), Some(&"d"), 2)
        );
    }
}
