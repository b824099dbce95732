//! What operators and users watch: Prometheus metrics on both services and the producer's
//! live queue view.

use e2e::{TestConsumer, TestEnv, TestProducer, change_of_address, eventually};
use reqwest::StatusCode;
use std::time::Duration;

async fn metrics_of(http: &reqwest::Client, url: &str) -> String {
    let response = http.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

#[tokio::test]
async fn both_services_expose_prometheus_metrics_of_what_they_did() {
    let env = TestEnv::new().await;
    let producer = TestProducer::start(env.producer_config()).await;
    let consumer = TestConsumer::start(env.consumer_config()).await;

    let posted = producer
        .post_change(&change_of_address("C-1", "PR1 2HE"))
        .await;
    assert_eq!(posted.status(), StatusCode::ACCEPTED);
    consumer.shows("C-1").await;

    let producer_metrics = metrics_of(&producer.http, &producer.url).await;
    for expected in [
        r#"producer_http_requests_total{method="POST",route="/api/v1/address-changes",status="202"}"#,
        "producer_http_request_duration_seconds_bucket",
        "producer_events_published_total",
        "producer_events_confirmed_total",
        "producer_publish_confirm_duration_seconds_bucket",
        "producer_broker_connected 1",
    ] {
        assert!(
            producer_metrics.contains(expected),
            "producer /metrics lacks {expected}:\n{producer_metrics}"
        );
    }
    let consumer_metrics = eventually(
        "the consumer's queue gauges",
        Duration::from_secs(10),
        || async {
            let text = metrics_of(&consumer.http, &consumer.url).await;
            let work_queue = format!(
                r#"consumer_queue_messages{{queue="{}",state="ready"}}"#,
                env.queue
            );
            let dead_letters = format!(
                r#"consumer_queue_messages{{queue="{}.dlq",state="ready"}}"#,
                env.queue
            );
            if text.contains(&work_queue) && text.contains(&dead_letters) {
                Ok(text)
            } else {
                Err(work_queue)
            }
        },
    )
    .await;
    for expected in [
        r#"consumer_deliveries_acked_total{outcome="updated"}"#,
        "consumer_deliveries_received_total",
        "consumer_processing_duration_seconds_bucket",
        r#"consumer_http_requests_total{method="GET",route="/api/v1/customers/{customer_id}/address",status="200"}"#,
    ] {
        assert!(
            consumer_metrics.contains(expected),
            "consumer /metrics lacks {expected}:\n{consumer_metrics}"
        );
    }
    producer.stop().await;
    consumer.stop().await;
}

#[tokio::test]
async fn the_queue_view_reports_the_depth_read_from_the_broker() {
    let env = TestEnv::new().await;
    let producer = TestProducer::start(env.producer_config()).await;

    for i in 0..3 {
        let response = producer
            .post_change(&change_of_address(&format!("C-{i}"), "PR1 2HE"))
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }

    let snapshot = eventually(
        "the view to show three ready messages",
        Duration::from_secs(10),
        || async {
            let snapshot: serde_json::Value =
                producer.get("/api/v1/queues").await.json().await.unwrap();
            if snapshot["queues"][0]["messages_ready"] == 3 {
                Ok(snapshot)
            } else {
                Err(snapshot)
            }
        },
    )
    .await;
    assert_eq!(snapshot["source"], "amqp");
    assert_eq!(snapshot["queues"][0]["name"], env.queue.as_str());
    assert_eq!(snapshot["queues"][0]["consumers"], 0);
    assert_eq!(snapshot["queues"][1]["name"], format!("{}.dlq", env.queue));
    // No rates over AMQP: only the management API has them.
    assert_eq!(
        snapshot["queues"][0]["publish_rate"],
        serde_json::Value::Null
    );
    let history: Vec<serde_json::Value> = producer
        .get("/api/v1/queues/history")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        history
            .last()
            .map(|sample| sample["ready"][&env.queue].clone()),
        Some(serde_json::json!(3)),
        "the history ends with the latest sample: {history:?}"
    );
    let page = producer.http.get(&producer.url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("/api/v1/queues"));
    producer.stop().await;
}
