//! The runtime drives any actor whose messages and storage serialize, not only the protocol's:
//! here a durable counter. It also shows the runtime's one safety rule from the outside: when
//! the answer to a step arrives, the storage that step saved is already on disk.

use serde::{Deserialize, Serialize};
use smr::codec::{self, FrameKind, Header};
use smr::replica::Durable;
use smr::runtime::{
    DurableStore, Identity, Input, OpenMode, Runtime, StepObserver, Stepper, SyncPolicy,
    FIRST_CLIENT_ID,
};
use stateright::actor::{Actor, Id, Out};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CLUSTER: u64 = 0xc0ffee;

/// Adds what it is sent to a durable total and answers with the new total.
#[derive(Clone, Debug)]
struct Counter;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
enum CounterMsg {
    Add(u64),
    Total(u64),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct Saved {
    total: u64,
}

impl Durable for Saved {
    type Change = u64;
    fn changes_since(&self, earlier: &Self) -> Vec<u64> {
        if self.total == earlier.total {
            Vec::new()
        } else {
            vec![self.total]
        }
    }
    fn apply(&mut self, total: u64) -> Result<(), String> {
        self.total = total;
        Ok(())
    }
}

impl Actor for Counter {
    type Msg = CounterMsg;
    type State = u64;
    type Timer = ();
    type Random = ();
    type Storage = Saved;

    fn on_start(&self, _: Id, storage: &Option<Saved>, _: &mut Out<Self>) -> u64 {
        storage.as_ref().map_or(0, |saved| saved.total)
    }

    fn on_msg(&self, _: Id, state: &mut Cow<u64>, src: Id, msg: CounterMsg, o: &mut Out<Self>) {
        if let CounterMsg::Add(amount) = msg {
            let total = state.to_mut();
            *total += amount;
            o.save(Saved { total: *total });
            o.send(src, CounterMsg::Total(*total));
        }
    }
}

impl Stepper for Counter {}

/// Records every step's input kind and digest.
struct Recorder(Arc<Mutex<Vec<(String, u64)>>>);

impl StepObserver<Counter> for Recorder {
    fn on_step(&mut self, _: Id, input: &Input<Counter>, out: &Out<Counter>, digest: u64) {
        let kind = match input {
            Input::Start { .. } => "start".to_string(),
            Input::Deliver { msg, .. } => format!("{msg:?} -> {} outputs", out.len()),
            Input::Timeout { .. } => "timeout".to_string(),
            Input::Random { .. } => "random".to_string(),
        };
        self.0.lock().unwrap().push((kind, digest));
    }
}

fn start(
    dir: &std::path::Path,
    socket: tokio::net::UdpSocket,
    steps: Arc<Mutex<Vec<(String, u64)>>>,
) -> Runtime<Counter> {
    let identity = Identity::plain(CLUSTER, 0);
    let mode = if dir.join("identity").exists() {
        OpenMode::Existing
    } else {
        OpenMode::NewCluster
    };
    let (store, opened) =
        DurableStore::<Saved>::open(dir, &identity, SyncPolicy::Fsync, mode).unwrap();
    let loaded = opened.state().unwrap();
    let address = socket.local_addr().unwrap();
    Runtime::new(
        Counter,
        Id::from(0),
        CLUSTER,
        Arc::new(socket),
        BTreeMap::from([(Id::from(0), address)]),
        smr::runtime::Auth::insecure(),
        |total| *total,
        1,
    )
    .with_store(store, loaded)
    .with_observer(Box::new(Recorder(steps)))
}

async fn add(client: &tokio::net::UdpSocket, server: std::net::SocketAddr, amount: u64) -> u64 {
    let header = Header::new(FrameKind::Protocol, CLUSTER, FIRST_CLIENT_ID + 1, 0);
    let mut frame = Vec::new();
    codec::encode(&header, &CounterMsg::Add(amount), &mut frame).unwrap();
    client.send_to(&frame, server).await.unwrap();
    let mut buffer = vec![0u8; codec::MAX_DATAGRAM_BYTES];
    let (length, _) = tokio::time::timeout(Duration::from_secs(10), client.recv_from(&mut buffer))
        .await
        .expect("an answer")
        .unwrap();
    codec::decode_header(&buffer[..length], CLUSTER).unwrap();
    match codec::decode_body(&buffer[..length]).unwrap() {
        CounterMsg::Total(total) => total,
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_actor_runs_and_every_answer_leaves_after_its_save_is_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let steps = Arc::new(Mutex::new(Vec::new()));
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let server = socket.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(start(dir.path(), socket, steps.clone()).run(async move {
        let _ = stopped.await;
    }));
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for n in 1..=50u64 {
        let total = add(&client, server, 1).await;
        assert_eq!(total, n);
        // The answer is out, so the save of its step is on disk already.
        let on_disk = DurableStore::<Saved>::inspect(dir.path()).unwrap();
        assert_eq!(on_disk.map(|s| s.total), Some(n), "saved before answered");
    }
    let _ = stop.send(());
    let stopped = task.await.unwrap().unwrap();
    assert_eq!(stopped.state, Some(50));

    // The observer saw the start and every delivery, with the digest of each new state.
    let recorded = steps.lock().unwrap().clone();
    assert_eq!(recorded.len(), 51);
    assert_eq!(recorded[0], ("start".to_string(), 0));
    assert_eq!(recorded[50], ("Add(1) -> 2 outputs".to_string(), 50));

    // A restart recovers the total from disk.
    let socket = tokio::net::UdpSocket::bind(server).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let restarted = Arc::new(Mutex::new(Vec::new()));
    let task = tokio::spawn(start(dir.path(), socket, restarted).run(async move {
        let _ = stopped.await;
    }));
    assert_eq!(add(&client, server, 5).await, 55);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
