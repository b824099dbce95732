//! Freezes the `address.changed` v1 wire format. If this test fails, you changed what every
//! deployed consumer reads: bump `SCHEMA_VERSION` or make the change additive, on purpose.

use shared::{
    domain::{Address, AddressText, Country, CustomerId, EffectiveDate, Postcode},
    event::{AddressChanged, DecodeError},
    message::{EventMessage, message_id},
};
use time::macros::{date, datetime};
use uuid::uuid;

const FIXTURE: &str = include_str!("fixtures/address_changed.v1.json");
/// The same event made from a request that carried an `Idempotency-Key`.
const KEYED_FIXTURE: &str = include_str!("fixtures/address_changed.v1.keyed.json");
const FINGERPRINT: &str = "9f2b5c0d7e1a4b3c8d6e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e";

fn fixture_event() -> AddressChanged {
    AddressChanged {
        event_id: uuid!("5f0c6a58-3c1e-4d4e-9b7e-2f2b9a0e1c11"),
        occurred_at: datetime!(2026-11-25 10:15:30.123456 UTC),
        customer_id: CustomerId::parse("C-1001").unwrap(),
        new_address: Address {
            line1: AddressText::parse("1 Fishergate").unwrap(),
            line2: Some(AddressText::parse("Flat 2").unwrap()),
            town: AddressText::parse("Preston").unwrap(),
            postcode: Postcode::parse("PR1 2HE").unwrap(),
            country: Country::Gb,
        },
        effective_date: EffectiveDate::from(date!(2026 - 12 - 01)),
        request_fingerprint: None,
    }
}

fn keyed_fixture_event() -> AddressChanged {
    AddressChanged {
        request_fingerprint: Some(FINGERPRINT.to_owned()),
        ..fixture_event()
    }
}

#[test]
fn the_event_serialises_to_exactly_the_v1_fixture() {
    let written: serde_json::Value = serde_json::from_slice(&fixture_event().to_json()).unwrap();
    let frozen: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
    assert_eq!(written, frozen);
}

#[test]
fn the_envelope_as_text_is_the_message_body() {
    for event in [fixture_event(), keyed_fixture_event()] {
        assert_eq!(event.to_json_string().as_bytes(), event.to_json());
    }
}

#[test]
fn the_v1_fixture_decodes_to_the_event() {
    assert_eq!(
        AddressChanged::from_json(FIXTURE.as_bytes()).unwrap(),
        fixture_event()
    );
}

#[test]
fn a_keyed_event_adds_only_its_request_fingerprint_to_the_v1_fixture() {
    let written: serde_json::Value =
        serde_json::from_slice(&keyed_fixture_event().to_json()).unwrap();
    let frozen: serde_json::Value = serde_json::from_str(KEYED_FIXTURE).unwrap();
    assert_eq!(written, frozen);
    let mut without = frozen;
    without
        .as_object_mut()
        .unwrap()
        .remove("request_fingerprint");
    assert_eq!(
        without,
        serde_json::from_str::<serde_json::Value>(FIXTURE).unwrap()
    );
}

#[test]
fn the_keyed_v1_fixture_decodes_to_the_keyed_event() {
    assert_eq!(
        AddressChanged::from_json(KEYED_FIXTURE.as_bytes()).unwrap(),
        keyed_fixture_event()
    );
}

#[test]
fn the_message_carries_the_contract_properties() {
    let message = EventMessage::address_changed(&fixture_event(), "producer");
    let properties = &message.properties;
    assert_eq!(message.routing_key, "address.changed.pr");
    assert_eq!(*properties.delivery_mode(), Some(2));
    assert_eq!(
        properties.content_type().as_ref().map(|v| v.as_str()),
        Some("application/json")
    );
    assert_eq!(
        message_id(properties),
        Some("5f0c6a58-3c1e-4d4e-9b7e-2f2b9a0e1c11")
    );
    assert_eq!(
        properties.kind().as_ref().map(|v| v.as_str()),
        Some("address.changed")
    );
    assert_eq!(
        properties.app_id().as_ref().map(|v| v.as_str()),
        Some("producer")
    );
    assert_eq!(*properties.timestamp(), Some(1_795_601_730));
}

#[test]
fn unknown_envelope_fields_are_tolerated_for_forward_compatibility() {
    let mut value: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
    value["trace"] = serde_json::json!("added later");
    let body = serde_json::to_vec(&value).unwrap();
    assert_eq!(AddressChanged::from_json(&body).unwrap(), fixture_event());
}

#[test]
fn bodies_that_can_never_be_applied_say_why() {
    let with = |field: &str, replacement: serde_json::Value| {
        let mut value: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
        value[field] = replacement;
        serde_json::to_vec(&value).unwrap()
    };
    assert!(matches!(
        AddressChanged::from_json(b"not json"),
        Err(DecodeError::NotAnEnvelope(_))
    ));
    assert!(matches!(
        AddressChanged::from_json(&with("schema_version", 2.into())),
        Err(DecodeError::UnsupportedSchemaVersion(2))
    ));
    assert!(matches!(
        AddressChanged::from_json(&with("event_type", "payment.made".into())),
        Err(DecodeError::WrongEventType(_))
    ));
    let bad_postcode = with(
        "new_address",
        serde_json::json!({"line1":"1 Fishergate","town":"Preston","postcode":"nowhere"}),
    );
    match AddressChanged::from_json(&bad_postcode) {
        Err(DecodeError::InvalidField { field, .. }) => assert_eq!(field, "new_address.postcode"),
        other => panic!("expected an invalid field, got {other:?}"),
    }
}

/// A valid body is read in one pass; any other is read again to say why, header first. So
/// a later version whose content this build cannot read is still reported as a version,
/// and a body without the header as no envelope, however valid the rest.
#[test]
fn the_header_is_judged_before_the_content() {
    let mut future: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
    future["schema_version"] = 2.into();
    future["new_address"] = serde_json::json!({"lines": ["1 Fishergate"], "postcode": "PR1 2HE"});
    assert!(matches!(
        AddressChanged::from_json(&serde_json::to_vec(&future).unwrap()),
        Err(DecodeError::UnsupportedSchemaVersion(2))
    ));
    let mut other_event: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
    other_event["event_type"] = "payment.made".into();
    other_event["schema_version"] = 7.into();
    assert!(matches!(
        AddressChanged::from_json(&serde_json::to_vec(&other_event).unwrap()),
        Err(DecodeError::WrongEventType(event_type)) if event_type == "payment.made"
    ));
    for header in ["event_type", "schema_version"] {
        let mut headless: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
        headless.as_object_mut().unwrap().remove(header);
        assert!(
            matches!(
                AddressChanged::from_json(&serde_json::to_vec(&headless).unwrap()),
                Err(DecodeError::NotAnEnvelope(_))
            ),
            "without {header}"
        );
    }
}
