//! The client actor: submits its operations one at a time, retries with the same request
//! number (so the replicas can recognise the retry) at the next replica, and learns the leader
//! from who answers (a replica that does not lead forwards the request to the leader).
//! The model checker drives it with a fixed script; the command-line client is the same actor
//! driven by the runtime.
//!
//! A script that starts with [`Operation::OpenSession`] opens a session first, and the client
//! sends its later requests under the incarnation the answer names (`spec::session`). A
//! request answered "session expired" ends the script: its outcome is unknown, and whoever
//! drives the client reports that.

use crate::marks::{self, Mark};
use crate::message::Msg;
use crate::node::{Node, Timer};
use spec::digest::{digest_of, Digest};
use spec::{Operation, Output, Request, RequestNumber, SessionId, SessionOutput, Slot, IMPLICIT};
use stateright::actor::{Id, Out};
use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::time::Duration;

/// A client: the replicas it may contact and the operations it submits, in order.
#[derive(Clone, Debug)]
pub struct Client {
    /// The replicas, in the order the client tries them.
    pub replicas: Vec<Id>,
    /// The operations to submit, one after the other.
    pub ops: Vec<Operation>,
    /// Sends of one request (the first and the retries) before the client stops trying.
    pub max_attempts: u32,
    /// How long to wait for an answer before retrying.
    pub retry_timeout: Range<Duration>,
    /// Whether the first request waits for the retry timer instead of leaving at start: the
    /// model starts clients one after another this way (see its `staggered` bound).
    pub delay_start: bool,
    /// A seeded client bug (only with the `seeded-bugs` feature; ignored otherwise).
    pub bug: Option<crate::SeededBug>,
}

/// Progress of a client through its operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientState {
    /// Index of the operation in flight; equal to the number of operations when all are done.
    pub next: usize,
    /// Index (into `replicas`) of the replica believed to lead.
    pub target: usize,
    /// Sends of the current request so far.
    pub attempts: u32,
    /// The answers received, with the slot each request was applied at.
    pub outputs: Vec<(Slot, Output)>,
    /// The incarnation of the client's session: [`IMPLICIT`] until an opening names it.
    pub session: SessionId,
    /// Whether a request was answered "session expired": the client then stops.
    pub expired: bool,
    /// Digest of the fields above, refreshed after every change (as for replicas).
    pub digest: Digest,
}

impl Hash for ClientState {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.digest.hash(state);
    }
}

impl ClientState {
    /// Digests every field.
    pub fn compute_digest(&self) -> Digest {
        let ClientState {
            next,
            target,
            attempts,
            outputs,
            session,
            expired,
            digest: _,
        } = self;
        digest_of(&(next, target, attempts, outputs, session, expired))
    }

    /// The number of the request in flight (requests are numbered from 1).
    pub fn number(&self) -> RequestNumber {
        self.next as RequestNumber + 1
    }
}

impl Client {
    /// Whether the seeded bug `bug` is on: never without the `seeded-bugs` feature.
    fn has_bug(&self, bug: crate::SeededBug) -> bool {
        cfg!(feature = "seeded-bugs") && self.bug == Some(bug)
    }

    /// Whether the client has used every attempt for its current request.
    pub fn is_out_of_attempts(&self, state: &ClientState) -> bool {
        !self.is_done(state) && state.attempts >= self.max_attempts
    }

    /// Whether every operation has been answered, or the session expired.
    pub fn is_done(&self, state: &ClientState) -> bool {
        state.next >= self.ops.len() || state.expired
    }

    /// The request this client sends with number `number` under incarnation `session`, if
    /// it has one.
    pub fn request(&self, id: Id, session: SessionId, number: RequestNumber) -> Option<Request> {
        let op = self
            .ops
            .get(usize::try_from(number).ok()?.checked_sub(1)?)?;
        Some(Request {
            client: id,
            session,
            number,
            op: op.clone(),
        })
    }

    /// Whether this client, at id `request.client`, sends `request` at some point: its
    /// number and operation are in the script (the incarnation is learned while running).
    pub fn sends(&self, request: &Request) -> bool {
        self.request(request.client, request.session, request.number)
            .as_ref()
            == Some(request)
    }

