//! Client retries that cannot apply a change twice, and keys that cannot lose one: the
//! `Idempotency-Key` header.
//!
//! The event id is derived from the customer and the key (a name-based UUID v5), so the
//! same request retried, after a timeout or a dropped connection, carries the same event
//! id, and consumers skip event ids they have already applied. Any replica, before or after
//! a restart, derives the same id: nothing needs to be shared for a retry to be safe.
//!
//! A key reused for a *different* change would derive the same id too, and the consumer
//! would skip the change as a duplicate behind a 202. So each keyed event also carries the
//! fingerprint of the request it was made from, and a reuse is caught twice:
//! - here, at once, with a 422 `idempotency_key_reused`, while this process remembers the
//!   key ([`RecentKeys`]: a bounded, expiring record per replica, lost on restart);
//! - beyond that, by the consumer, which finds the id applied with another fingerprint and
//!   dead-letters the event with a reason saying so, instead of dropping it.
use crate::error::ApiError;
use axum::{extract::OptionalFromRequestParts, http::request::Parts};
use serde::Serialize;
use sha2::{Digest, Sha256};
use shared::domain::CustomerId;
use std::{fmt, time::Duration};
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

/// The fingerprint of a request sent with a key: the SHA-256, in hex, of the request as
/// parsed. Parsing normalises it (the postcode's spacing and case, trimmed text), so a
/// retry that differs only in such details is the same request; any difference in what
/// would be applied makes another fingerprint.
pub fn fingerprint(request: &impl Serialize) -> String {
    // Serialising a parsed request (plain strings and dates) cannot fail.
    let canonical = serde_json::to_vec(request).unwrap_or_default();
    format!("{:x}", Sha256::digest(&canonical))
}

/// The keys this process has seen lately: for each keyed event id, the fingerprint of the
/// first request that used it. Bounded in time (`IDEMPOTENCY_WINDOW_SECS` after first use)
/// and in size (`IDEMPOTENCY_WINDOW_KEYS`: beyond it the cache's admission policy forgets
/// the keys least likely to come back), and held by each replica for itself: a reuse it no
/// longer remembers, or that reached another replica, is caught by the consumer instead.
/// Cheap to clone.
#[derive(Clone)]
pub struct RecentKeys {
    /// `None` when the window is switched off (0 keys or 0 seconds).
    seen: Option<moka::sync::Cache<Uuid, String>>,
}

impl RecentKeys {
    pub fn new(window: Duration, max_keys: u64) -> Self {
        let seen = (!window.is_zero() && max_keys > 0).then(|| {
            moka::sync::Cache::builder()
                .time_to_live(window)
                .max_capacity(max_keys)
                .build()
        });
        Self { seen }
    }

    /// Binds `event_id` to `fingerprint` unless it is bound already, atomically: of two
    /// concurrent first uses, one binds and the other is compared with it. A key stays
    /// bound even if its request then fails (a publish that timed out may still have
    /// reached the queue), so a retry must repeat the request exactly.
    pub fn bind(&self, event_id: Uuid, fingerprint: &str) -> Result<(), ApiError> {
        let Some(seen) = &self.seen else {
            return Ok(());
        };
        let bound = seen
            .entry(event_id)
            .or_insert_with(|| fingerprint.to_owned());
        if bound.is_fresh() || bound.value() == fingerprint {
            Ok(())
        } else {
            Err(ApiError::IdempotencyKeyReused)
        }
    }
}

impl fmt::Debug for RecentKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecentKeys")
            .field("keys", &self.seen.as_ref().map(|seen| seen.entry_count()))
            .finish()
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

    #[derive(Serialize)]
    struct Request<'a> {
        customer_id: &'a str,
        line1: &'a str,
    }

    #[test]
    fn the_same_request_has_the_same_fingerprint_and_any_change_another() {
        let request = |line1| Request {
            customer_id: "C-1",
            line1,
        };
        assert_eq!(
            fingerprint(&request("1 First Street")),
            fingerprint(&request("1 First Street"))
        );
        assert_ne!(
            fingerprint(&request("1 First Street")),
            fingerprint(&request("2 Second Street"))
        );
        assert_eq!(fingerprint(&request("x")).len(), 64);
    }

    #[test]
    fn a_key_is_bound_to_the_first_request_that_used_it() {
        let keys = RecentKeys::new(Duration::from_secs(60), 100);
        let id = Uuid::new_v4();
        assert!(keys.bind(id, "first").is_ok());
        assert!(keys.bind(id, "first").is_ok(), "a retry is not a reuse");
        assert!(matches!(
            keys.bind(id, "second"),
            Err(ApiError::IdempotencyKeyReused)
        ));
        assert!(keys.bind(Uuid::new_v4(), "second").is_ok());
    }

    #[test]
    fn past_the_window_a_key_is_forgotten() {
        let keys = RecentKeys::new(Duration::from_millis(50), 100);
        let id = Uuid::new_v4();
        assert!(keys.bind(id, "first").is_ok());
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            keys.bind(id, "second").is_ok(),
            "the consumer's check is left"
        );
    }

    #[test]
    fn a_switched_off_window_binds_nothing() {
        let keys = RecentKeys::new(Duration::ZERO, 100);
        let id = Uuid::new_v4();
        assert!(keys.bind(id, "first").is_ok());
        assert!(keys.bind(id, "second").is_ok());
    }
}
