//! DHT messages on the wire: one UDP datagram each, signed by the sender's node key, decoded
//! with every length checked before anything is allocated. Integers are big-endian.
//!
//! ```text
//! magic 0xD7 (1) | version (1) | kind (1) | request id (8) | sender (20) | recipient (20)
//!   | body | signature (65)
//! ```
//!
//! | kind | message | body |
//! | --- | --- | --- |
//! | 1 | [`DhtBody::Ping`] | nothing |
//! | 2 | [`DhtBody::Pong`] | the address the ping came from |
//! | 3 | [`DhtBody::FindNode`] | target (20) |
//! | 4 | [`DhtBody::Nodes`] | count (1), then `count` contacts: node (20), address |
//!
//! An address is a family byte (4 or 6), the IP's 4 or 16 bytes and the port (2). A recipient
//! of twenty zero bytes means "whoever listens here" and is allowed only in a ping (a node
//! bootstrapping from an address does not know the ID behind it yet).
//!
//! The signature is the sender's secp256k1 recoverable signature over
//! `keccak256(`[`SIGNING_DOMAIN`]` || every byte before it)`. [`DhtMessage::decode`] recovers
//! the signer and refuses the datagram unless it is the sender the header names, so a decoded
//! message's `sender` is proven. Naming the recipient and the request ID inside the signed
//! bytes keeps an answer from being replayed to another node or another request.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use alloy_primitives::{Address, B256, keccak256};
use primitives::{id::NodeId, keys::Signature};

use crate::{constants::DHT_RESPONSE_NODES_MAX, secure::NodeIdentity};

/// First byte of every DHT datagram.
pub const DHT_MAGIC: u8 = 0xD7;
/// The wire version this build speaks; a datagram of any other is refused.
pub const DHT_WIRE_VERSION: u8 = 1;
/// Domain of the message signature.
pub const SIGNING_DOMAIN: &[u8] = b"tickrate/netstack/dht/v1";
/// Bytes of the header: magic, version, kind, request ID, sender, recipient.
pub const DHT_HEADER_BYTES: usize = 1 + 1 + 1 + 8 + 20 + 20;
/// Bytes of the signature that ends every datagram.
pub const DHT_SIGNATURE_BYTES: usize = 65;
/// Bytes of the largest encoded address (IPv6).
const ADDRESS_BYTES_MAX: usize = 1 + 16 + 2;
/// Bytes of the largest datagram: a `Nodes` answer with [`DHT_RESPONSE_NODES_MAX`] IPv6
/// contacts. Longer datagrams are refused before they are parsed.
pub const DHT_DATAGRAM_BYTES_MAX: usize =
    DHT_HEADER_BYTES + 1 + DHT_RESPONSE_NODES_MAX * (20 + ADDRESS_BYTES_MAX) + DHT_SIGNATURE_BYTES;
// A largest answer fits one unfragmented datagram on any path with a 1280-byte IPv6 MTU.
const _: () = assert!(DHT_DATAGRAM_BYTES_MAX <= 1_200);
const _: () = assert!(DHT_RESPONSE_NODES_MAX <= u8::MAX as usize);

const PING_KIND: u8 = 1;
const PONG_KIND: u8 = 2;
const FIND_NODE_KIND: u8 = 3;
const NODES_KIND: u8 = 4;

/// A node and the socket address it answers at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Contact {
    /// The node.
    pub id: NodeId,
    /// Where it answers.
    pub addr: SocketAddr,
}

/// What a DHT message says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DhtBody {
    /// Request: are you there, and who are you?
    Ping,
    /// Answer to a ping.
    Pong {
        /// The address the ping came from, as the answering node saw it.
        observed: SocketAddr,
    },
    /// Request: which nodes do you know nearest to `target`?
    FindNode {
        /// The point of the ID space looked up.
        target: Address,
    },
    /// Answer to a `FindNode`: at most [`DHT_RESPONSE_NODES_MAX`] contacts, nearest first.
    Nodes {
        /// The contacts.
        contacts: Vec<Contact>,
    },
}