    fn send_current(&self, id: Id, state: &mut ClientState, o: &mut Out<Node>) {
        if let Some(request) = self.request(id, state.session, state.number()) {
            state.attempts += 1;
            o.send(self.replicas[state.target], Msg::Request(request));
            o.set_timer(Timer::Retry, self.retry_timeout.clone());
        }
    }

    pub(crate) fn on_start(&self, id: Id, o: &mut Out<Node>) -> ClientState {
        let mut state = ClientState {
            next: 0,
            target: 0,
            attempts: 0,
            outputs: Vec::new(),
            session: IMPLICIT,
            expired: false,
            digest: 0,
        };
        if self.delay_start {
            marks::hit(Mark::ClientDelayedStart);
            o.set_timer(Timer::Retry, self.retry_timeout.clone());
        } else {
            self.send_current(id, &mut state, o);
        }
        state.digest = state.compute_digest();
        state
    }

    pub(crate) fn on_msg(
        &self,
        id: Id,
        state: &mut Cow<ClientState>,
        src: Id,
        msg: Msg,
        o: &mut Out<Node>,
    ) {
        self.handle_msg(id, state, src, msg, o);
        if let Cow::Owned(state) = state {
            state.digest = state.compute_digest();
        }
    }

    pub(crate) fn on_timeout(
        &self,
        id: Id,
        state: &mut Cow<ClientState>,
        timer: Timer,
        o: &mut Out<Node>,
    ) {
        self.handle_timeout(id, state, timer, o);
        if let Cow::Owned(state) = state {
            state.digest = state.compute_digest();
        }
    }

    fn handle_msg(
        &self,
        id: Id,
        state: &mut Cow<ClientState>,
        src: Id,
        msg: Msg,
        o: &mut Out<Node>,
    ) {
        if self.is_done(state) {
            return;
        }
        match msg {
            Msg::Reply {
                number,
                slot,
                output,
            } if number == state.number()
                || (number < state.number()
                    && self.has_bug(crate::SeededBug::ClientTakesStaleReply)) =>
            {
                marks::hit(Mark::ClientAnswered);
                let state = state.to_mut();
                match output {
                    Output::Session(SessionOutput::Opened(session)) => {
                        marks::hit(Mark::ClientOpenedSession);
                        state.session = session;
                    }
                    Output::Session(SessionOutput::Expired) => {
                        marks::hit(Mark::ClientSessionExpired);
                        state.expired = true;
                    }
                    _ => {}
                }
                state.outputs.push((slot, output));
                state.next += 1;
                state.attempts = 0;
                if let Some(replier) = self.replicas.iter().position(|r| *r == src) {
                    state.target = replier;
                }
                if self.is_done(state) {
                    o.cancel_timer(Timer::Retry);
                } else {
                    self.send_current(id, state, o);
                }
            }
            _ => {}
        }
    }

    fn handle_timeout(
        &self,
        id: Id,
        state: &mut Cow<ClientState>,
        timer: Timer,
        o: &mut Out<Node>,
    ) {
        // Out of attempts, the client stops sending: whoever drives it (the command-line
        // client, a test) decides how long to wait for the answer that may still come.
        if timer != Timer::Retry || self.is_done(state) {
            return;
        }
        if state.attempts >= self.max_attempts {
            marks::hit(Mark::ClientOutOfAttempts);
            return;
        }
        let state = state.to_mut();
        // The first retry goes to the same replica: most often a datagram was lost, and a
        // replica that lost the leadership forwards the retry to the new leader. The next one
        // moves on, since the replica may be down; and so on, alternating.
        // (A delayed first send, `delay_start`, goes to the first replica.)
        if state.attempts > 0 && state.attempts % 2 == 0 {
            marks::hit(Mark::ClientRetriesNextReplica);
            state.target = (state.target + 1) % self.replicas.len();
        } else if state.attempts > 0 {
            marks::hit(Mark::ClientRetriesSameReplica);
        }
        self.send_current(id, state, o);
    }
}
