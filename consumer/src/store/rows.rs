//! How values are written to columns and read back: a stored row becomes a
//! `CurrentAddress` only through the domain types' parsers, so a row edited by hand into
//! something invalid is reported as corrupt rather than served.

use super::{CurrentAddress, StoreError};
use shared::domain::{Address, AddressText, Country, CustomerId, EffectiveDate, Postcode};
use sqlx::{Row, any::AnyRow};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use uuid::Uuid;

pub(super) fn current_address_from(row: &AnyRow) -> Result<CurrentAddress, StoreError> {
    let customer_id: String = row.try_get("customer_id")?;
    let corrupt = |reason: String| StoreError::Corrupt {
        customer_id: customer_id.clone(),
        reason,
    };
    let text = |column: &str| -> Result<String, StoreError> { Ok(row.try_get(column)?) };
    let line2: Option<String> = row.try_get("line2")?;
    let address = Address {
        line1: AddressText::parse(&text("line1")?).map_err(|e| corrupt(format!("line1 {e}")))?,
        line2: line2
            .map(|line| AddressText::parse(&line))
            .transpose()
            .map_err(|e| corrupt(format!("line2 {e}")))?,
        town: AddressText::parse(&text("town")?).map_err(|e| corrupt(format!("town {e}")))?,
        postcode: Postcode::parse(&text("postcode")?).map_err(|e| corrupt(e.to_string()))?,
        country: Country::parse(&text("country")?).map_err(|e| corrupt(e.to_string()))?,
    };
    Ok(CurrentAddress {
        customer_id: CustomerId::parse(&customer_id).map_err(|e| corrupt(e.to_string()))?,
        address,
        effective_date: EffectiveDate::parse(&text("effective_date")?)
            .map_err(|e| corrupt(e.to_string()))?,
        event_id: Uuid::parse_str(&text("event_id")?).map_err(|e| corrupt(e.to_string()))?,
        updated_at: OffsetDateTime::parse(&text("updated_at")?, &Rfc3339)
            .map_err(|e| corrupt(e.to_string()))?,
    })
}

/// Occurrence times are stored as microseconds since the epoch, the precision at which
/// `apply::order_key` compares them too, so that Rust and SQL order changes alike.
pub(super) fn micros_since_epoch(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000) as i64
}

pub(super) fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}
