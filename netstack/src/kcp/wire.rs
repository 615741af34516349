//! KCP's segment layout, read only to check a datagram before `kcp` sees it.
//!
//! `kcp` 0.6 trusts its input more than a network may: it compares sequence numbers and
//! timestamps by `i32` subtraction (which overflows, and panics in debug builds, for values
//! 2^31 apart) and computes `frg + 1` in `u8`. Every datagram is therefore checked here first,
//! against the bounds of [`Limits`]; a datagram that passes cannot reach those paths.

use crate::{
    constants::{KCP_ACK_AGE_MS_MAX, KCP_HEADER_BYTES, KCP_SEQUENCE_MAX},
    error::KcpError,
};

/// Push data.
pub(crate) const COMMAND_PUSH: u8 = 81;
/// Acknowledge one segment.
pub(crate) const COMMAND_ACK: u8 = 82;
/// Ask for the window size.
pub(crate) const COMMAND_WINDOW_ASK: u8 = 83;
/// Tell the window size.
pub(crate) const COMMAND_WINDOW_TELL: u8 = 84;

/// The conversation a datagram belongs to, if it is long enough to be a KCP segment.
///
/// Drivers use it to demultiplex datagrams to sessions before any session sees them.
pub fn conv_of(datagram: &[u8]) -> Option<u32> {
    if datagram.len() < KCP_HEADER_BYTES {
        return None;
    }
    let conv: [u8; 4] = datagram.get(0..4)?.try_into().ok()?;
    Some(u32::from_le_bytes(conv))
}

/// One segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub conv: u32,
    pub command: u8,
    pub fragment: u8,
    pub timestamp_ms: u32,
    pub sequence: u32,
    pub unacknowledged: u32,
    pub len: usize,
}

impl Header {
    fn read(bytes: &[u8; KCP_HEADER_BYTES]) -> Header {
        let u32_at = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        Header {
            conv: u32_at(0),
            command: bytes[4],
            fragment: bytes[5],
            timestamp_ms: u32_at(8),
            sequence: u32_at(12),
            unacknowledged: u32_at(16),
            len: u32_at(20) as usize,
        }
    }
}

/// What a datagram must satisfy to reach `kcp`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub conv: u32,
    pub datagram_bytes_max: usize,
    pub segment_bytes_max: usize,
    pub fragment_max: u8,
    pub clock_ms: u32,
}

/// What a checked datagram holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    pub segments: u32,
    /// The smallest sequence number among its push segments.
    pub push_sequence_min: Option<u32>,
}

/// Scans a datagram our own `kcp` wrote: whether it carries a push segment sent before (a
/// retransmission), given `next_new`, the first sequence number never sent; returns that too,
/// advanced past the pushes seen. Sequence numbers stay below
/// [`KCP_SEQUENCE_MAX`](crate::constants::KCP_SEQUENCE_MAX), so plain comparison is exact.
pub(crate) fn scan_pushes(datagram: &[u8], mut next_new: u32) -> (bool, u32) {
    let mut resent = false;
    let mut rest = datagram;
    while let Some((head, tail)) = rest.split_first_chunk::<KCP_HEADER_BYTES>() {
        let header = Header::read(head);
        if header.command == COMMAND_PUSH {
            if header.sequence < next_new {
                resent = true;
            } else {
                next_new = header.sequence.saturating_add(1);
            }
        }
        rest = tail.get(header.len..).unwrap_or_default();
    }
    (resent, next_new)
}

/// Checks every segment of `datagram` against `limits`.
pub(crate) fn check(datagram: &[u8], limits: &Limits) -> Result<Summary, KcpError> {
    if datagram.len() < KCP_HEADER_BYTES {
        return Err(KcpError::TooShort {
            len: datagram.len(),
            min: KCP_HEADER_BYTES,
        });
    }
    if datagram.len() > limits.datagram_bytes_max {
        return Err(KcpError::TooLong {
            len: datagram.len(),
            max: limits.datagram_bytes_max,
        });
    }
    let mut summary = Summary::default();
    let mut rest = datagram;
    while !rest.is_empty() {
        let Some((head, tail)) = rest.split_first_chunk::<KCP_HEADER_BYTES>() else {
            return Err(KcpError::TrailingBytes { count: rest.len() });
        };
        let header = Header::read(head);
        check_header(&header, limits)?;
        if header.len > tail.len() {
            return Err(KcpError::Truncated {
                declared: header.len,
                remaining: tail.len(),
            });
        }
        if header.command == COMMAND_PUSH {
            summary.push_sequence_min = Some(
                summary
                    .push_sequence_min
                    .map_or(header.sequence, |min| min.min(header.sequence)),
            );
        }
        summary.segments += 1;
        rest = &tail[header.len..];
    }
    Ok(summary)
}

