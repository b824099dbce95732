//! The consumer: subscribes to a queue of `address.changed` events, applies each change
//! exactly once to its store, and acks only after the change is committed.

mod app;
pub mod config;
pub mod dead_letters;
pub mod handler;
mod http;
pub mod metrics;
pub mod outcome;
pub mod store;
pub mod worker;

pub use app::{Application, StartError};
pub use config::Config;
