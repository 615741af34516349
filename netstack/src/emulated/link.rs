//! [`EmulatedLink`]: two network namespaces joined by TUN devices and a userspace forwarder that
//! runs [`LinkModel`].

use std::{
    fs::File,
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
        mpsc as std_mpsc,
    },
    thread::JoinHandle,
};

use nix::sched::{CloneFlags, setns};
use primitives::time::Instant;
use tokio::{runtime::Handle, sync::oneshot};
use tracing::{debug, trace, warn};
use tun_rs::{AsyncDevice, DeviceBuilder, SyncDevice};

use super::model::{Direction, LinkModel, LinkModelConfig, LinkStats};
use crate::{
    constants::{EMULATED_DEVICE_MTU, EMULATED_PACKET_BYTES_MAX},
    error::LinkError,
};

/// The address of namespace A's end of the link.
pub const ADDRESS_A: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
/// The address of namespace B's end of the link.
pub const ADDRESS_B: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
/// The prefix both addresses share.
const PREFIX_LEN: u8 = 24;
/// The TUN device's name inside each namespace.
const DEVICE_NAME: &str = "tun0";
/// Every namespace a link creates is named `{NAMESPACE_PREFIX}{pid}-{n}-{a|b}`.
const NAMESPACE_PREFIX: &str = "tickrate-link-";

static LINKS_STARTED: AtomicU64 = AtomicU64::new(0);

/// A packet-level link between two fresh network namespaces, A and B.
///
/// Each namespace holds one TUN device (`tun0`, [`ADDRESS_A`] or [`ADDRESS_B`] on a /24, MTU
/// 1500) and one thread with a current-thread tokio runtime whose sockets live in it
/// ([`side_a`](Self::side_a), [`side_b`](Self::side_b)). A forwarder thread reads every IP
/// packet from either device, passes it through a [`LinkModel`] (delay, loss, duplication,
/// reordering from a seed, bytes counted per protocol) and writes it to the other device. So
/// kernel TCP and UDP between the two sides cross exactly the same faults; no `netem` needed.
///
/// Needs root, `/dev/net/tun` and iproute2's `ip`. Dropping the link (also while unwinding
/// from a panic) stops its threads and deletes its namespaces; namespaces left by a process
/// that was killed are deleted by the next [`start`](Self::start).
pub struct EmulatedLink {
    // Fields drop in this order: the forwarder (and the devices it owns), the runtimes, then
    // the namespaces.
    forwarder: Worker,
    side_a: NamespaceRuntime,
    side_b: NamespaceRuntime,
    stats: Arc<Mutex<LinkStats>>,
    _namespaces: [Namespace; 2],
}

impl std::fmt::Debug for EmulatedLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatedLink")
            .field("namespaces", &self._namespaces)
            .finish_non_exhaustive()
    }
}

impl EmulatedLink {
    /// Creates the namespaces and devices and starts the forwarder with `config`.
    pub fn start(config: LinkModelConfig) -> Result<EmulatedLink, LinkError> {
        let model = LinkModel::new(config)?;
        remove_stale_namespaces(NAMESPACE_PREFIX);
        let pid = std::process::id();
        let index = LINKS_STARTED.fetch_add(1, Ordering::Relaxed);
        let namespace_a = Namespace::create(format!("{NAMESPACE_PREFIX}{pid}-{index}-a"))?;
        let namespace_b = Namespace::create(format!("{NAMESPACE_PREFIX}{pid}-{index}-b"))?;
        let (side_a, device_a) = NamespaceRuntime::start(&namespace_a, "link-side-a", true)?;
        let (side_b, device_b) = NamespaceRuntime::start(&namespace_b, "link-side-b", true)?;
        let (Some(device_a), Some(device_b)) = (device_a, device_b) else {
            return Err(LinkError::ThreadStopped("link-side"));
        };
        for (namespace, address) in [(&namespace_a, ADDRESS_A), (&namespace_b, ADDRESS_B)] {
            namespace.ip(&["link", "set", "lo", "up"])?;
            let address = format!("{address}/{PREFIX_LEN}");
            namespace.ip(&["addr", "add", &address, "dev", DEVICE_NAME])?;
            namespace.ip(&["link", "set", DEVICE_NAME, "up"])?;
        }
        let stats = Arc::new(Mutex::new(LinkStats::default()));
        let forwarder = Forwarder {
            model,
            stats: stats.clone(),
        }
        .start(device_a, device_b)?;
        debug!(target: "netstack::emulated", a = namespace_a.name, b = namespace_b.name, "link up");
        Ok(EmulatedLink {
            forwarder,
            side_a,
            side_b,
            stats,
            _namespaces: [namespace_a, namespace_b],
        })
    }

