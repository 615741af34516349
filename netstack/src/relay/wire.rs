//! Relay frames: one UDP datagram each, tagged by its first byte, decoded with every length
//! checked. Integers are big-endian.
//!
//! | tag | frame | body |
//! | --- | --- | --- |
//! | `0xB1` | [`RelayFrame::Probe`] | nonce (8), zeros up to [`PROBE_BYTES`] |
//! | `0xB2` | [`RelayFrame::Observed`] | nonce (8), address, challenge (16) |
//! | `0xB3` | [`RelayFrame::DialBack`] | nonce (8) |
//! | `0xB4` | [`RelayFrame::Register`] | node (20), challenge (16), signature (65) |
//! | `0xB5` | [`RelayFrame::Registered`] | node (20), lease in seconds (4) |
//! | `0xB6` | [`RelayFrame::Forward`] | to node (20), channel (1), payload (1..) |
//! | `0xB7` | [`RelayFrame::Delivered`] | from node (20), channel (1), payload (1..) |
//! | `0xB8` | [`RelayFrame::NoRoute`] | to node (20) |
//!
//! An address is a family byte (4 or 6), the IP's 4 or 16 bytes and the port (2). A channel
//! tells a node's services apart ([`super::KCP_CHANNEL`], [`super::QUIC_CHANNEL`]); the relay
//! passes it through.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use alloy_primitives::Address;
use primitives::{id::NodeId, keys::Signature};

use crate::{constants::RELAY_PAYLOAD_BYTES_MAX, error::RelayFrameError};

/// Tag of [`RelayFrame::Probe`].
pub const PROBE_TAG: u8 = 0xB1;
/// Tag of [`RelayFrame::Observed`].
pub const OBSERVED_TAG: u8 = 0xB2;
/// Tag of [`RelayFrame::DialBack`].
pub const DIAL_BACK_TAG: u8 = 0xB3;
/// Tag of [`RelayFrame::Register`].
pub const REGISTER_TAG: u8 = 0xB4;
/// Tag of [`RelayFrame::Registered`].
pub const REGISTERED_TAG: u8 = 0xB5;
/// Tag of [`RelayFrame::Forward`].
pub const FORWARD_TAG: u8 = 0xB6;
/// Tag of [`RelayFrame::Delivered`].
pub const DELIVERED_TAG: u8 = 0xB7;
/// Tag of [`RelayFrame::NoRoute`].
pub const NO_ROUTE_TAG: u8 = 0xB8;

/// Bytes of a probe, padding included: at least the relay's two answers together, so a probe
/// from a forged source address cannot make the relay send its victim more than it received.
pub const PROBE_BYTES: usize = 64;

/// Bytes of a registration challenge.
pub const CHALLENGE_BYTES: usize = 16;
/// Bytes a [`RelayFrame::Forward`] or [`RelayFrame::Delivered`] adds to its payload.
pub const RELAY_OVERHEAD_BYTES: usize = 1 + 20 + 1;

