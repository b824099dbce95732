//! Client retries that cannot apply a change twice: the `Idempotency-Key` header.
//!
//! The event id is derived from the customer and the key (a name-based UUID v5), so the
//! same request retried, after a timeout or a dropped connection, carries the same event
//! id, and consumers skip event ids they have already applied. Nothing is stored in the
//! producer: it stays stateless and any replica derives the same id.

use crate::error::ApiError;
use axum::{extract::OptionalFromRequestParts, http::request::Parts};
use shared::domain::CustomerId;
use uuid::{Uuid, uuid};

/// Namespace of the derived event ids. Changing it changes every derived id, so a retry
/// across the change would be applied twice: never change it.
const EVENT_ID_NAMESPACE: Uuid = uuid!("0b9f7f0e-6b0e-4a53-9c53-8f0f3c2d7a41");

/// The optional `Idempotency-Key` request header: a client-chosen string (1 to 255 visible
/// ASCII characters) that makes a retried request produce the same event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const HEADER: &'static str = "idempotency-key";
    pub const MAX_LEN: usize = 255;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        let Some(value) = parts.headers.get(IdempotencyKey::HEADER) else {
            return Ok(None);
        };
        let key = value
            .to_str()
            .map_err(|_| ApiError::InvalidIdempotencyKey("must be visible ASCII"))?;
        if key.is_empty() || key.len() > IdempotencyKey::MAX_LEN {
            return Err(ApiError::InvalidIdempotencyKey(
                "must be 1 to 255 characters long",
            ));
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::InvalidIdempotencyKey(
                "must be visible ASCII without spaces",
            ));
        }
        Ok(Some(IdempotencyKey(key.to_owned())))
    }
}

/// The event id for a change: derived from `key` when the client sent one, random otherwise.
pub fn event_id(customer_id: &CustomerId, key: Option<&IdempotencyKey>) -> Uuid {
    match key {
        // The separator cannot occur in a customer id, so distinct pairs never collide.
        Some(key) => Uuid::new_v5(
            &EVENT_ID_NAMESPACE,
            format!("{customer_id}\n{}", key.as_str()).as_bytes(),
        ),
        None => Uuid::new_v4(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer(id: &str) -> CustomerId {
        CustomerId::parse(id).unwrap()
    }

    #[test]
    fn the_same_key_for_the_same_customer_gives_the_same_event_id() {
        let key = IdempotencyKey("retry-me".into());
        assert_eq!(
            event_id(&customer("C-1"), Some(&key)),
            event_id(&customer("C-1"), Some(&key))
        );
    }

    #[test]
    fn the_same_key_for_another_customer_gives_another_event_id() {
        let key = IdempotencyKey("retry-me".into());
        assert_ne!(
            event_id(&customer("C-1"), Some(&key)),
            event_id(&customer("C-2"), Some(&key))
        );
    }

    #[test]
    fn without_a_key_every_request_is_a_new_event() {
        assert_ne!(
            event_id(&customer("C-1"), None),
            event_id(&customer("C-1"), None)
        );
    }
}
