//! The consumer's settings, read from the environment (or flags; see `consumer --help`).

use secrecy::SecretString;
use shared::config::{BrokerConfig, QueueConfig};
use std::{net::SocketAddr, time::Duration};

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "consumer",
    version,
    about = "Consumes address.changed events from a RabbitMQ queue and applies each exactly once."
)]
pub struct Config {
    /// Address and port of the HTTP API (customer addresses, health).
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8081")]
    pub http_addr: SocketAddr,

    #[command(flatten)]
    pub broker: BrokerConfig,

    #[command(flatten)]
    pub queue: QueueConfig,

    /// Most unacknowledged messages the broker sends ahead of processing. Batches of up to
    /// half of it are committed in one transaction each, so the other half keeps arriving.
    /// 128 by default: a drain waits on round trips (commit, acks, next deliveries), and
    /// larger batches amortise them (bench/README.md, "The default PREFETCH").
    #[arg(long, env = "PREFETCH", default_value_t = 128, value_parser = clap::value_parser!(u16).range(1..))]
    pub prefetch: u16,

    /// Deliveries a message gets before a passing failure (database unavailable) is treated
    /// as permanent and the message goes to `<QUEUE>.dlq`.
    #[arg(long, env = "MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,

    /// Comma-separated waits, in milliseconds, before each retry: the first retry waits the
    /// first value, and the last value is used for every later one. One retry queue
    /// `<QUEUE>.retry.<ms>ms` exists per value.
    #[arg(long, env = "RETRY_DELAYS_MS", default_value = "1000,5000,30000,120000", value_delimiter = ',', num_args = 1.., value_parser = clap::value_parser!(u64).range(1..))]
    pub retry_delays_ms: Vec<u64>,

    /// Where applied changes are stored: `sqlite://path/file.db` (created if missing) or
    /// `postgres://user:password@host/db`. Defaults to `sqlite://data/<QUEUE>.db`, so that
    /// consumers of different queues never share an idempotency record.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<SecretString>,

    /// Longest time in-flight messages and requests get to finish after SIGTERM or SIGINT.
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
}

impl Config {
    pub fn database_url(&self) -> SecretString {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://data/{}.db", self.queue.queue).into())
    }

    pub fn retry_delays(&self) -> Vec<Duration> {
        self.retry_delays_ms
            .iter()
            .copied()
            .map(Duration::from_millis)
            .collect()
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
