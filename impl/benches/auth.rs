//! What signing and checking a datagram costs, by size: `cargo bench -p smr --bench auth`.
//!
//! Each figure is the median of 7 rounds of 20,000 operations, with the spread (lowest to
//! highest round), on whatever machine runs it. The checks include the replay window; the
//! forged case is what a flood costs a replica per datagram (a tag that does not verify).

use smr::codec::{decode_header, FrameKind, Header};
use smr::runtime::{Auth, Key, Keyring};
use std::time::Instant;

const ROUNDS: usize = 7;
const OPERATIONS: usize = 20_000;

fn keyring() -> Keyring {
    Keyring::Replica {
        cluster: vec![Key::from_bytes([3; 32])],
        credentials: Default::default(),
    }
}

/// Median and spread of `ROUNDS` rounds of `f` run `OPERATIONS` times, in ns per operation.
fn measure(mut f: impl FnMut(usize)) -> (f64, f64, f64) {
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for i in 0..OPERATIONS {
                f(i);
            }
            start.elapsed().as_nanos() as f64 / OPERATIONS as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    (rounds[ROUNDS / 2], rounds[0], rounds[ROUNDS - 1])
}

fn main() {
    println!("datagram bytes | sign ns | verify ns | forged ns (median, lowest..highest of {ROUNDS} rounds)");
    for body in [16usize, 400, 1_300, 32_000] {
        let payload = vec![0x5au8; body];
        let mut sender = Auth::new(keyring(), 1);
        let mut buffer = Vec::new();
        let header = Header::new(FrameKind::Protocol, 9, 0, 1);
        let sign = measure(|_| {
            sender.frame(header, &payload, &mut buffer).unwrap();
        });
        // Fresh frames for the receiver: each is accepted once.
        let frames: Vec<Vec<u8>> = (0..OPERATIONS)
            .map(|_| {
                let mut frame = Vec::new();
                sender.frame(header, &payload, &mut frame).unwrap();
                frame
            })
            .collect();
        // A new receiver each round, so that no frame is a replay.
        let mut receiver = Auth::new(keyring(), 1);
        let verify = measure(|i| {
            if i == 0 {
                receiver = Auth::new(keyring(), 1);
            }
            let frame = &frames[i];
            let header = decode_header(frame, 9).unwrap();
            assert!(receiver.verify(&header, frame).is_ok());
        });
        let mut forged = frames[0].clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        let forged_header = decode_header(&forged, 9).unwrap();
        let mut receiver = Auth::new(keyring(), 1);
        let refuse = measure(|_| {
            assert!(receiver.verify(&forged_header, &forged).is_err());
        });
        let total = frames[0].len();
        println!(
            "{total:>14} | {:>7.0} ({:.0}..{:.0}) | {:>7.0} ({:.0}..{:.0}) | {:>7.0} ({:.0}..{:.0})",
            sign.0, sign.1, sign.2, verify.0, verify.1, verify.2, refuse.0, refuse.1, refuse.2
        );
    }
}
