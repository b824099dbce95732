//! Where events go: the exchange, the queues and their bindings, declared from this one
//! definition by both services so that neither depends on the other having started first.
//!
//! The exchange has an alternate exchange, `<exchange>.unroutable`, whose only queue holds
//! nothing (`x-max-length` 0, `reject-publish`): a message no queue is bound for is routed
//! there and refused, so its publisher gets a `basic.nack` for exactly that message. That
//! keeps "unroutable" on the same per-message confirm as everything else, where a
//! `basic.return` could not be matched to its publish once many are in flight on a channel.
//!
//! For a work queue `Q` the consumer also declares `Q.dlq`, where messages that can never be
//! applied are kept for a person to look at, and one retry queue per delay, `Q.retry.<ms>ms`,
//! where a message that failed for a passing reason waits before going back to `Q`.

mod declare;
mod inspect;
mod names;

pub use declare::{DECLARE_WITHIN, DELIVERY_LIMIT, Declared};
pub use inspect::inspect_queue;

use crate::amqp::topic;
use std::time::Duration;

/// The topic exchange every change-of-circumstances event is published to.
pub const DEFAULT_EXCHANGE: &str = "customer.events";
/// The queue of the change-of-circumstances consumer, which the producer also declares so
/// that events are kept while no consumer has ever run.
pub const DEFAULT_QUEUE: &str = "change-of-circumstances";
/// Every address change, whatever the postcode area.
pub const DEFAULT_BINDING_KEY: &str = "address.changed.#";
/// Most messages a work queue holds before the broker refuses new ones.
pub const DEFAULT_MAX_LENGTH: u32 = 100_000;

/// What kind of queue the work queue and its dead-letter queue are (`QUEUE_TYPE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueType {
    /// Replicated on the cluster's nodes (Raft): a message the broker confirmed survives the
    /// loss of any minority of them. The default, and what RabbitMQ 4 recommends.
    #[default]
    Quorum,
    /// Kept on one node only. Declared without `x-queue-type`, exactly as versions before
    /// quorum queues declared it.
    Classic,
}

impl QueueType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quorum => "quorum",
            Self::Classic => "classic",
        }
    }
}

impl std::fmt::Display for QueueType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The broker objects one service needs. Declaring is idempotent, so every (re)connection
/// declares it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub exchange: String,
    pub queue: WorkQueue,
    /// The delays of the retry queues. Empty for the producer, which declares only what it
    /// needs to publish safely: the exchange and the work queue with its bindings.
    pub retry_delays: Vec<Duration>,
}

/// A durable queue, the routing-key patterns that bind it to the exchange, and its bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkQueue {
    pub name: String,
    pub binding_keys: Vec<String>,
    /// Beyond this many ready messages the broker refuses (nacks) new publishes instead of
    /// growing without limit: the producer turns that into a 503.
    pub max_length: u32,
    /// Of the work queue and its dead-letter queue. Retry queues are quorum queues always.
    pub queue_type: QueueType,
}

impl Topology {
    /// Whether this topology's work queue is bound for `routing_key`. When the broker
    /// refuses a message the producer publishes, this tells "its queue is full" (bound)
    /// from "no queue is bound for it" (as far as this service knows).
    pub fn binds(&self, routing_key: &str) -> bool {
        self.queue
            .binding_keys
            .iter()
            .any(|pattern| topic::matches(pattern, routing_key))
    }
}
