//! Delivery tests (forward side).
