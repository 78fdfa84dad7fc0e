//! A small seeded generator for timer durations, `choose_random` and client ids.
//!
//! SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", 2014):
//! a 64-bit state and one multiply-xorshift finalizer per output. It is not cryptographic; it
//! only has to spread timeouts apart (so that candidates rarely collide) and be reproducible
//! from a seed when a run must be replayed.

use std::ops::Range;
use std::time::Duration;

/// A seeded SplitMix64 generator.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A seed that differs between processes and runs: the clock and the process id, mixed.
    pub fn seed_from_environment() -> u64 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as u64);
        let mut mixer = Self::new(nanos ^ (u64::from(std::process::id()) << 32));
        mixer.next_u64()
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0), by Lemire's multiply-shift reduction; its bias
    /// is below 2^-32 for the small bounds used here.
    pub fn below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound > 0);
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// A duration drawn uniformly from `range` (its start when the range is empty).
    pub fn duration_in(&mut self, range: &Range<Duration>) -> Duration {
        let span = range.end.saturating_sub(range.start).as_nanos();
        if span == 0 {
            return range.start;
        }
        let span = u64::try_from(span).unwrap_or(u64::MAX);
        range.start + Duration::from_nanos(self.below(span))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_stay_in_their_range_and_vary() {
        let mut random = SplitMix64::new(7);
        let range = Duration::from_millis(300)..Duration::from_millis(600);
        let draws: Vec<Duration> = (0..1000).map(|_| random.duration_in(&range)).collect();
        assert!(draws.iter().all(|d| range.contains(d)));
        assert!(draws.iter().any(|d| *d < Duration::from_millis(400)));
        assert!(draws.iter().any(|d| *d > Duration::from_millis(500)));
        let fixed = Duration::from_millis(50)..Duration::from_millis(50);
        assert_eq!(random.duration_in(&fixed), Duration::from_millis(50));
    }

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let a: Vec<u64> = {
            let mut r = SplitMix64::new(1);
            (0..5).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = SplitMix64::new(1);
            (0..5).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
    }
}
