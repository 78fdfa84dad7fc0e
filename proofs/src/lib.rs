//! Evidence for the safety of the replicated service, beyond the model checker's exhaustive
//! bounds:
//!
//! - `SAFETY.md`: the safety argument, lemma by lemma, each tied to the property or test that
//!   checks it.
//! - `BUGS.md`: the catalogue of seeded protocol bugs and how the checker catches each.
//! - `tests/`: property tests (codec, state machine, storage, sessions), and invariant checks
//!   over random schedules and arbitrary acceptor states.
//!
//! This library holds what those tests share: [`generate`], proptest generators of protocol
//! values; [`lemmas`], the invariants of the safety argument as functions of a model state; and
//! [`clients`], an independent record of the client-visible history.

pub mod clients;
pub mod generate;
pub mod lemmas;
