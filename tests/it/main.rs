//! Integration tests: the real gateway over real HTTP on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod crash;
mod delivery;
mod harness;
mod hostile;
mod ingest;
mod reorder;
mod torture;