impl DhtBody {
    /// The message's name, for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            DhtBody::Ping => "ping",
            DhtBody::Pong { .. } => "pong",
            DhtBody::FindNode { .. } => "find-node",
            DhtBody::Nodes { .. } => "nodes",
        }
    }

    /// Whether this is a request (ping, find-node) rather than an answer.
    pub fn is_request(&self) -> bool {
        matches!(self, DhtBody::Ping | DhtBody::FindNode { .. })
    }

    fn kind(&self) -> u8 {
        match self {
            DhtBody::Ping => PING_KIND,
            DhtBody::Pong { .. } => PONG_KIND,
            DhtBody::FindNode { .. } => FIND_NODE_KIND,
            DhtBody::Nodes { .. } => NODES_KIND,
        }
    }
}

/// One DHT datagram. Once decoded, `sender` is proven by the signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhtMessage {
    /// Pairs an answer with its request; chosen at random by the requester.
    pub request_id: u64,
    /// The signer.
    pub sender: NodeId,
    /// The node the message is for, or `None` ("whoever listens here", pings only).
    pub recipient: Option<NodeId>,
    /// What it says.
    pub body: DhtBody,
}

/// Why a datagram is not a DHT message this node accepts. Every case is counted and dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DhtWireError {
    /// Longer than [`DHT_DATAGRAM_BYTES_MAX`]: refused before parsing.
    #[error("DHT datagram of {len} bytes exceeds {max}")]
    Oversized {
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The first byte is not [`DHT_MAGIC`] (or there is none).
    #[error("not a DHT datagram")]
    BadMagic,
    /// A version other than [`DHT_WIRE_VERSION`].
    #[error("DHT wire version {version}, this node speaks {}", DHT_WIRE_VERSION)]
    UnsupportedVersion {
        /// The version found.
        version: u8,
    },
    /// A kind byte that names no message.
    #[error("unknown DHT message kind {kind}")]
    UnknownKind {
        /// The kind found.
        kind: u8,
    },
    /// The datagram ends before a field it must have.
    #[error("DHT datagram truncated at its {field}: {needed} bytes needed, {remaining} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes it needs.
        needed: usize,
        /// Bytes left.
        remaining: usize,
    },
    /// Bytes between the body's last field and the signature.
    #[error("{count} bytes after a {message} body")]
    TrailingBytes {
        /// The message's name.
        message: &'static str,
        /// How many.
        count: usize,
    },
    /// An address family byte other than 4 or 6.
    #[error("unknown address family {family}")]
    BadAddressFamily {
        /// The family byte.
        family: u8,
    },
    /// A `Nodes` answer with more contacts than [`DHT_RESPONSE_NODES_MAX`].
    #[error("{count} contacts in one answer, at most {max}")]
    TooManyContacts {
        /// The count on the wire.
        count: usize,
        /// The bound.
        max: usize,
    },
    /// A message other than a ping without a recipient.
    #[error("a {message} without a recipient")]
    MissingRecipient {
        /// The message's name.
        message: &'static str,
    },
    /// The signature recovers to no key.
    #[error("DHT signature does not recover")]
    BadSignature,
    /// The signature recovers to another node than the sender the header names.
    #[error("DHT message claims sender {claimed} but is signed by {proven}")]
    Forged {
        /// The sender named.
        claimed: NodeId,
        /// The signer.
        proven: NodeId,
    },
}

impl DhtWireError {
    /// Whether the datagram was well formed but its signature proves another node (or none):
    /// an impostor rather than noise.
    pub fn is_forgery(&self) -> bool {
        matches!(
            self,
            DhtWireError::BadSignature | DhtWireError::Forged { .. }
        )
    }
}

