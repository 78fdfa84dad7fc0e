//! Bad trace directories get a clear error (or a failed verdict), never a panic.

use model::conform::{run, Options};
use smr::trace::record::Record;
use smr::trace::TraceSink;
use smr::{Msg, Storage, Timer};

type NodeRecord = Record<Msg, Timer, (), Storage>;

fn check(dir: &std::path::Path) -> Result<model::conform::Report, String> {
    run(dir, &Options::default())
}

#[test]
fn a_missing_directory_is_an_error() {
    let error = check(std::path::Path::new("/nonexistent/traces"))
        .err()
        .unwrap();
    assert!(error.contains("/nonexistent/traces"), "{error}");
}

#[test]
fn a_directory_without_traces_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a trace").unwrap();
    let error = check(dir.path()).err().unwrap();
    assert!(error.contains("no"), "{error}");
}

#[test]
fn a_trace_file_of_garbage_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let garbage: Vec<u8> = (0..4000u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(dir.path().join("replica-0.trace"), garbage).unwrap();
    let error = check(dir.path()).err().unwrap();
    assert!(error.contains("replica-0.trace"), "{error}");
}

#[test]
fn an_actor_id_beyond_the_models_range_is_an_error() {
    // What a client of the `smr` command would record: a random id at or above 2^32.
    let dir = tempfile::tempdir().unwrap();
    let mut sink = TraceSink::create(&dir.path().join("client.trace")).unwrap();
    sink.append(&NodeRecord::Begin {
        id: (1 << 32) + 7,
        instance: 1,
        actor: Vec::new(),
    });
    sink.flush().unwrap();
    drop(sink);
    let error = check(dir.path()).err().unwrap();
    assert!(error.contains("4294967303"), "{error}");
    assert!(error.contains("densely"), "{error}");
}

#[test]
fn an_undecodable_actor_description_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = TraceSink::create(&dir.path().join("replica.trace")).unwrap();
    sink.append(&NodeRecord::Begin {
        id: 0,
        instance: 1,
        actor: vec![0xff; 9],
    });
    sink.flush().unwrap();
    drop(sink);
    let error = check(dir.path()).err().unwrap();
    assert!(error.contains("actor 0"), "{error}");
}
