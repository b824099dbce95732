//! Helpers shared by the benchmark binaries: broker settings, a sample event, queue depth.
//!
//! The binaries read the same environment variables as the services (`AMQP_ADDR`,
//! `EXCHANGE`, `QUEUE`, ...), through `shared::config`, so `bench/run.sh` points every
//! process of a run at the same exchange and queue with one set of variables.

use lapin::{Channel, Connection};
use shared::{
    config::{BrokerConfig, QueueConfig},
    domain::{AddressText, EffectiveDate},
    event::AddressChanged,
    topology::Topology,
};

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
/// a Preston flat (routing key `address.changed.pr`), effective today.
pub fn sample_event(n: u64) -> AddressChanged {
    let mut event = testkit::address_changed(
        &format!("C-{}", n % 5_000),
        &format!("{} Fishergate", n % 500 + 1),
        "PR1 2HE",
        &EffectiveDate::today().to_string(),
    );
    // A flat, as in every recorded run: the same message size keeps the results comparable.
    event.new_address.line2 =
        Some(AddressText::parse("Flat 2").unwrap_or_else(|error| panic!("{error}")));
    event
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
        let event = sample_event(7);
        let message = EventMessage::address_changed(&event, "bench");
        assert_eq!(message.routing_key, "address.changed.pr");
        assert_eq!(AddressChanged::from_json(&message.body).unwrap(), event);
    }
}
