//! The kit every test and the benchmark are written with: find a broker (or PostgreSQL),
//! give each test its own exchange and queue names (removed afterwards), build events and
//! requests, start a service's binary as a process, inject faults, and wait for things with
//! a deadline instead of sleeping.
//!
//! It depends on `shared` and on no service. The producer's and the consumer's own tests
//! use it, and a kit that depended on them would be built again as a second copy of each
//! for their tests (a cycle through dev-dependencies), with types that do not match the
//! crate under test. What needs a service's types (its configuration, a service started
//! in-process) lives in `e2e`, on top of this kit.

pub mod broker;
pub mod cluster;
pub mod env;
pub mod events;
pub mod faults;
pub mod postgres;
pub mod process;
pub mod tls;
pub mod wait;

pub use env::TestEnv;
pub use events::{address_changed, change_of_address};
pub use wait::eventually;

/// How long a test waits for anything the system does by itself (a drain, a reconnection)
/// before it fails.
pub const WITHIN: std::time::Duration = std::time::Duration::from_secs(20);
