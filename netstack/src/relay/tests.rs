//! The relay's codec and core, without sockets.

use std::{net::SocketAddr, time::Duration};

use primitives::{id::NodeId, keys::AccountKey, time::Instant};
use proptest::prelude::*;

use super::{
    Reachability, RelayConfig, RelayCore, RelaySocket, RelayTransmit, registration_prehash,
    wire::{CHALLENGE_BYTES, PROBE_BYTES, RelayFrame},
};
use crate::{
    constants::{RELAY_CHALLENGE_PERIOD, RELAY_PAYLOAD_BYTES_MAX},
    error::{RelayFrameError, RelayRefusal},
    secure::NodeIdentity,
};

const T0: Instant = Instant::from_micros(1_000);

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("a socket address")
}

fn identity(seed: u64) -> NodeIdentity {
    NodeIdentity::new(AccountKey::from_seed(seed))
}

fn relay() -> RelayCore {
    RelayCore::new(RelayConfig::default(), [7; 32])
}

fn drain(core: &mut RelayCore) -> Vec<RelayTransmit> {
    std::iter::from_fn(|| core.poll_transmit()).collect()
}

/// Probes from `from` and returns the challenge the relay gave.
fn challenge_for(core: &mut RelayCore, now: Instant, from: SocketAddr) -> [u8; CHALLENGE_BYTES] {
    core.handle_datagram(now, from, &RelayFrame::Probe { nonce: 5 }.encode())
        .expect("a probe is answered");
    let sent = drain(core);
    assert_eq!(sent.len(), 2);
    assert_eq!((sent[1].via, sent[1].to), (RelaySocket::DialBack, from));
    assert_eq!(
        RelayFrame::decode(&sent[1].bytes),
        Ok(RelayFrame::DialBack { nonce: 5 })
    );
    match RelayFrame::decode(&sent[0].bytes) {
        Ok(RelayFrame::Observed {
            nonce: 5,
            observed,
            challenge,
        }) if observed == from && sent[0].via == RelaySocket::Main => challenge,
        other => panic!("expected an observed answer, got {other:?}"),
    }
}

fn register_frame(who: &NodeIdentity, challenge: [u8; CHALLENGE_BYTES]) -> Vec<u8> {
    RelayFrame::Register {
        node: who.node_id(),
        challenge,
        signature: who.sign_prehash(&registration_prehash(&challenge)),
    }
    .encode()
}

/// Registers `who` from `from`, checking the confirmation.
fn register(core: &mut RelayCore, now: Instant, who: &NodeIdentity, from: SocketAddr) {
    let challenge = challenge_for(core, now, from);
    core.handle_datagram(now, from, &register_frame(who, challenge))
        .expect("registered");
    let sent = drain(core);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, from);
    assert_eq!(
        RelayFrame::decode(&sent[0].bytes),
        Ok(RelayFrame::Registered {
            node: who.node_id(),
            lease_secs: 30
        })
    );
}

fn forward(to: NodeId, payload: &[u8]) -> Vec<u8> {
    RelayFrame::Forward {
        to,
        channel: 3,
        payload,
    }
    .encode()
}

#[test]
fn forwards_between_registered_nodes_and_counts_bytes_per_node() {
    let mut core = relay();
    let (a, b) = (identity(1), identity(2));
    let (addr_a, addr_b) = (addr("10.0.1.2:4000"), addr("10.0.2.2:4000"));
    register(&mut core, T0, &a, addr_a);
    register(&mut core, T0, &b, addr_b);
    assert_eq!(core.registered_addr(&b.node_id()), Some(addr_b));

    core.handle_datagram(T0, addr_a, &forward(b.node_id(), b"sealed bytes"))
        .expect("forwarded");
    let sent = drain(&mut core);
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].via, sent[0].to), (RelaySocket::Main, addr_b));
    assert_eq!(
        RelayFrame::decode(&sent[0].bytes),
        Ok(RelayFrame::Delivered {
            from: a.node_id(),
            channel: 3,
            payload: b"sealed bytes"
        })
    );
    core.handle_datagram(T0, addr_b, &forward(a.node_id(), b"reply"))
        .expect("forwarded back");
    assert_eq!(drain(&mut core)[0].to, addr_a);

    let usage_a = core.usage(&a.node_id()).expect("registered");
    assert_eq!((usage_a.bytes_from, usage_a.bytes_to), (12, 5));
    assert_eq!((usage_a.datagrams_from, usage_a.datagrams_to), (1, 1));
    let usage_b = core.usage(&b.node_id()).expect("registered");
    assert_eq!((usage_b.bytes_from, usage_b.bytes_to), (5, 12));
    assert!(!usage_a.over_bound && !usage_b.over_bound);
    let stats = core.stats();
    assert_eq!(
        (stats.forwarded, stats.forwarded_bytes, stats.registrations),
        (2, 17, 2)
    );
}

