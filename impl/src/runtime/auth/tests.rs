use super::*;
use crate::codec::{decode_header, FrameKind};

const CLUSTER: u64 = 0xc1;

fn key(n: u8) -> Key {
    Key::from_bytes([n; keys::KEY_BYTES])
}

fn credential(id: u16, role: Role, keys: Vec<Key>) -> Credential {
    Credential { id, role, keys }
}

fn replica(cluster: Vec<Key>, credentials: Vec<Credential>) -> Auth {
    let credentials = credentials.into_iter().map(|c| (c.id, c)).collect();
    Auth::new(
        Keyring::Replica {
            cluster,
            credentials,
        },
        1,
    )
}

fn frame(auth: &mut Auth, sender: u64, receiver: u64) -> Vec<u8> {
    let mut buffer = Vec::new();
    let header = Header::new(FrameKind::Protocol, CLUSTER, sender, receiver);
    auth.frame(header, &"hello", &mut buffer).unwrap();
    buffer
}

fn check(auth: &mut Auth, datagram: &[u8]) -> Result<Proven, Refused> {
    let header = decode_header(datagram, CLUSTER).unwrap();
    auth.verify(&header, datagram)
}

#[test]
fn replicas_believe_the_cluster_key_only_once_per_datagram() {
    let (mut a, mut b) = (replica(vec![key(1)], vec![]), replica(vec![key(1)], vec![]));
    let datagram = frame(&mut a, 0, 1);
    assert_eq!(check(&mut b, &datagram), Ok(Proven::Replica));
    assert_eq!(
        check(&mut b, &datagram),
        Err(Refused::Replayed(Replay::Seen))
    );
    // Each byte changed, header included, breaks the tag (or the key named).
    for at in [6, 14, 22, 34, 42, 50, datagram.len() - 1] {
        let mut altered = frame(&mut a, 0, 1);
        altered[at] ^= 1;
        match decode_header(&altered, CLUSTER) {
            Ok(header) => assert_eq!(b.verify(&header, &altered), Err(Refused::BadTag), "{at}"),
            Err(_) => assert_eq!(at, 6, "only the cluster id is refused before the tag"),
        }
    }
    let mut renamed = frame(&mut a, 0, 1);
    renamed[30..34].copy_from_slice(&key(9).fingerprint().to_le_bytes());
    assert_eq!(check(&mut b, &renamed), Err(Refused::UnknownKey));
    // Another cluster key, and an unsigned datagram.
    let mut stranger = replica(vec![key(2)], vec![]);
    assert_eq!(
        check(&mut b, &frame(&mut stranger, 0, 1)),
        Err(Refused::UnknownKey)
    );
    let unsigned = frame(&mut Auth::insecure(), 0, 1);
    assert_eq!(check(&mut b, &unsigned), Err(Refused::UnknownKey));
    // A restarted sender's new boot ends the old one.
    let mut restarted = Auth::new(a.keyring().clone(), 2);
    assert_eq!(
        check(&mut b, &frame(&mut restarted, 0, 1)),
        Ok(Proven::Replica)
    );
    assert_eq!(
        check(&mut b, &frame(&mut a, 0, 1)),
        Err(Refused::Replayed(Replay::OldBoot))
    );
}

