//! Integration tests of weak DA, built as one binary (`cargo test -p da-weak --test it`).

mod s3;
