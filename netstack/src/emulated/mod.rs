//! Test support for transport benchmarks and multi-host tests (feature `emulated-link`, Linux,
//! root).
//!
//! [`EmulatedLink`] is a packet-level emulated link between two network namespaces, as
//! DESIGN.md's "How we measure" asks. The kernel here has no `netem`, and a UDP proxy cannot
//! drop a kernel TCP segment, so a fair KCP-vs-TCP comparison needs both on one link below the
//! transport: it joins two namespaces with TUN devices and a userspace forwarder. What the
//! forwarder does to each IP packet is [`LinkModel`], a sans-IO state machine drawing every
//! decision from a seeded RNG stream per (direction, protocol), so a seed's decisions can be
//! replayed with [`Fate`].
//!
//! [`RelayNetwork`] is three namespaces on veth pairs, A — R — B, where A and B cannot route to
//! each other: the setting of the relay test.

mod link;
mod model;
mod relay_net;

pub use link::{ADDRESS_A, ADDRESS_B, EmulatedLink, NamespaceRuntime};
pub use model::{ClassStats, Direction, Fate, LinkModel, LinkModelConfig, LinkStats, Protocol};
pub use relay_net::{RELAY_NET_A, RELAY_NET_B, RELAY_NET_R_A, RELAY_NET_R_B, RelayNetwork};
