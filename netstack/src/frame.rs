//! Messages (frames) as the application sees them.
//!
//! KCP runs in message mode, so a session keeps message boundaries itself and no length prefix
//! is needed on the wire. What remains is the bound: every message is at most
//! [`MAX_MESSAGE_BYTES`] (or a session's smaller `message_bytes_max`) and never empty, since an
//! empty message is a keepalive that sessions swallow.

use crate::error::FrameError;

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

#[cfg(test)]
mod tests {
    use super::*;

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
