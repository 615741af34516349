//! da-strong
