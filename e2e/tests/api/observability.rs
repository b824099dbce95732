//! What users watch: the producer's live queue view. (The metrics have their own test
//! binary, `tests/metrics.rs`: see why there.)

use e2e::{ServiceConfigs, TestEnv, TestProducer, change_of_address, eventually};
use reqwest::StatusCode;
use std::time::Duration;

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

/// With the management API the view adds what only the API knows (unacked, rates), but its
/// depth still comes from the broker at the moment of the sample: the API's own figures
/// trail by its statistics interval (5 s by default, more for a quorum queue), which a user
/// watching the queue fill would see as a view that lags.
#[tokio::test]
async fn with_the_management_api_the_view_adds_rates_and_its_depth_does_not_lag() {
    let Some(management_url) = e2e::broker::management_url() else {
        eprintln!("skipped: TEST_MANAGEMENT_URL is not set (e2e/scripts/rabbitmq4.sh env sets it)");
        return;
    };
    let env = TestEnv::new().await;
    let mut config = env.producer_config();
    config.broker.management_url = Some(management_url.into());
    let producer = TestProducer::start(config).await;
    let view = || async {
        let snapshot: serde_json::Value =
            producer.get("/api/v1/queues").await.json().await.unwrap();
        snapshot
    };
    eventually("the view's first sample", e2e::WITHIN, || async {
        let snapshot = view().await;
        if snapshot["queues"][0]["exists"] == true {
            Ok(())
        } else {
            Err(snapshot)
        }
    })
    .await;

    for i in 0..3 {
        producer
            .accepts(&change_of_address(&format!("C-{i}"), "PR1 2HE"))
            .await;
    }
    // The second sample published after the posts was taken after them (the first may have
    // begun before). It shows all three: read from the broker at that moment, not from the
    // API, whose figures for a new queue appear only at its first statistics emission (5 s
    // or more later).
    let mut seen = view().await["sampled_at"].clone();
    let mut snapshot = serde_json::Value::Null;
    for _ in 0..2 {
        snapshot = eventually("the view's next sample", e2e::WITHIN, || async {
            let snapshot = view().await;
            if snapshot["sampled_at"] == seen {
                Err(snapshot)
            } else {
                Ok(snapshot)
            }
        })
        .await;
        seen = snapshot["sampled_at"].clone();
    }
    assert_eq!(
        snapshot["queues"][0]["messages_ready"], 3,
        "the view's depth does not lag: {snapshot}"
    );
    assert_eq!(snapshot["source"], "amqp+management");
    // The API's rates are in the view once a sample's call to it has answered (they are 0
    // until the queue's first statistics emission; the unacked count is `null` until then).
    eventually("the API's rates in the view", e2e::WITHIN, || async {
        let snapshot = view().await;
        if snapshot["queues"][0]["publish_rate"].is_number() {
            Ok(())
        } else {
            Err(snapshot)
        }
    })
    .await;
    producer.stop().await;
}
