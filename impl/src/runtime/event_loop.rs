//! The event loop: receive, step, persist, send — with group commit.
//!
//! Each round takes every input that is ready now (the datagrams waiting in the socket, the
//! timers that are due), runs their steps one by one, and collects their outputs as one
//! *group*. If a step of the group saved storage, the group's latest storage is made durable
//! with one write and one fsync, and only then are the group's messages sent (by the blocking
//! thread that ran the fsync, the moment it returns). While that fsync
//! runs, the loop keeps receiving and stepping the next group; the next
//! group's messages wait for their own fsync, which starts after the previous one finished, so
//! messages still leave strictly after everything saved before them. This is group commit as
//! in database logs (DeWitt et al., "Implementation techniques for main memory database
//! systems", 1984): one fsync covers many steps, which is what lets a leader with many clients
//! batch.

use super::auth::{Auth, Proven, Refused};
use super::core::{Core, DigestFn, Input, StepObserver, Stepper};
use super::counters::{Counters, RateLimited};
use super::faults::{Fate, Faults, NetworkFaults, Partition, MAX_DELAYED_DATAGRAMS};
use super::peers::{wire_id, AddressBook, Admitted, SenderRejected};
use super::random::SplitMix64;
use super::seeded::RuntimeBug;
use super::storage::{DurableStore, StorageError};
use super::timers::Timers;
use super::StatusReply;
use crate::codec::{
    self, ClientAddress, DecodeError, EncodeError, FrameKind, Header, Refusal, StatusRequest,
    MAX_DATAGRAM_BYTES,
};
use crate::replica::Durable;
use serde::{de::DeserializeOwned, Serialize};
use stateright::actor::{Actor, Command, Id, Out};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// The most datagrams taken into one group: bounds how long the loop steps before it commits
/// and sends, and so the latency a large burst adds.
pub const MAX_GROUP_DATAGRAMS: usize = 512;

/// Describes the actor's state for a status request (encoded as the caller likes).
pub type StatusFn<A> = Box<dyn Fn(&<A as Actor>::State) -> Vec<u8> + Send>;

/// What a client may send, by message: the caller's rule, since the runtime knows nothing of
/// the protocol. Given the client's wire id and its message.
pub type ClientRule<A> = Box<dyn Fn(u64, &<A as Actor>::Msg) -> ClientAccess + Send>;

/// What a [`ClientRule`] says of a message from a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAccess {
    /// Any client may send it.
    Anyone,
    /// Only an administrator's credential may (for example a configuration change).
    Admin,
    /// No client may (for example a replica's message, or a request in another's name).
    Refused(&'static str),
}

/// How often the runtime logs dropped datagrams of one kind, at most.
const DROP_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Lets the code that runs an actor watch it and shape its inputs. Both methods have no-op
/// defaults.
pub trait Hooks<A: Actor>: Send {
    /// Called when a message arrives, before it is stepped. Returning a later instant holds
    /// the message until then (a benchmark uses this to pace an open-loop client).
    fn hold_until(&mut self, src: Id, msg: &A::Msg, arrival: Instant) -> Option<Instant> {
        let _ = (src, msg, arrival);
        None
    }

    /// Called after every step with the new state; `true` stops the runtime once the outputs
    /// so far are durable and sent.
    fn should_stop(&mut self, state: &A::State) -> bool {
        let _ = state;
        false
    }
}

/// No hooks: the runtime runs until it is shut down.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHooks;

impl<A: Actor> Hooks<A> for NoHooks {}

/// Why the runtime stopped with an error. Every variant is fatal for the process.
#[derive(Debug)]
pub enum RuntimeError {
    Storage(StorageError),
    Socket(std::io::Error),
    /// The trace could not be written: a run that was asked to be traced does not go on
    /// untraced, or its trace would not explain what others saw.
    Trace(String),
}

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuntimeError::Storage(error) => write!(f, "{error}"),
            RuntimeError::Socket(error) => write!(f, "socket: {error}"),
            RuntimeError::Trace(error) => write!(f, "trace: {error}"),
        }
    }
}

impl std::error::Error for RuntimeError {}

/// What a runtime leaves when it stops.
pub struct Stopped<A: Actor> {
    /// The actor's last state (`None` only if it never started).
    pub state: Option<A::State>,
    pub counters: Counters,
    /// Why a replica refused this runtime's requests, if one said so (a client whose
    /// credential may not do what it asked): the runtime stops at the first refusal.
    pub refused: Option<String>,
}

