//! A UK postcode, in the one spelling the rest of the system uses.

use super::InvalidValue;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A UK postcode, normalised to upper case with exactly one space before the inward code
/// (`pr12he` → `PR1 2HE`), so that equal postcodes are equal strings everywhere downstream.
///
/// Accepted shapes are the six outward-code formats used by Royal Mail (`A9`, `A99`, `AA9`,
/// `AA99`, `A9A`, `AA9A`) followed by an inward code `9AA`, plus the special `GIR 0AA`.
/// BFPO numbers and overseas-territory codes are not postal addresses this service handles.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Postcode(String);

impl Postcode {
    pub fn parse(input: &str) -> Result<Self, InvalidValue> {
        let invalid = || {
            InvalidValue::new(format!(
                "{:?} is not a UK postcode (expected something like \"PR1 2HE\")",
                truncate(input, 16)
            ))
        };
        let compact: String = input
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if !(5..=7).contains(&compact.len()) || !compact.is_ascii() {
            return Err(invalid());
        }
        let (outward, inward) = compact.split_at(compact.len() - 3);
        let well_formed = compact == "GIR0AA" || (is_outward(outward) && is_inward(inward));
        if !well_formed {
            return Err(invalid());
        }
        Ok(Self(format!("{outward} {inward}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The postcode area: the letters the outward code starts with (`PR` for Preston, `EC`
    /// for London East Central). Routing keys use it, so a subscriber can bind to one area.
    pub fn area(&self) -> &str {
        let letters = self.0.bytes().take_while(u8::is_ascii_alphabetic).count();
        &self.0[..letters]
    }
}

/// Letter or digit classes of each outward-code format, `A` for a letter and `9` for a digit.
const OUTWARD_FORMATS: [&str; 6] = ["A9", "A99", "AA9", "AA99", "A9A", "AA9A"];

fn is_outward(outward: &str) -> bool {
    OUTWARD_FORMATS
        .iter()
        .any(|format| matches_format(outward, format))
}

fn is_inward(inward: &str) -> bool {
    matches_format(inward, "9AA")
}

fn matches_format(value: &str, format: &str) -> bool {
    value.len() == format.len()
        && value
            .bytes()
            .zip(format.bytes())
            .all(|(c, class)| match class {
                b'A' => c.is_ascii_uppercase(),
                _ => c.is_ascii_digit(),
            })
}

fn truncate(input: &str, max_chars: usize) -> String {
    input.chars().take(max_chars).collect()
}

impl TryFrom<String> for Postcode {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Postcode> for String {
    fn from(value: Postcode) -> Self {
        value.0
    }
}

impl fmt::Display for Postcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_uk_postcodes_are_normalised_to_upper_case_with_one_space() {
        let cases = [
            ("PR1 2HE", "PR1 2HE", "PR"),
            ("pr12he", "PR1 2HE", "PR"),
            ("  pr1   2he ", "PR1 2HE", "PR"),
            ("EC1A 1BB", "EC1A 1BB", "EC"),
            ("w1a0ax", "W1A 0AX", "W"),
            ("M1 1AE", "M1 1AE", "M"),
            ("B33 8TH", "B33 8TH", "B"),
            ("CR2 6XH", "CR2 6XH", "CR"),
            ("DN55 1PT", "DN55 1PT", "DN"),
            ("gir 0aa", "GIR 0AA", "GIR"),
            ("LA1 4YW", "LA1 4YW", "LA"),
        ];
        for (input, normalised, area) in cases {
            let postcode = Postcode::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(postcode.as_str(), normalised, "{input:?}");
            assert_eq!(postcode.area(), area, "{input:?}");
        }
    }

    #[test]
    fn malformed_postcodes_are_refused() {
        let cases = [
            "",
            "PR1",
            "PR1 2H",
            "PR1 2HEE",
            "1PR 2HE",
            "PR1-2HE",
            "PRR1 2HE",
            "PR1 22E",
            "PR1 HHE",
            "AAA9 9AA",
            "ÉC1A 1BB",
            "12345",
        ];
        for input in cases {
            assert!(Postcode::parse(input).is_err(), "{input:?} was accepted");
        }
    }

    #[test]
    fn the_error_quotes_the_input_so_the_user_sees_what_was_wrong() {
        let error = Postcode::parse("PR1-2HE").unwrap_err();
        assert!(error.to_string().contains("\"PR1-2HE\""), "{error}");
    }
}
