//! Producer → RabbitMQ → consumer, as a user runs them.

use e2e::{ServiceConfigs, TestConsumer, TestEnv, TestProducer, change_of_address};
use producer::routes::Accepted;
use reqwest::StatusCode;

#[tokio::test]
async fn a_posted_change_is_applied_and_shown_normalised_by_the_consumer() {
    let env = TestEnv::new().await;
    let producer = TestProducer::start(env.producer_config()).await;
    let consumer = TestConsumer::start(env.consumer_config()).await;

    let response = producer
        .post_change(&change_of_address("C-1001", "pr12he"))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let accepted: Accepted = response.json().await.unwrap();

    let body = consumer.shows("C-1001").await;
    assert_eq!(body["customer_id"], "C-1001");
    assert_eq!(body["event_id"], accepted.event_id.to_string());
    assert_eq!(body["effective_date"], "2026-12-01");
    assert_eq!(
        body["address"],
        serde_json::json!({
            "line1": "1 Fishergate", "line2": "Flat 2", "town": "Preston", "postcode": "PR1 2HE", "country": "GB"
        })
    );
    assert!(body["updated_at"].is_string());
    producer.stop().await;
    consumer.stop().await;
}

#[tokio::test]
async fn with_the_consumer_stopped_the_queue_fills_and_it_drains_when_the_consumer_returns() {
    const N: usize = 25;
    let env = TestEnv::new().await;
    let producer = TestProducer::start(env.producer_config()).await;
    // The consumer has run once, and is now stopped, as in the walkthrough.
    TestConsumer::start(env.consumer_config())
        .await
        .stop()
        .await;

    let mut event_ids = Vec::new();
    for i in 0..N {
        let response = producer
            .post_change(&change_of_address(&format!("C-{i}"), "PR1 2HE"))
            .await;
        assert_eq!(
            response.status(),
            StatusCode::ACCEPTED,
            "the producer works while the consumer is down"
        );
        event_ids.push(response.json::<Accepted>().await.unwrap().event_id);
    }
    assert_eq!(
        env.queue_depth(&env.queue).await.unwrap(),
        N as u32,
        "the queue holds every change"
    );

    let consumer = TestConsumer::start(env.consumer_config()).await;
    env.depth_becomes(&env.queue, 0).await;
    consumer.recorded(N as i64).await;
    for (i, event_id) in event_ids.iter().enumerate() {
        assert_eq!(
            consumer.store.times_recorded(*event_id).await.unwrap(),
            1,
            "applied exactly once"
        );
        let (status, body) = consumer.address_of(&format!("C-{i}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["event_id"], event_id.to_string());
    }
    producer.stop().await;
    consumer.stop().await;
}
