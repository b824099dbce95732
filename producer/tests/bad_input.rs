//! The producer's answers to bad input, through its whole HTTP stack (limits, extractors,
//! error bodies) called in-process with `oneshot`: no broker, no port, so the table of
//! every class of bad input runs anywhere in milliseconds. That nothing bad is ever
//! published is the e2e suite's business (`e2e/tests/api/producer_refuses.rs`), against
//! a real broker.

use axum::{
    Router,
    body::Body,
    http::{Method, Request, StatusCode, header::CONTENT_TYPE},
};
use clap::Parser;
use shared::http::ErrorBody;
use testkit::change_of_address;
use tower::ServiceExt;

/// The producer's router, built as the service builds it, with a broker address where
/// nothing listens: the router must not need one.
async fn router() -> Router {
    let config = producer::Config::parse_from([
        "producer",
        "--http-addr",
        "127.0.0.1:0",
        "--amqp-addr",
        "amqp://guest:guest@127.0.0.1:9/%2f",
    ]);
    producer::Application::build(config)
        .await
        .expect("the producer builds without a broker")
        .router()
}

/// Sends one request and returns the status and the parsed error body.
async fn call(router: &Router, request: Request<Body>) -> (StatusCode, ErrorBody) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|error| {
        panic!(
            "{status}: the error body is not our JSON ({error}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, body)
}

fn post(content_type: Option<&str>, body: String) -> Request<Body> {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/address-changes");
    if let Some(content_type) = content_type {
        request = request.header(CONTENT_TYPE, content_type);
    }
    request.body(Body::from(body)).unwrap()
}

fn with(mut body: serde_json::Value, pointer: &str, value: serde_json::Value) -> String {
    *body
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{pointer}")) = value;
    body.to_string()
}

fn without(mut body: serde_json::Value, parent: &str, field: &str) -> String {
    body.pointer_mut(parent)
        .and_then(|v| v.as_object_mut())
        .unwrap()
        .remove(field);
    body.to_string()
}

/// A bad request: what it is, its content type and body, and the status, error code and
/// field the answer must carry.
struct Case(
    &'static str,
    Option<&'static str>,
    String,
    StatusCode,
    &'static str,
    Option<&'static str>,
);

#[tokio::test]
async fn each_class_of_bad_input_gets_its_status_and_a_json_error() {
    let router = router().await;
    let valid = change_of_address("C-1001", "PR1 2HE");
    let json = Some("application/json");

    let mut unknown_top_level = valid.clone();
    unknown_top_level["priority"] = "high".into();
    let cases = [
        Case(
            "malformed JSON",
            json,
            "{\"customer_id\":".into(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
            None,
        ),
        Case(
            "empty body",
            json,
            String::new(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
            None,
        ),
        Case(
            "trailing garbage",
            json,
            format!("{valid} x"),
            StatusCode::BAD_REQUEST,
            "malformed_json",
            None,
        ),
        Case(
            "no content type",
            None,
            valid.to_string(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            None,
        ),
        Case(
            "form content type",
            Some("application/x-www-form-urlencoded"),
            valid.to_string(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            None,
        ),
        Case(
            "over 64 KiB",
            json,
            with(
                valid.clone(),
                "/new_address/line1",
                "x".repeat(70_000).into(),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            None,
        ),
        Case(
            "missing customer_id",
            json,
            without(valid.clone(), "", "customer_id"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("customer_id"),
        ),
        Case(
            "missing town",
            json,
            without(valid.clone(), "/new_address", "town"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("new_address.town"),
        ),
        Case(
            "unknown field",
            json,
            unknown_top_level.to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("priority"),
        ),
        Case(
            "unknown address field",
            json,
            with(valid.clone(), "/new_address/country", "GB".into())
                .replace("\"country\"", "\"county\""),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("new_address.county"),
        ),
        Case(
            "customer id with a space",
            json,
            with(valid.clone(), "/customer_id", "C 1001".into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("customer_id"),
        ),
        Case(
            "customer id too long",
            json,
            with(valid.clone(), "/customer_id", "C".repeat(65).into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("customer_id"),
        ),
        Case(
            "customer id a number",
            json,
            with(valid.clone(), "/customer_id", 1001.into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("customer_id"),
        ),
        Case(
            "empty line1",
            json,
            with(valid.clone(), "/new_address/line1", "  ".into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("new_address.line1"),
        ),
        Case(
            "town too long",
            json,
            with(valid.clone(), "/new_address/town", "x".repeat(201).into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("new_address.town"),
        ),
        Case(
            "not a UK postcode",
            json,
            with(valid.clone(), "/new_address/postcode", "90210".into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("new_address.postcode"),
        ),
        Case(
            "another country",
            json,
            with(valid.clone(), "/new_address/country", "FR".into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("new_address.country"),
        ),
        Case(
            "impossible date",
            json,
            with(valid.clone(), "/effective_date", "2026-02-30".into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("effective_date"),
        ),
        Case(
            "not an ISO date",
            json,
            with(valid.clone(), "/effective_date", "01/12/2026".into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("effective_date"),
        ),
        Case(
            "an array",
            json,
            "[]".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            None,
        ),
    ];

    for Case(case, content_type, body, status, code, field) in cases {
        let (got_status, got) = call(&router, post(content_type, body)).await;
        assert_eq!(got_status, status, "{case}: {got:?}");
        assert_eq!(got.error.code, code, "{case}: {got:?}");
        assert!(!got.error.message.is_empty(), "{case}");
        assert_eq!(got.error.field.as_deref(), field, "{case}: {got:?}");
    }
}

#[tokio::test]
async fn a_valid_change_without_a_broker_gets_503_not_202() {
    let router = router().await;
    let (status, body) = call(
        &router,
        post(
            Some("application/json"),
            change_of_address("C-1", "PR1 2HE").to_string(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body:?}");
    assert_eq!(body.error.code, "broker_unavailable");
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let router = router().await;
    let get = |path: &str| Request::builder().uri(path).body(Body::empty()).unwrap();

    let (missing, missing_body) = call(&router, get("/api/v1/nothing-here")).await;
    let (wrong_method, wrong_body) = call(&router, get("/api/v1/address-changes")).await;

    assert_eq!(missing, StatusCode::NOT_FOUND);
    assert_eq!(missing_body.error.code, "not_found");
    assert_eq!(wrong_method, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_body.error.code, "method_not_allowed");
}
