use std::time::Duration;

use primitives::{keys::AccountKey, time::Instant};

use super::*;
use crate::{
    error::AuthError,
    kcp::{KcpConfig, KcpSession},
};

fn identity(seed: u64) -> NodeIdentity {
    NodeIdentity::new(AccountKey::from_seed(seed))
}

/// Runs a handshake between `initiator` and `responder` to its end or first error.
fn handshake(
    initiator: &mut SecureHandshake,
    responder: &mut SecureHandshake,
) -> Result<(), AuthError> {
    for _ in 0..3 {
        if let Some(datagram) = initiator.poll_transmit() {
            responder.handle_datagram(&datagram)?;
        }
        if let Some(datagram) = responder.poll_transmit() {
            initiator.handle_datagram(&datagram)?;
        }
    }
    Ok(())
}

fn pair(a: &NodeIdentity, b: &NodeIdentity) -> (SecureSession, SecureSession) {
    let mut initiator = SecureHandshake::initiator(a, b.node_id(), 1);
    let mut responder = SecureHandshake::responder(b, PeerPolicy::Only(vec![a.node_id()]), 2);
    handshake(&mut initiator, &mut responder).expect("the right keys shake hands");
    assert!(initiator.is_finished() && responder.is_finished());
    (
        initiator.into_session().expect("finished"),
        responder.into_session().expect("finished"),
    )
}

#[test]
fn a_handshake_proves_both_node_ids() {
    let (a, b) = (identity(1), identity(2));
    let (mut to_b, mut to_a) = pair(&a, &b);
    assert_eq!(to_b.peer(), b.node_id());
    assert_eq!(to_a.peer(), a.node_id());
    let (mut sealed, mut opened) = (Vec::new(), Vec::new());
    to_b.seal(b"move", &mut sealed).expect("seals");
    assert!(!sealed.windows(4).any(|w| w == b"move"), "encrypted");
    to_a.open(&sealed, &mut opened).expect("opens");
    assert_eq!(opened, b"move");
    to_a.seal(b"ack", &mut sealed).expect("seals");
    to_b.open(&sealed, &mut opened).expect("opens");
    assert_eq!(opened, b"ack");
}

#[test]
fn a_peer_with_the_wrong_key_cannot_open_a_session() {
    let (a, b, mallory) = (identity(1), identity(2), identity(3));
    // Mallory answers a dial meant for b.
    let mut initiator = SecureHandshake::initiator(&a, b.node_id(), 1);
    let mut responder = SecureHandshake::responder(&mallory, PeerPolicy::AnyNode, 2);
    assert_eq!(
        handshake(&mut initiator, &mut responder),
        Err(AuthError::UnknownPeer {
            node: mallory.node_id()
        })
    );
    assert!(initiator.into_session().is_err());
    // Mallory dials b, which only accepts a.
    let mut initiator = SecureHandshake::initiator(&mallory, b.node_id(), 3);
    let mut responder = SecureHandshake::responder(&b, PeerPolicy::Only(vec![a.node_id()]), 4);
    assert_eq!(
        handshake(&mut initiator, &mut responder),
        Err(AuthError::UnknownPeer {
            node: mallory.node_id()
        })
    );
    assert!(responder.into_session().is_err());
    // Mallory presents a's binding with her own Noise key: it proves no one a accepts.
    let impostor = identity(3).with_stolen_binding(&a);
    let mut initiator = SecureHandshake::initiator(&impostor, b.node_id(), 5);
    let mut responder = SecureHandshake::responder(&b, PeerPolicy::Only(vec![a.node_id()]), 6);
    let refused = handshake(&mut initiator, &mut responder);
    assert!(
        matches!(
            refused,
            Err(AuthError::BadBinding | AuthError::UnknownPeer { .. })
        ),
        "{refused:?}"
    );
    assert_ne!(refused, Err(AuthError::UnknownPeer { node: a.node_id() }));
    assert!(responder.into_session().is_err());
}

#[test]
fn a_listed_policy_admits_whom_its_list_holds_when_the_handshake_runs() {
    let (a, b) = (identity(1), identity(2));
    let list = AllowList::new([identity(7).node_id()]);
    let policy = PeerPolicy::Listed(list.clone());
    let mut initiator = SecureHandshake::initiator(&a, b.node_id(), 1);
    let mut responder = SecureHandshake::responder(&b, policy.clone(), 2);
    assert_eq!(
        handshake(&mut initiator, &mut responder),
        Err(AuthError::UnknownPeer { node: a.node_id() })
    );
    // The owner adds a; the same policy, shared, now admits it.
    assert!(list.replace([identity(7).node_id(), a.node_id()]));
    assert!(
        !list.replace([a.node_id(), identity(7).node_id()]),
        "no change"
    );
    let mut initiator = SecureHandshake::initiator(&a, b.node_id(), 3);
    let mut responder = SecureHandshake::responder(&b, policy.clone(), 4);
    handshake(&mut initiator, &mut responder).expect("a is listed now");
    assert_eq!(
        responder.into_session().expect("finished").peer(),
        a.node_id()
    );
    // And drops it again.
    list.replace([]);
    let mut initiator = SecureHandshake::initiator(&a, b.node_id(), 5);
    let mut responder = SecureHandshake::responder(&b, policy, 6);
    assert_eq!(
        handshake(&mut initiator, &mut responder),
        Err(AuthError::UnknownPeer { node: a.node_id() })
    );
}