/// One relay datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RelayFrame<'a> {
    /// Node → relay: what address do you see me at? Answered by `Observed` from the relay's
    /// socket and `DialBack` from another of its sockets.
    Probe {
        /// Echoed in the answers.
        nonce: u64,
    },
    /// Relay → node: the address the probe came from, and a challenge bound to it.
    Observed {
        /// The probe's nonce.
        nonce: u64,
        /// The probe's source address as the relay saw it.
        observed: SocketAddr,
        /// What a `Register` from that address must sign.
        challenge: [u8; CHALLENGE_BYTES],
    },
    /// Relay (from a second socket) → node: arrives only if the node takes unsolicited datagrams.
    DialBack {
        /// The probe's nonce.
        nonce: u64,
    },
    /// Node → relay: forward datagrams for `node` to the address this comes from.
    Register {
        /// The node claimed.
        node: NodeId,
        /// The challenge of an `Observed` for this address.
        challenge: [u8; CHALLENGE_BYTES],
        /// The node key's signature over [`super::registration_prehash`] of the challenge.
        signature: Signature,
    },
    /// Relay → node: registered for `lease_secs` seconds; register again before it runs out.
    Registered {
        /// The node registered.
        node: NodeId,
        /// The lease, in seconds.
        lease_secs: u32,
    },
    /// Registered node → relay: pass `payload` to the registered node `to`.
    Forward {
        /// The destination node.
        to: NodeId,
        /// Which of the destination's services it is for.
        channel: u8,
        /// An opaque datagram (sealed by the end-to-end secure session).
        payload: &'a [u8],
    },
    /// Relay → registered node: `payload` from the registered node `from`.
    Delivered {
        /// The node it came from, as registered at the relay.
        from: NodeId,
        /// The channel the sender named.
        channel: u8,
        /// The datagram as the sender gave it.
        payload: &'a [u8],
    },
    /// Relay → node: `to` is not registered here; the datagram was dropped.
    NoRoute {
        /// The node asked for.
        to: NodeId,
    },
}

impl<'a> RelayFrame<'a> {
    /// The frame's name, for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            RelayFrame::Probe { .. } => "probe",
            RelayFrame::Observed { .. } => "observed",
            RelayFrame::DialBack { .. } => "dial-back",
            RelayFrame::Register { .. } => "register",
            RelayFrame::Registered { .. } => "registered",
            RelayFrame::Forward { .. } => "forward",
            RelayFrame::Delivered { .. } => "delivered",
            RelayFrame::NoRoute { .. } => "no-route",
        }
    }

    /// Appends the frame's bytes to `out` (cleared first).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.clear();
        match self {
            RelayFrame::Probe { nonce } => {
                out.push(PROBE_TAG);
                out.extend_from_slice(&nonce.to_be_bytes());
                out.resize(PROBE_BYTES, 0);
            }
            RelayFrame::Observed {
                nonce,
                observed,
                challenge,
            } => {
                out.push(OBSERVED_TAG);
                out.extend_from_slice(&nonce.to_be_bytes());
                encode_addr(*observed, out);
                out.extend_from_slice(challenge);
            }
            RelayFrame::DialBack { nonce } => {
                out.push(DIAL_BACK_TAG);
                out.extend_from_slice(&nonce.to_be_bytes());
            }
            RelayFrame::Register {
                node,
                challenge,
                signature,
            } => {
                out.push(REGISTER_TAG);
                out.extend_from_slice(node.0.as_slice());
                out.extend_from_slice(challenge);
                out.extend_from_slice(&signature.0);
            }
            RelayFrame::Registered { node, lease_secs } => {
                out.push(REGISTERED_TAG);
                out.extend_from_slice(node.0.as_slice());
                out.extend_from_slice(&lease_secs.to_be_bytes());
            }
            RelayFrame::Forward {
                to,
                channel,
                payload,
            } => {
                out.push(FORWARD_TAG);
                out.extend_from_slice(to.0.as_slice());
                out.push(*channel);
                out.extend_from_slice(payload);
            }
            RelayFrame::Delivered {
                from,
                channel,
                payload,
            } => {
                out.push(DELIVERED_TAG);
                out.extend_from_slice(from.0.as_slice());
                out.push(*channel);
                out.extend_from_slice(payload);
            }
            RelayFrame::NoRoute { to } => {
                out.push(NO_ROUTE_TAG);
                out.extend_from_slice(to.0.as_slice());
            }
        }
    }

    /// The frame's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Decodes one datagram; any malformed input is a typed error.
    pub fn decode(datagram: &'a [u8]) -> Result<RelayFrame<'a>, RelayFrameError> {
        let (&tag, body) = datagram.split_first().ok_or(RelayFrameError::Empty)?;
        let mut reader = Reader {
            frame: frame_name(tag).ok_or(RelayFrameError::UnknownTag { tag })?,
            bytes: body,
        };
        let frame = match tag {
            PROBE_TAG => {
                let nonce = reader.u64()?;
                if reader
                    .take(PROBE_BYTES - 1 - 8)?
                    .iter()
                    .any(|byte| *byte != 0)
                {
                    return Err(RelayFrameError::BadPadding);
                }
                RelayFrame::Probe { nonce }
            }
            OBSERVED_TAG => RelayFrame::Observed {
                nonce: reader.u64()?,
                observed: reader.addr()?,
                challenge: reader.array()?,
            },
            DIAL_BACK_TAG => RelayFrame::DialBack {
                nonce: reader.u64()?,
            },
            REGISTER_TAG => RelayFrame::Register {
                node: reader.node()?,
                challenge: reader.array()?,
                signature: Signature(reader.array()?),
            },
            REGISTERED_TAG => RelayFrame::Registered {
                node: reader.node()?,
                lease_secs: u32::from_be_bytes(reader.array()?),
            },
            FORWARD_TAG => RelayFrame::Forward {
                to: reader.node()?,
                channel: reader.array::<1>()?[0],
                payload: reader.payload()?,
            },
            DELIVERED_TAG => RelayFrame::Delivered {
                from: reader.node()?,
                channel: reader.array::<1>()?[0],
                payload: reader.payload()?,
            },
            NO_ROUTE_TAG => RelayFrame::NoRoute { to: reader.node()? },
            _ => return Err(RelayFrameError::UnknownTag { tag }),
        };
        reader.finish()?;
        Ok(frame)
    }
}

