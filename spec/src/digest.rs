//! Stable 64-bit digests of values.
//!
//! Digests are compared across processes (replicas audit each other at checkpoints, and trace
//! conformance compares a digest recorded by a real process with the one the model computes), so
//! they must not depend on a per-process random seed the way `std`'s `RandomState` does. This is a
//! small multiply-rotate hasher with a MurmurHash3 finalizer: fast on the short, structured inputs
//! that protocol states are made of, and well mixed in every output bit.
//!
//! It is not a cryptographic hash. It detects bugs and corruption, not adversaries.

use std::hash::{Hash, Hasher};

/// A 64-bit digest of a value.
pub type Digest = u64;

const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

/// A deterministic [`Hasher`]: the same sequence of writes gives the same digest in every
/// process. Integers are fed in little-endian order so that digests agree across platforms.
#[derive(Clone, Debug)]
pub struct StableHasher {
    state: u64,
    length: u64,
}

impl Default for StableHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl StableHasher {
    /// A hasher in its initial state.
    pub const fn new() -> Self {
        Self {
            state: 0x243f_6a88_85a3_08d3,
            length: 0,
        }
    }

    #[inline]
    fn mix(&mut self, word: u64) {
        self.state = (self.state ^ word).wrapping_mul(MULTIPLIER).rotate_left(29);
        self.length = self.length.wrapping_add(1);
    }
}

/// The MurmurHash3 64-bit finalizer: every input bit affects every output bit.
#[inline]
pub const fn finalize(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    x
}

impl Hasher for StableHasher {
    #[inline]
    fn finish(&self) -> u64 {
        finalize(self.state ^ self.length.rotate_left(32))
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            // The length marker keeps "ab" and "ab\0" apart.
            self.mix(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.mix(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.mix(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.mix(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.mix(i as u64);
    }
    #[inline]
    fn write_i64(&mut self, i: i64) {
        self.mix(i as u64);
    }
}

/// The stable digest of any hashable value.
pub fn digest_of<T: Hash + ?Sized>(value: &T) -> Digest {
    let mut hasher = StableHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// An order-independent digest of a collection, kept up to date as elements come and go
/// (an additive multiset hash). Maintaining it costs O(1) per change, so a large state can be
/// digested after every step without rehashing everything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SetDigest(u64);

impl SetDigest {
    /// Accounts for one more element whose own digest is `element`.
    #[inline]
    pub fn add(&mut self, element: Digest) {
        self.0 = self.0.wrapping_add(finalize(element));
    }

    /// Accounts for the removal of an element added earlier.
    #[inline]
    pub fn remove(&mut self, element: Digest) {
        self.0 = self.0.wrapping_sub(finalize(element));
    }

    /// Accounts for every element of `other` (a disjoint collection).
    #[inline]
    pub fn add_all(&mut self, other: SetDigest) {
        self.0 = self.0.wrapping_add(other.0);
    }

    /// The digest of the current collection.
    #[inline]
    pub fn value(self) -> Digest {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_have_equal_digests_and_different_values_differ() {
        assert_eq!(digest_of(&("key", 7u64)), digest_of(&("key", 7u64)));
        assert_ne!(digest_of(&("key", 7u64)), digest_of(&("key", 8u64)));
        assert_ne!(digest_of("ab"), digest_of("ab\0"));
        assert_ne!(digest_of(&(1u8, 2u8)), digest_of(&(2u8, 1u8)));
    }

    #[test]
    fn set_digest_is_order_independent_and_reversible() {
        let mut a = SetDigest::default();
        a.add(1);
        a.add(2);
        let mut b = SetDigest::default();
        b.add(2);
        b.add(1);
        assert_eq!(a, b);
        b.remove(2);
        let mut c = SetDigest::default();
        c.add(1);
        assert_eq!(b, c);
        assert_ne!(a, c);
    }
}
