//! The `Idempotency-Key`: a retry of the same request is applied once, whichever producer
//! replica takes it and across restarts; a key reused for a different change is never
//! dropped behind a 202: refused at once while the producer remembers the key, and
//! dead-lettered by the consumer, saying why, beyond that.

use e2e::{ServiceConfigs, TestConsumer, TestEnv, TestProducer, change_of_address, eventually};
use producer::routes::{Accepted, RecordedByConsumer};
use reqwest::StatusCode;
use shared::http::ErrorBody;
use std::time::Duration;

/// The same customer's second change, at another address.
fn another_change(customer_id: &str) -> serde_json::Value {
    let mut body = change_of_address(customer_id, "LA1 1AA");
    body["new_address"]["line1"] = "2 Second Street".into();
    body["new_address"]["town"] = "Lancaster".into();
    body
}

async fn accepted(response: reqwest::Response) -> Accepted {
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    response.json().await.unwrap()
}

async fn refused_as_reused(response: reqwest::Response) -> ErrorBody {
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: ErrorBody = response.json().await.unwrap();
    assert_eq!(body.error.code, "idempotency_key_reused");
    body
}

#[tokio::test]
async fn a_retry_is_applied_once_whichever_replica_takes_it_and_across_a_restart() {
    let env = TestEnv::new().await;
    let (replica_a, replica_b) = (
        TestProducer::start(env.producer_config()).await,
        TestProducer::start(env.producer_config()).await,
    );
    let consumer = TestConsumer::start(env.consumer_config()).await;
    let change = change_of_address("C-77", "PR1 2HE");
    // The same request as the client wrote it again: parsing normalises the postcode.
    let mut retry = change.clone();
    retry["new_address"]["postcode"] = "pr12he".into();

    let first = accepted(replica_a.post_change_keyed("move-2026-12", &change).await).await;
    let on_a = accepted(replica_a.post_change_keyed("move-2026-12", &retry).await).await;
    let on_b = accepted(replica_b.post_change_keyed("move-2026-12", &change).await).await;
    replica_a.stop().await;
    let restarted = TestProducer::start(env.producer_config()).await;
    let after_restart = accepted(restarted.post_change_keyed("move-2026-12", &change).await).await;

    consumer.caught_up(&env).await;
    for retried in [&on_a, &on_b, &after_restart] {
        assert_eq!(retried.event_id, first.event_id);
    }
    assert_eq!(
        consumer.store.times_recorded(first.event_id).await.unwrap(),
        1
    );
    assert_eq!(
        consumer.store.events_recorded().await.unwrap(),
        1 + TestConsumer::CAUGHT_UP_MARKERS,
        "the change once, and caught_up's markers"
    );
    assert_eq!(
        env.queue_depth(&format!("{}.dlq", env.queue))
            .await
            .unwrap(),
        0
    );
    replica_b.stop().await;
    restarted.stop().await;
    consumer.stop().await;
}

#[tokio::test]
async fn a_key_reused_for_another_change_is_refused_at_once_and_nothing_is_published() {
    let env = TestEnv::new().await;
    let producer = TestProducer::start(env.producer_config()).await;

    let first = accepted(
        producer
            .post_change_keyed("k2", &change_of_address("C-50", "PR1 2HE"))
            .await,
    )
    .await;
    let reused = refused_as_reused(
        producer
            .post_change_keyed("k2", &another_change("C-50"))
            .await,
    )
    .await;
    let reused_sync = refused_as_reused(
        producer
            .post_sync_change(&another_change("C-50"), Some("k2"))
            .await,
    )
    .await;
    // The key stays the first request's: repeating that one is still a safe retry.
    let retry = accepted(
        producer
            .post_change_keyed("k2", &change_of_address("C-50", "PR1 2HE"))
            .await,
    )
    .await;

    assert!(reused.error.message.contains("new key"), "{reused:?}");
    assert_eq!(reused_sync.error.message, reused.error.message);
    assert_eq!(retry.event_id, first.event_id);
    assert_eq!(
        env.queue_depth(&env.queue).await.unwrap(),
        2,
        "the first change and its retry; nothing of the other change"
    );
    for _ in 0..2 {
        let message = env.take_message(&env.queue).await.unwrap();
        let event = shared::event::AddressChanged::from_json(&message.data).unwrap();
        assert_eq!(event.new_address.line1.as_str(), "1 Fishergate");
    }
    producer.stop().await;
}

