//! The date from which a change applies.

use super::InvalidValue;
use serde::{Deserialize, Serialize};
use std::fmt;
use time::{
    Date, OffsetDateTime, format_description::BorrowedFormatItem, macros::format_description,
};

/// A calendar date written as an ISO 8601 `YYYY-MM-DD` string on the wire. Consumers order
/// competing changes for one customer by it first, so a change that takes effect later
/// wins even if it was sent earlier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EffectiveDate(Date);

const ISO_DATE: &[BorrowedFormatItem<'static>] = format_description!("[year]-[month]-[day]");

impl EffectiveDate {
    pub fn parse(input: &str) -> Result<Self, InvalidValue> {
        // `[year]` alone would also take a sign and more than four digits; the wire format
        // is exactly ten characters.
        if input.len() != 10 {
            return Err(Self::invalid(input));
        }
        Date::parse(input, ISO_DATE)
            .map(Self)
            .map_err(|_| Self::invalid(input))
    }

    /// Today's date in UTC: the default when a client does not say when the change applies.
    pub fn today() -> Self {
        Self(OffsetDateTime::now_utc().date())
    }

    pub fn date(self) -> Date {
        self.0
    }

    fn invalid(input: &str) -> InvalidValue {
        InvalidValue::new(format!(
            "{:?} is not a date in the form YYYY-MM-DD",
            input.chars().take(16).collect::<String>()
        ))
    }
}

impl From<Date> for EffectiveDate {
    fn from(date: Date) -> Self {
        Self(date)
    }
}

impl TryFrom<String> for EffectiveDate {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<EffectiveDate> for String {
    fn from(value: EffectiveDate) -> Self {
        value.to_string()
    }
}

impl fmt::Display for EffectiveDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A four-digit year always formats; the fallback only keeps `Display` infallible.
        match self.0.format(ISO_DATE) {
            Ok(text) => f.write_str(&text),
            Err(_) => write!(f, "{:?}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates_round_trip() {
        for ok in ["2026-12-01", "2024-02-29", "1999-01-31"] {
            assert_eq!(
                EffectiveDate::parse(ok).map(|d| d.to_string()).as_deref(),
                Ok(ok)
            );
        }
    }

    #[test]
    fn impossible_or_differently_written_dates_are_refused() {
        for bad in [
            "2026-02-30",
            "2025-02-29",
            "2026-13-01",
            "01/12/2026",
            "2026-12-1",
            "+02026-12-01",
            "2026-12-01T00:00:00Z",
            "",
        ] {
            assert!(EffectiveDate::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
