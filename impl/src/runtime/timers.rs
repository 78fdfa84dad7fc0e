//! The actor's timers with real deadlines. Setting a timer that is already set moves its
//! deadline, as in stateright's model (`Out::set_timer` replaces); cancelling removes it.
//!
//! A timer that fell due waits, as an input, for the steps before it in its group; one of them
//! may cancel it or set it again. Then the firing is stale: in the model the timer is no longer
//! set (or set anew), so stepping it would be a step the model cannot take (seen as a
//! conformance divergence, "Heartbeat timer fired but is not set in the model", when a
//! leader stepped down in the same group). [`Timers::claim`] tells a firing that still stands.

use std::time::Instant;

/// Pending timers and their deadlines. Actors have a handful of timer kinds, so a vector is
/// both the simplest and the fastest table.
#[derive(Debug)]
pub struct Timers<T> {
    pending: Vec<(T, Instant)>,
    /// Timers taken as due and not yet stepped, nor set or cancelled since.
    fired: Vec<T>,
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Self {
            pending: Vec::new(),
            fired: Vec::new(),
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
        self.fired.retain(|fired| fired != timer);
    }

    /// Whether a firing of `timer` that [`Timers::take_due`] returned still stands (the timer
    /// was neither cancelled nor set again since); it is claimed by the step that fires it.
    pub fn claim(&mut self, timer: &T) -> bool {
        let before = self.fired.len();
        self.fired.retain(|fired| fired != timer);
        self.fired.len() < before
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
        let due: Vec<T> = due.into_iter().map(|(timer, _)| timer).collect();
        self.fired.extend(due.iter().cloned());
        due
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

    #[test]
    fn a_firing_cancelled_or_set_again_before_its_step_is_stale() {
        let now = Instant::now();
        let mut timers = Timers::default();
        timers.set("heartbeat", now);
        timers.set("election", now);
        timers.set("retry", now);
        assert_eq!(timers.take_due(now).len(), 3);
        // A step before them in the group cancels one and sets another again.
        timers.cancel(&"heartbeat");
        timers.set("election", now + Duration::from_secs(1));
        assert!(!timers.claim(&"heartbeat"));
        assert!(!timers.claim(&"election"));
        assert!(timers.claim(&"retry"));
        assert!(!timers.claim(&"retry"), "a firing is claimed once");
        assert_eq!(timers.next_deadline(), Some(now + Duration::from_secs(1)));
    }
}
