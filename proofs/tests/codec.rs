//! Goal: every protocol message, and every other frame body the runtime sends, decodes to
//! exactly what was encoded; and a frame too large for a datagram is refused, never sent.

use proofs::generate::{msg, variant, MSG_VARIANTS};
use proptest::prelude::*;
use smr::codec::{
    decode_body, decode_header, encode, ClientAddress, EncodeError, FrameKind, Header,
    StatusRequest, MAX_DATAGRAM_BYTES,
};
use smr::runtime::{Auth, Key, Keyring};
use smr::Msg;

fn header(kind: FrameKind, cluster: u64, sender: u64, receiver: u64) -> Header {
    Header {
        key: sender as u32 ^ 0x5a5a,
        boot: receiver.rotate_left(7),
        sequence: cluster.rotate_left(13),
        ..Header::new(kind, cluster, sender, receiver)
    }
}

/// Two replicas of one cluster key.
fn replicas() -> (Auth, Auth) {
    let key = Key::from_bytes([7; 32]);
    let keyring = Keyring::Replica {
        cluster: vec![key],
        credentials: Default::default(),
    };
    (Auth::new(keyring.clone(), 1), Auth::new(keyring, 1))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn a_message_decodes_to_what_was_encoded(
        msg in msg(),
        cluster in any::<u64>(),
        sender in any::<u64>(),
        receiver in any::<u64>(),
    ) {
        let header = header(FrameKind::Protocol, cluster, sender, receiver);
        let mut buffer = Vec::new();
        match encode(&header, &msg, &mut buffer) {
            Ok(()) => {
                prop_assert!(buffer.len() <= MAX_DATAGRAM_BYTES);
                prop_assert_eq!(decode_header(&buffer, cluster).unwrap(), header);
                let decoded: Msg = decode_body(&buffer).unwrap();
                prop_assert_eq!(decoded, msg);
            }
            // The generated messages are far below the limit; nothing else may fail.
            Err(error) => prop_assert!(false, "{msg:?} did not encode: {error}"),
        }
    }

    #[test]
    fn a_truncated_or_extended_frame_is_refused(msg in msg(), cut in any::<prop::sample::Index>()) {
        // Decoding never panics, and a frame that lost or gained bytes never decodes to a
        // different message.
        let mut buffer = Vec::new();
        encode(&header(FrameKind::Protocol, 7, 0, 1), &msg, &mut buffer).unwrap();
        let at = cut.index(buffer.len());
        let decoded = decode_header(&buffer[..at], 7).and_then(|_| decode_body::<Msg>(&buffer[..at]));
        if let Ok(decoded) = decoded {
            prop_assert_eq!(decoded, msg.clone());
        }
        let mut longer = buffer.clone();
        longer.push(0);
        prop_assert!(decode_body::<Msg>(&longer).is_err());
    }

    /// Goal: a signed frame with any one bit changed anywhere (header, body or tag) is refused,
    /// and the untouched frame is accepted exactly once.
    #[test]
    fn a_signed_frame_altered_anywhere_is_refused(msg in msg(), bit in any::<prop::sample::Index>()) {
        let (mut sender, mut receiver) = replicas();
        let mut buffer = Vec::new();
        sender.frame(Header::new(FrameKind::Protocol, 7, 0, 1), &msg, &mut buffer).unwrap();
        let mut altered = buffer.clone();
        let at = bit.index(buffer.len() * 8);
        altered[at / 8] ^= 1 << (at % 8);
        let accepted = decode_header(&altered, 7)
            .map(|header| receiver.verify(&header, &altered).is_ok())
            .unwrap_or(false);
        prop_assert!(!accepted, "bit {at} changed and still accepted");
        let header = decode_header(&buffer, 7).unwrap();
        prop_assert!(receiver.verify(&header, &buffer).is_ok());
        prop_assert!(receiver.verify(&header, &buffer).is_err(), "a replay is refused");
        prop_assert_eq!(decode_body::<Msg>(&buffer).unwrap(), msg);
    }

    #[test]
    fn status_requests_and_client_addresses_round_trip(
        nonce in any::<u64>(),
        client in any::<u64>(),
        ip in any::<[u8; 4]>(),
        port in any::<u16>(),
    ) {
        let mut buffer = Vec::new();
        let request = StatusRequest { nonce };
        encode(&header(FrameKind::StatusRequest, 1, 2, 3), &request, &mut buffer).unwrap();
        prop_assert_eq!(decode_header(&buffer, 1).unwrap().kind, FrameKind::StatusRequest);
        prop_assert_eq!(decode_body::<StatusRequest>(&buffer).unwrap(), request);
        let address = ClientAddress {
            client,
            address: std::net::SocketAddr::from((ip, port)),
            key: nonce as u32,
        };
        encode(&header(FrameKind::ClientAddress, 1, 2, 3), &address, &mut buffer).unwrap();
        prop_assert_eq!(decode_header(&buffer, 1).unwrap().kind, FrameKind::ClientAddress);
        prop_assert_eq!(decode_body::<ClientAddress>(&buffer).unwrap(), address);
    }
}

#[test]
fn the_generator_covers_every_message_variant() {
    // The round trip above is only as good as the messages it sees.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = msg();
    let mut seen = [false; MSG_VARIANTS];
    for _ in 0..2000 {
        seen[variant(&strategy.new_tree(&mut runner).unwrap().current())] = true;
    }
    let missing: Vec<usize> = (0..MSG_VARIANTS).filter(|v| !seen[*v]).collect();
    assert!(missing.is_empty(), "variants never generated: {missing:?}");
}

#[test]
fn a_snapshot_chunk_too_large_for_a_datagram_is_never_encoded() {
    let msg = Msg::Snapshot {
        slot: 1,
        digest: 2,
        total: 3,
        offset: 0,
        bytes: vec![0; MAX_DATAGRAM_BYTES],
    };
    let mut buffer = Vec::new();
    let result = encode(&header(FrameKind::Protocol, 1, 0, 1), &msg, &mut buffer);
    assert!(
        matches!(result, Err(EncodeError::Oversized(_))),
        "{result:?}"
    );
    assert!(buffer.is_empty());
}
