//! Goal: a replica's durable storage reads back exactly what was committed, across any number
//! of reopenings (what recovery after a crash starts from), and the incremental changes the
//! runtime writes reproduce the state they were computed from.

use proofs::generate::storage;
use proptest::collection::vec;
use proptest::prelude::*;
use smr::replica::{Durable, Storage};
use smr::runtime::{DurableStore, Identity, OpenMode, SyncPolicy};

const IDENTITY: Identity = Identity::plain(0x5eed, 2);

/// The protocol never drops a checkpoint once it holds one (it only replaces it with a later
/// one), nor forgets a replica's life (it only learns later ones), and the change log has no
/// change for either: so a later storage keeps a checkpoint and every life the earlier one had.
fn reachable(earlier: &Storage, mut later: Storage) -> Storage {
    if later.checkpoint.is_none() {
        later.checkpoint = earlier.checkpoint.clone();
    }
    later.learn_lives(&earlier.rebuilt);
    later
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn applying_the_changes_since_an_earlier_storage_gives_the_later_one(
        earlier in storage(false),
        later in storage(false),
    ) {
        let later = reachable(&earlier, later);
        let mut replayed = earlier.clone();
        for change in later.changes_since(&earlier) {
            replayed.apply(change).unwrap();
        }
        prop_assert_eq!(&replayed, &later);
        prop_assert!(later.changes_since(&later).is_empty());
    }
}

proptest! {
    // Each case writes and fsyncs files: fewer cases, each with a longer history.
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn what_was_committed_is_what_reopening_reads(
        history in vec((storage(false), any::<bool>()), 1..12),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, loaded) =
            DurableStore::<Storage>::open(dir.path(), &IDENTITY, SyncPolicy::Fsync, OpenMode::NewCluster).unwrap();
        prop_assert!(loaded.state().unwrap().is_none());
        let mut committed: Option<Storage> = None;
        for (next, reopen) in history {
            let next = match &committed {
                Some(earlier) => reachable(earlier, next),
                None => next,
            };
            store.commit(next.clone()).unwrap();
            committed = Some(next);
            if reopen {
                drop(store);
                let (reopened, loaded) =
                    DurableStore::<Storage>::open(dir.path(), &IDENTITY, SyncPolicy::Fsync, OpenMode::Existing).unwrap();
                prop_assert_eq!(&loaded.state().unwrap(), &committed);
                store = reopened;
            }
        }
        drop(store);
        prop_assert_eq!(DurableStore::<Storage>::inspect(dir.path()).unwrap(), committed);
    }
}