impl DhtMessage {
    /// Encodes the message into `out` (cleared first) and signs it with `identity`, whose node
    /// must be the message's sender.
    pub fn encode_signed(&self, identity: &NodeIdentity, out: &mut Vec<u8>) {
        assert_eq!(
            self.sender,
            identity.node_id(),
            "a node signs only its own messages"
        );
        assert!(
            self.recipient.is_some() || self.body == DhtBody::Ping,
            "only a ping may go to an unknown recipient"
        );
        out.clear();
        out.push(DHT_MAGIC);
        out.push(DHT_WIRE_VERSION);
        out.push(self.body.kind());
        out.extend_from_slice(&self.request_id.to_be_bytes());
        out.extend_from_slice(self.sender.0.as_slice());
        out.extend_from_slice(
            self.recipient
                .map_or(Address::ZERO, |node| node.0)
                .as_slice(),
        );
        match &self.body {
            DhtBody::Ping => {}
            DhtBody::Pong { observed } => encode_addr(*observed, out),
            DhtBody::FindNode { target } => out.extend_from_slice(target.as_slice()),
            DhtBody::Nodes { contacts } => {
                assert!(contacts.len() <= DHT_RESPONSE_NODES_MAX);
                out.push(contacts.len() as u8);
                for contact in contacts {
                    out.extend_from_slice(contact.id.0.as_slice());
                    encode_addr(contact.addr, out);
                }
            }
        }
        let signature = identity.sign_prehash(&signing_prehash(out));
        out.extend_from_slice(&signature.0);
        assert!(out.len() <= DHT_DATAGRAM_BYTES_MAX);
    }

    /// The signed datagram of this message.
    pub fn encode(&self, identity: &NodeIdentity) -> Vec<u8> {
        let mut out = Vec::with_capacity(DHT_DATAGRAM_BYTES_MAX);
        self.encode_signed(identity, &mut out);
        out
    }

    /// Decodes one datagram and proves its sender; any malformed or forged input is a typed
    /// error. The signature is checked last, after every cheaper check has passed.
    pub fn decode(datagram: &[u8]) -> Result<DhtMessage, DhtWireError> {
        if datagram.len() > DHT_DATAGRAM_BYTES_MAX {
            return Err(DhtWireError::Oversized {
                len: datagram.len(),
                max: DHT_DATAGRAM_BYTES_MAX,
            });
        }
        if datagram.first() != Some(&DHT_MAGIC) {
            return Err(DhtWireError::BadMagic);
        }
        let mut reader = Reader {
            bytes: &datagram[1..],
        };
        let [version] = reader.array("version")?;
        if version != DHT_WIRE_VERSION {
            return Err(DhtWireError::UnsupportedVersion { version });
        }
        let [kind] = reader.array("kind")?;
        if !(PING_KIND..=NODES_KIND).contains(&kind) {
            return Err(DhtWireError::UnknownKind { kind });
        }
        let request_id = u64::from_be_bytes(reader.array("request id")?);
        let sender = reader.node("sender")?;
        let recipient = Some(reader.node("recipient")?).filter(|node| node.0 != Address::ZERO);
        // The body is what lies between the header and the signature.
        let body_len =
            reader
                .bytes
                .len()
                .checked_sub(DHT_SIGNATURE_BYTES)
                .ok_or(DhtWireError::Truncated {
                    field: "signature",
                    needed: DHT_SIGNATURE_BYTES,
                    remaining: reader.bytes.len(),
                })?;
        let (body_bytes, signature_bytes) = reader.bytes.split_at(body_len);
        let body = decode_body(kind, body_bytes)?;
        if recipient.is_none() && body != DhtBody::Ping {
            return Err(DhtWireError::MissingRecipient {
                message: body.name(),
            });
        }
        let signature = Signature(
            signature_bytes
                .try_into()
                .expect("split at the signature's length"),
        );
        let signed = &datagram[..datagram.len() - DHT_SIGNATURE_BYTES];
        let proven = signature
            .recover_address(&signing_prehash(signed))
            .map_err(|_| DhtWireError::BadSignature)?;
        if proven != sender.0 {
            return Err(DhtWireError::Forged {
                claimed: sender,
                proven: NodeId(proven),
            });
        }
        Ok(DhtMessage {
            request_id,
            sender,
            recipient,
            body,
        })
    }
}

/// What the sender signs: the domain and every byte of the datagram before the signature.
fn signing_prehash(signed: &[u8]) -> B256 {
    let mut material = Vec::with_capacity(SIGNING_DOMAIN.len() + signed.len());
    material.extend_from_slice(SIGNING_DOMAIN);
    material.extend_from_slice(signed);
    keccak256(&material)
}

