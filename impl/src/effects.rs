//! The outputs of one actor step, collected so that the durable save, if the step needs one,
//! comes first: the runtime then writes storage before it sends anything of the step.

use crate::message::Msg;
use crate::node::{Node, Timer};
use crate::replica::storage::Storage;
use stateright::actor::{Id, Out};
use std::ops::Range;
use std::time::Duration;

/// Outputs of a step in the making.
#[derive(Default)]
pub struct Effects {
    out: Out<Node>,
    save: bool,
}

impl Effects {
    /// Sends `msg` to `dst`.
    pub fn send(&mut self, dst: Id, msg: Msg) {
        self.out.send(dst, msg);
    }

    /// Sends `msg` to every id in `dsts`.
    pub fn broadcast(&mut self, dsts: impl IntoIterator<Item = Id>, msg: &Msg) {
        for dst in dsts {
            self.out.send(dst, msg.clone());
        }
    }

    /// Sets (or resets) a timer.
    pub fn set_timer(&mut self, timer: Timer, duration: Range<Duration>) {
        self.out.set_timer(timer, duration);
    }

    /// Cancels a timer.
    pub fn cancel_timer(&mut self, timer: Timer) {
        self.out.cancel_timer(timer);
    }

    /// Marks the durable state as changed: it is saved before the step's messages leave.
    pub fn persist(&mut self) {
        self.save = true;
    }

    /// Moves the outputs to `o`, the save (if any) first.
    pub fn flush(mut self, durable: &Storage, o: &mut Out<Node>) {
        if self.save {
            o.save(durable.clone());
        }
        o.append(&mut self.out);
    }
}
