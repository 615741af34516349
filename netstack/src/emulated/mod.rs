//! Test support for transport benchmarks (feature `emulated-link`, Linux, root): a packet-level
//! emulated link between two network namespaces, as DESIGN.md's "How we measure" asks.
//!
//! The kernel here has no `netem`, and a UDP proxy cannot drop a kernel TCP segment, so a fair
//! KCP-vs-TCP comparison needs both on one link below the transport: [`EmulatedLink`] joins two
//! namespaces with TUN devices and a userspace forwarder. What the forwarder does to each IP
//! packet is [`LinkModel`], a sans-IO state machine drawing every decision from a seeded RNG
//! stream per (direction, protocol), so a seed's decisions can be replayed with [`Fate`].

mod link;
mod model;

pub use link::{ADDRESS_A, ADDRESS_B, EmulatedLink, NamespaceRuntime};
pub use model::{ClassStats, Direction, Fate, LinkModel, LinkModelConfig, LinkStats, Protocol};
