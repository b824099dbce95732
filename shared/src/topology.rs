//! Where events go: the exchange, the queues and their bindings, declared from this one
//! definition by both services so that neither depends on the other having started first.

use crate::event::{AddressChanged, EVENT_TYPE};
use lapin::{
    Channel, ExchangeKind,
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::FieldTable,
};

/// The topic exchange every change-of-circumstances event is published to.
pub const DEFAULT_EXCHANGE: &str = "customer.events";
/// The queue of the change-of-circumstances consumer, which the producer also declares so
/// that events are kept while no consumer has ever run.
pub const DEFAULT_QUEUE: &str = "change-of-circumstances";
/// Every address change, whatever the postcode area.
pub const DEFAULT_BINDING_KEY: &str = "address.changed.#";

/// `address.changed.<postcode area in lower case>`, e.g. `address.changed.pr` for Preston,
/// so a subscriber interested in one area binds `address.changed.pr` and sees nothing else.
pub fn routing_key(event: &AddressChanged) -> String {
    format!(
        "{EVENT_TYPE}.{}",
        event.new_address.postcode.area().to_ascii_lowercase()
    )
}

/// The broker objects one service needs: the exchange and one durable work queue bound
/// to it. Declaring is idempotent, so every (re)connection declares it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub exchange: String,
    pub queue: WorkQueue,
}

/// A durable queue and the routing-key patterns that bind it to the exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkQueue {
    pub name: String,
    pub binding_keys: Vec<String>,
}

impl WorkQueue {
    /// Every queue that exists for a work queue named `name`, itself included: what to
    /// delete to remove it completely.
    pub fn derived_queue_names(name: &str) -> Vec<String> {
        vec![name.to_owned()]
    }
}

impl Topology {
    /// Declares the exchange, the queue and its bindings on `channel`. A failure here is a
    /// channel error and closes `channel`: use a channel dedicated to the declaration.
    pub async fn declare(&self, channel: &Channel) -> Result<(), lapin::Error> {
        channel
            .exchange_declare(
                self.exchange.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_declare(
                self.queue.name.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        for key in &self.queue.binding_keys {
            channel
                .queue_bind(
                    self.queue.name.as_str().into(),
                    self.exchange.as_str().into(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }
}
