//! How an event travels as an AMQP message: body, routing key and the properties every
//! consumer (and every operator reading the management UI) can rely on.

use crate::{
    amqp::headers,
    event::{AddressChanged, EVENT_TYPE},
    trace_context::{TRACEPARENT, TraceContext},
};
use lapin::{BasicProperties, options::BasicPublishOptions};

/// The body's media type.
pub const CONTENT_TYPE: &str = "application/json";
/// AMQP delivery mode 2: the broker writes the message to disk before confirming it, so a
/// broker restart does not lose it (together with a durable queue).
pub const PERSISTENT: u8 = 2;

/// How every message of this project is published: `mandatory`, so that a message no queue
/// takes is never dropped silently (it comes back as a return, or as a nack through the
/// exchange's alternate exchange).
pub const MANDATORY: BasicPublishOptions = BasicPublishOptions {
    mandatory: true,
    immediate: false,
};

/// `address.changed.<postcode area in lower case>`, e.g. `address.changed.pr` for Preston,
/// so a subscriber interested in one area binds `address.changed.pr` and sees nothing else.
pub fn routing_key(event: &AddressChanged) -> String {
    format!(
        "{EVENT_TYPE}.{}",
        event.new_address.postcode.area().to_ascii_lowercase()
    )
}

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

    /// Carries `context` in the `traceparent` header, so the consumer continues the trace.
    pub fn with_trace_context(mut self, context: &TraceContext) -> Self {
        let mut headers = headers::cloned_from(&self.properties);
        headers.insert(
            TRACEPARENT.into(),
            headers::long_string(&context.to_string()),
        );
        self.properties = self.properties.with_headers(headers);
        self
    }

    /// The trace context a message carries, if any.
    pub fn trace_context_of(properties: &BasicProperties) -> Option<TraceContext> {
        TraceContext::parse(&headers::read_string(properties, TRACEPARENT)?)
    }
}

/// The `message_id` property, which the producer sets to the event id: it names the event
/// in the management UI, in the dead-letter listing and on a log line about a message that
/// could not be decoded. (Nothing matches messages by it: an unroutable message comes back
/// as a nack of its own publish, see `topology`.)
pub fn message_id(properties: &BasicProperties) -> Option<&str> {
    properties.message_id().as_ref().map(|id| id.as_str())
}
