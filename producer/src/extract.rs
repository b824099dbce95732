//! Request extractors that turn every malformed request into our JSON error body.

use crate::error::ApiError;
use axum::{
    body::Bytes,
    extract::{FromRequest, Request},
    http::{HeaderValue, StatusCode, header::CONTENT_TYPE},
};
use serde::de::DeserializeOwned;

use shared::http::BODY_LIMIT_BYTES;

/// Like `axum::Json`, but failures are [`ApiError`]s naming the field at fault, and the
/// JSON-syntax (400) versus JSON-shape (422) distinction follows the HTTP semantics.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers().get(CONTENT_TYPE)) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge {
                        limit_bytes: BODY_LIMIT_BYTES,
                    }
                } else {
                    ApiError::MalformedJson(rejection.body_text())
                }
            })?;
        parse_json(&body).map(Self)
    }
}

/// `application/json`, or a structured `application/…+json` type, parameters allowed.
fn is_json(content_type: Option<&HeaderValue>) -> bool {
    let Some(Ok(value)) = content_type.map(HeaderValue::to_str) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/")
            && essence.ends_with("+json")
            && essence.len() > "application/+json".len())
}

/// Parses with plain serde_json, the fast path every valid request takes; only a body that
/// fails is parsed again, with the path tracking that names the field at fault.
fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).or_else(|_| explain_json_error(body))
}

fn explain_json_error<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut json = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut json).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => ApiError::Validation {
                field: field_at_fault(&path, &inner.to_string()),
                message: strip_position(&inner.to_string()),
            },
            _ => ApiError::MalformedJson(inner.to_string()),
        }
    })?;
    json.end()
        .map_err(|error| ApiError::MalformedJson(error.to_string()))?;
    Ok(value)
}

/// The JSON path of the field at fault. serde reports a missing field at its parent's
/// path, so the missing field's name is appended to it.
fn field_at_fault(path: &str, message: &str) -> Option<String> {
    let parent = (path != ".").then_some(path);
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match (parent, missing) {
        (Some(parent), Some(name)) => Some(format!("{parent}.{name}")),
        (None, Some(name)) => Some(name.to_owned()),
        (parent, None) => parent.map(str::to_owned),
    }
}

/// serde_json appends " at line 1 column 42"; the field name says more to an API client.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types_are_recognised() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ] {
            assert!(is_json(Some(&HeaderValue::from_static(ok))), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/jsonx",
            "application/x-www-form-urlencoded",
            "json",
            "+json",
        ] {
            assert!(!is_json(Some(&HeaderValue::from_static(bad))), "{bad}");
        }
        assert!(!is_json(None));
    }

    #[test]
    fn the_field_at_fault_is_named_for_unknown_and_missing_fields() {
        assert_eq!(
            field_at_fault(
                "new_address.postocde",
                "unknown field `postocde`, expected one of"
            ),
            Some("new_address.postocde".into())
        );
        assert_eq!(
            field_at_fault("new_address", "missing field `town`"),
            Some("new_address.town".into())
        );
        assert_eq!(
            field_at_fault(".", "missing field `customer_id`"),
            Some("customer_id".into())
        );
        assert_eq!(
            field_at_fault("new_address.postcode", "\"x\" is not a UK postcode"),
            Some("new_address.postcode".into())
        );
        assert_eq!(
            field_at_fault(".", "invalid type: string, expected a map"),
            None
        );
    }
}
