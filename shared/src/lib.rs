//! What the producer and the consumer share: the event contract, the broker topology, and
//! the plumbing (connection, configuration, HTTP, shutdown, logs) both services run on.

pub mod amqp;
pub mod config;
pub mod domain;
pub mod event;
pub mod http;
pub mod link;
pub mod message;
pub mod metrics;
pub mod queue_stats;
pub mod readiness;
pub mod redact;
pub mod shutdown;
pub mod sync_api;
pub mod telemetry;
pub mod topology;
pub mod trace_context;
