//! The customer's identifier in the change-of-circumstances system.

use super::InvalidValue;
use serde::{Deserialize, Serialize};
use std::fmt;

/// 1 to 64 ASCII letters, digits, `-` or `_`: safe in a URL path, a log line and a database key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CustomerId(String);

impl CustomerId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(input: &str) -> Result<Self, InvalidValue> {
        if input.is_empty() || input.len() > Self::MAX_LEN {
            return Err(InvalidValue::new(format!(
                "must be 1 to {} characters long",
                Self::MAX_LEN
            )));
        }
        if !input
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(InvalidValue::new(
                "may contain only letters, digits, '-' and '_'",
            ));
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CustomerId {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<CustomerId> for String {
    fn from(value: CustomerId) -> Self {
        value.0
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_letters_digits_dash_and_underscore() {
        for ok in ["C-1001", "c_1001", "A", "0", &"x".repeat(64)] {
            assert_eq!(
                CustomerId::parse(ok).map(|id| id.to_string()).as_deref(),
                Ok(ok)
            );
        }
    }

    #[test]
    fn refuses_empty_too_long_and_other_characters() {
        for bad in [
            "",
            &"x".repeat(65),
            "C 1001",
            "C/1001",
            "C.1001",
            "é",
            "C-1001\n",
        ] {
            assert!(CustomerId::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
