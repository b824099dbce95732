//! A steady stream of posts to a producer while a test injects a fault, with the answer to
//! every post kept, so that the test can account for each one afterwards: every change that
//! got 202 applied exactly once, every change refused before it was sent never applied.

use crate::{TestConsumer, change_of_address, eventually};
use reqwest::StatusCode;
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tokio::{sync::Mutex, task::JoinHandle};
use uuid::Uuid;

/// What one post got.
#[derive(Debug, Clone)]
pub struct Posted {
    pub customer: String,
    pub status: StatusCode,
    /// `error.code` of a refusal; empty for a 202.
    pub code: String,
    pub event_id: Option<Uuid>,
}

/// Posts a new customer's change every few milliseconds until stopped.
#[derive(Debug)]
pub struct PostStream {
    posted: Arc<Mutex<Vec<Posted>>>,
    stop: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl PostStream {
    /// Posts for customers `C-0`, `C-1`, …
    pub fn start(producer_url: &str) -> Self {
        Self::for_customers(producer_url, "C-")
    }

    /// Posts for customers `<prefix>0`, `<prefix>1`, …: two streams at once need two prefixes.
    pub fn for_customers(producer_url: &str, prefix: &str) -> Self {
        let (posted, stop) = (
            Arc::<Mutex<Vec<Posted>>>::default(),
            Arc::new(AtomicBool::new(false)),
        );
        let task = {
            let (posted, stop, url, prefix) = (
                Arc::clone(&posted),
                Arc::clone(&stop),
                producer_url.to_owned(),
                prefix.to_owned(),
            );
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut i = 0;
                while !stop.load(Ordering::Acquire) {
                    let customer = format!("{prefix}{i}");
                    let response = http
                        .post(format!("{url}/api/v1/address-changes"))
                        .json(&change_of_address(&customer, "PR1 2HE"))
                        .send()
                        .await
                        .unwrap_or_else(|error| panic!("POST failed: {error}"));
                    let status = response.status();
                    let body: serde_json::Value = response.json().await.unwrap_or_default();
                    posted.lock().await.push(Posted {
                        customer,
                        status,
                        code: body["error"]["code"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        event_id: body["event_id"]
                            .as_str()
                            .and_then(|id| Uuid::parse_str(id).ok()),
                    });
                    i += 1;
                    // Paces the stream; the tests' waits do not depend on it.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        Self { posted, stop, task }
    }

    /// How many posts so far got `status` with error code `code` (`""` for a 202).
    pub async fn count(&self, status: StatusCode, code: &str) -> usize {
        self.posted
            .lock()
            .await
            .iter()
            .filter(|post| post.status == status && post.code == code)
            .count()
    }

    /// Waits (as [`Self::at_least`]) until `n` more posts than now got 202.
    pub async fn accepts_more(&self, what: &str, n: usize) {
        let accepted = self.count(StatusCode::ACCEPTED, "").await;
        self.at_least(what, StatusCode::ACCEPTED, "", accepted + n)
            .await;
    }

    /// How many posts so far got anything but 202.
    pub async fn refused(&self) -> usize {
        self.posted
            .lock()
            .await
            .iter()
            .filter(|post| post.status != StatusCode::ACCEPTED)
            .count()
    }

    /// Waits (at most 60 s: a cluster takes that long to notice a silent node and move on)
    /// until at least `n` posts got `status` with `code`.
    pub async fn at_least(&self, what: &str, status: StatusCode, code: &str, n: usize) {
        eventually(what, Duration::from_secs(60), || async {
            let seen = self.count(status, code).await;
            if seen >= n { Ok(()) } else { Err(seen) }
        })
        .await;
    }

    /// Stops posting and returns every answer, in order.
    pub async fn stop(self) -> Vec<Posted> {
        self.stop.store(true, Ordering::Release);
        self.task
            .await
            .unwrap_or_else(|error| panic!("the poster failed: {error}"));
        self.posted.lock().await.clone()
    }
}

/// Checks every post against what `consumer` applied (once it has caught up): a 202 was
/// applied, and exactly once; a refusal before sending (`broker_unavailable`) was not; a
/// post in flight at the fault (`broker_error`, `publish_timeout`: the client is told to
/// retry, which an Idempotency-Key makes safe) may have gone either way, but once at most.
/// A 202 is waited for (with a deadline) rather than read once: a change on its way back
/// from a retry queue may still be behind the markers that tell the consumer caught up.
pub async fn assert_accounted(consumer: &TestConsumer, posted: &[Posted]) {
    for post in posted {
        match (post.status, post.code.as_str()) {
            (StatusCode::ACCEPTED, _) => {
                let body = consumer.shows(&post.customer).await;
                let event_id = post
                    .event_id
                    .unwrap_or_else(|| panic!("a 202 without an event id"));
                assert_eq!(body["event_id"], event_id.to_string());
                assert_eq!(
                    consumer
                        .store
                        .times_recorded(event_id)
                        .await
                        .unwrap_or_default(),
                    1,
                    "{} applied more than once",
                    post.customer
                );
            }
            (StatusCode::SERVICE_UNAVAILABLE, "broker_unavailable") => {
                let (status, _) = consumer.address_of(&post.customer).await;
                assert_eq!(
                    status,
                    StatusCode::NOT_FOUND,
                    "{} got 503 but was applied",
                    post.customer
                );
            }
            (StatusCode::SERVICE_UNAVAILABLE, "broker_error" | "publish_timeout") => {}
            (status, code) => panic!("unexpected answer {status} {code} for {}", post.customer),
        }
    }
}
