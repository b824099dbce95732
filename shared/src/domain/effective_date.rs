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
        // Written digit by digit, in one piece: a consumer writes each change's date three
        // times (two columns and the recorded envelope), and `time`'s formatting builds a
        // `String` through its format description, some thousand instructions a date.
        // Years outside four digits keep `time`'s form; the last fallback only keeps
        // `Display` infallible.
        let (year, month, day) = self.0.to_calendar_date();
        if let Ok(year @ 0..=9999) = u16::try_from(year) {
            let digit = |value: u16, unit: u16| b'0' + (value / unit % 10) as u8;
            let (month, day) = (u16::from(u8::from(month)), u16::from(day));
            let text = [
                digit(year, 1000),
                digit(year, 100),
                digit(year, 10),
                digit(year, 1),
                b'-',
                digit(month, 10),
                digit(month, 1),
                b'-',
                digit(day, 10),
                digit(day, 1),
            ];
            if let Ok(text) = std::str::from_utf8(&text) {
                return f.write_str(text);
            }
        }
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
    fn dates_are_written_as_time_writes_them() {
        for date in [
            time::macros::date!(2026 - 12 - 01),
            time::macros::date!(0001 - 01 - 01),
            time::macros::date!(0999 - 10 - 09),
            time::macros::date!(9999 - 12 - 31),
            time::macros::date!(-0001 - 06 - 15),
            Date::MIN,
            Date::MAX,
        ] {
            assert_eq!(
                EffectiveDate::from(date).to_string(),
                date.format(ISO_DATE).unwrap(),
                "{date:?}"
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
