//! Helpers shared by the benchmark binaries: broker settings, a sample event, queue depth.
//!
//! The binaries read the same environment variables as the services (`AMQP_ADDR`,
//! `EXCHANGE`, `QUEUE`, ...), through `shared::config`, so `bench/run.sh` points every
//! process of a run at the same exchange and queue with one set of variables.

use lapin::{Channel, Connection};
use shared::{
    config::{BrokerConfig, QueueConfig},
    domain::{Address, AddressText, Country, CustomerId, EffectiveDate, Postcode},
    event::AddressChanged,
    topology::Topology,
};
use time::OffsetDateTime;
use uuid::Uuid;

/// Where the benchmark's messages go: the broker, the exchange and the work queue.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    #[command(flatten)]
    pub broker: BrokerConfig,
    #[command(flatten)]
    pub queue: QueueConfig,
}

impl Target {
    /// The exchange and the work queue bound to it, as the producer declares them.
    pub fn topology(&self) -> Topology {
        shared::config::topology(&self.broker, &self.queue)
    }

    /// One named connection to the broker.
    pub async fn connect(&self, role: &str) -> anyhow::Result<Connection> {
        let name = self.broker.connection_name(role);
        Ok(shared::amqp::connect(&self.broker.amqp_addr, &name).await?)
    }
}

/// A valid `address.changed` event, the `n`th of a run: a fresh id, one of 5,000 customers,
/// a Preston address (routing key `address.changed.pr`).
pub fn sample_event(n: u64) -> anyhow::Result<AddressChanged> {
    let parse = |text: &str| AddressText::parse(text).map_err(anyhow::Error::msg);
    Ok(AddressChanged {
        event_id: Uuid::new_v4(),
        occurred_at: OffsetDateTime::now_utc(),
        customer_id: CustomerId::parse(&format!("C-{}", n % 5_000)).map_err(anyhow::Error::msg)?,
        new_address: Address {
            line1: parse(&format!("{} Fishergate", n % 500 + 1))?,
            line2: Some(parse("Flat 2")?),
            town: parse("Preston")?,
            postcode: Postcode::parse("PR1 2HE").map_err(anyhow::Error::msg)?,
            country: Country::Gb,
        },
        effective_date: EffectiveDate::today(),
        request_fingerprint: None,
    })
}

/// Ready messages in `queue` (unacknowledged ones are not counted), by a passive declare.
pub async fn ready_messages(channel: &Channel, queue: &str) -> Result<u32, lapin::Error> {
    Ok(shared::topology::inspect_queue(channel, queue)
        .await?
        .message_count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::message::EventMessage;

    #[test]
    fn sample_events_are_valid_envelopes_routed_to_preston() {
        let event = sample_event(7).unwrap();
        let message = EventMessage::address_changed(&event, "bench");
        assert_eq!(message.routing_key, "address.changed.pr");
        assert_eq!(AddressChanged::from_json(&message.body).unwrap(), event);
    }
}