#[test]
fn a_node_past_its_soft_bound_is_flagged_once_and_still_forwarded() {
    let config = RelayConfig {
        peer_bytes_soft_max: 100,
        ..RelayConfig::default()
    };
    let mut core = RelayCore::new(config, [1; 32]);
    let (a, b) = (identity(1), identity(2));
    let (addr_a, addr_b) = (addr("10.0.1.2:4000"), addr("10.0.2.2:4000"));
    register(&mut core, T0, &a, addr_a);
    register(&mut core, T0, &b, addr_b);
    for _ in 0..5 {
        core.handle_datagram(T0, addr_a, &forward(b.node_id(), &[9; 40]))
            .expect("soft: still forwarded");
    }
    assert_eq!(drain(&mut core).len(), 5);
    let usage = core.usage(&a.node_id()).expect("registered");
    assert_eq!(usage.bytes(), 200);
    assert!(usage.over_bound);
    // Both ends passed the bound (100 bytes each way counts for each), each counted once.
    assert_eq!(core.stats().peers_over_bound, 2);
}

#[test]
fn registration_needs_this_addresss_challenge_and_the_nodes_own_signature() {
    let mut core = relay();
    let (a, mallory) = (identity(1), identity(66));
    let (addr_a, addr_m) = (addr("10.0.1.2:4000"), addr("10.0.9.9:4000"));
    let challenge_a = challenge_for(&mut core, T0, addr_a);
    // A's registration copied and sent from another address: the challenge is A's address's.
    assert_eq!(
        core.handle_datagram(T0, addr_m, &register_frame(&a, challenge_a)),
        Err(RelayRefusal::BadChallenge)
    );
    // Mallory claims A's node with her own signature over her own challenge.
    let challenge_m = challenge_for(&mut core, T0, addr_m);
    let forged = RelayFrame::Register {
        node: a.node_id(),
        challenge: challenge_m,
        signature: mallory.sign_prehash(&registration_prehash(&challenge_m)),
    };
    assert_eq!(
        core.handle_datagram(T0, addr_m, &forged.encode()),
        Err(RelayRefusal::BadSignature {
            claimed: a.node_id(),
            proven: Some(mallory.node_id())
        })
    );
    // A made-up challenge.
    assert_eq!(
        core.handle_datagram(T0, addr_a, &register_frame(&a, [0; CHALLENGE_BYTES])),
        Err(RelayRefusal::BadChallenge)
    );
    assert!(drain(&mut core).is_empty());
    assert_eq!(core.registered_addr(&a.node_id()), None);
    assert_eq!(core.stats().refused_unauthenticated, 3);
    // The challenge is still good one period later, not two.
    let later = T0 + RELAY_CHALLENGE_PERIOD;
    core.handle_datagram(later, addr_a, &register_frame(&a, challenge_a))
        .expect("last period's challenge");
    let much_later = T0 + RELAY_CHALLENGE_PERIOD * 2;
    assert_eq!(
        core.handle_datagram(much_later, addr_a, &register_frame(&a, challenge_a)),
        Err(RelayRefusal::BadChallenge)
    );
}

#[test]
fn forwards_that_cannot_be_routed_are_refused_and_counted() {
    let mut core = relay();
    let (a, b) = (identity(1), identity(2));
    let addr_a = addr("10.0.1.2:4000");
    register(&mut core, T0, &a, addr_a);
    // From an address nobody registered: silently dropped.
    let stranger = addr("10.0.3.3:1");
    assert_eq!(
        core.handle_datagram(T0, stranger, &forward(a.node_id(), b"x")),
        Err(RelayRefusal::NotRegistered { from: stranger })
    );
    assert!(drain(&mut core).is_empty());
    // To a node not registered: the sender hears no-route.
    assert_eq!(
        core.handle_datagram(T0, addr_a, &forward(b.node_id(), b"x")),
        Err(RelayRefusal::NoRoute { to: b.node_id() })
    );
    let sent = drain(&mut core);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        RelayFrame::decode(&sent[0].bytes),
        Ok(RelayFrame::NoRoute { to: b.node_id() })
    );
    assert_eq!(
        core.handle_datagram(T0, addr_a, &forward(a.node_id(), b"x")),
        Err(RelayRefusal::Loop)
    );
    // Frames only a relay sends.
    let delivered = RelayFrame::Delivered {
        from: b.node_id(),
        channel: 0,
        payload: b"x",
    };
    assert_eq!(
        core.handle_datagram(T0, addr_a, &delivered.encode()),
        Err(RelayRefusal::Unexpected { frame: "delivered" })
    );
    assert_eq!(
        core.handle_datagram(T0, addr_a, &[0xB2, 1]),
        Err(RelayRefusal::Frame(RelayFrameError::Truncated {
            frame: "observed",
            needed: 8,
            remaining: 1
        }))
    );
    let stats = core.stats();
    assert_eq!(
        (
            stats.refused_unroutable,
            stats.refused_unexpected,
            stats.refused_malformed
        ),
        (3, 1, 1)
    );
    assert_eq!(stats.forwarded, 0);
    assert_eq!(core.usage(&a.node_id()).expect("registered").bytes(), 0);
}