fn check_header(header: &Header, limits: &Limits) -> Result<(), KcpError> {
    if header.conv != limits.conv {
        return Err(KcpError::ConvMismatch {
            expected: limits.conv,
            found: header.conv,
        });
    }
    if header.unacknowledged > KCP_SEQUENCE_MAX {
        return Err(KcpError::SequenceOutOfRange {
            field: "una",
            value: header.unacknowledged,
        });
    }
    match header.command {
        COMMAND_PUSH => {
            if header.len > limits.segment_bytes_max {
                return Err(KcpError::SegmentTooLarge {
                    len: header.len,
                    max: limits.segment_bytes_max,
                });
            }
            if header.fragment > limits.fragment_max {
                return Err(KcpError::FragmentOutOfRange {
                    fragment: header.fragment,
                    max: limits.fragment_max,
                });
            }
            check_sequence(header.sequence)
        }
        COMMAND_ACK => {
            let age_ms = limits.clock_ms.checked_sub(header.timestamp_ms);
            if age_ms.is_none_or(|age_ms| age_ms > KCP_ACK_AGE_MS_MAX) {
                return Err(KcpError::AckTimestampOutOfRange {
                    timestamp_ms: header.timestamp_ms,
                    clock_ms: limits.clock_ms,
                });
            }
            check_sequence(header.sequence)
        }
        // kcp reads neither sn nor ts of window probes.
        COMMAND_WINDOW_ASK | COMMAND_WINDOW_TELL => Ok(()),
        command => Err(KcpError::UnknownCommand { command }),
    }
}

fn check_sequence(sequence: u32) -> Result<(), KcpError> {
    if sequence > KCP_SEQUENCE_MAX {
        return Err(KcpError::SequenceOutOfRange {
            field: "sn",
            value: sequence,
        });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) fn encode_header(header: &Header, out: &mut Vec<u8>) {
    out.extend_from_slice(&header.conv.to_le_bytes());
    out.push(header.command);
    out.push(header.fragment);
    out.extend_from_slice(&256u16.to_le_bytes());
    out.extend_from_slice(&header.timestamp_ms.to_le_bytes());
    out.extend_from_slice(&header.sequence.to_le_bytes());
    out.extend_from_slice(&header.unacknowledged.to_le_bytes());
    out.extend_from_slice(&(header.len as u32).to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            conv: 7,
            datagram_bytes_max: 1400,
            segment_bytes_max: 1376,
            fragment_max: 119,
            clock_ms: 1_000,
        }
    }

    fn push(sequence: u32, len: usize) -> Vec<u8> {
        let header = Header {
            conv: 7,
            command: COMMAND_PUSH,
            fragment: 0,
            timestamp_ms: 5,
            sequence,
            unacknowledged: 0,
            len,
        };
        let mut out = Vec::new();
        encode_header(&header, &mut out);
        out.resize(out.len() + len, 0xAB);
        out
    }

    #[test]
    fn reads_conv_of_whole_headers_only() {
        assert_eq!(conv_of(&push(0, 0)), Some(7));
        assert_eq!(conv_of(&push(0, 0)[..23]), None);
        assert_eq!(conv_of(&[]), None);
    }

    #[test]
    fn accepts_well_formed_segments() {
        let mut datagram = push(3, 10);
        datagram.extend(push(1, 0));
        assert_eq!(
            check(&datagram, &limits()),
            Ok(Summary {
                segments: 2,
                push_sequence_min: Some(1)
            })
        );
    }

    #[test]
    fn refuses_what_would_overflow_kcp() {
        assert_eq!(
            check(&push(0x8000_0000, 0), &limits()),
            Err(KcpError::SequenceOutOfRange {
                field: "sn",
                value: 0x8000_0000
            })
        );
        let mut fragment = push(0, 0);
        fragment[5] = 255;
        assert!(matches!(
            check(&fragment, &limits()),
            Err(KcpError::FragmentOutOfRange { fragment: 255, .. })
        ));
        let mut ack = push(0, 0);
        ack[4] = COMMAND_ACK;
        ack[8..12].copy_from_slice(&2_000u32.to_le_bytes());
        assert!(matches!(
            check(&ack, &limits()),
            Err(KcpError::AckTimestampOutOfRange { .. })
        ));
    }

    #[test]
    fn refuses_malformed_layouts() {
        let mut truncated = push(0, 10);
        truncated.truncate(30);
        assert_eq!(
            check(&truncated, &limits()),
            Err(KcpError::Truncated {
                declared: 10,
                remaining: 6
            })
        );
        let mut trailing = push(0, 0);
        trailing.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            check(&trailing, &limits()),
            Err(KcpError::TrailingBytes { count: 3 })
        );
        let mut command = push(0, 0);
        command[4] = 99;
        assert_eq!(
            check(&command, &limits()),
            Err(KcpError::UnknownCommand { command: 99 })
        );
    }
}
