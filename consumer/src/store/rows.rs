//! How values are written to columns and read back: a stored row becomes a
//! `CurrentAddress` only through the domain types' parsers, so a row edited by hand into
//! something invalid is reported as corrupt rather than served.

use super::{CurrentAddress, StoreError};
use shared::domain::{Address, AddressText, Country, CustomerId, EffectiveDate, Postcode};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use uuid::Uuid;

/// A row of `customer_addresses`, as stored.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct StoredAddress {
    customer_id: String,
    line1: String,
    line2: Option<String>,
    town: String,
    postcode: String,
    country: String,
    effective_date: String,
    event_id: String,
    updated_at: String,
}

impl StoredAddress {
    pub(super) fn parse(self) -> Result<CurrentAddress, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            customer_id: self.customer_id.clone(),
            reason,
        };
        let address = Address {
            line1: AddressText::parse(&self.line1).map_err(|e| corrupt(format!("line1 {e}")))?,
            line2: self
                .line2
                .as_deref()
                .map(AddressText::parse)
                .transpose()
                .map_err(|e| corrupt(format!("line2 {e}")))?,
            town: AddressText::parse(&self.town).map_err(|e| corrupt(format!("town {e}")))?,
            postcode: Postcode::parse(&self.postcode).map_err(|e| corrupt(e.to_string()))?,
            country: Country::parse(&self.country).map_err(|e| corrupt(e.to_string()))?,
        };
        Ok(CurrentAddress {
            customer_id: CustomerId::parse(&self.customer_id)
                .map_err(|e| corrupt(e.to_string()))?,
            address,
            effective_date: EffectiveDate::parse(&self.effective_date)
                .map_err(|e| corrupt(e.to_string()))?,
            event_id: Uuid::parse_str(&self.event_id).map_err(|e| corrupt(e.to_string()))?,
            updated_at: OffsetDateTime::parse(&self.updated_at, &Rfc3339)
                .map_err(|e| corrupt(e.to_string()))?,
        })
    }
}

/// Occurrence times are stored as microseconds since the epoch, the precision at which
/// `apply::order_key` compares them too, so that Rust and SQL order changes alike.
pub(super) fn micros_since_epoch(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000) as i64
}

pub(super) fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}
