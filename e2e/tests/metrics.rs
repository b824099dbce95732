//! What operators watch: the Prometheus metrics of both services.
//!
//! A process has one metrics recorder, which every service started in it shares. So this
//! binary holds this one test and nothing else: the counts it reads are this test's own, and
//! it can assert them exactly (in the shared `api` binary another test's producer could
//! satisfy "published" or set "connected" back to 0).

use e2e::{ServiceConfigs, TestConsumer, TestEnv, TestProducer, change_of_address, eventually};
use reqwest::StatusCode;
use std::time::Duration;

async fn metrics_of(http: &reqwest::Client, url: &str) -> String {
    let response = http.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

fn assert_lines(service: &str, metrics: &str, expected: &[&str]) {
    for line in expected {
        assert!(
            metrics.lines().any(|present| present == *line),
            "{service} /metrics lacks the line `{line}`:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn both_services_count_exactly_what_they_did() {
    let env = TestEnv::new().await;
    let producer = TestProducer::start(env.producer_config()).await;
    let consumer = TestConsumer::start(env.consumer_config()).await;

    producer.accepts(&change_of_address("C-1", "PR1 2HE")).await;
    consumer.shows("C-1").await;

    let producer_metrics = metrics_of(&producer.http, &producer.url).await;
    assert_lines(
        "producer",
        &producer_metrics,
        &[
            r#"producer_http_requests_total{method="POST",route="/api/v1/address-changes",status="202"} 1"#,
            "producer_events_published_total 1",
            "producer_events_confirmed_total 1",
            "producer_broker_connected 1",
        ],
    );
    for histogram in [
        "producer_http_request_duration_seconds_count",
        "producer_publish_confirm_duration_seconds_count",
    ] {
        assert!(
            producer_metrics.contains(histogram),
            "producer /metrics lacks {histogram}:\n{producer_metrics}"
        );
    }

    // The queue gauges come from the consumer's own sampling of the broker: they appear at
    // its first sample, and C-1 is then gone from the queue.
    let work_queue = format!(
        r#"consumer_queue_messages{{queue="{}",state="ready"}} 0"#,
        env.queue
    );
    let dead_letters = format!(
        r#"consumer_queue_messages{{queue="{}.dlq",state="ready"}} 0"#,
        env.queue
    );
    let consumer_metrics = eventually(
        "the consumer's queue gauges",
        Duration::from_secs(10),
        || async {
            let text = metrics_of(&consumer.http, &consumer.url).await;
            let has = |line: &str| text.lines().any(|present| present == line);
            if has(&work_queue) && has(&dead_letters) {
                Ok(text)
            } else {
                Err(work_queue.clone())
            }
        },
    )
    .await;
    assert_lines(
        "consumer",
        &consumer_metrics,
        &[
            r#"consumer_deliveries_acked_total{outcome="updated"} 1"#,
            "consumer_deliveries_received_total 1",
            "consumer_broker_connected 1",
            r#"consumer_http_requests_total{method="GET",route="/api/v1/customers/{customer_id}/address",status="200"} 1"#,
        ],
    );
    assert!(
        consumer_metrics.contains("consumer_processing_duration_seconds_count"),
        "consumer /metrics lacks the processing histogram:\n{consumer_metrics}"
    );

    producer.stop().await;
    consumer.stop().await;
}