fn decode_body(kind: u8, bytes: &[u8]) -> Result<DhtBody, DhtWireError> {
    let mut reader = Reader { bytes };
    let body = match kind {
        PING_KIND => DhtBody::Ping,
        PONG_KIND => DhtBody::Pong {
            observed: reader.addr("observed address")?,
        },
        FIND_NODE_KIND => DhtBody::FindNode {
            target: Address::from(reader.array::<20>("target")?),
        },
        NODES_KIND => {
            let [count] = reader.array("contact count")?;
            let count = usize::from(count);
            if count > DHT_RESPONSE_NODES_MAX {
                return Err(DhtWireError::TooManyContacts {
                    count,
                    max: DHT_RESPONSE_NODES_MAX,
                });
            }
            let mut contacts = Vec::with_capacity(count);
            for _ in 0..count {
                contacts.push(Contact {
                    id: reader.node("contact node")?,
                    addr: reader.addr("contact address")?,
                });
            }
            DhtBody::Nodes { contacts }
        }
        kind => return Err(DhtWireError::UnknownKind { kind }),
    };
    if !reader.bytes.is_empty() {
        return Err(DhtWireError::TrailingBytes {
            message: body.name(),
            count: reader.bytes.len(),
        });
    }
    Ok(body)
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
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DhtWireError> {
        if self.bytes.len() < N {
            return Err(DhtWireError::Truncated {
                field,
                needed: N,
                remaining: self.bytes.len(),
            });
        }
        let (head, rest) = self.bytes.split_at(N);
        self.bytes = rest;
        Ok(head.try_into().expect("split at N"))
    }

    fn node(&mut self, field: &'static str) -> Result<NodeId, DhtWireError> {
        Ok(NodeId(Address::from(self.array::<20>(field)?)))
    }

    fn addr(&mut self, field: &'static str) -> Result<SocketAddr, DhtWireError> {
        let [family] = self.array(field)?;
        let ip = match family {
            4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>(field)?)),
            6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>(field)?)),
            family => return Err(DhtWireError::BadAddressFamily { family }),
        };
        Ok(SocketAddr::new(ip, u16::from_be_bytes(self.array(field)?)))
    }
}

#[cfg(test)]
mod tests {
    use primitives::keys::AccountKey;
    use proptest::prelude::*;

    use super::*;

    fn identity(seed: u64) -> NodeIdentity {
        NodeIdentity::new(AccountKey::from_seed(seed))
    }

