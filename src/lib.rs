//! hookgate: a hardened webhook receiver gateway.
pub mod clock;
pub mod field;
pub mod secret;
pub mod verify;
