//! The transport phase: sealed datagrams with explicit nonces and a replay window.

use primitives::id::NodeId;
use snow::StatelessTransportState;

use super::{
    SECURE_DATAGRAM_BYTES_MAX, SECURE_OVERHEAD_BYTES, SECURE_REPLAY_WINDOW, TRANSPORT_TAG,
};
use crate::error::AuthError;

/// Counters of a secure session: every datagram dropped is counted by its reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SecureStats {
    /// Datagrams sealed.
    pub sealed: u64,
    /// Datagrams opened.
    pub opened: u64,
    /// Dropped: too short, or not a transport datagram.
    pub dropped_malformed: u64,
    /// Dropped: the AEAD tag did not verify (wrong key, forged or altered).
    pub dropped_forged: u64,
    /// Dropped: a nonce already accepted.
    pub dropped_replayed: u64,
    /// Dropped: a nonce older than the replay window.
    pub dropped_stale: u64,
}

/// One authenticated, encrypted session with a proven peer.
///
/// [`seal`](Self::seal) each outgoing datagram; [`open`](Self::open) each incoming one. A
/// datagram is accepted once: its nonce must be new and within [`SECURE_REPLAY_WINDOW`] of the
/// highest accepted, and its tag must verify; the window moves only after the tag does, so a
/// forged datagram cannot push it.
pub struct SecureSession {
    peer: NodeId,
    transport: StatelessTransportState,
    send_nonce: u64,
    /// The highest nonce accepted, if any.
    receive_highest: Option<u64>,
    /// Bit `i` set: nonce `receive_highest - i` was accepted.
    receive_window: u128,
    buffer: Vec<u8>,
    stats: SecureStats,
}

const _: () = assert!(SECURE_REPLAY_WINDOW == u128::BITS as u64);

impl std::fmt::Debug for SecureSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureSession")
            .field("peer", &self.peer)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl SecureSession {
    pub(super) fn new(peer: NodeId, transport: StatelessTransportState) -> Self {
        SecureSession {
            peer,
            transport,
            send_nonce: 0,
            receive_highest: None,
            receive_window: 0,
            buffer: vec![0u8; SECURE_DATAGRAM_BYTES_MAX],
            stats: SecureStats::default(),
        }
    }

    /// The proven peer.
    pub fn peer(&self) -> NodeId {
        self.peer
    }

    /// The counters.
    pub fn stats(&self) -> SecureStats {
        self.stats
    }

    /// Seals `plaintext` into `out` (cleared first).
    pub fn seal(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), AuthError> {
        let max = SECURE_DATAGRAM_BYTES_MAX - SECURE_OVERHEAD_BYTES;
        if plaintext.len() > max {
            return Err(AuthError::TooLarge {
                len: plaintext.len(),
                max,
            });
        }
        let nonce = self.send_nonce;
        // Noise reserves nonce 2^64 - 1; a session ends long before.
        assert!(nonce < u64::MAX - 1, "send nonces exhausted");
        let len = self
            .transport
            .write_message(nonce, plaintext, &mut self.buffer)
            .map_err(|_| AuthError::HandshakeFailed)?;
        self.send_nonce += 1;
        out.clear();
        out.push(TRANSPORT_TAG);
        out.extend_from_slice(&nonce.to_be_bytes());
        out.extend_from_slice(&self.buffer[..len]);
        assert_eq!(out.len(), plaintext.len() + SECURE_OVERHEAD_BYTES);
        self.stats.sealed += 1;
        Ok(())
    }

    /// Opens `datagram` into `out` (cleared first). A refused datagram changes nothing but the
    /// counters.
    pub fn open(&mut self, datagram: &[u8], out: &mut Vec<u8>) -> Result<(), AuthError> {
        let result = self.open_checked(datagram, out);
        match result {
            Ok(()) => self.stats.opened += 1,
            Err(AuthError::Malformed { .. }) => self.stats.dropped_malformed += 1,
            Err(AuthError::Forged) => self.stats.dropped_forged += 1,
            Err(AuthError::Replayed { .. }) => self.stats.dropped_replayed += 1,
            Err(AuthError::Stale { .. }) => self.stats.dropped_stale += 1,
            Err(_) => {}
        }
        result
    }

    fn open_checked(&mut self, datagram: &[u8], out: &mut Vec<u8>) -> Result<(), AuthError> {
        if datagram.len() < SECURE_OVERHEAD_BYTES || datagram[0] != TRANSPORT_TAG {
            return Err(AuthError::Malformed {
                len: datagram.len(),
            });
        }
        let nonce = u64::from_be_bytes(datagram[1..9].try_into().expect("8 bytes"));
        self.check_fresh(nonce)?;
        let len = self
            .transport
            .read_message(nonce, &datagram[9..], &mut self.buffer)
            .map_err(|_| AuthError::Forged)?;
        self.accept(nonce);
        out.clear();
        out.extend_from_slice(&self.buffer[..len]);
        Ok(())
    }

    fn check_fresh(&self, nonce: u64) -> Result<(), AuthError> {
        let Some(highest) = self.receive_highest else {
            return Ok(());
        };
        if nonce > highest {
            return Ok(());
        }
        let behind = highest - nonce;
        if behind >= SECURE_REPLAY_WINDOW {
            return Err(AuthError::Stale { nonce });
        }
        if self.receive_window & (1u128 << behind) != 0 {
            return Err(AuthError::Replayed { nonce });
        }
        Ok(())
    }

    fn accept(&mut self, nonce: u64) {
        match self.receive_highest {
            Some(highest) if nonce <= highest => {
                self.receive_window |= 1u128 << (highest - nonce);
            }
            Some(highest) => {
                let ahead = nonce - highest;
                self.receive_window = if ahead >= SECURE_REPLAY_WINDOW {
                    0
                } else {
                    self.receive_window << ahead
                };
                self.receive_window |= 1;
                self.receive_highest = Some(nonce);
            }
            None => {
                self.receive_window = 1;
                self.receive_highest = Some(nonce);
            }
        }
        assert!(self.receive_window & 1 == 1);
    }
}
