//! Integration tests: the real gateway over real HTTP on loopback.

mod crash;
mod delivery;
mod harness;
mod ingest;
