//! The reference execution of a decided log: what every replica's state must equal after it has
//! executed the same slots.
//!
//! This is the specification of exactly-once execution, written independently of the replica's
//! code: a request the session table admits as fresh (`Sessions::admit`: of the client's
//! current session, with a higher number than any applied before) is applied; a retry that was
//! decided twice is applied once; a request of a retired session is not applied.

use crate::command::{Command, Output, RequestId, Slot};
use crate::digest::Digest;
use crate::service::{Configuration, ServiceState};
use crate::session::{Admission, Session};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Applies one decided command to `state` under exactly-once semantics, calling `applied` for
/// every request that takes effect and `expired` for every request of a retired session.
pub fn execute(
    state: &mut ServiceState,
    slot: Slot,
    command: &Command,
    mut applied: impl FnMut(RequestId, &Output),
    mut expired: impl FnMut(RequestId),
) {
    state.begin_slot(slot);
    for request in command.requests() {
        match state.sessions.admit(request) {
            Admission::Fresh => {
                let incarnation = state.sessions.incarnation_for(request);
                let output = state.apply(slot, request);
                applied(request.id(), &output);
                let session = Session {
                    incarnation,
                    number: request.number,
                    slot,
                    output,
                };
                state.sessions.record(request.client, session);
            }
            Admission::Expired => expired(request.id()),
            Admission::Duplicate | Admission::Stale => {}
        }
    }
}

/// The reference execution of a growing log, kept incrementally: `digests[n]` is the digest of
/// the state after applying slots `0..n`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReferenceExecution {
    state: ServiceState,
    digests: Vec<Digest>,
    /// Where and with what output each request was applied. Shared, so that cloning a model
    /// state that holds a reference execution stays cheap.
    applications: Arc<BTreeMap<RequestId, (Slot, Output)>>,
    /// Each request found expired, with the slots of the copies found so.
    expirations: Arc<BTreeMap<RequestId, Vec<Slot>>>,
    /// Openings of a session applied again, decided again after their session was retired
    /// (the only requests the table may apply twice; see `crate::session`), by slot.
    reopenings: Arc<BTreeMap<(RequestId, Slot), Output>>,
    /// The configuration after applying slots `0..n`, recorded at each `n` where it changed.
    configurations: Arc<Vec<(Slot, Configuration)>>,
}

impl ReferenceExecution {
    /// The reference execution of a cluster that starts in `state`.
    pub fn new(state: ServiceState) -> Self {
        let digests = vec![state.digest()];
        let configurations = Arc::new(vec![(0, state.configuration.clone())]);
        Self {
            state,
            digests,
            applications: Arc::default(),
            expirations: Arc::default(),
            reopenings: Arc::default(),
            configurations,
        }
    }

    /// Number of slots applied so far.
    pub fn applied(&self) -> Slot {
        (self.digests.len() - 1) as Slot
    }

    /// Applies the next slot's command.
    pub fn apply_next(&mut self, command: &Command) {
        let slot = self.applied();
        let applications = &mut self.applications;
        let expirations = &mut self.expirations;
        let reopenings = &mut self.reopenings;
        execute(
            &mut self.state,
            slot,
            command,
            |request, output| {
                if applications.contains_key(&request) {
                    debug_assert!(matches!(output, Output::Session(_)), "only openings repeat");
                    Arc::make_mut(reopenings).insert((request, slot), output.clone());
                } else {
                    Arc::make_mut(applications).insert(request, (slot, output.clone()));
                }
            },
            |request| {
                Arc::make_mut(expirations)
                    .entry(request)
                    .or_default()
                    .push(slot);
            },
        );
        self.digests.push(self.state.digest());
        let latest = &self.configurations.last().expect("never empty").1;
        if *latest != self.state.configuration {
            let configuration = self.state.configuration.clone();
            Arc::make_mut(&mut self.configurations).push((slot + 1, configuration));
        }
    }

    /// The configuration after applying slots `0..slots`, if that many have been applied.
    pub fn configuration_after(&self, slots: Slot) -> Option<&Configuration> {
        if slots > self.applied() {
            return None;
        }
        self.configurations
            .iter()
            .rev()
            .find(|(from, _)| *from <= slots)
            .map(|(_, configuration)| configuration)
    }

    /// The members that decide `slot`, once enough of the log is applied to know them (every
    /// slot up to `slot - alpha`).
    pub fn electorate(
        &self,
        slot: Slot,
    ) -> Option<&std::collections::BTreeSet<stateright::actor::Id>> {
        let known = slot.min(self.applied());
        let configuration = self.configuration_after(known)?;
        (slot < known + configuration.alpha).then(|| configuration.members_at(slot))
    }

    /// Every configuration the applied log went through, with the slot count after which it
    /// held.
    pub fn configurations(&self) -> &[(Slot, Configuration)] {
        &self.configurations
    }

    /// The digest after applying slots `0..slots`, if that many have been applied.
    pub fn digest_after(&self, slots: Slot) -> Option<Digest> {
        self.digests.get(slots as usize).copied()
    }

    /// Where a request was first applied, and its output, if it has been.
    pub fn application(&self, request: RequestId) -> Option<(Slot, &Output)> {
        self.applications
            .get(&request)
            .map(|(slot, output)| (*slot, output))
    }

    /// The output of an opening of a session applied again at `slot`, if it was.
    pub fn reopened_at(&self, request: RequestId, slot: Slot) -> Option<&Output> {
        self.reopenings.get(&(request, slot))
    }

    /// Whether a copy of `request` decided at `slot` was found expired (its session retired).
    pub fn expired_at(&self, request: RequestId, slot: Slot) -> bool {
        self.expirations
            .get(&request)
            .is_some_and(|slots| slots.contains(&slot))
    }

    /// The reference state after all applied slots.
    pub fn state(&self) -> &ServiceState {
        &self.state
    }
}
