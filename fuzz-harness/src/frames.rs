//! Netstack frames a peer sends outside KCP's own segments: resume-layer frames (inside a
//! session), relay frames and DHT datagrams (raw UDP).

use netstack::{
    dht::{DhtMessage, wire::DHT_DATAGRAM_BYTES_MAX},
    relay::wire::RelayFrame,
    resume::ResumeFrame,
};

/// The bytes as each frame kind.
pub fn fuzz(data: &[u8]) {
    if let Ok(frame) = ResumeFrame::decode(data) {
        assert_eq!(frame.encode(), data, "a resume frame has one encoding");
    }
    if let Ok(frame) = RelayFrame::decode(data) {
        let encoded = frame.encode();
        assert_eq!(encoded, data, "a relay frame has one encoding");
        assert_eq!(RelayFrame::decode(&encoded), Ok(frame));
    }
    // A DHT datagram is signed by its sender, whose key is not ours to re-sign it with: the
    // property is the bound, checked before anything else is read.
    if DhtMessage::decode(data).is_ok() {
        assert!(data.len() <= DHT_DATAGRAM_BYTES_MAX);
    }
}
