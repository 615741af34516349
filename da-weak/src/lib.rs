//! da-weak
