//! client-sdk
