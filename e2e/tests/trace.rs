//! One trace id from the HTTP request, through the message, to the consumer's processing.
//! A test binary of its own because it captures the process's logs, which needs the
//! process's one global log subscriber.

use e2e::{ServiceConfigs, TestConsumer, TestEnv, TestProducer, change_of_address, eventually};
use reqwest::StatusCode;
use std::{
    io::Write,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};
use tracing_subscriber::{EnvFilter, fmt::MakeWriter, prelude::*};

/// Every log line of this process, as the services write them with `LOG_FORMAT=json`.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedLogs;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl CapturedLogs {
    fn install() -> Self {
        static LOGS: OnceLock<CapturedLogs> = OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = CapturedLogs::default();
            tracing_subscriber::registry()
                .with(EnvFilter::new("info"))
                .with(
                    tracing_subscriber::fmt::layer()
                        .json()
                        .flatten_event(true)
                        .with_writer(logs.clone()),
                )
                .init();
            logs
        })
        .clone()
    }

    fn lines(&self) -> Vec<serde_json::Value> {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The trace ids on the lines saying `message` about `event_id`.
    fn trace_ids(&self, message: &str, event_id: &str) -> Vec<String> {
        self.lines()
            .iter()
            .filter(|line| line["message"] == message && line["event_id"] == event_id)
            .filter_map(|line| {
                line["spans"]
                    .as_array()?
                    .iter()
                    .find_map(|span| span["trace_id"].as_str().map(str::to_owned))
            })
            .collect()
    }
}

#[tokio::test]
async fn the_trace_id_of_the_request_is_on_the_publish_and_on_the_processing() {
    let logs = CapturedLogs::install();
    let env = TestEnv::new().await;
    let producer = TestProducer::start(env.producer_config()).await;
    let consumer = TestConsumer::start(env.consumer_config()).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";

    let response = producer
        .http
        .post(format!("{}/api/v1/address-changes", producer.url))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&change_of_address("C-1", "PR1 2HE"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let echoed = response.headers()["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        echoed.contains(trace_id),
        "the response quotes the trace: {echoed}"
    );
    let event_id = response.json::<serde_json::Value>().await.unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let processed = eventually(
        "the consumer's log line for the event",
        Duration::from_secs(10),
        || async {
            let ids = logs.trace_ids("Message processed.", &event_id);
            if ids.is_empty() {
                Err("not processed yet")
            } else {
                Ok(ids)
            }
        },
    )
    .await;
    assert_eq!(
        logs.trace_ids("Event published.", &event_id),
        [trace_id],
        "the producer's line"
    );
    assert_eq!(
        processed,
        [trace_id],
        "the consumer continued the same trace"
    );

    let message = {
        let other = producer
            .post_change(&change_of_address("C-2", "PR1 2HE"))
            .await;
        other.headers()["traceparent"].to_str().unwrap().to_owned()
    };
    assert!(
        !message.contains(trace_id),
        "a request without traceparent starts its own trace"
    );
    producer.stop().await;
    consumer.stop().await;
}
