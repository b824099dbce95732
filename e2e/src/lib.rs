//! The integration tests' own part of the kit: the services' configurations for a test
//! (`ServiceConfigs`), the services started in-process on random ports, and a stream of
//! posts to account for. Everything that needs no service (broker discovery, per-test
//! names, events, processes, faults, waiting) is `testkit`'s, re-exported here so that the
//! tests name one crate.

pub mod configs;
pub mod services;
pub mod stream;

pub use configs::ServiceConfigs;
pub use services::{TestConsumer, TestProducer, records_become};
pub use testkit::*;

/// Asserts that `response` is a refusal for now: 503, with `Retry-After` and the JSON error
/// body's `code`.
pub async fn assert_unavailable(response: reqwest::Response, code: &str) {
    assert_eq!(response.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        response.headers().get("retry-after").is_some(),
        "a 503 carries Retry-After"
    );
    let body: shared::http::ErrorBody = response
        .json()
        .await
        .unwrap_or_else(|error| panic!("the 503's body is not our JSON error: {error}"));
    assert_eq!(body.error.code, code);
}
