//! Tuning of a KCP session.

use std::time::Duration;

use crate::{
    constants::{
        KCP_FRAGMENTS_MAX, KCP_HEADER_BYTES, KCP_IDLE_TIMEOUT_DEFAULT, KCP_INTERVAL_MS_DEFAULT,
        KCP_KEEPALIVE_INTERVAL_DEFAULT, KCP_MTU_DEFAULT, KCP_MTU_MAX, KCP_MTU_MIN,
        KCP_SEND_QUEUE_SEGMENTS_MAX, MAX_MESSAGE_BYTES,
    },
    error::ConfigError,
    frame::fragments_of,
};

/// How a [`super::KcpSession`] behaves. Both ends of a conversation must agree on `mtu` and
/// `message_bytes_max`: a session refuses segments and messages larger than its own.
///
/// The default is tuned for games: no delay, fast resend after 2 duplicate acks, no congestion
/// window, 256-segment windows, a 5 ms flush interval, and retransmissions sent twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KcpConfig {
    /// KCP's no-delay mode: a 30 ms minimum RTO and gentler backoff.
    pub nodelay: bool,
    /// Flush interval in milliseconds: the longest an acknowledgement, fast retransmission or
    /// window update waits. Sends flush at once. (The session drives flushes itself, so values
    /// below `kcp`'s own 10 ms floor take effect.)
    pub interval_ms: u32,
    /// Duplicate acknowledgements that trigger a fast retransmission (0 disables it).
    pub fast_resend: u32,
    /// KCP's congestion window; off for games, where latency beats fairness.
    pub congestion_control: bool,
    /// Send every datagram that carries a retransmission twice. A lost segment has already
    /// cost at least one round trip; losing its retransmission too costs a backed-off RTO
    /// more, the tail of the latency distribution. Costs about the loss rate in extra bytes.
    pub duplicate_retransmissions: bool,
    /// Send window, in segments.
    pub send_window: u16,
    /// Receive window, in segments (`kcp` raises it to at least 128).
    pub receive_window: u16,
    /// Largest datagram sent, header included.
    pub mtu: usize,
    /// Largest message carried.
    pub message_bytes_max: usize,
    /// Segments the send queue and send buffer may hold before `send` refuses.
    pub send_queue_segments_max: usize,
    /// Transmissions of one segment after which the link is declared dead.
    pub dead_link_transmissions: u32,
    /// Time without any valid datagram from the peer after which the session closes.
    pub idle_timeout: Duration,
    /// Time without sending anything after which the session sends a keepalive (an empty
    /// message the peer acknowledges), so a quiet but live peer is not taken for dead.
    pub keepalive_interval: Duration,
}

impl Default for KcpConfig {
    fn default() -> Self {
        KcpConfig {
            nodelay: true,
            interval_ms: KCP_INTERVAL_MS_DEFAULT,
            fast_resend: 2,
            congestion_control: false,
            duplicate_retransmissions: true,
            send_window: 256,
            receive_window: 256,
            mtu: KCP_MTU_DEFAULT,
            message_bytes_max: MAX_MESSAGE_BYTES,
            send_queue_segments_max: KCP_SEND_QUEUE_SEGMENTS_MAX,
            dead_link_transmissions: 20,
            idle_timeout: KCP_IDLE_TIMEOUT_DEFAULT,
            keepalive_interval: KCP_KEEPALIVE_INTERVAL_DEFAULT,
        }
    }
}

impl KcpConfig {
    /// Payload bytes of one segment.
    pub fn segment_bytes_max(&self) -> usize {
        self.mtu.saturating_sub(KCP_HEADER_BYTES)
    }

    /// Segments the largest message takes.
    pub fn message_fragments_max(&self) -> usize {
        fragments_of(self.message_bytes_max, self.segment_bytes_max().max(1))
    }

    /// The configuration for sessions whose datagrams grow by `overhead_bytes` on the way to
    /// the socket (the secure layer's seal): the MTU shrinks by that much, so what goes on the
    /// wire still fits in `mtu`. Both ends derive it alike, so they still agree on the MTU.
    pub fn with_datagram_overhead(&self, overhead_bytes: usize) -> Result<KcpConfig, ConfigError> {
        let mtu = self
            .mtu
            .checked_sub(overhead_bytes)
            .ok_or(ConfigError::OutOfRange {
                field: "mtu",
                value: self.mtu as u64,
                min: overhead_bytes as u64,
                max: KCP_MTU_MAX as u64,
            })?;
        let inner = KcpConfig {
            mtu,
            ..self.clone()
        };
        inner.validate()?;
        Ok(inner)
    }

    /// Checks that every field is in range and the fields agree.
    pub fn validate(&self) -> Result<(), ConfigError> {
        range(
            "mtu",
            self.mtu as u64,
            KCP_MTU_MIN as u64,
            KCP_MTU_MAX as u64,
        )?;
        range("interval_ms", self.interval_ms.into(), 1, 5_000)?;
        range("send_window", self.send_window.into(), 1, u16::MAX.into())?;
        range(
            "receive_window",
            self.receive_window.into(),
            1,
            u16::MAX.into(),
        )?;
        range(
            "dead_link_transmissions",
            self.dead_link_transmissions.into(),
            2,
            1_000,
        )?;
        let message_max = (KCP_FRAGMENTS_MAX * self.segment_bytes_max()) as u64;
        range(
            "message_bytes_max",
            self.message_bytes_max as u64,
            1,
            message_max,
        )?;
        range(
            "send_queue_segments_max",
            self.send_queue_segments_max as u64,
            self.message_fragments_max() as u64,
            1 << 20,
        )?;
        if self.keepalive_interval.is_zero() {
            return Err(ConfigError::Inconsistent("keepalive_interval is zero"));
        }
        if self.idle_timeout <= self.keepalive_interval {
            return Err(ConfigError::Inconsistent(
                "idle_timeout must exceed keepalive_interval",
            ));
        }
        Ok(())
    }
}

fn range(field: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            field,
            value,
            min,
            max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_game_tuned() {
        let config = KcpConfig::default();
        assert_eq!(config.validate(), Ok(()));
        assert!(config.nodelay && !config.congestion_control);
        assert!(config.interval_ms <= 5);
        assert!(config.duplicate_retransmissions);
        assert_eq!(config.fast_resend, 2);
        assert_eq!((config.send_window, config.receive_window), (256, 256));
        assert_eq!(config.mtu, 1400);
    }

    #[test]
    fn overhead_shrinks_the_mtu_and_keeps_the_default_message_bound() {
        let config = KcpConfig::default();
        let inner = config
            .with_datagram_overhead(25)
            .expect("default leaves room");
        assert_eq!(inner.mtu, config.mtu - 25);
        assert_eq!(inner.message_bytes_max, config.message_bytes_max);
        assert!(matches!(
            config.with_datagram_overhead(config.mtu + 1),
            Err(ConfigError::OutOfRange { field: "mtu", .. })
        ));
        let tight = KcpConfig {
            mtu: KCP_MTU_MIN,
            message_bytes_max: 1_000,
            ..KcpConfig::default()
        };
        assert!(matches!(
            tight.with_datagram_overhead(25),
            Err(ConfigError::OutOfRange { field: "mtu", .. })
        ));
    }

    #[test]
    fn refuses_messages_beyond_the_fragment_limit() {
        let config = KcpConfig {
            mtu: 500,
            ..KcpConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::OutOfRange {
                field: "message_bytes_max",
                ..
            })
        ));
    }
}
