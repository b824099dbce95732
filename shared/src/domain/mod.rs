//! The values an address change is made of. Each type parses its input once, in `parse`, so
//! holding one means holding a valid value: code that receives them never validates again.

mod address;
mod customer_id;
mod effective_date;
mod postcode;

pub use address::{Address, AddressText, Country};
pub use customer_id::CustomerId;
pub use effective_date::EffectiveDate;
pub use postcode::Postcode;

/// Why a value was refused. The message is written for the person who sent it, and is what
/// the producer returns in its 422 body next to the name of the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(String);

impl InvalidValue {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}
