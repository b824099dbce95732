//! The two services started in-process on random ports, as their `main` would start them.

use shared::readiness::Readiness;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a service gets to become ready in a test.
pub const READY_WITHIN: Duration = Duration::from_secs(15);

#[derive(Debug)]
pub struct TestProducer {
    pub url: String,
    pub readiness: Readiness,
    pub http: reqwest::Client,
    stop: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl TestProducer {
    /// Starts a producer and waits until it is ready to publish.
    pub async fn start(config: producer::Config) -> Self {
        let producer = Self::start_unready(config).await;
        wait_ready(&producer.readiness, "the producer").await;
        producer
    }

    /// Starts a producer without waiting for the broker (for tests where there is none).
    pub async fn start_unready(config: producer::Config) -> Self {
        let app = producer::Application::build(config)
            .await
            .unwrap_or_else(|error| panic!("producer failed to start: {error}"));
        let url = format!(
            "http://{}",
            app.local_addr().unwrap_or_else(|error| panic!("{error}"))
        );
        let readiness = app.readiness();
        let stop = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(stop.clone()));
        Self {
            url,
            readiness,
            http: reqwest::Client::new(),
            stop,
            task,
        }
    }

    /// `POST /api/v1/address-changes` with a JSON body.
    pub async fn post_change(&self, body: &serde_json::Value) -> reqwest::Response {
        self.post("/api/v1/address-changes", body, None).await
    }

    /// `POST /api/v1/address-changes` with a JSON body and an `Idempotency-Key`.
    pub async fn post_change_keyed(
        &self,
        key: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.post("/api/v1/address-changes", body, Some(key)).await
    }

    /// `POST /api/v1/sync/address-changes` with a JSON body and, when given, an
    /// `Idempotency-Key`.
    pub async fn post_sync_change(
        &self,
        body: &serde_json::Value,
        key: Option<&str>,
    ) -> reqwest::Response {
        self.post("/api/v1/sync/address-changes", body, key).await
    }

    async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
        key: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self.http.post(format!("{}{path}", self.url)).json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request
            .send()
            .await
            .unwrap_or_else(|error| panic!("POST failed: {error}"))
    }

    /// Posts `body` and asserts that the producer answered `202 Accepted`.
    pub async fn accepts(&self, body: &serde_json::Value) {
        let status = self.post_change(body).await.status();
        assert_eq!(status, reqwest::StatusCode::ACCEPTED, "posting {body}");
    }

    /// Waits (with a deadline) until a post of `body` gets `202 Accepted`, e.g. after an
    /// outage.
    pub async fn eventually_accepts(&self, body: &serde_json::Value, what: &str, within: Duration) {
        crate::eventually(what, within, || async {
            match self.post_change(body).await.status() {
                reqwest::StatusCode::ACCEPTED => Ok(()),
                status => Err(status),
            }
        })
        .await;
    }

    /// `GET {path}` on the service, e.g. `get("/readyz")`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        get(&self.http, &self.url, path).await
    }

    /// Like SIGTERM: stops accepting, finishes in-flight requests, closes the connection.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

#[derive(Debug)]
pub struct TestConsumer {
    pub url: String,
    pub readiness: Readiness,
    pub store: consumer::store::Store,
    pub http: reqwest::Client,
    stop: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl TestConsumer {
    /// Starts a consumer and waits until it is consuming.
    pub async fn start(config: consumer::Config) -> Self {
        let app = consumer::Application::build(config)
            .await
            .unwrap_or_else(|error| panic!("consumer failed to start: {error}"));
        let url = format!(
            "http://{}",
            app.local_addr().unwrap_or_else(|error| panic!("{error}"))
        );
        let readiness = app.readiness();
        let store = app.store();
        let stop = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(stop.clone()));
        wait_ready(&readiness, "the consumer").await;
        Self {
            url,
            readiness,
            store,
            http: reqwest::Client::new(),
            stop,
            task,
        }
    }