    /// Namespace A's runtime: spawn clients and servers here to put their sockets in A.
    pub fn side_a(&self) -> &NamespaceRuntime {
        &self.side_a
    }

    /// Namespace B's runtime.
    pub fn side_b(&self) -> &NamespaceRuntime {
        &self.side_b
    }

    /// Namespace A's address on the link.
    pub fn address_a(&self) -> IpAddr {
        IpAddr::V4(ADDRESS_A)
    }

    /// Namespace B's address on the link.
    pub fn address_b(&self) -> IpAddr {
        IpAddr::V4(ADDRESS_B)
    }

    /// The names of namespaces A and B (as `ip netns list` shows them).
    pub fn namespaces(&self) -> [&str; 2] {
        [&self._namespaces[0].name, &self._namespaces[1].name]
    }

    /// The forwarder's counters so far.
    pub fn stats(&self) -> LinkStats {
        *self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the forwarder still runs (it stops only on a device error, or with the link).
    pub fn is_running(&self) -> bool {
        self.forwarder
            .thread
            .as_ref()
            .is_some_and(|thread| !thread.is_finished())
    }
}

/// A network namespace made with `ip netns add`, deleted when dropped.
#[derive(Debug)]
pub(super) struct Namespace {
    pub(super) name: String,
}

impl Namespace {
    pub(super) fn create(name: String) -> Result<Namespace, LinkError> {
        ip(&["netns", "add", &name])?;
        Ok(Namespace { name })
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    pub(super) fn ip(&self, arguments: &[&str]) -> Result<(), LinkError> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(arguments);
        ip(&all)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Err(error) = ip(&["netns", "del", &self.name]) {
            warn!(target: "netstack::emulated", namespace = self.name, %error, "namespace left behind");
        }
    }
}

/// Runs `ip` with `arguments`.
fn ip(arguments: &[&str]) -> Result<(), LinkError> {
    let output = Command::new("ip")
        .args(arguments)
        .output()
        .map_err(|source| LinkError::Io {
            context: "running ip (iproute2)".into(),
            source,
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(LinkError::Command {
            arguments: arguments.join(" "),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

/// Deletes namespaces named `{prefix}{pid}-..` whose process is gone (killed before it could
/// clean up).
pub(super) fn remove_stale_namespaces(prefix: &str) {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or_default();
        if !pid.is_empty() && !PathBuf::from("/proc").join(pid).exists() {
            debug!(target: "netstack::emulated", namespace = name, "removing a stale namespace");
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// A thread with its own stopping signal, joined when dropped.
struct Worker {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            warn!(target: "netstack::emulated", "a link thread panicked");
        }
    }
}

/// A thread inside one namespace running a current-thread tokio runtime: every socket its
/// tasks open belongs to that namespace. Tasks end when the link is dropped.
pub struct NamespaceRuntime {
    handle: Handle,
    _worker: Worker,
}

impl std::fmt::Debug for NamespaceRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamespaceRuntime").finish_non_exhaustive()
    }
}

impl NamespaceRuntime {
    /// Starts the thread, enters `namespace` and, if `tun`, creates its TUN device there.
    pub(super) fn start(
        namespace: &Namespace,
        label: &'static str,
        tun: bool,
    ) -> Result<(NamespaceRuntime, Option<SyncDevice>), LinkError> {
        let path = namespace.path();
        let (ready, started) = std_mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(label.into())
            .spawn(move || {
                let runtime = match enter_and_build(&path, tun) {
                    Ok((runtime, device)) => {
                        let _ = ready.send(Ok((runtime.handle().clone(), device)));
                        runtime
                    }
                    Err(error) => {
                        let _ = ready.send(Err(error));
                        return;
                    }
                };
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })
            .map_err(|source| LinkError::Io {
                context: format!("spawning {label}"),
                source,
            })?;
        let worker = Worker {
            stop: Some(stop),
            thread: Some(thread),
        };
        let (handle, device) = started
            .recv()
            .map_err(|_| LinkError::ThreadStopped(label))??;
        Ok((
            NamespaceRuntime {
                handle,
                _worker: worker,
            },
            device,
        ))
    }

    /// Runs `future` on this namespace's runtime.
    pub fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(future)
    }

    /// The runtime's handle.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

/// Moves the calling thread into the namespace at `path`, creates the TUN device there if
/// `tun`, and builds the thread's runtime.
fn enter_and_build(
    path: &Path,
    tun: bool,
) -> Result<(tokio::runtime::Runtime, Option<SyncDevice>), LinkError> {
    let file = File::open(path).map_err(|source| LinkError::Io {
        context: format!("opening {}", path.display()),
        source,
    })?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|errno| LinkError::Io {
        context: format!("entering {}", path.display()),
        source: errno.into(),
    })?;
    // TUNSETIFF creates the device in the calling thread's namespace.
    let device = if tun {
        let device = DeviceBuilder::new()
            .name(DEVICE_NAME)
            .mtu(EMULATED_DEVICE_MTU)
            .build_sync()
            .map_err(|source| LinkError::Io {
                context: "creating the TUN device".into(),
                source,
            })?;
        Some(device)
    } else {
        None
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| LinkError::Io {
            context: "building a namespace runtime".into(),
            source,
        })?;
    Ok((runtime, device))
}

/// The forwarder: both devices, one model, on its own thread.
struct Forwarder {
    model: LinkModel,
    stats: Arc<Mutex<LinkStats>>,
}

impl Forwarder {
    fn start(self, device_a: SyncDevice, device_b: SyncDevice) -> Result<Worker, LinkError> {
        let (ready, started) = std_mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("link-forwarder".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(source) => {
                        let _ = ready.send(Err(LinkError::Io {
                            context: "building the forwarder runtime".into(),
                            source,
                        }));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let devices = AsyncDevice::new(device_a)
                        .and_then(|a| Ok((a, AsyncDevice::new(device_b)?)))
                        .map_err(|source| LinkError::Io {
                            context: "registering the TUN devices".into(),
                            source,
                        });
                    match devices {
                        Ok(devices) => {
                            let _ = ready.send(Ok(()));
                            self.run(devices, stopped).await;
                        }
                        Err(error) => {
                            let _ = ready.send(Err(error));
                        }
                    }
                });
            })
            .map_err(|source| LinkError::Io {
                context: "spawning the forwarder".into(),
                source,
            })?;
        let worker = Worker {
            stop: Some(stop),
            thread: Some(thread),
        };
        started
            .recv()
            .map_err(|_| LinkError::ThreadStopped("link-forwarder"))??;
        Ok(worker)
    }

    async fn run(
        mut self,
        devices: (AsyncDevice, AsyncDevice),
        mut stopped: oneshot::Receiver<()>,
    ) {
        let (device_a, device_b) = devices;
        let epoch = tokio::time::Instant::now();
        let now =
            || Instant::from_micros(u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX));
        let mut buffer_a = vec![0u8; EMULATED_PACKET_BYTES_MAX];
        let mut buffer_b = vec![0u8; EMULATED_PACKET_BYTES_MAX];
        loop {
            let deadline = self
                .model
                .poll_timeout()
                .map(|at| epoch + std::time::Duration::from_micros(at.as_micros()));
            tokio::select! {
                biased;
                _ = &mut stopped => break,
                received = device_a.recv(&mut buffer_a) => match received {
                    Ok(len) => self.model.handle_packet(now(), Direction::AToB, buffer_a.get(..len).unwrap_or_default()),
                    Err(error) => {
                        warn!(target: "netstack::emulated", %error, "reading device A failed; forwarder stops");
                        break;
                    }
                },
                received = device_b.recv(&mut buffer_b) => match received {
                    Ok(len) => self.model.handle_packet(now(), Direction::BToA, buffer_b.get(..len).unwrap_or_default()),
                    Err(error) => {
                        warn!(target: "netstack::emulated", %error, "reading device B failed; forwarder stops");
                        break;
                    }
                },
                () = sleep_until(deadline), if deadline.is_some() => {}
            }
            while let Some((direction, packet)) = self.model.poll_release(now()) {
                let device = match direction {
                    Direction::AToB => &device_b,
                    Direction::BToA => &device_a,
                };
                if let Err(error) = device.send(&packet).await {
                    // As a real link would, lose it.
                    trace!(target: "netstack::emulated", %error, "writing a packet failed");
                }
            }
            *self.stats.lock().unwrap_or_else(PoisonError::into_inner) = self.model.stats();
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
