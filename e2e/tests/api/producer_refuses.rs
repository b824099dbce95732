//! Every class of bad input gets its status and a JSON error, and nothing is published;
//! a broker that cannot take the message gets a 503, never a 202 or a hang.

use e2e::{ServiceConfigs, TestEnv, TestProducer, assert_unavailable, change_of_address};
use reqwest::{StatusCode, header::CONTENT_TYPE};
use shared::{amqp::BrokerAddress, http::ErrorBody};
use std::time::{Duration, Instant};

/// Posts `body` with `content_type` and returns the status and the parsed error body.
async fn post_raw(
    producer: &TestProducer,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, ErrorBody) {
    let mut request = producer
        .http
        .post(format!("{}/api/v1/address-changes", producer.url))
        .body(body);
    if let Some(content_type) = content_type {
        request = request.header(CONTENT_TYPE, content_type);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let body = response
        .json::<ErrorBody>()
        .await
        .unwrap_or_else(|error| panic!("{status}: the error body is not our JSON: {error}"));
    (status, body)
}

fn with(mut body: serde_json::Value, pointer: &str, value: serde_json::Value) -> String {
    *body
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{pointer}")) = value;
    body.to_string()
}

/// The whole table of bad input is `producer/tests/bad_input.rs` (in-process, no broker);
/// here, one of each class against a real broker, to see that none of them is published.
#[tokio::test]
async fn bad_input_of_every_class_is_never_published() {
    let env = TestEnv::new().await;
    let producer = TestProducer::start(env.producer_config()).await;
    let valid = change_of_address("C-1001", "PR1 2HE");
    let json = Some("application/json");
    let cases = [
        (
            json,
            "{\"customer_id\":".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (None, valid.to_string(), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (
            json,
            with(
                valid.clone(),
                "/new_address/line1",
                "x".repeat(70_000).into(),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            json,
            with(valid.clone(), "/new_address/postcode", "90210".into()),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (content_type, body, status) in cases {
        let (got_status, got) = post_raw(&producer, content_type, body).await;
        assert_eq!(got_status, status, "{got:?}");
    }
    assert_eq!(
        env.queue_depth(&env.queue).await.unwrap(),
        0,
        "nothing is published for a 4xx"
    );
    producer.stop().await;
}

#[tokio::test]
async fn an_unusable_idempotency_key_is_refused_and_nothing_is_published() {
    let env = TestEnv::new().await;
    let producer = TestProducer::start(env.producer_config()).await;

    for key in ["has space", &"k".repeat(256)] {
        let response = producer
            .http
            .post(format!("{}/api/v1/address-changes", producer.url))
            .header("Idempotency-Key", key)
            .json(&change_of_address("C-1", "PR1 2HE"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{key}");
        assert_eq!(
            response.json::<ErrorBody>().await.unwrap().error.code,
            "invalid_idempotency_key"
        );
    }
    assert_eq!(env.queue_depth(&env.queue).await.unwrap(), 0);
    producer.stop().await;
}

#[tokio::test]
async fn unroutable_changes_get_503_and_routable_ones_202_even_when_interleaved() {
    let env = TestEnv::new().await;
    // Only Preston is bound: any other area has no queue, so the broker returns it.
    let mut config = env.producer_config();
    config.queue.binding_keys = vec!["address.changed.pr".into()];
    let producer = TestProducer::start(config).await;

    let posts = (0..300).map(|i| {
        let producer = &producer;
        let postcode = if i % 3 == 0 { "PR1 2HE" } else { "LA1 1PJ" };
        async move {
            let response = producer
                .post_change(&change_of_address(&format!("C-{i}"), postcode))
                .await;
            let status = response.status();
            let retry_after = response.headers().get("retry-after").is_some();
            let code = response.json::<serde_json::Value>().await.unwrap()["error"]["code"].clone();
            (postcode, status, retry_after, code)
        }
    });
    let results = futures_util::future::join_all(posts).await;

    for (postcode, status, retry_after, code) in &results {
        if *postcode == "PR1 2HE" {
            assert_eq!(
                *status,
                StatusCode::ACCEPTED,
                "a routable change was refused: {code}"
            );
        } else {
            assert_eq!(
                *status,
                StatusCode::SERVICE_UNAVAILABLE,
                "an unroutable change was accepted"
            );
            assert_eq!(code, "unroutable");
            assert!(retry_after);
        }
    }
    assert_eq!(
        env.queue_depth(&env.queue).await.unwrap(),
        100,
        "exactly the routable changes are queued"
    );
    producer.stop().await;
}

#[tokio::test]
async fn with_the_broker_unreachable_the_producer_is_alive_not_ready_and_answers_503_quickly() {
    let env = TestEnv::new().await;
    let mut config = env.producer_config();
    // Nothing listens on port 1 of loopback: connections are refused at once.
    config.broker.amqp_addr = BrokerAddress::parse("amqp://guest:guest@127.0.0.1:1/%2f").unwrap();
    let producer = TestProducer::start_unready(config).await;

    let health = producer.get("/healthz").await;
    let ready = producer.get("/readyz").await;
    let started = Instant::now();
    let post = producer
        .post_change(&change_of_address("C-1", "PR1 2HE"))
        .await;
    let took = started.elapsed();

    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        ready.json::<serde_json::Value>().await.unwrap()["status"],
        "not_ready"
    );
    assert_unavailable(post, "broker_unavailable").await;
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let metrics = producer.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"producer_publish_failures_total{reason="unavailable"}"#),
        "the refusal is counted:\n{metrics}"
    );
    producer.stop().await;
}

#[tokio::test]
async fn beyond_max_in_flight_requests_a_post_is_shed_at_once_and_nothing_is_published() {
    let env = TestEnv::new().await;
    // A consumer that accepts connections and never answers: a synchronous post to it
    // holds its place among the requests in flight until the consumer timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = env.producer_config();
    config.consumer_url = format!("http://{}", silent.local_addr().unwrap());
    // Long beside the shed post's bound below, so that a stalled machine cannot end the
    // held posts first and make room for it.
    config.consumer_timeout_ms = 6_000;
    config.max_in_flight_requests = 2;
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let held = tokio::spawn({
        let accepted = std::sync::Arc::clone(&accepted);
        async move {
            let mut open = Vec::new();
            while let Ok((connection, _)) = silent.accept().await {
                open.push(connection);
                accepted.fetch_add(1, std::sync::atomic::Ordering::Release);
            }
        }
    });
    let producer = TestProducer::start(config).await;
    let post_sync = |customer: &str| {
        producer
            .http
            .post(format!("{}/api/v1/sync/address-changes", producer.url))
            .json(&change_of_address(customer, "PR1 2HE"))
            .send()
    };
    let slow = futures_util::future::join(post_sync("C-1"), post_sync("C-2"));
    let mut slow = std::pin::pin!(slow);
    let both_waiting = e2e::eventually(
        "both synchronous posts to reach the silent consumer",
        e2e::WITHIN,
        || async {
            match accepted.load(std::sync::atomic::Ordering::Acquire) {
                2 => Ok(()),
                n => Err(n),
            }
        },
    );
    // The two posts must be driven while we wait for them to arrive.
    tokio::select! {
        () = both_waiting => {}
        _ = &mut slow => panic!("the synchronous posts finished before both were in flight"),
    }

    let started = Instant::now();
    let shed = producer
        .post_change(&change_of_address("C-3", "PR1 2HE"))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shed at once, not held until a place is free (the held posts time out after 6 s)"
    );
    assert_unavailable(shed, "overloaded").await;
    assert_eq!(
        env.queue_depth(&env.queue).await.unwrap(),
        0,
        "nothing published"
    );

    let (first, second) = slow.await;
    assert_eq!(first.unwrap().status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(second.unwrap().status(), StatusCode::GATEWAY_TIMEOUT);
    producer.accepts(&change_of_address("C-3", "PR1 2HE")).await;
    held.abort();
    producer.stop().await;
}
