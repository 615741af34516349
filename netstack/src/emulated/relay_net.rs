//! [`RelayNetwork`]: three hosts in network namespaces where A and B each reach only R.

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::atomic::{AtomicU64, Ordering},
};

use tracing::debug;

use super::link::{Namespace, NamespaceRuntime, remove_stale_namespaces};
use crate::error::LinkError;

/// Host A's address, on R's first network (10.77.1.0/24).
pub const RELAY_NET_A: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 2);
/// R's address on A's network.
pub const RELAY_NET_R_A: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 1);
/// R's address on B's network.
pub const RELAY_NET_R_B: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 1);
/// Host B's address, on R's second network (10.77.2.0/24).
pub const RELAY_NET_B: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 2);
/// Every namespace a relay network creates is named `{RELAY_NET_PREFIX}{pid}-{n}-{a|r|b}`;
/// distinct from the emulated link's, so the two never collide or clean up each other's.
const RELAY_NET_PREFIX: &str = "tickrate-relaynet-";

static NETWORKS_STARTED: AtomicU64 = AtomicU64::new(0);

/// Three network namespaces joined by veth pairs: A — R — B.
///
/// A sits on 10.77.1.0/24 with R, B on 10.77.2.0/24 with R, and R does not forward between
/// them (a new namespace starts with IP forwarding off), so A and B cannot route to each other:
/// a datagram from A to B fails with "network unreachable". Each namespace has a thread with a
/// current-thread tokio runtime whose sockets live there ([`host_a`](Self::host_a),
/// [`host_r`](Self::host_r), [`host_b`](Self::host_b)).
///
/// Needs root and iproute2's `ip`. Dropping it (also while unwinding from a panic) stops the
/// runtimes and deletes the namespaces, and the veth pairs with them; namespaces left by a
/// killed process are deleted by the next [`start`](Self::start).
pub struct RelayNetwork {
    // Fields drop in this order: the runtimes, then the namespaces.
    host_a: NamespaceRuntime,
    host_r: NamespaceRuntime,
    host_b: NamespaceRuntime,
    namespaces: [Namespace; 3],
}

impl std::fmt::Debug for RelayNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayNetwork")
            .field("namespaces", &self.namespaces)
            .finish_non_exhaustive()
    }
}

impl RelayNetwork {
    /// Creates the namespaces, links and addresses, and starts one runtime in each.
    pub fn start() -> Result<RelayNetwork, LinkError> {
        remove_stale_namespaces(RELAY_NET_PREFIX);
        let pid = std::process::id();
        let index = NETWORKS_STARTED.fetch_add(1, Ordering::Relaxed);
        let name = |host: &str| format!("{RELAY_NET_PREFIX}{pid}-{index}-{host}");
        // Each namespace is owned as soon as it exists, so an error below deletes it.
        let ns_a = Namespace::create(name("a"))?;
        let ns_r = Namespace::create(name("r"))?;
        let ns_b = Namespace::create(name("b"))?;
        // veth pairs made inside the namespaces: no interface name in the root namespace.
        ns_a.ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "eth-a", "netns", &ns_r.name,
        ])?;
        ns_b.ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "eth-b", "netns", &ns_r.name,
        ])?;
        let plan: [(&Namespace, &str, Ipv4Addr); 4] = [
            (&ns_a, "eth0", RELAY_NET_A),
            (&ns_r, "eth-a", RELAY_NET_R_A),
            (&ns_r, "eth-b", RELAY_NET_R_B),
            (&ns_b, "eth0", RELAY_NET_B),
        ];
        for namespace in [&ns_a, &ns_r, &ns_b] {
            namespace.ip(&["link", "set", "lo", "up"])?;
        }
        for (namespace, device, address) in plan {
            namespace.ip(&["addr", "add", &format!("{address}/24"), "dev", device])?;
            namespace.ip(&["link", "set", device, "up"])?;
        }
        let (host_a, _) = NamespaceRuntime::start(&ns_a, "relaynet-a", false)?;
        let (host_r, _) = NamespaceRuntime::start(&ns_r, "relaynet-r", false)?;
        let (host_b, _) = NamespaceRuntime::start(&ns_b, "relaynet-b", false)?;
        debug!(target: "netstack::emulated", a = ns_a.name, r = ns_r.name, b = ns_b.name, "relay network up");
        Ok(RelayNetwork {
            host_a,
            host_r,
            host_b,
            namespaces: [ns_a, ns_r, ns_b],
        })
    }

    /// Host A's runtime: sockets opened by its tasks are in A.
    pub fn host_a(&self) -> &NamespaceRuntime {
        &self.host_a
    }

    /// Host R's runtime (R has an address on both networks).
    pub fn host_r(&self) -> &NamespaceRuntime {
        &self.host_r
    }

    /// Host B's runtime.
    pub fn host_b(&self) -> &NamespaceRuntime {
        &self.host_b
    }

    /// A's address.
    pub fn address_a(&self) -> IpAddr {
        IpAddr::V4(RELAY_NET_A)
    }

    /// B's address.
    pub fn address_b(&self) -> IpAddr {
        IpAddr::V4(RELAY_NET_B)
    }

    /// R's address as A reaches it.
    pub fn address_r_from_a(&self) -> IpAddr {
        IpAddr::V4(RELAY_NET_R_A)
    }

    /// R's address as B reaches it.
    pub fn address_r_from_b(&self) -> IpAddr {
        IpAddr::V4(RELAY_NET_R_B)
    }

    /// The names of namespaces A, R and B (as `ip netns list` shows them).
    pub fn namespaces(&self) -> [&str; 3] {
        [
            &self.namespaces[0].name,
            &self.namespaces[1].name,
            &self.namespaces[2].name,
        ]
    }
}
