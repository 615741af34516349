//! KCP datagrams and Noise handshake messages: the first bytes any UDP sender reaches.
//!
//! The input is a script run against two real sessions, a client and a server: the client
//! sends messages, its datagrams reach the server intact, dropped, or with a byte flipped, the
//! clock advances, raw datagrams from the input go straight to the server and to a Noise
//! handshake on each side, and the two handshakes exchange their own messages. Whatever the script, every message the server delivers is within
//! its bound, a refused datagram counts as refused and nothing else, and, if nothing forged or
//! corrupted reached the server, what it delivered is exactly what the client sent, in order.

use std::{sync::OnceLock, time::Duration};

use netstack::{
    kcp::{KcpConfig, KcpSession},
    secure::{NodeIdentity, PeerPolicy, SecureHandshake},
};
use primitives::{AccountKey, time::Instant};

/// The conversation both sessions use.
const CONV: u32 = 0x7469_636b;
/// Largest raw datagram a script step carries (above every MTU, so oversized ones are tried).
const RAW_DATAGRAM_BYTES_MAX: usize = 2048;

/// One step of the script, chosen by a byte.
enum Step {
    Send,
    Deliver,
    Drop,
    Raw,
    Corrupt,
    Wait,
    Handshake,
    HandshakeRelay,
}

impl Step {
    fn of(byte: u8) -> Step {
        match byte % 8 {
            0 => Step::Send,
            1 => Step::Deliver,
            2 => Step::Drop,
            3 => Step::Raw,
            4 => Step::Corrupt,
            5 => Step::Wait,
            6 => Step::Handshake,
            _ => Step::HandshakeRelay,
        }
    }
}

/// Reads the script's operands.
struct Script<'a> {
    bytes: &'a [u8],
}

impl<'a> Script<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        Some(first)
    }

    fn take(&mut self, len: usize) -> &'a [u8] {
        let (head, tail) = self.bytes.split_at(len.min(self.bytes.len()));
        self.bytes = tail;
        head
    }
}

struct Identities {
    server: NodeIdentity,
    client: NodeIdentity,
}

fn identities() -> &'static Identities {
    static IDENTITIES: OnceLock<Identities> = OnceLock::new();
    IDENTITIES.get_or_init(|| Identities {
        server: NodeIdentity::with_static_secret(AccountKey::from_seed(1), [0x11; 32]),
        client: NodeIdentity::with_static_secret(AccountKey::from_seed(2), [0x22; 32]),
    })
}

/// Runs the script in `data`.
pub fn fuzz(data: &[u8]) {
    let config = KcpConfig::default();
    let mut now = Instant::ZERO;
    let mut client = KcpSession::new(CONV, &config, now);
    let mut server = KcpSession::new(CONV, &config, now);
    let identities = identities();
    let mut responder = SecureHandshake::responder(&identities.server, PeerPolicy::AnyNode, 3);
    let mut initiator =
        SecureHandshake::initiator(&identities.client, identities.server.node_id(), 4);

    let mut sent: Vec<Vec<u8>> = Vec::new();
    let mut received: Vec<Vec<u8>> = Vec::new();
    let mut in_flight: Vec<Vec<u8>> = Vec::new();
    let mut tainted = false;
    let mut script = Script { bytes: data };

    while let Some(op) = script.byte() {
        in_flight.extend(std::iter::from_fn(|| client.poll_transmit()));
        match Step::of(op) {
            Step::Send => {
                let len = usize::from(script.byte().unwrap_or(0)) * 8 + 1;
                let fill = u8::try_from(sent.len() % 251).unwrap_or(0);
                let message = vec![fill; len];
                if client.send(&message).is_ok() {
                    sent.push(message);
                }
            }
            Step::Deliver => {
                for datagram in in_flight.drain(..) {
                    feed(&mut server, now, &datagram);
                }
                for datagram in std::iter::from_fn(|| server.poll_transmit()) {
                    let _ = client.handle_datagram(now, &datagram);
                }
            }
            Step::Drop => {
                if !in_flight.is_empty() {
                    in_flight.remove(0);
                }
            }
            Step::Raw => {
                let len = usize::from(u16::from_be_bytes([
                    script.byte().unwrap_or(0),
                    script.byte().unwrap_or(0),
                ])) % RAW_DATAGRAM_BYTES_MAX;
                let datagram = script.take(len);
                tainted |= feed(&mut server, now, datagram);
            }
            Step::Corrupt => {
                let at = usize::from(script.byte().unwrap_or(0));
                let mask = script.byte().unwrap_or(1).max(1);
                if !in_flight.is_empty() {
                    let mut datagram = in_flight.remove(0);
                    let len = datagram.len();
                    if let Some(byte) = datagram.get_mut(at % len.max(1)) {
                        *byte ^= mask;
                    }
                    tainted |= feed(&mut server, now, &datagram);
                }
            }
            Step::Wait => {
                now += Duration::from_millis(u64::from(script.byte().unwrap_or(0)));
                client.handle_timeout(now);
                server.handle_timeout(now);
            }
            Step::Handshake => {
                let len = usize::from(script.byte().unwrap_or(0));
                let datagram = script.take(len);
                check_handshake(&mut responder, datagram);
                check_handshake(&mut initiator, datagram);
            }
            Step::HandshakeRelay => {
                if let Some(datagram) = initiator.poll_transmit() {
                    check_handshake(&mut responder, &datagram);
                }
                if let Some(datagram) = responder.poll_transmit() {
                    check_handshake(&mut initiator, &datagram);
                }
            }
        }
        while let Some(message) = server.poll_message() {
            assert!(!message.is_empty(), "keepalives are not delivered");
            assert!(message.len() <= server.message_bytes_max());
            received.push(message);
        }
    }
    if !tainted {
        assert!(
            received.len() <= sent.len() && received[..] == sent[..received.len()],
            "the server delivered messages the client did not send, or out of order"
        );
    }
}

/// Feeds one datagram to `session`; a refused one must count as refused and change nothing
/// else the session reports. Returns whether it was accepted (and so may carry forged data).
fn feed(session: &mut KcpSession, now: Instant, datagram: &[u8]) -> bool {
    let before = session.stats();
    match session.handle_datagram(now, datagram) {
        Ok(()) => true,
        Err(_) => {
            let after = session.stats();
            assert_eq!(after.datagrams_received, before.datagrams_received);
            assert_eq!(after.bytes_received, before.bytes_received);
            assert_eq!(after.messages_received, before.messages_received);
            false
        }
    }
}

/// A handshake fed forged bytes fails with a value, and a failed handshake stays failed: no
/// later datagram revives it.
fn check_handshake(handshake: &mut SecureHandshake, datagram: &[u8]) {
    if handshake.handle_datagram(datagram).is_err() {
        assert!(handshake.handle_datagram(datagram).is_err());
    }
}
