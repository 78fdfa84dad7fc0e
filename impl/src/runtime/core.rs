//! One actor and its state, stepped one input at a time.
//!
//! Every step of the actor — start (or recovery, with the storage read back from disk), the
//! delivery of a message, a timeout, a random choice — is one call of [`Core::step`], which
//! returns exactly the outputs of that step. The event loop does all I/O around it. A
//! [`StepObserver`] sees every step with its input, its outputs and the digest of the state it
//! led to: a trace recorder plugs in here, and can replay the same steps through the model.

use stateright::actor::{Actor, Id, Out};
use std::borrow::Cow;

/// What a step starts from.
#[derive(Debug)]
pub enum Input<A: Actor> {
    /// The actor starts, or restarts after a crash with the storage it had saved.
    Start { storage: Option<A::Storage> },
    /// A message from `src`.
    Deliver { src: Id, msg: A::Msg },
    /// A timer fired.
    Timeout { timer: A::Timer },
    /// A random choice the actor asked for with `Out::choose_random`.
    Random { random: A::Random },
}

impl<A: Actor> Clone for Input<A> {
    fn clone(&self) -> Self {
        match self {
            Input::Start { storage } => Input::Start {
                storage: storage.clone(),
            },
            Input::Deliver { src, msg } => Input::Deliver {
                src: *src,
                msg: msg.clone(),
            },
            Input::Timeout { timer } => Input::Timeout {
                timer: timer.clone(),
            },
            Input::Random { random } => Input::Random {
                random: random.clone(),
            },
        }
    }
}

/// Sees every step after it ran: its input, its outputs (before the runtime carries them
/// out) and the digest of the resulting state; and the points where the runtime makes steps
/// durable and visible, so that a trace recorder can put its records on disk first.
pub trait StepObserver<A: Actor>: Send {
    fn on_step(&mut self, id: Id, input: &Input<A>, out: &Out<A>, digest: u64);

    /// A group commit of `storage`, saved by the steps up to `through` (counted from 1), is
    /// about to start. An error stops the runtime.
    fn on_commit(&mut self, through: u64, storage: &A::Storage) -> Result<(), String> {
        let _ = (through, storage);
        Ok(())
    }

    /// The commit of the steps up to `through` is durable.
    fn on_durable(&mut self, through: u64) {
        let _ = through;
    }

    /// The messages of the steps up to `through` are about to be sent.
    fn on_release(&mut self, through: u64) {
        let _ = through;
    }

