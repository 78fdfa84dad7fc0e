//! The actor's timers with real deadlines. Setting a timer that is already set moves its
//! deadline, as in stateright's model (`Out::set_timer` replaces); cancelling removes it.

use std::time::Instant;

/// Pending timers and their deadlines. Actors have a handful of timer kinds, so a vector is
/// both the simplest and the fastest table.
#[derive(Debug)]
pub struct Timers<T> {
    pending: Vec<(T, Instant)>,
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Self {
            pending: Vec::new(),
        }
    }
}

impl<T: PartialEq + Clone> Timers<T> {
    /// Sets `timer` to fire at `deadline`, replacing an earlier setting.
    pub fn set(&mut self, timer: T, deadline: Instant) {
        self.cancel(&timer);
        self.pending.push((timer, deadline));
    }

    /// Cancels `timer` if it is set.
    pub fn cancel(&mut self, timer: &T) {
        self.pending.retain(|(pending, _)| pending != timer);
    }

    /// The earliest deadline, if any timer is set.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.iter().map(|(_, deadline)| *deadline).min()
    }

    /// Removes and returns the timers due at `now`, earliest first.
    pub fn take_due(&mut self, now: Instant) -> Vec<T> {
        let mut due: Vec<(T, Instant)> = Vec::new();
        self.pending.retain(|(timer, deadline)| {
            if *deadline <= now {
                due.push((timer.clone(), *deadline));
                false
            } else {
                true
            }
        });
        due.sort_by_key(|(_, deadline)| *deadline);
        due.into_iter().map(|(timer, _)| timer).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn setting_again_moves_the_deadline_and_cancel_removes() {
        let now = Instant::now();
        let mut timers = Timers::default();
        timers.set("election", now + Duration::from_secs(1));
        timers.set("heartbeat", now + Duration::from_secs(2));
        timers.set("election", now + Duration::from_secs(3));
        assert_eq!(timers.next_deadline(), Some(now + Duration::from_secs(2)));
        assert_eq!(
            timers.take_due(now + Duration::from_secs(2)),
            vec!["heartbeat"]
        );
        timers.cancel(&"election");
        assert_eq!(timers.next_deadline(), None);
    }
}