#[test]
fn leases_expire_unless_renewed_and_a_moved_node_keeps_its_usage() {
    let mut core = relay();
    let (a, b) = (identity(1), identity(2));
    let (addr_a, addr_b) = (addr("10.0.1.2:4000"), addr("10.0.2.2:4000"));
    register(&mut core, T0, &a, addr_a);
    register(&mut core, T0, &b, addr_b);
    assert_eq!(core.poll_timeout(), Some(T0 + Duration::from_secs(30)));
    // A keeps forwarding, which renews its lease; B stays silent.
    let half = T0 + Duration::from_secs(20);
    core.handle_datagram(half, addr_a, &forward(b.node_id(), b"hello"))
        .expect("forwarded");
    assert_eq!(drain(&mut core).len(), 1);
    core.handle_timeout(T0 + Duration::from_secs(31));
    assert!(core.registered_addr(&b.node_id()).is_none());
    assert_eq!(core.registered_addr(&a.node_id()), Some(addr_a));
    // A moves (a new NAT mapping) and registers again from there: usage stays.
    let moved = addr("10.0.1.2:5000");
    let now = T0 + Duration::from_secs(32);
    register(&mut core, now, &a, moved);
    assert_eq!(core.registered_addr(&a.node_id()), Some(moved));
    assert_eq!(core.usage(&a.node_id()).expect("registered").bytes_from, 5);
    // The old address no longer speaks for A.
    assert_eq!(
        core.handle_datagram(now, addr_a, &forward(b.node_id(), b"x")),
        Err(RelayRefusal::NotRegistered { from: addr_a })
    );
}

#[test]
fn a_full_relay_refuses_newcomers() {
    let config = RelayConfig {
        registrations_max: 1,
        ..RelayConfig::default()
    };
    let mut core = RelayCore::new(config, [3; 32]);
    register(&mut core, T0, &identity(1), addr("10.0.0.1:1"));
    let from = addr("10.0.0.2:1");
    let challenge = challenge_for(&mut core, T0, from);
    assert_eq!(
        core.handle_datagram(T0, from, &register_frame(&identity(2), challenge)),
        Err(RelayRefusal::Full)
    );
    assert_eq!(core.stats().refused_full, 1);
}

#[test]
fn reachability_needs_the_dial_back_and_an_unrewritten_address() {
    let local = addr("10.0.1.2:4000");
    let direct = Reachability {
        local,
        observed: local,
        dial_back: true,
    };
    assert!(direct.is_direct());
    assert!(
        !Reachability {
            dial_back: false,
            ..direct
        }
        .is_direct()
    );
    let natted = Reachability {
        observed: addr("198.51.100.7:61000"),
        ..direct
    };
    assert!(!natted.is_direct());
    // Bound to the unspecified address: only the port can be compared.
    let wildcard = Reachability {
        local: addr("0.0.0.0:4000"),
        observed: local,
        dial_back: true,
    };
    assert!(wildcard.is_direct());
    assert!(
        !Reachability {
            observed: addr("10.0.1.2:4001"),
            ..wildcard
        }
        .is_direct()
    );
}

