//! How an event travels as an AMQP message: body, routing key and the properties every
//! consumer (and every operator reading the management UI) can rely on.

use crate::{
    event::{AddressChanged, EVENT_TYPE},
    topology::routing_key,
};
use lapin::BasicProperties;

/// The body's media type.
pub const CONTENT_TYPE: &str = "application/json";
/// AMQP delivery mode 2: the broker writes the message to disk before confirming it, so a
/// broker restart does not lose it (together with a durable queue).
pub const PERSISTENT: u8 = 2;

/// An event ready to publish.
#[derive(Debug, Clone)]
pub struct EventMessage {
    pub routing_key: String,
    pub body: Vec<u8>,
    pub properties: BasicProperties,
}

impl EventMessage {
    /// `app_id` names the publishing service, so a message seen in a queue can be traced
    /// back to who sent it.
    pub fn address_changed(event: &AddressChanged, app_id: &str) -> Self {
        let properties = BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_content_type(CONTENT_TYPE.into())
            .with_message_id(event.event_id.to_string().into())
            .with_type(EVENT_TYPE.into())
            .with_timestamp(event.occurred_at.unix_timestamp().max(0) as u64)
            .with_app_id(app_id.into());
        Self {
            routing_key: routing_key(event),
            body: event.to_json(),
            properties,
        }
    }

    /// The `message_id` property: the event id, used to match a returned message to its
    /// request and shown in the management UI.
    pub fn message_id(&self) -> &str {
        self.properties
            .message_id()
            .as_ref()
            .map_or("", |id| id.as_str())
    }
}
