//! The kit the integration tests are written with: find a broker, give each test its own
//! exchange and queue names (removed afterwards), start the services in-process on random
//! ports, and wait for things with a deadline instead of sleeping.

pub mod broker;
pub mod cluster;
pub mod env;
pub mod faults;
pub mod postgres;
pub mod process;
pub mod services;
pub mod stream;
pub mod wait;

pub use env::TestEnv;
pub use services::{TestConsumer, TestProducer, records_become};

/// How long a test waits for anything the system does by itself (a drain, a reconnection)
/// before it fails.
pub const WITHIN: std::time::Duration = std::time::Duration::from_secs(20);
pub use wait::eventually;

/// Asserts that `response` is a refusal for now: 503, with `Retry-After` and the JSON error
/// body's `code`.
pub async fn assert_unavailable(response: reqwest::Response, code: &str) {
    assert_eq!(response.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        response.headers().get("retry-after").is_some(),
        "a 503 carries Retry-After"
    );
    let body: shared::http::ErrorBody = response
        .json()
        .await
        .unwrap_or_else(|error| panic!("the 503's body is not our JSON error: {error}"));
    assert_eq!(body.error.code, code);
}

/// A valid request body for `POST /api/v1/address-changes`.
pub fn change_of_address(customer_id: &str, postcode: &str) -> serde_json::Value {
    serde_json::json!({
        "customer_id": customer_id,
        "new_address": {
            "line1": "1 Fishergate",
            "line2": "Flat 2",
            "town": "Preston",
            "postcode": postcode,
            "country": "GB"
        },
        "effective_date": "2026-12-01"
    })
}

/// An `address.changed` event as the producer would publish it, for tests that publish
/// straight to the exchange.
pub fn address_changed(
    customer_id: &str,
    line1: &str,
    postcode: &str,
    effective_date: &str,
) -> shared::event::AddressChanged {
    fn parse_error<T>(error: shared::domain::InvalidValue) -> T {
        panic!("invalid test event: {error}")
    }
    use shared::domain::{Address, AddressText, Country, CustomerId, EffectiveDate, Postcode};
    shared::event::AddressChanged {
        event_id: uuid::Uuid::new_v4(),
        occurred_at: time::OffsetDateTime::now_utc(),
        customer_id: CustomerId::parse(customer_id).unwrap_or_else(parse_error),
        new_address: Address {
            line1: AddressText::parse(line1).unwrap_or_else(parse_error),
            line2: None,
            town: AddressText::parse("Preston").unwrap_or_else(parse_error),
            postcode: Postcode::parse(postcode).unwrap_or_else(parse_error),
            country: Country::Gb,
        },
        effective_date: EffectiveDate::parse(effective_date).unwrap_or_else(parse_error),
        request_fingerprint: None,
    }
}
