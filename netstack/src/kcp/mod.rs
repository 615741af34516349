//! The sans-IO KCP core: [`KcpSession`] wraps `kcp::Kcp` (message mode) and turns it into a
//! state machine fed `(now, input)` and drained with `poll_*`, as quinn-proto's `Connection`.
//!
//! It reads no clock, socket or thread and draws no randomness; the tokio driver
//! ([`crate::driver`]) and the simulator run the same code. Every datagram is checked
//! ([`KcpError`](crate::error::KcpError)) before `kcp` sees it, so hostile input is refused
//! rather than able to panic or poison the session.

mod config;
mod session;
mod wire;

#[cfg(test)]
mod tests;

pub use config::KcpConfig;
pub use session::{CloseReason, KcpSession, KcpStats};
pub use wire::conv_of;