    /// Called before anything of the steps so far becomes visible outside the process (after
    /// `on_release`). An error stops the runtime.
    fn flush(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// Observes nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoObserver;

impl<A: Actor> StepObserver<A> for NoObserver {
    fn on_step(&mut self, _: Id, _: &Input<A>, _: &Out<A>, _: u64) {}
}

/// How the runtime runs an actor's handlers on a state it owns.
///
/// The model checker keeps every state it visits, so it hands handlers a borrowed state that
/// they copy on write. The runtime keeps only the current state, so it hands it over owned:
/// a handler that changes it then changes it in place instead of copying it first. Both are
/// legal inputs of the same [`Actor`] handlers, which behave identically either way. The
/// provided methods do exactly this for any actor; an actor type that wraps others (like
/// [`crate::Node`]) can forward ownership to the inner handlers too.
pub trait Stepper: Actor {
    fn step_msg(
        &self,
        id: Id,
        state: Self::State,
        src: Id,
        msg: Self::Msg,
        o: &mut Out<Self>,
    ) -> Self::State {
        let mut cow = Cow::Owned(state);
        self.on_msg(id, &mut cow, src, msg, o);
        cow.into_owned()
    }

    fn step_timeout(
        &self,
        id: Id,
        state: Self::State,
        timer: &Self::Timer,
        o: &mut Out<Self>,
    ) -> Self::State {
        let mut cow = Cow::Owned(state);
        self.on_timeout(id, &mut cow, timer, o);
        cow.into_owned()
    }

    fn step_random(
        &self,
        id: Id,
        state: Self::State,
        random: &Self::Random,
        o: &mut Out<Self>,
    ) -> Self::State {
        let mut cow = Cow::Owned(state);
        self.on_random(id, &mut cow, random, o);
        cow.into_owned()
    }
}

/// Computes the digest a [`StepObserver`] is given; supplied by whoever knows the state type
/// (for [`crate::Node`], the `digest` field its replica and client states carry).
pub type DigestFn<A> = fn(&<A as Actor>::State) -> u64;

/// An actor with its current state.
pub struct Core<A: Stepper> {
    actor: A,
    id: Id,
    state: Option<A::State>,
    digest: DigestFn<A>,
    observer: Option<Box<dyn StepObserver<A>>>,
    /// Steps run so far.
    steps: u64,
}

impl<A: Stepper> Core<A> {
    /// An actor that has not started yet.
    pub fn new(actor: A, id: Id, digest: DigestFn<A>) -> Self {
        Self {
            actor,
            id,
            state: None,
            digest,
            observer: None,
            steps: 0,
        }
    }

    /// Steps run so far (the last step's number, counting from 1).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Tells the observer that a commit of `storage` for the steps so far starts.
    pub fn observe_commit(&mut self, storage: &A::Storage) -> Result<(), String> {
        let through = self.steps;
        match self.observer.as_mut() {
            Some(observer) => observer.on_commit(through, storage),
            None => Ok(()),
        }
    }

    /// Tells the observer that the commit of the steps up to `through` is durable.
    pub fn observe_durable(&mut self, through: u64) {
        if let Some(observer) = self.observer.as_mut() {
            observer.on_durable(through);
        }
    }

    /// Tells the observer that the messages of the steps up to `through` are about to leave,
    /// and lets it flush.
    pub fn observe_release(&mut self, through: u64) -> Result<(), String> {
        match self.observer.as_mut() {
            Some(observer) => {
                observer.on_release(through);
                observer.flush()
            }
            None => Ok(()),
        }
    }

    /// Lets the observer flush what it holds (when the runtime stops).
    pub fn flush_observer(&mut self) -> Result<(), String> {
        match self.observer.as_mut() {
            Some(observer) => observer.flush(),
            None => Ok(()),
        }
    }

    /// Has `observer` see every step from now on.
    pub fn set_observer(&mut self, observer: Box<dyn StepObserver<A>>) {
        self.observer = Some(observer);
    }

    pub fn id(&self) -> Id {
        self.id
    }

    pub fn actor(&self) -> &A {
        &self.actor
    }

    /// The current state; `None` before the start step.
    pub fn state(&self) -> Option<&A::State> {
        self.state.as_ref()
    }

    /// Takes the state out (when the runtime stops).
    pub fn into_state(self) -> Option<A::State> {
        self.state
    }

    /// Runs one step and returns its outputs. Inputs other than `Start` before the actor has
    /// started are ignored (they cannot happen in the runtime, which starts the actor first).
    pub fn step(&mut self, input: Input<A>) -> Out<A> {
        let mut out = Out::new();
        // The observer needs the input after the actor consumed it; copy it only if observed.
        let observed = self.observer.as_ref().map(|_| input.clone());
        let Self {
            actor, id, state, ..
        } = self;
        match input {
            Input::Start { storage } => {
                *state = Some(actor.on_start(*id, &storage, &mut out));
            }
            Input::Deliver { src, msg } => {
                if let Some(current) = state.take() {
                    *state = Some(actor.step_msg(*id, current, src, msg, &mut out));
                }
            }
            Input::Timeout { timer } => {
                if let Some(current) = state.take() {
                    *state = Some(actor.step_timeout(*id, current, &timer, &mut out));
                }
            }
            Input::Random { random } => {
                if let Some(current) = state.take() {
                    *state = Some(actor.step_random(*id, current, &random, &mut out));
                }
            }
        }
        if self.state.is_some() {
            self.steps += 1;
        }
        if let (Some(observer), Some(input), Some(state)) =
            (self.observer.as_mut(), observed, self.state.as_ref())
        {
            observer.on_step(self.id, &input, &out, (self.digest)(state));
        }
        out
    }
}