#[test]
fn every_frame_round_trips() {
    let node = identity(4).node_id();
    let signature = identity(4).sign_prehash(&registration_prehash(&[2; CHALLENGE_BYTES]));
    let frames = [
        RelayFrame::Probe { nonce: u64::MAX },
        RelayFrame::Observed {
            nonce: 1,
            observed: addr("[2001:db8::1]:443"),
            challenge: [9; CHALLENGE_BYTES],
        },
        RelayFrame::Observed {
            nonce: 1,
            observed: addr("192.0.2.1:1"),
            challenge: [9; CHALLENGE_BYTES],
        },
        RelayFrame::DialBack { nonce: 3 },
        RelayFrame::Register {
            node,
            challenge: [2; CHALLENGE_BYTES],
            signature,
        },
        RelayFrame::Registered {
            node,
            lease_secs: 30,
        },
        RelayFrame::Forward {
            to: node,
            channel: 1,
            payload: &[1; RELAY_PAYLOAD_BYTES_MAX],
        },
        RelayFrame::Delivered {
            from: node,
            channel: 0,
            payload: b"x",
        },
        RelayFrame::NoRoute { to: node },
    ];
    for frame in frames {
        let bytes = frame.encode();
        assert_eq!(RelayFrame::decode(&bytes), Ok(frame.clone()));
        // Every proper prefix is refused with a typed error, and so is one byte more (a
        // payload frame takes it as payload, unless that passes the bound).
        let payload_frame = matches!(
            frame,
            RelayFrame::Forward { .. } | RelayFrame::Delivered { .. }
        );
        // A payload frame's payload is the rest: any cut that leaves one byte of it decodes.
        let shortest = if payload_frame { 23 } else { bytes.len() };
        for cut in 0..shortest {
            assert!(
                RelayFrame::decode(&bytes[..cut]).is_err(),
                "{} cut at {cut}",
                frame.name()
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let decoded = RelayFrame::decode(&longer);
        match frame {
            RelayFrame::Forward { .. } => assert_eq!(
                decoded,
                Err(RelayFrameError::PayloadTooLarge {
                    len: RELAY_PAYLOAD_BYTES_MAX + 1,
                    max: RELAY_PAYLOAD_BYTES_MAX
                })
            ),
            RelayFrame::Delivered { .. } => assert!(decoded.is_ok()),
            _ => assert!(matches!(
                decoded,
                Err(RelayFrameError::TrailingBytes { count: 1, .. })
            )),
        }
    }
    assert_eq!(RelayFrame::decode(&[]), Err(RelayFrameError::Empty));
    // A probe must be padded: the relay never answers with more than it received.
    let mut probe = RelayFrame::Probe { nonce: 1 }.encode();
    assert_eq!(probe.len(), PROBE_BYTES);
    let answers = RelayFrame::Observed {
        nonce: 1,
        observed: addr("[2001:db8::1]:443"),
        challenge: [0; CHALLENGE_BYTES],
    }
    .encode()
    .len()
        + RelayFrame::DialBack { nonce: 1 }.encode().len();
    assert!(answers <= PROBE_BYTES, "{answers}");
    assert!(matches!(
        RelayFrame::decode(&probe[..9]),
        Err(RelayFrameError::Truncated { frame: "probe", .. })
    ));
    probe[40] = 1;
    assert_eq!(RelayFrame::decode(&probe), Err(RelayFrameError::BadPadding));
    assert_eq!(
        RelayFrame::decode(&[0xA2, 0, 0]),
        Err(RelayFrameError::UnknownTag { tag: 0xA2 })
    );
    assert_eq!(
        RelayFrame::decode(&[0xB6; 22]),
        Err(RelayFrameError::EmptyPayload { frame: "forward" })
    );
    let mut bad_family = RelayFrame::Observed {
        nonce: 1,
        observed: addr("192.0.2.1:1"),
        challenge: [0; CHALLENGE_BYTES],
    }
    .encode();
    bad_family[9] = 5;
    assert_eq!(
        RelayFrame::decode(&bad_family),
        Err(RelayFrameError::BadAddressFamily { family: 5 })
    );
}

proptest! {
    #[test]
    fn random_datagrams_never_panic_and_change_nothing_unless_well_formed(
        datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..32),
        tags in proptest::collection::vec(0xB0u8..=0xB9, 1..32),
    ) {
        let mut core = relay();
        let from = addr("10.0.0.1:9");
        for (mut datagram, tag) in datagrams.into_iter().zip(tags.into_iter().cycle()) {
            if let Some(first) = datagram.first_mut() {
                *first = tag;
            }
            let _ = RelayFrame::decode(&datagram);
            let result = core.handle_datagram(T0, from, &datagram);
            // Only a well-formed probe gets an answer; nothing random registers or forwards.
            let sent = drain(&mut core);
            let is_probe = matches!(RelayFrame::decode(&datagram), Ok(RelayFrame::Probe { .. }));
            prop_assert_eq!(sent.is_empty(), !is_probe);
            prop_assert_eq!(result.is_ok(), is_probe);
        }
        prop_assert_eq!(core.stats().registrations, 0);
        prop_assert_eq!(core.stats().forwarded, 0);
    }
}
