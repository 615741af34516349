//! Messages (frames) as the application sees them.
//!
//! KCP runs in message mode, so a session keeps message boundaries itself and no length prefix
//! is needed on the wire. What remains is the bound: every message is at most
//! [`MAX_MESSAGE_BYTES`] (or a session's smaller `message_bytes_max`) and never empty, since an
//! empty message is a keepalive that sessions swallow.
//!
//! A node link that carries messages larger than one KCP message (PBFT view changes, group
//! slices) splits each into fragments `[FRAGMENT_VERSION, MORE | LAST, bytes..]` with
//! [`split`]; KCP keeps them in order, so the receiver's [`Reassembly`] joins consecutive
//! fragments up to a bound of its own.

use crate::error::{FragmentError, FrameError};

pub use crate::constants::MAX_MESSAGE_BYTES;

/// Checks a message of `len` bytes against the bound `max`.
pub fn check_message_len(len: usize, max: usize) -> Result<(), FrameError> {
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max {
        return Err(FrameError::Oversized { len, max });
    }
    Ok(())
}

/// KCP segments a message of `len` bytes takes at segment size `mss` (at least one).
pub fn fragments_of(len: usize, mss: usize) -> usize {
    assert!(mss > 0, "a segment size is never zero");
    len.div_ceil(mss).max(1)
}

/// The version byte of every fragment.
pub const FRAGMENT_VERSION: u8 = 1;
/// Kind byte: more fragments of the message follow.
pub const MORE: u8 = 1;
/// Kind byte: the fragment ends its message.
pub const LAST: u8 = 2;
/// Bytes of a fragment before its payload.
pub const FRAGMENT_HEADER_BYTES: usize = 2;

/// Splits `message` into the fragments that carry it, each at most `max` bytes (more than
/// [`FRAGMENT_HEADER_BYTES`]); an empty message is one empty `LAST` fragment.
pub fn split(message: &[u8], max: usize) -> Vec<Vec<u8>> {
    assert!(
        max > FRAGMENT_HEADER_BYTES,
        "a fragment carries a byte at least"
    );
    let payload_max = max - FRAGMENT_HEADER_BYTES;
    let count = message.len().div_ceil(payload_max).max(1);
    (0..count)
        .map(|index| {
            let start = index * payload_max;
            let end = (start + payload_max).min(message.len());
            let kind = if index + 1 == count { LAST } else { MORE };
            let mut fragment = Vec::with_capacity(FRAGMENT_HEADER_BYTES + end - start);
            fragment.extend_from_slice(&[FRAGMENT_VERSION, kind]);
            fragment.extend_from_slice(&message[start..end]);
            fragment
        })
        .collect()
}

/// Joins the fragments of one session's messages, refusing a message over its bound before
/// buffering it.
#[derive(Debug)]
pub struct Reassembly {
    partial: Vec<u8>,
    max: usize,
}

impl Reassembly {
    /// A reassembly of messages of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Reassembly {
            partial: Vec::new(),
            max,
        }
    }

    /// Takes the next fragment; returns a whole message when it ends one. After an error the
    /// session is to be dropped: what was buffered is not a message.
    pub fn push(&mut self, fragment: &[u8]) -> Result<Option<Vec<u8>>, FragmentError> {
        let (kind, payload) = match fragment {
            [FRAGMENT_VERSION, kind @ (MORE | LAST), payload @ ..] => (*kind, payload),
            [version, kind, ..] => {
                return Err(FragmentError::UnknownFrame {
                    version: *version,
                    kind: *kind,
                });
            }
            _ => return Err(FragmentError::Truncated),
        };
        if self.partial.len() + payload.len() > self.max {
            return Err(FragmentError::TooLarge { max: self.max });
        }
        self.partial.extend_from_slice(payload);
        Ok((kind == LAST).then(|| std::mem::take(&mut self.partial)))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn fragments_reassemble_into_the_message() {
        for len in [0usize, 1, 100, 998, 999, 1000, 5_000] {
            let message: Vec<u8> = (0..len).map(|index| index as u8).collect();
            let mut assembly = Reassembly::new(1 << 20);
            let parts = split(&message, 1000);
            assert_eq!(parts.len(), len.div_ceil(998).max(1));
            let mut out = None;
            for (index, part) in parts.iter().enumerate() {
                assert!(part.len() <= 1000);
                let got = assembly.push(part).expect("well formed");
                assert_eq!(got.is_some(), index + 1 == parts.len());
                out = out.or(got);
            }
            assert_eq!(out, Some(message));
        }
    }

    #[test]
    fn bad_fragments_are_refused() {
        let mut assembly = Reassembly::new(100_000);
        assert_eq!(
            assembly.push(&[FRAGMENT_VERSION]),
            Err(FragmentError::Truncated)
        );
        assert_eq!(assembly.push(&[]), Err(FragmentError::Truncated));
        assert_eq!(
            assembly.push(&[9, LAST, 1]),
            Err(FragmentError::UnknownFrame {
                version: 9,
                kind: LAST
            })
        );
        assert_eq!(
            assembly.push(&[FRAGMENT_VERSION, 0, 1]),
            Err(FragmentError::UnknownFrame {
                version: FRAGMENT_VERSION,
                kind: 0
            })
        );
        let mut frame = vec![FRAGMENT_VERSION, MORE];
        frame.extend_from_slice(&[0u8; 30_000]);
        let refused = (0..4).find_map(|_| assembly.push(&frame).err());
        assert_eq!(refused, Some(FragmentError::TooLarge { max: 100_000 }));
    }

    proptest! {
        /// Any bytes fed as fragments give a message, nothing yet, or a typed refusal, and a
        /// message never exceeds the bound.
        #[test]
        fn arbitrary_fragments_never_panic(
            fragments in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..32)
        ) {
            let mut assembly = Reassembly::new(256);
            for fragment in &fragments {
                match assembly.push(fragment) {
                    Ok(Some(message)) => prop_assert!(message.len() <= 256),
                    Ok(None) => {}
                    Err(_) => break,
                }
            }
        }
    }

    #[test]
    fn refuses_empty_and_oversized() {
        assert_eq!(check_message_len(0, 10), Err(FrameError::Empty));
        assert_eq!(check_message_len(10, 10), Ok(()));
        assert_eq!(
            check_message_len(11, 10),
            Err(FrameError::Oversized { len: 11, max: 10 })
        );
    }

    #[test]
    fn counts_fragments() {
        assert_eq!(fragments_of(0, 100), 1);
        assert_eq!(fragments_of(100, 100), 1);
        assert_eq!(fragments_of(101, 100), 2);
    }
}
