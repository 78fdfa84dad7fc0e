//! Goal: a path found by a random walk with 5 replicas opens in the explorer as it is, that is,
//! its action-index address rebuilds the very same states, step by step, the way stateright's
//! explorer rebuilds it (`Path::from_action_indices`: the model's actions listed afresh in
//! each state, the indexed one taken). Stateright's own simulation checker recorded indices
//! that did not (see `model::simulate`).

use model::simulate::{path, walk};
use model::{build, ModelConfig};
use stateright::Model;

#[test]
fn long_walks_with_five_replicas_rebuild_from_their_explorer_addresses() {
    let cfg = ModelConfig {
        replicas: 5,
        elections: 2,
        crashes: 2,
        ..ModelConfig::preset("checkpoint").unwrap()
    };
    let model = build(&cfg);
    let mut long = 0;
    for seed in 0..40 {
        let walk = walk(&model, seed, 200, |_| {});
        let path = path(&model, &walk.actions);
        let encoded = path.encode(&model);
        let mut indices = encoded.split('/').map(|i| i.parse::<usize>().unwrap());
        let mut state = model.init_states()[indices.next().unwrap()].clone();
        let mut taken = Vec::new();
        for index in indices {
            let mut actions = Vec::new();
            model.actions(&state, &mut actions);
            let action = actions[index].clone();
            if let Some(next) = model.next_state(&state, action.clone()) {
                state = next;
            }
            taken.push(action);
        }
        assert_eq!(
            taken, walk.actions,
            "seed {seed}: the address names other actions"
        );
        assert!(state == *path.last_state(), "seed {seed}: another state");
        if walk.actions.len() >= 40 {
            long += 1;
        }
    }
    assert!(long >= 10, "only {long} walks of 40 steps or more");
}