    fn contact(n: u8, v6: bool) -> Contact {
        let ip: IpAddr = if v6 {
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(n)))
        } else {
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
        };
        Contact {
            id: NodeId(Address::from([n; 20])),
            addr: SocketAddr::new(ip, 4000 + u16::from(n)),
        }
    }

    fn messages(sender: NodeId) -> Vec<DhtMessage> {
        let to = Some(NodeId(Address::from([9; 20])));
        let bodies = vec![
            DhtBody::Ping,
            DhtBody::Pong {
                observed: contact(3, true).addr,
            },
            DhtBody::FindNode {
                target: Address::from([0xAB; 20]),
            },
            DhtBody::Nodes {
                contacts: Vec::new(),
            },
            DhtBody::Nodes {
                contacts: (0..DHT_RESPONSE_NODES_MAX as u8)
                    .map(|n| contact(n, n % 2 == 0))
                    .collect(),
            },
        ];
        let mut all: Vec<DhtMessage> = bodies
            .into_iter()
            .enumerate()
            .map(|(n, body)| DhtMessage {
                request_id: n as u64 * 0x0101_0101_0101,
                sender,
                recipient: to,
                body,
            })
            .collect();
        all.push(DhtMessage {
            request_id: 7,
            sender,
            recipient: None,
            body: DhtBody::Ping,
        });
        all
    }

    #[test]
    fn every_message_round_trips_and_proves_its_sender() {
        let alice = identity(1);
        for message in messages(alice.node_id()) {
            let bytes = message.encode(&alice);
            assert!(bytes.len() <= DHT_DATAGRAM_BYTES_MAX);
            assert_eq!(DhtMessage::decode(&bytes), Ok(message));
        }
    }

    #[test]
    fn a_message_signed_by_another_key_is_a_forgery() {
        let alice = identity(1);
        let mallory = identity(2);
        let message = DhtMessage {
            request_id: 1,
            sender: mallory.node_id(),
            recipient: None,
            body: DhtBody::Ping,
        };
        let mut bytes = message.encode(&mallory);
        // Mallory claims to be Alice in the header but can only sign as herself.
        bytes[11..31].copy_from_slice(alice.node_id().0.as_slice());
        let error = DhtMessage::decode(&bytes).expect_err("forged");
        assert!(error.is_forgery(), "{error:?}");
        // Any altered byte of a signed datagram breaks its proof (or its parse).
        let good = messages(alice.node_id())[4].encode(&alice);
        for index in 0..good.len() {
            let mut bad = good.clone();
            bad[index] ^= 0x01;
            assert!(DhtMessage::decode(&bad).is_err(), "byte {index} flipped");
        }
    }

    #[test]
    fn malformed_datagrams_are_typed_errors() {
        let alice = identity(1);
        let ping = messages(alice.node_id())[0].encode(&alice);
        assert_eq!(DhtMessage::decode(&[]), Err(DhtWireError::BadMagic));
        let mut bad = ping.clone();
        bad[1] = 2;
        assert_eq!(
            DhtMessage::decode(&bad),
            Err(DhtWireError::UnsupportedVersion { version: 2 })
        );
        bad = ping.clone();
        bad[2] = 9;
        assert_eq!(
            DhtMessage::decode(&bad),
            Err(DhtWireError::UnknownKind { kind: 9 })
        );
        assert_eq!(
            DhtMessage::decode(&ping[..DHT_HEADER_BYTES + 10]),
            Err(DhtWireError::Truncated {
                field: "signature",
                needed: DHT_SIGNATURE_BYTES,
                remaining: 10
            })
        );
        let oversized = vec![DHT_MAGIC; DHT_DATAGRAM_BYTES_MAX + 1];
        assert!(matches!(
            DhtMessage::decode(&oversized),
            Err(DhtWireError::Oversized { .. })
        ));
        // A contact count beyond the bound is refused before anything is allocated.
        let mut nodes = messages(alice.node_id())[3].encode(&alice);
        nodes[DHT_HEADER_BYTES] = DHT_RESPONSE_NODES_MAX as u8 + 1;
        assert_eq!(
            DhtMessage::decode(&nodes),
            Err(DhtWireError::TooManyContacts {
                count: DHT_RESPONSE_NODES_MAX + 1,
                max: DHT_RESPONSE_NODES_MAX
            })
        );
        // A find-node must name its recipient.
        let mut find = messages(alice.node_id())[2].encode(&alice);
        find[31..51].fill(0);
        assert_eq!(
            DhtMessage::decode(&find),
            Err(DhtWireError::MissingRecipient {
                message: "find-node"
            })
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Random bytes, behind a valid header or not, never panic: they are a typed error.
        #[test]
        fn random_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..DHT_DATAGRAM_BYTES_MAX + 8),
            kind in 0u8..6,
            keep_header in any::<bool>(),
        ) {
            let mut datagram = bytes;
            if keep_header && datagram.len() >= 3 {
                datagram[0] = DHT_MAGIC;
                datagram[1] = DHT_WIRE_VERSION;
                datagram[2] = kind;
            }
            prop_assert!(DhtMessage::decode(&datagram).is_err());
        }

        /// Every truncation of every valid message is a typed error, never a panic.
        #[test]
        fn truncated_messages_are_errors(which in 0usize..6, cut in any::<prop::sample::Index>()) {
            let alice = identity(1);
            let bytes = messages(alice.node_id())[which].encode(&alice);
            let cut = cut.index(bytes.len());
            prop_assert!(DhtMessage::decode(&bytes[..cut]).is_err());
        }
    }
}
