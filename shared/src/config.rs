//! Configuration both services read from the environment. Each field's doc comment is its
//! `--help` text; README's configuration table lists the same variables and defaults.

use crate::{
    amqp::{BrokerAddress, CaCertificates},
    topology::{
        DEFAULT_BINDING_KEY, DEFAULT_EXCHANGE, DEFAULT_MAX_LENGTH, DEFAULT_QUEUE, QueueType,
        Topology, WorkQueue,
    },
};
use std::time::Duration;

/// How to reach the broker and which exchange carries the events.
#[derive(Debug, Clone, clap::Args)]
pub struct BrokerConfig {
    /// AMQP URI of the broker, with credentials and the percent-encoded vhost (`%2f` is `/`).
    /// The password is never logged.
    #[arg(
        long,
        env = "AMQP_ADDR",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        value_parser = BrokerAddress::parse,
        hide_env_values = true
    )]
    pub amqp_addr: BrokerAddress,

    /// PEM file of the certificate authorities that an `amqps://` AMQP_ADDR trusts besides
    /// the system's: the private CA that signed the broker's certificate. Read and checked at
    /// start.
    #[arg(long, env = "AMQP_CA_FILE", value_parser = CaCertificates::from_file)]
    pub amqp_ca_file: Option<CaCertificates>,

    /// Durable topic exchange the events are published to.
    #[arg(long, env = "EXCHANGE", default_value = DEFAULT_EXCHANGE)]
    pub exchange: String,

    /// Longest wait between two attempts to (re)connect to the broker, in seconds.
    #[arg(long, env = "RECONNECT_MAX_DELAY_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub reconnect_max_delay_secs: u64,

    /// Base URL of RabbitMQ's management API with credentials
    /// (`http://user:password@host:15672`). When set, the queue view and gauges add
    /// messages delivered but not yet acked and the in/out rates; the depth always comes
    /// from passive declares.
    #[arg(long, env = "MANAGEMENT_URL", hide_env_values = true)]
    pub management_url: Option<secrecy::SecretString>,

    /// Name of this service's connection in the management UI and `rabbitmqctl
    /// list_connections`. Defaults to `<service>@<hostname>`.
    #[arg(long, env = "CONNECTION_NAME")]
    pub connection_name: Option<String>,
}

impl BrokerConfig {
    /// AMQP_ADDR, trusting AMQP_CA_FILE's authorities if one is given.
    pub fn address(&self) -> BrokerAddress {
        match &self.amqp_ca_file {
            Some(ca_certificates) => self.amqp_addr.clone().trusting(ca_certificates.clone()),
            None => self.amqp_addr.clone(),
        }
    }

    /// Settings that parse one by one but do not go together.
    pub fn check(&self) -> Result<(), String> {
        if self.amqp_ca_file.is_some() && !self.amqp_addr.uses_tls() {
            return Err(
                "AMQP_CA_FILE is set, but AMQP_ADDR has no amqps:// address: the CA \
                        would never be used (did you mean amqps://, port 5671?)"
                    .to_owned(),
            );
        }
        Ok(())
    }

    pub fn reconnect_max_delay(&self) -> Duration {
        Duration::from_secs(self.reconnect_max_delay_secs)
    }

    /// Where queue depths are read from: passive declares on a connection named
    /// `<connection name>:monitor`, and the management API too if configured.
    pub fn queue_stats_source(&self, connection_name: &str) -> crate::queue_stats::Source {
        use secrecy::ExposeSecret;
        crate::queue_stats::Source {
            broker: self.address(),
            connection_name: format!("{connection_name}:monitor"),
            management: self
                .management_url
                .as_ref()
                .map(|url| crate::queue_stats::Management {
                    url: url.expose_secret().to_owned(),
                    vhost: self.amqp_addr.vhost().to_owned(),
                }),
        }
    }

    /// The configured connection name, or `<role>@<hostname>`.
    pub fn connection_name(&self, role: &str) -> String {
        self.connection_name
            .clone()
            .unwrap_or_else(|| crate::amqp::connection_name(role))
    }
}

/// Reads a service's configuration from its arguments and the environment as clap does, and
/// refuses settings that parse one by one but do not go together ([`BrokerConfig::check`])
/// the same way: clap's usage error, exit code 2.
pub fn parse<C: clap::Parser + AsRef<BrokerConfig>>() -> C {
    let config = C::parse();
    if let Err(message) = config.as_ref().check() {
        C::command()
            .error(clap::error::ErrorKind::ArgumentConflict, message)
            .exit();
    }
    config
}

/// A durable work queue and what binds it to the exchange.
#[derive(Debug, Clone, clap::Args)]
pub struct QueueConfig {
    /// Durable queue to consume from (consumer) or to create so that events are kept before
    /// any consumer has run (producer). A new subscriber is a consumer with a new QUEUE.
    #[arg(long, env = "QUEUE", default_value = DEFAULT_QUEUE)]
    pub queue: String,

    /// Comma-separated routing-key patterns binding QUEUE to EXCHANGE (`*` matches one word,
    /// `#` any number), e.g. `address.changed.pr` for Preston postcodes only.
    #[arg(long, env = "BINDING_KEYS", default_value = DEFAULT_BINDING_KEY, value_delimiter = ',', num_args = 1..)]
    pub binding_keys: Vec<String>,

    /// Most ready messages QUEUE holds; beyond it the broker refuses new messages and the
    /// producer answers 503 until consumers catch up. Both services declare the queue, so
    /// set the same value on both.
    #[arg(long, env = "QUEUE_MAX_LENGTH", default_value_t = DEFAULT_MAX_LENGTH, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_length: u32,

    /// `quorum` (replicated on every node of a cluster; the default) or `classic` (on one
    /// node) for QUEUE and its dead-letter queue. Both services declare the queue: set the
    /// same value on both. An existing queue of the other type is used as it is, with a
    /// warning in the log and `/readyz` saying how to change it.
    #[arg(long, env = "QUEUE_TYPE", value_enum, default_value_t = QueueType::Quorum)]
    pub queue_type: QueueType,
}

/// The topology both services declare: `broker`'s exchange and `queue` bound to it. The
/// consumer adds its retry delays.
pub fn topology(broker: &BrokerConfig, queue: &QueueConfig) -> Topology {
    Topology {
        exchange: broker.exchange.clone(),
        queue: WorkQueue {
            name: queue.queue.clone(),
            binding_keys: queue
                .binding_keys
                .iter()
                .map(|key| key.trim().to_owned())
                .filter(|key| !key.is_empty())
                .collect(),
            max_length: queue.max_length,
            queue_type: queue.queue_type,
        },
        retry_delays: Vec::new(),
    }
}
