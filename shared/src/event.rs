//! The `address.changed` event: the one message the producer publishes and every consumer
//! reads. Its JSON form is frozen by `tests/wire_format.rs`; changing it is a deliberate act.

use crate::domain::{Address, CustomerId, EffectiveDate};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// The `event_type` field of the envelope and the AMQP `type` property of the message.
pub const EVENT_TYPE: &str = "address.changed";

/// The envelope version this build writes and reads. A consumer refuses any other version
/// instead of guessing at its meaning.
pub const SCHEMA_VERSION: u32 = 1;

/// A customer's address changed. Once applied by a consumer, `new_address` is the address
/// to use from `effective_date` onwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressChanged {
    /// Unique per change. Consumers remember the ids they applied, so a redelivered or
    /// retried event is applied once.
    pub event_id: Uuid,
    /// When the producer accepted the change; breaks ties between changes with the same
    /// effective date.
    pub occurred_at: OffsetDateTime,
    pub customer_id: CustomerId,
    pub new_address: Address,
    pub effective_date: EffectiveDate,
    /// The SHA-256 (hex) of the HTTP request the event was made from, set only when the
    /// client sent an `Idempotency-Key` (which is what `event_id` is then derived from).
    /// Two events with the same id and different fingerprints are two different changes
    /// under one reused key: a consumer that has applied the first refuses the second
    /// loudly instead of skipping it as a duplicate. Optional, and absent from unkeyed
    /// events, so the field is an additive change to schema version 1.
    pub request_fingerprint: Option<String>,
}

/// Why a message body is not an `address.changed` event this build can apply. Every variant
/// is permanent: delivering the same bytes again cannot succeed.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the body is not a JSON event envelope: {0}")]
    NotAnEnvelope(#[source] serde_json::Error),
    #[error("event_type {0:?} is not {EVENT_TYPE:?}")]
    WrongEventType(String),
    #[error("schema_version {0} is not supported (this build reads version {SCHEMA_VERSION})")]
    UnsupportedSchemaVersion(u64),
    #[error("field `{field}` is invalid: {message}")]
    InvalidField { field: String, message: String },
}

impl AddressChanged {
    /// The message body: the JSON envelope.
    pub fn to_json(&self) -> Vec<u8> {
        self.to_json_string().into_bytes()
    }

    /// The JSON envelope as text, for a consumer's record of what it applied. serde_json
    /// writes only UTF-8, so no check, lossy or not, is needed to make it a `String`.
    pub fn to_json_string(&self) -> String {
        let wire = WireOut {
            event_id: self.event_id,
            event_type: EVENT_TYPE,
            schema_version: SCHEMA_VERSION,
            occurred_at: self.occurred_at,
            customer_id: &self.customer_id,
            new_address: &self.new_address,
            effective_date: self.effective_date,
            request_fingerprint: self.request_fingerprint.as_deref(),
        };
        // Serialising plain structs of strings and numbers cannot fail.
        serde_json::to_string(&wire).unwrap_or_default()
    }

    /// Reads a message body, checking the envelope's type and version before its content,
    /// so that a future version is reported as such rather than as a malformed field.
    pub fn from_json(body: &[u8]) -> Result<Self, DecodeError> {
        // Almost every body is a valid event of this version: read it in one pass. Whatever
        // is not is read again by `diagnose`, which says why; a body this pass accepts
        // passes there too, so the answer is the same either way.
        match serde_json::from_slice::<WireIn>(body) {
            Ok(wire)
                if wire.event_type == EVENT_TYPE
                    && wire.schema_version == u64::from(SCHEMA_VERSION) =>
            {
                Ok(wire.into())
            }
            _ => Self::diagnose(body),
        }
    }

    /// The envelope's type and version first, then its content, with the path of the first
    /// invalid field.
    fn diagnose(body: &[u8]) -> Result<Self, DecodeError> {
        let header: Header = serde_json::from_slice(body).map_err(DecodeError::NotAnEnvelope)?;
        if header.event_type != EVENT_TYPE {
            return Err(DecodeError::WrongEventType(header.event_type));
        }
        if header.schema_version != u64::from(SCHEMA_VERSION) {
            return Err(DecodeError::UnsupportedSchemaVersion(header.schema_version));
        }
        let mut json = serde_json::Deserializer::from_slice(body);
        let wire: WireIn = serde_path_to_error::deserialize(&mut json).map_err(|error| {
            DecodeError::InvalidField {
                field: error.path().to_string(),
                message: error.inner().to_string(),
            }
        })?;
        Ok(wire.into())
    }
}

impl From<WireIn> for AddressChanged {
    fn from(wire: WireIn) -> Self {
        Self {
            event_id: wire.event_id,
            occurred_at: wire.occurred_at,
            customer_id: wire.customer_id,
            new_address: wire.new_address,
            effective_date: wire.effective_date,
            request_fingerprint: wire.request_fingerprint,
        }
    }
}

#[derive(Serialize)]
struct WireOut<'a> {
    event_id: Uuid,
    event_type: &'static str,
    schema_version: u32,
    #[serde(with = "time::serde::rfc3339")]
    occurred_at: OffsetDateTime,
    customer_id: &'a CustomerId,
    new_address: &'a Address,
    effective_date: EffectiveDate,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_fingerprint: Option<&'a str>,
}

/// Unknown envelope fields are tolerated, so a later minor addition does not turn every
/// message into a dead letter for consumers that have not been upgraded yet. The header's
/// two fields are read here too (and checked by the caller), so that a valid body takes
/// one pass.
#[derive(Deserialize)]
struct WireIn {
    event_type: String,
    schema_version: u64,
    event_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    occurred_at: OffsetDateTime,
    customer_id: CustomerId,
    new_address: Address,
    effective_date: EffectiveDate,
    #[serde(default)]
    request_fingerprint: Option<String>,
}

#[derive(Deserialize)]
struct Header {
    event_type: String,
    schema_version: u64,
}
