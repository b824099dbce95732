//! The consumer applies each change once, keeps the newest, and acks only what it stored.

use e2e::{ServiceConfigs, TestConsumer, TestEnv, address_changed};
use reqwest::StatusCode;
use shared::http::ErrorBody;

/// Waits until the queue is empty and the consumer has recorded `count` events.
async fn wait_until_drained(env: &TestEnv, consumer: &TestConsumer, count: i64) {
    env.depth_becomes(&env.queue, 0).await;
    consumer.recorded(count).await;
}

#[tokio::test]
async fn the_same_event_delivered_twice_is_applied_once() {
    let env = TestEnv::new().await;
    let consumer = TestConsumer::start(env.consumer_config()).await;
    let event = address_changed("C-1", "1 Fishergate", "PR1 2HE", "2026-12-01");

    env.publish_event(&event).await;
    env.publish_event(&event).await;

    consumer.caught_up(&env).await;
    assert_eq!(
        consumer.store.times_recorded(event.event_id).await.unwrap(),
        1
    );
    assert_eq!(
        consumer.store.events_recorded().await.unwrap(),
        1 + TestConsumer::CAUGHT_UP_MARKERS,
        "the event once, and caught_up's markers"
    );
    let (status, body) = consumer.address_of("C-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["event_id"], event.event_id.to_string());
    consumer.stop().await;
}

#[tokio::test]
async fn an_older_change_arriving_later_does_not_overwrite_the_newer_one() {
    let env = TestEnv::new().await;
    let consumer = TestConsumer::start(env.consumer_config()).await;
    let newer = address_changed("C-2", "2 New Street", "PR1 2HE", "2027-01-01");
    let older = address_changed("C-2", "1 Old Street", "PR1 2HE", "2026-12-01");

    env.publish_event(&newer).await;
    env.publish_event(&older).await;

    wait_until_drained(&env, &consumer, 2).await;
    let (_, body) = consumer.address_of("C-2").await;
    assert_eq!(body["address"]["line1"], "2 New Street");
    assert_eq!(body["effective_date"], "2027-01-01");
    assert_eq!(
        consumer.store.times_recorded(older.event_id).await.unwrap(),
        1,
        "the older change is recorded"
    );
    consumer.stop().await;
}

#[tokio::test]
async fn a_later_change_replaces_the_current_address() {
    let env = TestEnv::new().await;
    let consumer = TestConsumer::start(env.consumer_config()).await;
    let first = address_changed("C-3", "1 Old Street", "PR1 2HE", "2026-12-01");
    let second = address_changed("C-3", "2 New Street", "LA1 1PJ", "2026-12-01");

    env.publish_event(&first).await;
    wait_until_drained(&env, &consumer, 1).await;
    env.publish_event(&second).await;
    wait_until_drained(&env, &consumer, 2).await;

    let (_, body) = consumer.address_of("C-3").await;
    assert_eq!(
        body["address"]["line1"], "2 New Street",
        "same date, later occurred_at wins"
    );
    assert_eq!(body["address"]["postcode"], "LA1 1PJ");
    consumer.stop().await;
}

#[tokio::test]
async fn a_message_that_is_not_an_event_does_not_hold_up_the_queue() {
    let env = TestEnv::new().await;
    let consumer = TestConsumer::start(env.consumer_config()).await;
    let good = address_changed("C-4", "1 Fishergate", "PR1 2HE", "2026-12-01");

    env.publish_raw(
        "address.changed.pr",
        b"this is not json",
        Default::default(),
    )
    .await;
    env.publish_event(&good).await;

    wait_until_drained(&env, &consumer, 1).await;
    assert_eq!(consumer.address_of("C-4").await.0, StatusCode::OK);
    consumer.stop().await;
}

#[tokio::test]
async fn addresses_of_unknown_or_impossible_customers_are_clear_errors() {
    let env = TestEnv::new().await;
    let consumer = TestConsumer::start(env.consumer_config()).await;

    let (unknown, unknown_body) = consumer.address_of("C-never-seen").await;
    let (invalid, invalid_body) = consumer.address_of("C%20with%20spaces").await;

    assert_eq!(unknown, StatusCode::NOT_FOUND);
    assert_eq!(unknown_body["error"]["code"], "not_found");
    assert_eq!(invalid, StatusCode::BAD_REQUEST);
    assert_eq!(invalid_body["error"]["code"], "invalid_customer_id");
    consumer.stop().await;
}

#[tokio::test]
async fn the_sync_endpoint_refuses_what_is_not_an_event_or_too_large_with_json_errors() {
    let env = TestEnv::new().await;
    let consumer = TestConsumer::start(env.consumer_config()).await;
    let post = |body: Vec<u8>| {
        consumer
            .http
            .post(format!("{}/api/v1/address-changes", consumer.url))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
    };

    let not_an_event = post(b"{\"hello\":1}".to_vec()).await.unwrap();
    let too_large = post(vec![b' '; shared::http::BODY_LIMIT_BYTES + 1])
        .await
        .unwrap();

    assert_eq!(not_an_event.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let error: ErrorBody = not_an_event.json().await.unwrap();
    assert_eq!(error.error.code, "invalid_event");
    assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let error: ErrorBody = too_large.json().await.unwrap();
    assert_eq!(error.error.code, "payload_too_large");
    assert_eq!(consumer.store.events_recorded().await.unwrap(), 0);
    consumer.stop().await;
}