/// The outputs of the steps since the last commit started.
struct Group<A: Actor> {
    messages: Vec<(Id, A::Msg)>,
    /// The latest storage saved by a step of the group.
    storage: Option<A::Storage>,
}

impl<A: Actor> Default for Group<A> {
    fn default() -> Self {
        Self {
            messages: Vec::new(),
            storage: None,
        }
    }
}

impl<A: Actor> Group<A> {
    fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.storage.is_none()
    }
}

/// What a commit job hands back: the store, and how the sending of the group went.
struct Committed<S: Durable> {
    store: DurableStore<S>,
    sent: u64,
    errors: u64,
    /// Datagrams the socket had no room for right away; the loop sends them.
    unsent: Vec<(SocketAddr, Vec<u8>)>,
}

type CommitJob<S> = JoinHandle<Result<Committed<S>, StorageError>>;

/// Sends prepared datagrams without waiting (from the commit job's thread).
fn send_now(
    socket: &UdpSocket,
    datagrams: Vec<(SocketAddr, Vec<u8>)>,
) -> (u64, u64, Vec<(SocketAddr, Vec<u8>)>) {
    let (mut sent, mut errors, mut unsent) = (0, 0, Vec::new());
    for (address, datagram) in datagrams {
        match socket.try_send_to(&datagram, address) {
            Ok(_) => sent += 1,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                unsent.push((address, datagram))
            }
            Err(_) => errors += 1,
        }
    }
    (sent, errors, unsent)
}

/// One actor on one UDP socket.
pub struct Runtime<A: Stepper>
where
    A::Storage: Durable,
{
    core: Core<A>,
    cluster: u64,
    socket: Arc<UdpSocket>,
    book: AddressBook,
    random: SplitMix64,
    store: Option<DurableStore<A::Storage>>,
    loaded: Option<A::Storage>,
    status: Option<StatusFn<A>>,
    hooks: Box<dyn Hooks<A>>,
    counters: Counters,
    timers: Timers<A::Timer>,
    inline_commit: bool,
    faults: Option<Faults>,
    /// Datagrams held back by an injected delay: when to send, where, what.
    delayed: Vec<(Instant, SocketAddr, Vec<u8>)>,
    bug: Option<RuntimeBug>,
    /// Protocol datagrams received (for the corrupt-delivery bug's schedule).
    protocol_datagrams: u64,
    auth: Auth,
    client_rule: Option<ClientRule<A>>,
    /// Rate limits the log of datagrams that fail authentication or authorization.
    drop_log: RateLimited,
    /// A replica's refusal of this runtime's request (see [`Stopped::refused`]).
    refused: Option<String>,
}