#[test]
fn a_client_speaks_for_its_own_credential_and_is_answered_under_its_key() {
    let alice = credential(1, Role::Client, vec![key(11)]);
    let admin = credential(2, Role::Admin, vec![key(12)]);
    let mut server = replica(vec![key(1)], vec![alice.clone(), admin.clone()]);
    let mut client = Auth::new(Keyring::Client(alice.clone()), 5);
    let me = client_id_of(1, 77);
    assert_eq!(
        check(&mut server, &frame(&mut client, me, 0)),
        Ok(Proven::Client(Role::Client))
    );
    assert!(!Proven::Client(Role::Client).is_admin());
    // Alice cannot use an id of the administrators' credential, nor of an unknown one.
    for other in [client_id_of(2, 77), client_id_of(3, 77)] {
        assert_eq!(
            check(&mut server, &frame(&mut client, other, 0)),
            Err(Refused::UnknownKey)
        );
    }
    let mut administrator = Auth::new(Keyring::Client(admin), 5);
    let proven = check(
        &mut server,
        &frame(&mut administrator, client_id_of(2, 1), 0),
    );
    assert_eq!(proven, Ok(Proven::Client(Role::Admin)));
    assert!(proven.unwrap().is_admin());
    // An administrator may use any client id, and is answered under its own key.
    let anyone = client_id_of(1, 99);
    let proven = check(&mut server, &frame(&mut administrator, anyone, 0));
    assert_eq!(proven, Ok(Proven::Client(Role::Admin)));
    assert_eq!(
        check(&mut administrator, &frame(&mut server, 0, anyone)),
        Ok(Proven::Replica)
    );
    // The answer is signed with Alice's key, which she checks; she believes no other client.
    let answer = frame(&mut server, 0, me);
    assert_eq!(check(&mut client, &answer), Ok(Proven::Replica));
    assert_eq!(
        check(&mut client, &frame(&mut administrator, 0, me)),
        Err(Refused::UnknownKey)
    );
    let mut other_client = Auth::new(Keyring::Client(alice), 6);
    assert_eq!(
        check(&mut client, &frame(&mut other_client, me + 1, me)),
        Err(Refused::UnknownKey),
        "clients hear from replicas only"
    );
    // A replica cannot sign for a credential it does not know.
    let mut buffer = Vec::new();
    let header = Header::new(FrameKind::Protocol, CLUSTER, 0, client_id_of(9, 1));
    assert_eq!(
        server.frame(header, &"x", &mut buffer),
        Err(EncodeError::NoKey(client_id_of(9, 1)))
    );
}

/// A rotation: replicas that list the new key after the old accept both and sign with the old;
/// a client that moved to the new key is answered under it.
#[test]
fn during_a_rotation_both_keys_are_accepted_and_answers_use_the_clients_key() {
    let mut old_only = replica(vec![key(1)], vec![]);
    let mut both = replica(vec![key(1), key(2)], vec![]);
    let mut new_first = replica(vec![key(2), key(1)], vec![]);
    assert_eq!(
        check(&mut both, &frame(&mut old_only, 0, 1)),
        Ok(Proven::Replica)
    );
    assert_eq!(
        check(&mut both, &frame(&mut new_first, 2, 1)),
        Ok(Proven::Replica)
    );
    assert_eq!(
        check(&mut old_only, &frame(&mut new_first, 2, 0)),
        Err(Refused::UnknownKey)
    );

    let rotating = credential(1, Role::Client, vec![key(21), key(22)]);
    let mut server = replica(vec![key(1)], vec![rotating]);
    let moved = credential(1, Role::Client, vec![key(22)]);
    let mut client = Auth::new(Keyring::Client(moved), 1);
    let me = client_id_of(1, 5);
    assert!(check(&mut server, &frame(&mut client, me, 0)).is_ok());
    assert_eq!(server.client_key(me), key(22).fingerprint());
    assert_eq!(
        check(&mut client, &frame(&mut server, 0, me)),
        Ok(Proven::Replica)
    );
}

#[test]
fn insecure_mode_signs_and_checks_nothing() {
    let mut insecure = Auth::insecure();
    let datagram = frame(&mut insecure, 0, 1);
    let header = decode_header(&datagram, CLUSTER).unwrap();
    assert_eq!(header.key, 0);
    assert!(datagram.ends_with(&[0; TAG_BYTES]));
    assert_eq!(check(&mut insecure, &datagram), Ok(Proven::Unchecked));
    assert_eq!(check(&mut insecure, &datagram), Ok(Proven::Unchecked));
}
