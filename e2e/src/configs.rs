//! The services' configurations for one test, on testkit's `TestEnv`. They live here, not in
//! testkit, because they name the services' types, and testkit depends on no service.

use shared::config::BrokerConfig;
use testkit::{TestEnv, env::TEST_RETRY_DELAYS_MS};

/// What a test's producers and consumers are started with: random ports, the test's
/// exchange and queues, its scratch directory for stores.
pub trait ServiceConfigs {
    /// A producer configuration for this test: random port, its exchange and queue.
    fn producer_config(&self) -> producer::Config;

    /// A consumer of `queue` bound with `binding_keys`, storing in this test's directory.
    fn consumer_config_for(&self, queue: &str, binding_keys: &[&str]) -> consumer::Config;

    /// The main consumer's configuration: the test's queue, every address change.
    fn consumer_config(&self) -> consumer::Config;

    /// Opens this test's consumer store of `queue` from the test, beside the consumer.
    /// (Spelled out rather than `async fn`, so that the future is known to be `Send`.)
    fn open_store(&self, queue: &str) -> impl Future<Output = consumer::store::Store> + Send;
}

impl ServiceConfigs for TestEnv {
    fn producer_config(&self) -> producer::Config {
        producer::Config {
            http_addr: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
            broker: BrokerConfig {
                connection_name: Some(self.connection_name("producer")),
                ..self.broker_config()
            },
            queue: self.queue_config(&self.queue, &["address.changed.#"]),
            publish_timeout_ms: 5_000,
            publish_channels: 16,
            // Nothing listens there: tests of the synchronous path set it.
            consumer_url: "http://127.0.0.1:1".to_owned(),
            consumer_timeout_ms: 2_000,
            watch_queues: Vec::new(),
            max_in_flight_requests: 512,
            idempotency_window_secs: 86_400,
            idempotency_window_keys: 100_000,
            shutdown_grace_secs: 10,
        }
    }

    fn consumer_config_for(&self, queue: &str, binding_keys: &[&str]) -> consumer::Config {
        consumer::Config {
            http_addr: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
            broker: BrokerConfig {
                connection_name: Some(self.connection_name(&format!("consumer:{queue}"))),
                ..self.broker_config()
            },
            queue: self.queue_config(queue, binding_keys),
            prefetch: 32,
            max_attempts: 3,
            retry_delays_ms: TEST_RETRY_DELAYS_MS.to_vec(),
            database_url: Some(self.database_url(queue).into()),
            shutdown_grace_secs: 10,
        }
    }

    fn consumer_config(&self) -> consumer::Config {
        self.consumer_config_for(&self.queue, &["address.changed.#"])
    }

    async fn open_store(&self, queue: &str) -> consumer::store::Store {
        consumer::store::Store::open(&self.database_url(queue).into(), "test")
            .await
            .unwrap_or_else(|error| panic!("cannot open the consumer's store: {error}"))
    }
}
