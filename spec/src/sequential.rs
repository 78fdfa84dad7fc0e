//! The sequential specification of the key-value service, against which stateright's
//! `LinearizabilityTester` judges the concurrent history that clients observe.

use crate::kv::{KvOp, KvOutput, KvStore};
use crate::state_machine::StateMachine;
use stateright::semantics::SequentialSpec;

/// The key-value service as one sequential object: each operation takes effect atomically.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KvSpec(pub KvStore);

impl SequentialSpec for KvSpec {
    type Op = KvOp;
    type Ret = KvOutput;

    fn invoke(&mut self, op: &KvOp) -> KvOutput {
        self.0.apply(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stateright::actor::Id;
    use stateright::semantics::{ConsistencyTester, LinearizabilityTester};

    #[test]
    fn a_stale_read_after_a_completed_write_is_not_linearizable() {
        let put = KvOp::Put {
            key: "k".into(),
            value: "v".into(),
        };
        let get = KvOp::Get { key: "k".into() };
        let mut ok = LinearizabilityTester::new(KvSpec::default());
        ok.on_invoke(Id::from(0), put.clone()).unwrap();
        ok.on_return(Id::from(0), KvOutput::Written).unwrap();
        ok.on_invoke(Id::from(1), get.clone()).unwrap();
        ok.on_return(Id::from(1), KvOutput::Value(Some("v".into())))
            .unwrap();
        assert!(ok.is_consistent());

        let mut stale = LinearizabilityTester::new(KvSpec::default());
        stale.on_invoke(Id::from(0), put).unwrap();
        stale.on_return(Id::from(0), KvOutput::Written).unwrap();
        stale.on_invoke(Id::from(1), get).unwrap();
        stale.on_return(Id::from(1), KvOutput::Value(None)).unwrap();
        assert!(!stale.is_consistent());
    }
}
