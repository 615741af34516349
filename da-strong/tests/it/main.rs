//! Integration tests of strong DA over QUIC on loopback (`cargo test -p da-strong --test it`).

mod binary;
mod committee;
