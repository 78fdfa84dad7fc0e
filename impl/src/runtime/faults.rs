//! Network faults the runtime can inject into its own traffic, for tests: loss, duplication
//! and delay (which reorders) of outgoing datagrams, and partitions. They exercise exactly the
//! behaviours the model's network allows (unordered, lossy, duplicating), on real runs.

use super::random::SplitMix64;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The most datagrams held back for a delayed send at once; beyond it a delayed datagram is
/// dropped instead (loss is allowed anyway).
pub const MAX_DELAYED_DATAGRAMS: usize = 4096;

/// Probabilities of what happens to each outgoing protocol datagram.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetworkFaults {
    /// Dropped.
    pub loss: f64,
    /// Sent twice.
    pub duplicate: f64,
    /// Held back for up to `max_delay` before it is sent.
    pub delay: f64,
    pub max_delay: Duration,
}

/// The peers (by wire id) a runtime is cut off from, in both directions. Shared with whoever
/// moves the partition (a test), which may change it at any time.
pub type Partition = Arc<Mutex<BTreeSet<u64>>>;

/// What to do with one outgoing datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Send,
    Drop,
    Duplicate,
    Delay(Duration),
}

/// The faults of one runtime, with their own seeded generator.
#[derive(Debug)]
pub struct Faults {
    faults: NetworkFaults,
    random: SplitMix64,
    partition: Option<Partition>,
}

impl Faults {
    pub fn new(faults: NetworkFaults, seed: u64, partition: Option<Partition>) -> Self {
        Self {
            faults,
            random: SplitMix64::new(seed),
            partition,
        }
    }

    /// Whether traffic with `peer` is cut.
    pub fn cut_off(&self, peer: u64) -> bool {
        self.partition
            .as_ref()
            .and_then(|partition| partition.lock().ok().map(|cut| cut.contains(&peer)))
            .unwrap_or(false)
    }

    fn chance(&mut self, probability: f64) -> bool {
        probability > 0.0 && (self.random.next_u64() as f64 / u64::MAX as f64) < probability
    }

    /// Decides the fate of a datagram to `peer`.
    pub fn fate(&mut self, peer: u64) -> Fate {
        if self.cut_off(peer) || self.chance(self.faults.loss) {
            return Fate::Drop;
        }
        if self.chance(self.faults.duplicate) {
            return Fate::Duplicate;
        }
        if self.chance(self.faults.delay) {
            let max = self.faults.max_delay;
            return Fate::Delay(self.random.duration_in(&(Duration::ZERO..max)));
        }
        Fate::Send
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fates_follow_their_probabilities_and_partitions_cut_everything() {
        let faults = NetworkFaults {
            loss: 0.2,
            duplicate: 0.2,
            delay: 0.2,
            max_delay: Duration::from_millis(10),
        };
        let partition: Partition = Arc::default();
        let mut f = Faults::new(faults, 3, Some(partition.clone()));
        let fates: Vec<Fate> = (0..10_000).map(|_| f.fate(1)).collect();
        let count = |fate: fn(&Fate) -> bool| fates.iter().filter(|f| fate(f)).count();
        let dropped = count(|f| *f == Fate::Drop);
        let duplicated = count(|f| *f == Fate::Duplicate);
        let delayed = count(|f| matches!(f, Fate::Delay(d) if *d < Duration::from_millis(10)));
        assert!((1_700..2_300).contains(&dropped), "{dropped}");
        assert!((1_300..1_900).contains(&duplicated), "{duplicated}");
        assert!((1_000..1_600).contains(&delayed), "{delayed}");
        partition.lock().unwrap().insert(1);
        assert!((0..100).all(|_| f.fate(1) == Fate::Drop));
        assert!(!f.cut_off(2));
    }
}
