//! The producer's settings, read from the environment (or flags; see `producer --help`).

use shared::config::{BrokerConfig, QueueConfig};
use std::{net::SocketAddr, time::Duration};

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "producer",
    version,
    about = "Accepts change-of-address requests over HTTP and publishes them to RabbitMQ."
)]
pub struct Config {
    /// Address and port the HTTP API listens on.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,

    #[command(flatten)]
    pub broker: BrokerConfig,

    #[command(flatten)]
    pub queue: QueueConfig,

    /// How long a request waits for the broker to confirm its message before answering 503.
    #[arg(long, env = "PUBLISH_TIMEOUT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub publish_timeout_ms: u64,

    /// Confirm channels shared by all requests, each with many publishes awaiting their
    /// confirm at once. A few are enough; more spread the broker's work over more of its
    /// channel processes.
    #[arg(long, env = "PUBLISH_CHANNELS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub publish_channels: u32,

    /// Base URL of the consumer, for the synchronous path only
    /// (`POST /api/v1/sync/address-changes`); the asynchronous path never calls it.
    #[arg(long, env = "CONSUMER_URL", default_value = "http://127.0.0.1:8081")]
    pub consumer_url: String,

    /// How long the synchronous path waits for the consumer before answering 504.
    #[arg(long, env = "CONSUMER_TIMEOUT_MS", default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub consumer_timeout_ms: u64,

    /// Comma-separated further queues the live queue view shows besides QUEUE and its
    /// dead-letter queue, e.g. the subscribers `payments,preston-mailshot`.
    #[arg(long, env = "WATCH_QUEUES", value_delimiter = ',', default_value = "")]
    pub watch_queues: Vec<String>,

    /// Most change requests handled at once; beyond it a request is refused at once with
    /// 503 rather than queued, so a flood cannot grow the producer's memory without limit.
    #[arg(long, env = "MAX_IN_FLIGHT_REQUESTS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight_requests: u32,

    /// How long this replica remembers an Idempotency-Key after its first use, to refuse
    /// the key's reuse for a different change at once (422). 0 switches the record off;
    /// the consumer still catches every reuse, later, in its dead-letter queue.
    #[arg(long, env = "IDEMPOTENCY_WINDOW_SECS", default_value_t = 86_400)]
    pub idempotency_window_secs: u64,

    /// Most Idempotency-Keys remembered at once (a few hundred bytes each); beyond it,
    /// keys are forgotten before their time. 0 switches the record off.
    #[arg(long, env = "IDEMPOTENCY_WINDOW_KEYS", default_value_t = 100_000)]
    pub idempotency_window_keys: u64,

    /// Longest time in-flight requests get to finish after SIGTERM or SIGINT.
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
}

impl Config {
    pub fn publish_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_timeout_ms)
    }

    /// The queues the live view shows: QUEUE, its dead-letter queue, and WATCH_QUEUES with
    /// theirs.
    pub fn watched_queues(&self) -> Vec<String> {
        std::iter::once(self.queue.queue.as_str())
            .chain(
                self.watch_queues
                    .iter()
                    .map(|name| name.trim())
                    .filter(|name| !name.is_empty()),
            )
            .flat_map(|name| [name.to_owned(), format!("{name}.dlq")])
            .collect()
    }

    pub fn consumer_timeout(&self) -> Duration {
        Duration::from_millis(self.consumer_timeout_ms)
    }

    pub fn idempotency_window(&self) -> Duration {
        Duration::from_secs(self.idempotency_window_secs)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

impl AsRef<BrokerConfig> for Config {
    fn as_ref(&self) -> &BrokerConfig {
        &self.broker
    }
}