    /// `GET {path}` on the service, e.g. `get("/readyz")`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        get(&self.http, &self.url, path).await
    }

    /// `GET /api/v1/customers/{id}/address`: the status and the JSON body.
    /// `GET /api/v1/dead-letters`, which must answer 200: the dead letters, left in place.
    pub async fn dead_letters(&self) -> serde_json::Value {
        let response = self.get("/api/v1/dead-letters").await;
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        response
            .json()
            .await
            .unwrap_or_else(|error| panic!("the dead-letter listing is not JSON: {error}"))
    }

    pub async fn address_of(&self, customer_id: &str) -> (reqwest::StatusCode, serde_json::Value) {
        let response = self
            .get(&format!("/api/v1/customers/{customer_id}/address"))
            .await;
        let status = response.status();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// Waits (with a deadline) until the consumer shows an address for `customer_id`, and
    /// returns it.
    pub async fn shows(&self, customer_id: &str) -> serde_json::Value {
        crate::eventually(
            &format!("{customer_id}'s address to be applied"),
            crate::WITHIN,
            || async {
                match self.address_of(customer_id).await {
                    (reqwest::StatusCode::OK, body) => Ok(body),
                    other => Err(other),
                }
            },
        )
        .await
    }

    /// Waits (with a deadline) until the event is recorded, once.
    pub async fn applied(&self, event_id: uuid::Uuid) {
        crate::eventually(
            &format!("event {event_id} to be applied"),
            crate::WITHIN,
            || async {
                match self.store.times_recorded(event_id).await {
                    Ok(1) => Ok(()),
                    other => Err(other),
                }
            },
        )
        .await;
    }

    /// Waits (with a deadline) until the store has recorded `count` events in all.
    pub async fn recorded(&self, count: i64) {
        records_become(&self.store, count).await;
    }

    /// Waits until this consumer has settled everything already in its queue (applied,
    /// moved to a retry or dead-letter queue, acked). An empty queue is not enough: "ready
    /// 0" also counts messages delivered but not yet processed. A lone consumer takes its
    /// queue in order and commits each batch whole, so once a marker change published behind
    /// them is recorded, everything before it is committed, but not yet settled: the
    /// consumer commits batches while earlier ones are settled. When a batch is committed,
    /// the one before it may still wait to be settled and the one before that be settling
    /// (the hand-over between the two holds one batch), so only the batch three back is
    /// surely settled. Each marker is published once the one before it is recorded, so it
    /// lands in a later batch: the fourth marker's commit proves the first marker's batch,
    /// and all before it, settled. Adds [`Self::CAUGHT_UP_MARKERS`] events (customer
    /// `MARKER`) to the store. Not for competing consumers, which split the queue.
    pub async fn caught_up(&self, env: &crate::TestEnv) {
        for _ in 0..Self::CAUGHT_UP_MARKERS {
            let marker =
                crate::address_changed("MARKER", "1 Marker Street", "PR1 2HE", "2026-12-01");
            env.publish_event(&marker).await;
            self.applied(marker.event_id).await;
        }
    }

    /// The events [`Self::caught_up`] adds to the store.
    pub const CAUGHT_UP_MARKERS: i64 = 4;

    /// Like SIGTERM: cancels the subscription, settles in-flight messages, closes.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn get(http: &reqwest::Client, url: &str, path: &str) -> reqwest::Response {
    http.get(format!("{url}{path}"))
        .send()
        .await
        .unwrap_or_else(|error| panic!("GET {path} failed: {error}"))
}

async fn wait_ready(readiness: &Readiness, what: &str) {
    if tokio::time::timeout(READY_WITHIN, readiness.wait_until_ready())
        .await
        .is_err()
    {
        panic!(
            "{what} was not ready within {READY_WITHIN:?}: {:?}",
            readiness.status()
        );
    }
}

/// Waits (with a deadline) until `store` has recorded `count` events in all.
pub async fn records_become(store: &consumer::store::Store, count: i64) {
    crate::eventually(
        &format!("{count} events to be recorded"),
        crate::WITHIN,
        || async {
            match store.events_recorded().await {
                Ok(n) if n == count => Ok(()),
                other => Err(other),
            }
        },
    )
    .await;
}
