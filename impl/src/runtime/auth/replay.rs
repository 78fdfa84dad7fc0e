//! Replay protection: each sender stamps its datagrams with its boot (a number that grows
//! across its restarts) and a sequence number that grows within a boot. A receiver accepts
//! each (boot, sequence) of a sender at most once, and nothing from a boot older than the
//! newest it has seen from that sender. This is the anti-replay window of IPsec (RFC 4303,
//! section 3.4.3) and WireGuard, per sender.
//!
//! The receiver's memory is bounded: it tracks at most [`MAX_TRACKED_SENDERS`] senders and
//! forgets the one first seen longest ago, and it does not persist. A forgotten sender's, or a
//! restarted receiver's, old datagrams can be accepted once more; proofs/SAFETY.md section 9b
//! says why that is harmless to safety, and the replicated session table makes a client's
//! replayed request harmless to exactly-once.

use crate::runtime::bounded::FifoMap;

/// Sequence numbers a window remembers below the highest seen: a datagram overtaken by more
/// than this many later ones of the same sender is dropped as if replayed.
pub const WINDOW: u64 = 1024;

/// The most senders whose windows a receiver keeps (every replica and this many clients
/// besides, like the address book's client table).
pub const MAX_TRACKED_SENDERS: usize = crate::runtime::MAX_CLIENT_ADDRESSES + 64;

/// Why a stamp is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replay {
    /// From a boot before the newest seen from the sender.
    OldBoot,
    /// Seen already, or too far below the highest sequence seen.
    Seen,
}

/// One sender's window.
#[derive(Clone, Debug)]
struct Window {
    boot: u64,
    highest: u64,
    /// Bit i: sequence `highest - i` was seen.
    seen: [u64; (WINDOW / 64) as usize],
}

impl Window {
    fn new(boot: u64, sequence: u64) -> Self {
        let mut seen = [0; (WINDOW / 64) as usize];
        seen[0] = 1;
        Window {
            boot,
            highest: sequence,
            seen,
        }
    }

    fn check(&self, boot: u64, sequence: u64) -> Result<(), Replay> {
        if boot < self.boot {
            return Err(Replay::OldBoot);
        }
        if boot > self.boot || sequence > self.highest {
            return Ok(());
        }
        let behind = self.highest - sequence;
        if behind >= WINDOW || self.bit(behind) {
            return Err(Replay::Seen);
        }
        Ok(())
    }

    /// Records a stamp that [`Window::check`] accepted.
    fn record(&mut self, boot: u64, sequence: u64) {
        if boot > self.boot {
            *self = Window::new(boot, sequence);
            return;
        }
        if sequence > self.highest {
            self.shift(sequence - self.highest);
            self.highest = sequence;
        }
        let behind = self.highest - sequence;
        self.seen[(behind / 64) as usize] |= 1 << (behind % 64);
    }

    fn bit(&self, behind: u64) -> bool {
        self.seen[(behind / 64) as usize] & (1 << (behind % 64)) != 0
    }

    /// Moves every bit `by` places older, dropping those that leave the window.
    fn shift(&mut self, by: u64) {
        if by >= WINDOW {
            self.seen = [0; (WINDOW / 64) as usize];
            return;
        }
        let (words, bits) = ((by / 64) as usize, (by % 64) as u32);
        let n = self.seen.len();
        for i in (0..n).rev() {
            let from = i.checked_sub(words);
            let high = from.map_or(0, |j| self.seen[j] << bits);
            let carry = match (from.and_then(|j| j.checked_sub(1)), bits) {
                (Some(k), 1..) => self.seen[k] >> (64 - bits),
                _ => 0,
            };
            self.seen[i] = high | carry;
        }
    }
}

/// Every tracked sender's window.
#[derive(Debug)]
pub struct ReplayGuard {
    windows: FifoMap<u64, Window>,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        ReplayGuard {
            windows: FifoMap::new(MAX_TRACKED_SENDERS),
        }
    }
}

impl ReplayGuard {
    /// Accepts `(boot, sequence)` from `sender` if it was not accepted before, and remembers
    /// it. Call only for datagrams whose tag verified, or forged stamps could block a sender.
    pub fn accept(&mut self, sender: u64, boot: u64, sequence: u64) -> Result<(), Replay> {
        match self.windows.get_mut(&sender) {
            Some(window) => {
                window.check(boot, sequence)?;
                window.record(boot, sequence);
            }
            None => {
                self.windows.insert(sender, Window::new(boot, sequence));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_stamp_is_accepted_once_and_old_boots_never() {
        let mut guard = ReplayGuard::default();
        assert_eq!(guard.accept(1, 10, 5), Ok(()));
        assert_eq!(guard.accept(1, 10, 5), Err(Replay::Seen));
        // Reordered within the window: accepted once each.
        for sequence in [3, 4, 200, 7, 6] {
            assert_eq!(guard.accept(1, 10, sequence), Ok(()), "{sequence}");
        }
        for sequence in [3, 4, 5, 6, 7, 200] {
            assert_eq!(
                guard.accept(1, 10, sequence),
                Err(Replay::Seen),
                "{sequence}"
            );
        }
        assert_eq!(guard.accept(1, 10, 199), Ok(()));
        // Far behind the highest: refused, though never seen.
        assert_eq!(guard.accept(1, 10, 200 + WINDOW + 1), Ok(()));
        assert_eq!(guard.accept(1, 10, 200), Err(Replay::Seen));
        assert_eq!(guard.accept(1, 10, 202), Ok(()));
        // A restart: the new boot's first datagram resets the window; the old boot is over.
        assert_eq!(guard.accept(1, 11, 0), Ok(()));
        assert_eq!(guard.accept(1, 10, 5000), Err(Replay::OldBoot));
        assert_eq!(guard.accept(1, 11, 0), Err(Replay::Seen));
        // Senders are apart.
        assert_eq!(guard.accept(2, 1, 0), Ok(()));
    }

    /// The window against a plain set of what was seen, over shifts of every size.
    #[test]
    fn the_window_agrees_with_a_set_of_seen_stamps() {
        let mut guard = ReplayGuard::default();
        let mut seen = std::collections::BTreeSet::new();
        let mut highest = 0u64;
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let step = match x % 4 {
                0 => x % 3,
                1 => (x >> 8) % 70,
                2 => (x >> 8) % (WINDOW + 100),
                _ => 0,
            };
            let sequence = if x & 1 == 0 {
                highest + step
            } else {
                highest.saturating_sub(step)
            };
            let expected = if seen.contains(&sequence)
                || (sequence < highest && highest - sequence >= WINDOW)
            {
                Err(Replay::Seen)
            } else {
                Ok(())
            };
            assert_eq!(
                guard.accept(9, 1, sequence),
                expected,
                "{sequence} {highest}"
            );
            if expected.is_ok() {
                seen.insert(sequence);
                highest = highest.max(sequence);
            }
        }
    }

    #[test]
    fn the_table_is_bounded() {
        let mut guard = ReplayGuard::default();
        for sender in 0..(MAX_TRACKED_SENDERS as u64 + 10) {
            guard.accept(sender, 1, 1).unwrap();
        }
        assert_eq!(guard.windows.len(), MAX_TRACKED_SENDERS);
        // The first sender was forgotten: its stamp is accepted again.
        assert_eq!(guard.accept(0, 1, 1), Ok(()));
    }
}