#[tokio::test]
async fn a_key_reused_where_the_producer_cannot_know_is_dead_lettered_by_the_consumer_not_dropped()
{
    let env = TestEnv::new().await;
    // Two replicas: neither knows the keys the other saw, as after a restart or past the
    // window. The consumer is down, as in the walkthrough, so both changes meet in its queue.
    let (replica_a, replica_b) = (
        TestProducer::start(env.producer_config()).await,
        TestProducer::start(env.producer_config()).await,
    );
    let change = change_of_address("C-50", "PR1 2HE");

    let first = accepted(replica_a.post_change_keyed("k2", &change).await).await;
    let second = accepted(
        replica_b
            .post_change_keyed("k2", &another_change("C-50"))
            .await,
    )
    .await;
    let retry = accepted(replica_a.post_change_keyed("k2", &change).await).await;
    assert_eq!(
        second.event_id, first.event_id,
        "one key, one customer: one id"
    );
    assert_eq!(retry.event_id, first.event_id);
    let consumer = TestConsumer::start(env.consumer_config()).await;

    let dlq = format!("{}.dlq", env.queue);
    env.depth_becomes(&dlq, 1).await;
    env.depth_becomes(&env.queue, 0).await;
    let (status, shown) = consumer.address_of("C-50").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        shown["address"]["line1"], "1 Fishergate",
        "the first change stays"
    );
    assert_eq!(
        consumer.store.times_recorded(first.event_id).await.unwrap(),
        1
    );
    let listed = consumer.dead_letters().await;
    let letter = &listed["dead_letters"][0];
    assert_eq!(letter["message_id"], first.event_id.to_string(), "{listed}");
    let reason = letter["reason"].as_str().unwrap();
    assert!(reason.starts_with("idempotency_key_reused:"), "{reason}");
    assert!(reason.contains("NOT applied"), "{reason}");
    let metric = r#"reason="idempotency_key_reused""#;
    eventually(
        "the dead-letter metric",
        Duration::from_secs(10),
        || async {
            let text = consumer.get("/metrics").await.text().await.unwrap();
            text.lines()
                .find(|line| {
                    line.starts_with("consumer_deliveries_dead_lettered_total")
                        && line.contains(metric)
                })
                .map(str::to_owned)
                .ok_or(metric)
        },
    )
    .await;
    let message = env.take_message(&dlq).await.unwrap();
    let event = shared::event::AddressChanged::from_json(&message.data).unwrap();
    assert_eq!(
        event.new_address.line1.as_str(),
        "2 Second Street",
        "the lost change is kept"
    );
    replica_a.stop().await;
    replica_b.stop().await;
    consumer.stop().await;
}

#[tokio::test]
async fn on_the_sync_path_the_consumer_refuses_a_key_reused_where_the_producer_cannot_know() {
    let env = TestEnv::new().await;
    let consumer = TestConsumer::start(env.consumer_config()).await;
    let sync_replica = |consumer_url: String| {
        let mut config = env.producer_config();
        config.consumer_url = consumer_url;
        TestProducer::start(config)
    };
    let (replica_a, replica_b) = (
        sync_replica(consumer.url.clone()).await,
        sync_replica(consumer.url.clone()).await,
    );

    let first = replica_a
        .post_sync_change(&change_of_address("C-50", "PR1 2HE"), Some("k2"))
        .await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: RecordedByConsumer = first.json().await.unwrap();
    let reused = refused_as_reused(
        replica_b
            .post_sync_change(&another_change("C-50"), Some("k2"))
            .await,
    )
    .await;

    assert!(reused.error.message.contains("new key"), "{reused:?}");
    let (_, shown) = consumer.address_of("C-50").await;
    assert_eq!(shown["address"]["line1"], "1 Fishergate");
    assert_eq!(shown["event_id"], first.event_id.to_string());
    replica_a.stop().await;
    replica_b.stop().await;
    consumer.stop().await;
}
