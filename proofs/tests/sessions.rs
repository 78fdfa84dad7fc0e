//! Goal: under any pattern of retries (a request decided again at any later slot, however often,
//! even after the client's next request), every request takes effect exactly once, in the order
//! its client issued it, and a retry is answered from the session table with the first answer.
//!
//! The decided log is generated the way the protocol can produce it: each client issues its
//! requests one at a time (request n + 1 only after request n was answered, so after n was first
//! decided), and any request may be decided again later (a retry proposed anew by a leader that
//! had not yet executed the first copy, or a delayed duplicate).

use proofs::generate::kv_op;
use proptest::collection::vec;
use proptest::prelude::*;
use spec::reference::execute;
use spec::{
    Command, Configuration, KvOp, KvStore, Operation, Output, Request, RequestId, ServiceState,
    StateMachine,
};
use stateright::actor::Id;
use std::collections::BTreeMap;

/// A log: the first copies of each client's requests interleaved in some order, then retries
/// of earlier requests inserted anywhere after their first copy.
fn log() -> impl Strategy<Value = (Vec<Request>, Vec<Request>)> {
    let clients = vec(vec(kv_op(), 1..6), 1..4);
    (
        clients,
        vec(any::<prop::sample::Index>(), 0..60),
        vec(any::<(prop::sample::Index, prop::sample::Index)>(), 0..30),
    )
        .prop_map(|(clients, order, retries)| {
            // Interleave: repeatedly take the next request of a chosen client.
            let mut next = vec![0usize; clients.len()];
            let mut firsts = Vec::new();
            let mut choices = order.into_iter();
            while next.iter().zip(&clients).any(|(n, ops)| *n < ops.len()) {
                let open: Vec<usize> = (0..clients.len())
                    .filter(|c| next[*c] < clients[*c].len())
                    .collect();
                let client = match choices.next() {
                    Some(index) => open[index.index(open.len())],
                    None => open[0],
                };
                firsts.push(Request {
                    client: Id::from(10 + client),
                    session: spec::IMPLICIT,
                    number: next[client] as u64 + 1,
                    op: Operation::Kv(clients[client][next[client]].clone()),
                });
                next[client] += 1;
            }
            // Retries: a copy of some request, placed at some point after its first copy.
            let mut log: Vec<Request> = firsts.clone();
            for (which, place) in retries {
                let original = which.index(firsts.len());
                let request = firsts[original].clone();
                let first_at = log.iter().position(|r| *r == request).unwrap();
                let at = first_at + 1 + place.index(log.len() - first_at);
                log.insert(at, request);
            }
            (firsts, log)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn every_request_takes_effect_once_whatever_the_retries(
        (firsts, log) in log(),
        batch in 1usize..4,
    ) {
        // The decided log, in batches of up to `batch` requests per slot.
        let mut state = ServiceState::new(Configuration::initial([Id::from(0)], 1));
        let mut applied: BTreeMap<RequestId, Vec<(u64, Output)>> = BTreeMap::new();
        for (slot, requests) in log.chunks(batch).enumerate() {
            let command = Command::batch(requests.to_vec());
            execute(&mut state, slot as u64, &command, |request, output| {
                applied.entry(request).or_default().push((slot as u64, output.clone()));
            }, |request| panic!("{request:?} expired in an unbounded table"));
        }

        // Exactly once: every request, and nothing else, took effect one time.
        prop_assert_eq!(applied.len(), firsts.len());
        prop_assert!(applied.values().all(|times| times.len() == 1));

        // In issue order: the machine is the one that applies the first copies in log order,
        // and each request's output is what it gave there.
        let mut expected = KvStore::default();
        for request in &firsts {
            let Operation::Kv(op) = &request.op else { unreachable!("only key-value requests") };
            let output = Output::Kv(expected.apply(op));
            prop_assert_eq!(&applied[&request.id()][0].1, &output);
        }
        prop_assert_eq!(&state.machine, &expected);

        // The session table answers the last request of each client with its first answer.
        for (client, session) in state.sessions.iter() {
            let last = firsts.iter().filter(|r| r.client == *client).map(|r| r.number).max();
            prop_assert_eq!(Some(session.number), last);
            let (slot, output) = &applied[&RequestId { client: *client, number: session.number }][0];
            prop_assert_eq!((session.slot, &session.output), (*slot, output));
        }
    }

    #[test]
    fn a_bounded_table_never_applies_a_request_twice_or_out_of_order(
        (firsts, log) in log(),
        batch in 1usize..4,
        max_sessions in 1usize..4,
    ) {
        let mut state = ServiceState::new(Configuration::initial([Id::from(0)], 1))
            .with_max_sessions(max_sessions);
        let mut applied: BTreeMap<RequestId, Vec<u64>> = BTreeMap::new();
        let mut expired: BTreeMap<RequestId, usize> = BTreeMap::new();
        let mut order: BTreeMap<Id, Vec<u64>> = BTreeMap::new();
        for (slot, requests) in log.chunks(batch).enumerate() {
            let command = Command::batch(requests.to_vec());
            execute(&mut state, slot as u64, &command, |request, _| {
                applied.entry(request).or_default().push(slot as u64);
                order.entry(request.client).or_default().push(request.number);
            }, |request| *expired.entry(request).or_default() += 1);
            prop_assert!(state.sessions.len() <= max_sessions);
        }
        // At most once, and each client's requests in the order it issued them.
        prop_assert!(applied.values().all(|times| times.len() == 1));
        for numbers in order.values() {
            prop_assert!(numbers.windows(2).all(|pair| pair[0] < pair[1]), "{:?}", numbers);
        }
        // A request that never took effect was refused as expired, never silently dropped.
        for request in &firsts {
            prop_assert!(applied.contains_key(&request.id()) || expired.contains_key(&request.id()));
        }
        // The table is the proof: with room for every client, nothing expired.
        let clients: std::collections::BTreeSet<_> = firsts.iter().map(|r| r.client).collect();
        if clients.len() <= max_sessions {
            prop_assert!(expired.is_empty());
            prop_assert_eq!(applied.len(), firsts.len());
        }
    }
}

#[test]
fn a_retry_in_the_same_batch_is_skipped() {
    // The smallest case, spelled out: a request and its retry decided in one slot.
    let request = Request {
        client: Id::from(9),
        session: spec::IMPLICIT,
        number: 1,
        op: Operation::Kv(KvOp::Put {
            key: "k".into(),
            value: "v".into(),
        }),
    };
    let mut state = ServiceState::new(Configuration::initial([Id::from(0)], 1));
    let mut count = 0;
    execute(
        &mut state,
        0,
        &Command::batch(vec![request.clone(), request]),
        |_, _| count += 1,
        |_| panic!("nothing expires in an unbounded table"),
    );
    assert_eq!(count, 1);
}
