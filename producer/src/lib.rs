//! The producer: an HTTP API that turns change-of-address requests into `address.changed`
//! events on RabbitMQ, answering 202 only once the broker has confirmed each one.

mod app;
pub mod config;
pub mod consumer_client;
mod error;
mod extract;
mod idempotency;
pub mod metrics;
pub mod publisher;
pub mod routes;

pub use app::Application;
pub use config::Config;
pub use error::ApiError;
pub use idempotency::IdempotencyKey;
