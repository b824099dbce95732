//! The one place the tests and the benchmark build what they send: a request body for the
//! producer, or an event as the producer would publish it.

use shared::{
    domain::{Address, AddressText, Country, CustomerId, EffectiveDate, InvalidValue, Postcode},
    event::AddressChanged,
};

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
/// straight to the exchange or hand it to a store. Panics if a value is invalid: callers
/// pass constants, and a typo there is the test's bug.
pub fn address_changed(
    customer_id: &str,
    line1: &str,
    postcode: &str,
    effective_date: &str,
) -> AddressChanged {
    fn parse_error<T>(error: InvalidValue) -> T {
        panic!("invalid test event: {error}")
    }
    AddressChanged {
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