#[test]
fn injected_and_replayed_datagrams_are_dropped_and_counted() {
    let (a, b, mallory) = (identity(1), identity(2), identity(3));
    let (mut to_b, mut to_a) = pair(&a, &b);
    let (mut mallory_to_b, _) = pair(&mallory, &b);
    let (mut sealed, mut opened) = (Vec::new(), Vec::new());
    // A datagram sealed in Mallory's own session with b does not open in a's.
    mallory_to_b
        .seal(b"forged move", &mut sealed)
        .expect("seals");
    assert_eq!(to_a.open(&sealed, &mut opened), Err(AuthError::Forged));
    // One flipped bit.
    to_b.seal(b"real move", &mut sealed).expect("seals");
    let mut altered = sealed.clone();
    *altered.last_mut().expect("not empty") ^= 1;
    assert_eq!(to_a.open(&altered, &mut opened), Err(AuthError::Forged));
    // The genuine datagram opens once, then is a replay.
    to_a.open(&sealed, &mut opened).expect("opens");
    assert_eq!(
        to_a.open(&sealed, &mut opened),
        Err(AuthError::Replayed { nonce: 0 })
    );
    // Out-of-order delivery within the window is fine; beyond it is stale.
    let mut datagrams = Vec::new();
    for n in 0..200u32 {
        to_b.seal(&n.to_be_bytes(), &mut sealed).expect("seals");
        datagrams.push(sealed.clone());
    }
    to_a.open(&datagrams[199], &mut opened).expect("newest");
    to_a.open(&datagrams[100], &mut opened)
        .expect("within the window");
    assert_eq!(
        to_a.open(&datagrams[100], &mut opened),
        Err(AuthError::Replayed { nonce: 101 })
    );
    assert_eq!(
        to_a.open(&datagrams[50], &mut opened),
        Err(AuthError::Stale { nonce: 51 })
    );
    assert_eq!(
        to_a.open(&[TRANSPORT_TAG, 0], &mut opened),
        Err(AuthError::Malformed { len: 2 })
    );
    let stats = to_a.stats();
    assert_eq!(
        (
            stats.opened,
            stats.dropped_forged,
            stats.dropped_replayed,
            stats.dropped_stale
        ),
        (3, 2, 2, 1)
    );
    assert_eq!(stats.dropped_malformed, 1);
    // A forged datagram with a huge nonce does not move the window.
    let mut forged = datagrams[0].clone();
    forged[1..9].copy_from_slice(&u64::MAX.to_be_bytes());
    assert_eq!(to_a.open(&forged, &mut opened), Err(AuthError::Forged));
    to_a.open(&datagrams[150], &mut opened)
        .expect("the window did not move");
}

#[test]
fn kcp_over_the_secure_layer_delivers_once_and_ignores_injection_and_replay() {
    let (a, b, mallory) = (identity(1), identity(2), identity(3));
    let (mut secure_a, mut secure_b) = pair(&a, &b);
    let (mut secure_mallory, _) = pair(&mallory, &b);
    let config = KcpConfig::default();
    let mut now = Instant::ZERO;
    let mut kcp_a = KcpSession::new(7, &config, now);
    let mut kcp_b = KcpSession::new(7, &config, now);
    let mut mallory_kcp = KcpSession::new(7, &config, now);
    let (mut sealed, mut opened) = (Vec::new(), Vec::new());
    let mut captured = Vec::new();
    let messages: Vec<Vec<u8>> = (0..50u32).map(|n| n.to_be_bytes().repeat(16)).collect();
    for message in &messages {
        kcp_a.send(message).expect("queued");
    }
    mallory_kcp.send(b"injected").expect("queued");
    let mut received = Vec::new();
    for _ in 0..200 {
        now += Duration::from_millis(5);
        kcp_a.handle_timeout(now);
        kcp_b.handle_timeout(now);
        mallory_kcp.handle_timeout(now);
        while let Some(datagram) = mallory_kcp.poll_transmit() {
            secure_mallory.seal(&datagram, &mut sealed).expect("seals");
            assert!(secure_b.open(&sealed, &mut opened).is_err());
        }
        while let Some(datagram) = kcp_a.poll_transmit() {
            secure_a.seal(&datagram, &mut sealed).expect("seals");
            captured.push(sealed.clone());
            if secure_b.open(&sealed, &mut opened).is_ok() {
                let _ = kcp_b.handle_datagram(now, &opened);
            }
        }
        // Replay everything a sent so far.
        for old in &captured {
            assert!(secure_b.open(old, &mut opened).is_err());
        }
        while let Some(datagram) = kcp_b.poll_transmit() {
            secure_b.seal(&datagram, &mut sealed).expect("seals");
            if secure_a.open(&sealed, &mut opened).is_ok() {
                let _ = kcp_a.handle_datagram(now, &opened);
            }
        }
        while let Some(message) = kcp_b.poll_message() {
            received.push(message);
        }
    }
    assert_eq!(received, messages);
    let stats = secure_b.stats();
    assert!(stats.dropped_forged >= 1, "{stats:?}");
    assert!(
        stats.dropped_replayed + stats.dropped_stale >= captured.len() as u64,
        "{stats:?}"
    );
    assert_eq!(stats.opened, captured.len() as u64);
}
