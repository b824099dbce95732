//! AMQP header values, read and written one way by every part of the project (the same
//! tables carry queue arguments). Reading accepts every spelling a value may arrive in: a
//! header written as a long string can come back as a short one, and a count as any integer
//! width, depending on who wrote it (another client, the management UI, a shovel).

use lapin::{
    BasicProperties,
    types::{AMQPValue, FieldTable, LongString},
};

/// A text value as this project writes it.
pub fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// The message's headers, to be extended on a copy of it.
pub fn cloned_from(properties: &BasicProperties) -> FieldTable {
    properties.headers().clone().unwrap_or_default()
}

/// The text header `name`, if present and text.
pub fn read_string(properties: &BasicProperties, name: &str) -> Option<String> {
    match read(properties, name)? {
        AMQPValue::LongString(value) => Some(value.to_string()),
        AMQPValue::ShortString(value) => Some(value.to_string()),
        _ => None,
    }
}

/// The count header `name`, if present, an integer, and one that fits.
pub fn read_u32(properties: &BasicProperties, name: &str) -> Option<u32> {
    match read(properties, name)? {
        AMQPValue::LongUInt(n) => Some(*n),
        AMQPValue::LongInt(n) => u32::try_from(*n).ok(),
        AMQPValue::LongLongInt(n) => u32::try_from(*n).ok(),
        AMQPValue::ShortUInt(n) => Some(u32::from(*n)),
        AMQPValue::ShortShortUInt(n) => Some(u32::from(*n)),
        _ => None,
    }
}

fn read<'a>(properties: &'a BasicProperties, name: &str) -> Option<&'a AMQPValue> {
    properties.headers().as_ref()?.inner().get(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_counts_are_read_whatever_width_they_were_written_in() {
        let mut headers = FieldTable::default();
        headers.insert("long".into(), long_string("a"));
        headers.insert("short".into(), AMQPValue::ShortString("b".into()));
        headers.insert("small".into(), AMQPValue::ShortShortUInt(3));
        headers.insert("signed".into(), AMQPValue::LongLongInt(4));
        headers.insert("negative".into(), AMQPValue::LongInt(-1));
        let properties = BasicProperties::default().with_headers(headers);

        assert_eq!(read_string(&properties, "long").as_deref(), Some("a"));
        assert_eq!(read_string(&properties, "short").as_deref(), Some("b"));
        assert_eq!(read_string(&properties, "small"), None);
        assert_eq!(read_u32(&properties, "small"), Some(3));
        assert_eq!(read_u32(&properties, "signed"), Some(4));
        assert_eq!(read_u32(&properties, "negative"), None);
        assert_eq!(read_u32(&properties, "missing"), None);
    }
}