/// Whether `datagram` looks like a relay frame (by its tag alone).
pub fn is_relay_frame(datagram: &[u8]) -> bool {
    datagram
        .first()
        .is_some_and(|tag| frame_name(*tag).is_some())
}

fn frame_name(tag: u8) -> Option<&'static str> {
    Some(match tag {
        PROBE_TAG => "probe",
        OBSERVED_TAG => "observed",
        DIAL_BACK_TAG => "dial-back",
        REGISTER_TAG => "register",
        REGISTERED_TAG => "registered",
        FORWARD_TAG => "forward",
        DELIVERED_TAG => "delivered",
        NO_ROUTE_TAG => "no-route",
        _ => return None,
    })
}

fn encode_addr(addr: SocketAddr, out: &mut Vec<u8>) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

struct Reader<'a> {
    frame: &'static str,
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], RelayFrameError> {
        if self.bytes.len() < len {
            return Err(RelayFrameError::Truncated {
                frame: self.frame,
                needed: len,
                remaining: self.bytes.len(),
            });
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RelayFrameError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn u64(&mut self) -> Result<u64, RelayFrameError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn node(&mut self) -> Result<NodeId, RelayFrameError> {
        Ok(NodeId(Address::from(self.array::<20>()?)))
    }

    fn addr(&mut self) -> Result<SocketAddr, RelayFrameError> {
        let [family] = self.array()?;
        let ip = match family {
            4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>()?)),
            6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>()?)),
            family => return Err(RelayFrameError::BadAddressFamily { family }),
        };
        Ok(SocketAddr::new(ip, u16::from_be_bytes(self.array()?)))
    }

    /// The rest of the datagram, which must be 1..=[`RELAY_PAYLOAD_BYTES_MAX`] bytes.
    fn payload(&mut self) -> Result<&'a [u8], RelayFrameError> {
        let payload = std::mem::take(&mut self.bytes);
        match payload.len() {
            0 => Err(RelayFrameError::EmptyPayload { frame: self.frame }),
            len if len > RELAY_PAYLOAD_BYTES_MAX => Err(RelayFrameError::PayloadTooLarge {
                len,
                max: RELAY_PAYLOAD_BYTES_MAX,
            }),
            _ => Ok(payload),
        }
    }

    fn finish(self) -> Result<(), RelayFrameError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(RelayFrameError::TrailingBytes {
                frame: self.frame,
                count: self.bytes.len(),
            })
        }
    }
}
