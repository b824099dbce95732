//! What users watch: the producer's live queue view. (The metrics have their own test
//! binary, `tests/metrics.rs`: see why there.)

use e2e::{TestEnv, TestProducer, change_of_address, eventually};
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
