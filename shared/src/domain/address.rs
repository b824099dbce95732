//! A postal address in the United Kingdom.

use super::{InvalidValue, Postcode};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The new address in an address change. Unknown fields are refused rather than ignored,
/// so a client's typo (`"postocde"`) is a 422 and not a silently lost value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Address {
    pub line1: AddressText,
    /// Omitted (or `null`) when the address has no second line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<AddressText>,
    pub town: AddressText,
    pub postcode: Postcode,
    /// Defaults to `GB` when the client leaves it out.
    #[serde(default)]
    pub country: Country,
}

/// A line of an address or a town: trimmed, 1 to 200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AddressText(String);

impl AddressText {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(input: &str) -> Result<Self, InvalidValue> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(InvalidValue::new("must not be empty"));
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(InvalidValue::new(format!(
                "must be at most {} characters long",
                Self::MAX_CHARS
            )));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(InvalidValue::new("must not contain control characters"));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AddressText {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<AddressText> for String {
    fn from(value: AddressText) -> Self {
        value.0
    }
}

impl fmt::Display for AddressText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The country of the address, as an ISO 3166-1 alpha-2 code. Only `GB` is accepted: the
/// postcode rules, the routing keys and the downstream services are all UK-specific. The
/// field exists so that the contract can grow without a breaking change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Country {
    #[default]
    Gb,
}

impl Country {
    pub fn parse(input: &str) -> Result<Self, InvalidValue> {
        if input.trim().eq_ignore_ascii_case("GB") {
            Ok(Self::Gb)
        } else {
            Err(InvalidValue::new(format!(
                "{:?} is not supported: only UK addresses (\"GB\") are handled",
                input.chars().take(8).collect::<String>()
            )))
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gb => "GB",
        }
    }
}

impl TryFrom<String> for Country {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Country> for String {
    fn from(value: Country) -> Self {
        value.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_text_is_trimmed_and_bounded() {
        assert_eq!(
            AddressText::parse("  1 Fishergate ").map(|t| t.to_string()),
            Ok("1 Fishergate".into())
        );
        assert!(
            AddressText::parse(&"é".repeat(200)).is_ok(),
            "200 characters, not bytes"
        );
        for bad in ["", "   ", &"x".repeat(201), "line\u{0}one", "a\nb"] {
            assert!(AddressText::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn country_is_gb_in_any_case_and_nothing_else() {
        assert_eq!(Country::parse("gb"), Ok(Country::Gb));
        assert_eq!(Country::parse("GB"), Ok(Country::Gb));
        for bad in ["FR", "UK", "", "GBR"] {
            assert!(Country::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn an_address_without_line2_or_country_defaults_to_gb() {
        let address: Address = serde_json::from_str(
            r#"{"line1":"1 Fishergate","town":"Preston","postcode":"pr12he"}"#,
        )
        .unwrap();
        assert_eq!(address.country, Country::Gb);
        assert_eq!(address.line2, None);
        assert_eq!(address.postcode.as_str(), "PR1 2HE");
    }

    #[test]
    fn an_address_with_an_unknown_field_is_refused() {
        let result: Result<Address, _> = serde_json::from_str(
            r#"{"line1":"1 Fishergate","town":"Preston","postcode":"PR1 2HE","postocde":"x"}"#,
        );
        assert!(result.unwrap_err().to_string().contains("postocde"));
    }
}