impl<A> Runtime<A>
where
    A: Stepper + Send + 'static,
    A::Msg: Serialize + DeserializeOwned + Send,
    A::Storage: Durable + Send + 'static,
    A::State: Send,
    A::Timer: Send,
    A::Random: Send,
{
    /// A runtime for `actor` as `id` of `cluster`, on `socket`, knowing the replicas at
    /// `replicas`, signing and checking datagrams with `auth`. Without a store the actor runs
    /// volatile: for actors that save nothing, like clients.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        actor: A,
        id: Id,
        cluster: u64,
        socket: Arc<UdpSocket>,
        replicas: BTreeMap<Id, SocketAddr>,
        auth: Auth,
        digest: DigestFn<A>,
        seed: u64,
    ) -> Self {
        Self {
            core: Core::new(actor, id, digest),
            cluster,
            socket,
            book: AddressBook::new(replicas),
            random: SplitMix64::new(seed),
            store: None,
            loaded: None,
            status: None,
            hooks: Box::new(super::NoHooks),
            counters: Counters::default(),
            timers: Timers::default(),
            inline_commit: false,
            faults: None,
            delayed: Vec::new(),
            bug: None,
            protocol_datagrams: 0,
            auth,
            client_rule: None,
            drop_log: RateLimited::new(DROP_LOG_INTERVAL),
            refused: None,
        }
    }

    /// Checks every message from a client with `rule` (without one, clients may send
    /// anything).
    pub fn with_client_rule(mut self, rule: ClientRule<A>) -> Self {
        self.client_rule = Some(rule);
        self
    }

    /// Injects `faults` into this runtime's outgoing protocol datagrams (seeded by `seed`),
    /// and cuts it off from the peers in `partition`. For tests.
    pub fn with_faults(
        mut self,
        faults: NetworkFaults,
        seed: u64,
        partition: Option<Partition>,
    ) -> Self {
        self.faults = Some(Faults::new(faults, seed, partition));
        self
    }

    /// Switches on a seeded runtime bug (effective only with the `runtime-bugs` feature).
    pub fn with_bug(mut self, bug: Option<RuntimeBug>) -> Self {
        self.bug = bug;
        self
    }

    /// Persists saves to `store`; the actor starts from `loaded`, what the store read back.
    pub fn with_store(
        mut self,
        store: DurableStore<A::Storage>,
        loaded: Option<A::Storage>,
    ) -> Self {
        self.store = Some(store);
        self.loaded = loaded;
        self
    }

    /// Answers status requests with `status` applied to the actor's state.
    pub fn with_status(mut self, status: StatusFn<A>) -> Self {
        self.status = Some(status);
        self
    }

    /// Commits on the runtime's own thread instead of a blocking thread. Saves two thread
    /// hand-offs per commit (lower latency when the machine is busy) but stops the loop while
    /// the disk works, so the next group is not stepped in the meantime. Only for a runtime
    /// that has its thread to itself (a current-thread runtime, as the `replica` binary uses).
    pub fn with_inline_commit(mut self, inline: bool) -> Self {
        self.inline_commit = inline;
        self
    }

    pub fn with_hooks(mut self, hooks: Box<dyn Hooks<A>>) -> Self {
        self.hooks = hooks;
        self
    }

    pub fn with_observer(mut self, observer: Box<dyn StepObserver<A>>) -> Self {
        self.core.set_observer(observer);
        self
    }

    /// Runs until a hook asks to stop, `shutdown` completes, or a fatal error. On shutdown
    /// the runtime behaves like a crash: it waits for a commit already under way (so that the
    /// files are settled for a restart) and sends nothing more.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<Stopped<A>, RuntimeError> {
        tokio::pin!(shutdown);
        let socket = self.socket.clone();
        let mut buffer = vec![0u8; MAX_DATAGRAM_BYTES + 1];
        let mut encode_buffer = Vec::with_capacity(MAX_DATAGRAM_BYTES);
        let mut ready: Vec<Input<A>> = vec![Input::Start {
            storage: self.loaded.take(),
        }];
        let mut held: Vec<(Instant, Input<A>)> = Vec::new();
        let mut staged = Group::<A>::default();
        let mut in_flight: Option<CommitJob<A::Storage>> = None;
        // The last step of the group whose commit is in flight.
        let mut committing_through = 0;
        let mut stopping = false;
        loop {
            // Step everything that is ready, as one group.
            // (A random choice asked for by a step is a further input, stepped right after.)
            while !ready.is_empty() {
                for input in std::mem::take(&mut ready) {
                    if let Input::Timeout { timer } = &input {
                        if !self.timers.claim(timer) {
                            continue; // Cancelled or set again by an earlier step.
                        }
                    }
                    let out = self.core.step(input);
                    self.absorb(out, &mut staged, &mut ready);
                    if let Some(state) = self.core.state() {
                        stopping |= self.hooks.should_stop(state);
                    }
                }
            }
            if in_flight.is_none() && !staged.is_empty() {
                let through = self.core.steps();
                match (staged.storage.take(), self.store.take()) {
                    (Some(latest), Some(mut store)) if self.inline_commit => {
                        // Block this thread on the disk; datagrams wait in the socket buffer
                        // and form the next group.
                        self.core
                            .observe_commit(&latest)
                            .map_err(RuntimeError::Trace)?;
                        let messages = std::mem::take(&mut staged.messages);
                        let early = RuntimeBug::active(self.bug, RuntimeBug::SendBeforeDurable);
                        if early {
                            self.release(through, messages.clone(), &mut encode_buffer)
                                .await?;
                        }
                        store.commit(latest).map_err(RuntimeError::Storage)?;
                        self.store = Some(store);
                        self.core.observe_durable(through);
                        if !early {
                            self.release(through, messages, &mut encode_buffer).await?;
                        }
                    }
                    (Some(latest), Some(mut store)) => {
                        self.core
                            .observe_commit(&latest)
                            .map_err(RuntimeError::Trace)?;
                        let mut messages = std::mem::take(&mut staged.messages);
                        committing_through = through;
                        if RuntimeBug::active(self.bug, RuntimeBug::SendBeforeDurable) {
                            let early = std::mem::take(&mut messages);
                            self.release(through, early, &mut encode_buffer).await?;
                        }
                        // The job sends the group's datagrams itself as soon as the fsync
                        // returns: the messages leave without waiting for this loop to wake
                        // up and take the job's result (a thread hand-off less on every
                        // request's critical path). The loop records the release afterwards.
                        let datagrams = self.prepare(messages, &mut encode_buffer);
                        let socket = self.socket.clone();
                        in_flight = Some(tokio::task::spawn_blocking(move || {
                            store.commit(latest)?;
                            let (sent, errors, unsent) = send_now(&socket, datagrams);
                            Ok(Committed {
                                store,
                                sent,
                                errors,
                                unsent,
                            })
                        }));
                    }
                    (_, store) => {
                        // Nothing to persist (or a volatile actor): send at once.
                        self.store = store;
                        let messages = std::mem::take(&mut staged.messages);
                        self.release(through, messages, &mut encode_buffer).await?;
                    }
                }
            }
            stopping |= self.refused.is_some();
            if stopping && in_flight.is_none() && staged.is_empty() {
                break;
            }
            let deadline = [
                self.timers.next_deadline(),
                held.iter().map(|(at, _)| *at).min(),
                self.delayed.iter().map(|(at, _, _)| *at).min(),
            ]
            .into_iter()
            .flatten()
            .min();
            tokio::select! {
                biased;
                () = &mut shutdown => {
                    if let Some(job) = in_flight.take() {
                        // Let the write finish so a restart finds settled files (the job then
                        // sends its group, which is durable: as if the crash came just after).
                        let _ = job.await;
                    }
                    break;
                }
                finished = async { in_flight.as_mut().expect("guarded").await }, if in_flight.is_some() => {
                    in_flight = None;
                    let committed = finished
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
                        .map_err(RuntimeError::Storage)?;
                    self.store = Some(committed.store);
                    self.counters.sent += committed.sent;
                    self.counters.send_errors += committed.errors;
                    self.core.observe_durable(committing_through);
                    self.core
                        .observe_release(committing_through)
                        .map_err(RuntimeError::Trace)?;
                    for (address, datagram) in committed.unsent {
                        self.send_datagram(&datagram, address).await;
                    }
                }
                received = socket.recv_from(&mut buffer) => {
                    let (length, from) = received.map_err(RuntimeError::Socket)?;
                    self.receive(&buffer[..length], from, &mut ready, &mut held);
                    // Take whatever else is waiting into the same group.
                    for _ in 1..MAX_GROUP_DATAGRAMS {
                        match socket.try_recv_from(&mut buffer) {
                            Ok((length, from)) => {
                                self.receive(&buffer[..length], from, &mut ready, &mut held)
                            }
                            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(error) => return Err(RuntimeError::Socket(error)),
                        }
                    }
                }
                () = sleep_until(deadline), if deadline.is_some() => {}
            }
            let now = Instant::now();
            self.send_delayed(now).await;
            for timer in self.timers.take_due(now) {
                ready.push(Input::Timeout { timer });
            }
            if !held.is_empty() {
                let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut held)
                    .into_iter()
                    .partition(|(at, _)| *at <= now);
                held = later;
                ready.extend(due.into_iter().map(|(_, input)| input));
            }
        }
        self.core.flush_observer().map_err(RuntimeError::Trace)?;
        Ok(Stopped {
            state: self.core.into_state(),
            counters: self.counters,
            refused: self.refused,
        })
    }

    /// Sends a group's messages, once the observer (a trace) has what it needs on disk.
    async fn release(
        &mut self,
        through: u64,
        messages: Vec<(Id, A::Msg)>,
        buffer: &mut Vec<u8>,
    ) -> Result<(), RuntimeError> {
        self.core
            .observe_release(through)
            .map_err(RuntimeError::Trace)?;
        self.send_all(messages, buffer).await;
        Ok(())
    }

    /// Sends the delayed datagrams that are due.
    async fn send_delayed(&mut self, now: Instant) {
        if self.delayed.is_empty() {
            return;
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.delayed)
            .into_iter()
            .partition(|(at, _, _)| *at <= now);
        self.delayed = later;
        for (_, address, datagram) in due {
            self.send_datagram(&datagram, address).await;
        }
    }

    async fn send_datagram(&mut self, datagram: &[u8], address: SocketAddr) {
        // UDP sends rarely wait; a failure (no route, buffer full) is a lost datagram,
        // which the protocol tolerates.
        match self.socket.send_to(datagram, address).await {
            Ok(_) => self.counters.sent += 1,
            Err(error) => {
                self.counters.send_errors += 1;
                tracing::debug!(%address, %error, "send failed");
            }
        }
    }

    /// The actor's id.
    pub fn id(&self) -> Id {
        self.core.id()
    }

    /// The actor this runtime drives.
    pub fn actor(&self) -> &A {
        self.core.actor()
    }

    /// Carries out a step's outputs: timers now, saves and messages into the group.
    fn absorb(&mut self, out: Out<A>, staged: &mut Group<A>, ready: &mut Vec<Input<A>>) {
        for command in out {
            match command {
                Command::Send(dst, msg) => staged.messages.push((dst, msg)),
                Command::SetTimer(timer, range) => {
                    let deadline = Instant::now() + self.random.duration_in(&range);
                    self.timers.set(timer, deadline);
                }
                Command::CancelTimer(timer) => {
                    if !RuntimeBug::active(self.bug, RuntimeBug::TimerCancelLost) {
                        self.timers.cancel(&timer);
                    }
                }
                Command::Save(storage) => staged.storage = Some(storage),
                Command::ChooseRandom(_, mut choices) => {
                    if !choices.is_empty() {
                        let pick = self.random.below(choices.len() as u64) as usize;
                        ready.push(Input::Random {
                            random: choices.swap_remove(pick),
                        });
                    }
                }
            }
        }
    }

    /// Checks and decodes one datagram; a protocol message becomes an input, a status request
    /// is answered here, anything bad is counted and dropped.
    fn receive(
        &mut self,
        datagram: &[u8],
        from: SocketAddr,
        ready: &mut Vec<Input<A>>,
        held: &mut Vec<(Instant, Input<A>)>,
    ) {
        let header = match codec::decode_header(datagram, self.cluster) {
            Ok(header) => header,
            Err(error) => return self.count_drop(&error, from),
        };
        if header.receiver != wire_id(self.core.id()) {
            self.counters.wrong_receiver += 1;
            return;
        }
        // Authenticity before anything learns from the datagram: a forged one must not move a
        // client's address or take a replay window's place.
        let proven = match self.auth.verify(&header, datagram) {
            Ok(proven) => proven,
            Err(refused) => {
                match refused {
                    Refused::UnknownKey => self.counters.unknown_key += 1,
                    Refused::BadTag => self.counters.bad_tag += 1,
                    Refused::Replayed(_) => self.counters.replayed += 1,
                }
                return self.log_drop(from, header.sender, &format!("{refused:?}"));
            }
        };
        let admitted = match self.book.admit(header.sender, from) {
            Ok(admitted) => admitted,
            Err(rejected) => {
                self.counters.unknown_sender += 1;
                tracing::debug!(%from, sender = header.sender, ?rejected, "dropped datagram");
                if rejected == SenderRejected::WrongAddress {
                    self.log_drop(from, header.sender, "a replica id from another address");
                }
                return;
            }
        };
        if let Admitted::Client { new: true, .. } = admitted {
            self.share_client_address(header.sender, from);
        }
        let src = admitted.id();
        if self
            .faults
            .as_ref()
            .is_some_and(|faults| faults.cut_off(header.sender))
        {
            return;
        }
        let corrupted;
        let datagram = if header.kind == FrameKind::Protocol
            && RuntimeBug::active(self.bug, RuntimeBug::CorruptDelivery)
        {
            self.protocol_datagrams += 1;
            corrupted = corrupt(datagram, self.protocol_datagrams);
            &corrupted[..]
        } else {
            datagram
        };
        match header.kind {
            FrameKind::Protocol => match codec::decode_body::<A::Msg>(datagram) {
                Ok(msg) => {
                    if let Admitted::Client { .. } = admitted {
                        if let Err(why) = self.authorize(header.sender, proven, &msg) {
                            return self.refuse(header, from, why);
                        }
                    }
                    self.counters.received += 1;
                    let arrival = Instant::now();
                    match self.hooks.hold_until(src, &msg, arrival) {
                        Some(at) if at > arrival => held.push((at, Input::Deliver { src, msg })),
                        _ => ready.push(Input::Deliver { src, msg }),
                    }
                }
                Err(error) => self.count_drop(&error, from),
            },
            FrameKind::StatusRequest => match codec::decode_body::<StatusRequest>(datagram) {
                Ok(_) if !proven.is_admin() => self.refuse(
                    header,
                    from,
                    "a replica's status is for administrators: use an administrator's credential",
                ),
                Ok(request) => self.answer_status(request, header, from),
                Err(error) => self.count_drop(&error, from),
            },
            FrameKind::ClientAddress => match codec::decode_body::<ClientAddress>(datagram) {
                // Only a replica vouches for where a client is.
                Ok(shared) if matches!(admitted, Admitted::Replica(_)) => {
                    self.book.learn_client(shared.client, shared.address);
                    self.auth.learn_client_key(shared.client, shared.key);
                }
                Ok(_) => self.counters.unknown_sender += 1,
                Err(error) => self.count_drop(&error, from),
            },
            // Only a replica refuses, and only a client (an actor without storage) listens.
            FrameKind::Refusal => match codec::decode_body::<Refusal>(datagram) {
                Ok(refusal)
                    if self.store.is_none()
                        && matches!(proven, Proven::Replica | Proven::Unchecked) =>
                {
                    tracing::error!(%from, reason = %refusal.reason, "the cluster refused this request");
                    self.refused = Some(refusal.reason);
                }
                Ok(_) => self.counters.unauthorized += 1,
                Err(error) => self.count_drop(&error, from),
            },
            FrameKind::StatusReply => self.count_drop(
                &DecodeError::Malformed("unexpected status reply".into()),
                from,
            ),
        }
    }

    /// Whether a client proven to be `proven` may send `msg`.
    fn authorize(&self, client: u64, proven: Proven, msg: &A::Msg) -> Result<(), &'static str> {
        match self.client_rule.as_ref().map(|rule| rule(client, msg)) {
            None | Some(ClientAccess::Anyone) => Ok(()),
            Some(ClientAccess::Admin) if proven.is_admin() => Ok(()),
            Some(ClientAccess::Admin) => Err(
                "changing the configuration is for administrators: use an administrator's credential",
            ),
            Some(ClientAccess::Refused(why)) => Err(why),
        }
    }

    /// Drops an authentic datagram that asks for what its sender may not do, and tells the
    /// sender why (signed, so that it knows the refusal is the cluster's).
    fn refuse(&mut self, header: Header, from: SocketAddr, why: &'static str) {
        self.counters.unauthorized += 1;
        self.log_drop(from, header.sender, why);
        let reply = Header::new(
            FrameKind::Refusal,
            self.cluster,
            wire_id(self.core.id()),
            header.sender,
        );
        let mut buffer = Vec::new();
        let body = Refusal {
            reason: why.to_string(),
        };
        if self.auth.frame(reply, &body, &mut buffer).is_ok()
            && self.socket.try_send_to(&buffer, from).is_err()
        {
            self.counters.send_errors += 1;
        }
    }

    /// Logs a dropped datagram at warning level, at most once per [`DROP_LOG_INTERVAL`].
    fn log_drop(&mut self, from: SocketAddr, sender: u64, why: &str) {
        if let Some(unlogged) = self.drop_log.allow(Instant::now()) {
            tracing::warn!(%from, sender, why, unlogged, "dropped a datagram that failed authentication or authorization (counted in status; further drops are logged at most every 10 s)");
        } else {
            tracing::debug!(%from, sender, why, "dropped datagram");
        }
    }

    /// A replica that hears from a new client tells the other replicas where it is: a
    /// follower forwards the client's requests to the leader, which answers the client
    /// directly. Best effort; without it the client's retry reaches the leader itself.
    fn share_client_address(&mut self, client: u64, address: SocketAddr) {
        let me = self.core.id();
        if !self.book.replicas().contains_key(&me) {
            return;
        }
        let mut buffer = Vec::new();
        let others: Vec<(Id, SocketAddr)> = self
            .book
            .replicas()
            .iter()
            .filter(|(id, _)| **id != me)
            .map(|(id, address)| (*id, *address))
            .collect();
        let key = self.auth.client_key(client);
        for (id, replica) in others {
            let header = Header::new(
                FrameKind::ClientAddress,
                self.cluster,
                wire_id(me),
                wire_id(id),
            );
            let body = ClientAddress {
                client,
                address,
                key,
            };
            if self.auth.frame(header, &body, &mut buffer).is_ok()
                && self.socket.try_send_to(&buffer, replica).is_err()
            {
                self.counters.send_errors += 1;
            }
        }
    }

    fn count_drop(&mut self, error: &DecodeError, from: SocketAddr) {
        match error {
            DecodeError::Oversized(_) => self.counters.oversized += 1,
            DecodeError::Malformed(_) => self.counters.malformed += 1,
            DecodeError::WrongVersion(_) => self.counters.wrong_version += 1,
            DecodeError::WrongCluster(_) => self.counters.wrong_cluster += 1,
        }
        tracing::debug!(%from, %error, "dropped datagram");
    }

    fn answer_status(&mut self, request: StatusRequest, header: Header, from: SocketAddr) {
        let node = match (&self.status, self.core.state()) {
            (Some(status), Some(state)) => status(state),
            _ => Vec::new(),
        };
        let reply = StatusReply {
            nonce: request.nonce,
            id: wire_id(self.core.id()),
            counters: self.counters.clone(),
            node,
        };
        let reply_header = Header::new(
            FrameKind::StatusReply,
            self.cluster,
            wire_id(self.core.id()),
            header.sender,
        );
        let mut buffer = Vec::new();
        match self.auth.frame(reply_header, &reply, &mut buffer) {
            // Best effort: the operator asks again if the reply is lost.
            Ok(()) => {
                if self.socket.try_send_to(&buffer, from).is_err() {
                    self.counters.send_errors += 1;
                }
            }
            Err(error) => {
                self.counters.oversized_outgoing += 1;
                tracing::error!(%error, "status reply not sent");
            }
        }
    }

    async fn send_all(&mut self, messages: Vec<(Id, A::Msg)>, buffer: &mut Vec<u8>) {
        for (address, datagram) in self.prepare(messages, buffer) {
            self.send_datagram(&datagram, address).await;
        }
    }

    /// Turns messages into the datagrams to send now: routes and encodes them (counting what
    /// cannot be), and applies injected faults (a delayed datagram is kept for later).
    fn prepare(
        &mut self,
        messages: Vec<(Id, A::Msg)>,
        buffer: &mut Vec<u8>,
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        let sender = wire_id(self.core.id());
        let mut datagrams = Vec::with_capacity(messages.len());
        for (dst, msg) in messages {
            let Some(address) = self.book.address_of(dst) else {
                self.counters.unroutable += 1;
                tracing::debug!(?dst, "no address for the receiver; message dropped");
                continue;
            };
            let header = Header::new(FrameKind::Protocol, self.cluster, sender, wire_id(dst));
            match self.auth.frame(header, &msg, buffer) {
                Ok(()) => {}
                Err(error @ EncodeError::NoKey(_)) => {
                    self.counters.unroutable += 1;
                    tracing::debug!(?dst, %error, "message not sent");
                    continue;
                }
                Err(error) => {
                    self.counters.oversized_outgoing += 1;
                    tracing::error!(?dst, %error, "message not sent");
                    continue;
                }
            }
            let fate = match self.faults.as_mut() {
                Some(faults) => faults.fate(wire_id(dst)),
                None => Fate::Send,
            };
            match fate {
                Fate::Send => datagrams.push((address, buffer.clone())),
                Fate::Drop => {}
                Fate::Duplicate => {
                    datagrams.push((address, buffer.clone()));
                    datagrams.push((address, buffer.clone()));
                }
                Fate::Delay(delay) if self.delayed.len() < MAX_DELAYED_DATAGRAMS => {
                    self.delayed
                        .push((Instant::now() + delay, address, buffer.clone()));
                }
                Fate::Delay(_) => {}
            }
        }
        datagrams
    }
}

/// The corrupt-delivery bug: every 16th protocol datagram gets the last byte of its body
/// changed after its tag was checked (a bug in the runtime, not an attack on the wire).
fn corrupt(datagram: &[u8], count: u64) -> Vec<u8> {
    let mut altered = datagram.to_vec();
    let body_end = altered.len().saturating_sub(codec::TAG_BYTES);
    if count % 16 == 0 && body_end > codec::HEADER_BYTES {
        altered[body_end - 1] = altered[body_end - 1].wrapping_add(1);
    }
    altered
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline.into()).await;
    }
}
