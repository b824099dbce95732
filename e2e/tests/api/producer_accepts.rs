//! A valid change gets 202 only once the broker holds it, as the contract says.

use e2e::{ServiceConfigs, TestEnv, TestProducer, change_of_address};
use producer::routes::Accepted;
use reqwest::StatusCode;

#[tokio::test]
async fn a_valid_change_is_accepted_and_queued_as_a_persistent_event() {
    let env = TestEnv::new().await;
    let producer = TestProducer::start(env.producer_config()).await;

    let response = producer
        .post_change(&change_of_address("C-1001", "pr12he"))
        .await;

    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let accepted: Accepted = response.json().await.unwrap();
    assert_eq!(accepted.status, "queued");
    assert_eq!(
        env.queue_depth(&env.queue).await.unwrap(),
        1,
        "202 means the message is in the queue"
    );

    let message = env
        .take_message(&env.queue)
        .await
        .expect("a message in the queue");
    let properties = &message.properties;
    assert_eq!(message.routing_key.as_str(), "address.changed.pr");
    assert_eq!(*properties.delivery_mode(), Some(2), "persistent");
    assert_eq!(
        properties.content_type().as_ref().map(|v| v.as_str()),
        Some("application/json")
    );
    assert_eq!(
        shared::message::message_id(properties),
        Some(accepted.event_id.to_string().as_str())
    );
    assert_eq!(
        properties.kind().as_ref().map(|v| v.as_str()),
        Some("address.changed")
    );
    assert_eq!(
        properties.app_id().as_ref().map(|v| v.as_str()),
        Some("producer")
    );
    assert!(properties.timestamp().is_some());

    let body: serde_json::Value = serde_json::from_slice(&message.data).unwrap();
    assert_eq!(body["event_id"], accepted.event_id.to_string());
    assert_eq!(body["event_type"], "address.changed");
    assert_eq!(body["schema_version"], 1);
    assert_eq!(body["customer_id"], "C-1001");
    assert_eq!(body["new_address"]["postcode"], "PR1 2HE", "normalised");
    assert_eq!(body["effective_date"], "2026-12-01");
    producer.stop().await;
}

#[tokio::test]
async fn optional_fields_take_their_defaults() {
    let env = TestEnv::new().await;
    let producer = TestProducer::start(env.producer_config()).await;
    let body = serde_json::json!({
        "customer_id": "C-2",
        "new_address": { "line1": "Town Hall", "town": "Lancaster", "postcode": "LA1 1PJ" }
    });

    producer.accepts(&body).await;

    let message = env
        .take_message(&env.queue)
        .await
        .expect("a message in the queue");
    let body: serde_json::Value = serde_json::from_slice(&message.data).unwrap();
    assert_eq!(body["new_address"]["country"], "GB");
    assert!(body["new_address"].get("line2").is_none());
    let today = time::OffsetDateTime::now_utc().date();
    assert_eq!(
        body["effective_date"],
        format!(
            "{:04}-{:02}-{:02}",
            today.year(),
            u8::from(today.month()),
            today.day()
        )
    );
    assert_eq!(message.routing_key.as_str(), "address.changed.la");
    producer.stop().await;
}

#[tokio::test]
async fn the_same_idempotency_key_for_the_same_customer_gives_the_same_event_id() {
    let env = TestEnv::new().await;
    let producer = TestProducer::start(env.producer_config()).await;
    let post = |customer: &'static str, key: &'static str| {
        producer
            .http
            .post(format!("{}/api/v1/address-changes", producer.url))
            .header("Idempotency-Key", key)
            .json(&change_of_address(customer, "PR1 2HE"))
            .send()
    };

    let first: Accepted = post("C-1", "key-1").await.unwrap().json().await.unwrap();
    let retry: Accepted = post("C-1", "key-1").await.unwrap().json().await.unwrap();
    let other_customer: Accepted = post("C-2", "key-1").await.unwrap().json().await.unwrap();
    let other_key: Accepted = post("C-1", "key-2").await.unwrap().json().await.unwrap();

    assert_eq!(first.event_id, retry.event_id);
    assert_ne!(first.event_id, other_customer.event_id);
    assert_ne!(first.event_id, other_key.event_id);
    producer.stop().await;
}

#[tokio::test]
async fn concurrent_posts_each_get_their_own_confirm() {
    let env = TestEnv::new().await;
    let producer = TestProducer::start(env.producer_config()).await;

    let posts = (0..200).map(|i| {
        let producer = &producer;
        async move {
            producer
                .post_change(&change_of_address(&format!("C-{i}"), "M1 1AE"))
                .await
                .status()
        }
    });
    let statuses = futures_util::future::join_all(posts).await;

    assert!(
        statuses
            .iter()
            .all(|status| *status == StatusCode::ACCEPTED),
        "{statuses:?}"
    );
    env.depth_becomes(&env.queue, 200).await;
    producer.stop().await;
}

#[tokio::test]
async fn healthz_answers_and_readyz_reports_ready_once_connected() {
    let env = TestEnv::new().await;
    let producer = TestProducer::start(env.producer_config()).await;

    let health = producer.get("/healthz").await;
    let ready = producer.get("/readyz").await;

    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(
        ready.json::<serde_json::Value>().await.unwrap()["status"],
        "ready"
    );
    producer.stop().await;
}
