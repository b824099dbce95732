//! Connecting to RabbitMQ: the broker's address (whose password never reaches a log), named
//! connections with heartbeats, the back-off between attempts, and the connection's events.
//! Beside it, what every user of the protocol needs: what a refusal means ([`errors`]),
//! header values ([`headers`]) and topic matching ([`topic`]).

pub mod errors;
pub mod headers;
pub mod topic;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use futures_util::{Stream, StreamExt};
use lapin::{Connection, ConnectionProperties, Event, uri::AMQPUri};
use secrecy::{ExposeSecret, SecretString};
use std::{fmt, time::Duration};
use tokio_util::sync::CancellationToken;

/// Heartbeat interval asked for when the URI does not set one: a broker or a network path
/// that died silently is noticed within about two intervals rather than at the next write.
const DEFAULT_HEARTBEAT_SECS: u16 = 10;
/// TCP and AMQP handshake deadline when the URI does not set one, so that an address that
/// swallows packets costs a few seconds per attempt, not minutes.
const DEFAULT_CONNECTION_TIMEOUT_MS: u64 = 5_000;

/// The `AMQP_ADDR`: one broker URI, or several separated by commas, one per node of a
/// cluster (same credentials and vhost in each). `Debug` and `Display` show them with the
/// passwords masked; only [`connect`] sees the secrets.
#[derive(Clone)]
pub struct BrokerAddress {
    nodes: Vec<Node>,
    vhost: String,
}

/// One broker node's URI.
#[derive(Clone)]
struct Node {
    uri: SecretString,
    redacted: String,
    /// Where it listens, for the probe of [`wait_for_retry`] and for logs.
    host: String,
    port: u16,
}

impl BrokerAddress {
    /// Parses one `amqp://` or `amqps://` URI, or several separated by commas. The error
    /// never repeats the input, which holds a password. (A comma inside a password must be
    /// percent-encoded, `%2C`, as any URI allows.)
    pub fn parse(input: &str) -> Result<Self, String> {
        let mut nodes = Vec::new();
        let mut vhost = None;
        for (index, part) in input.split(',').map(str::trim).enumerate() {
            let which = if input.contains(',') {
                format!("address {} of the list", index + 1)
            } else {
                "the address".to_owned()
            };
            let uri: AMQPUri = part
                .parse()
                .map_err(|error| format!("{which} is not a valid amqp:// URI ({error})"))?;
            match &vhost {
                None => vhost = Some(uri.vhost.clone()),
                Some(first) if *first != uri.vhost => {
                    return Err(format!(
                        "{which} names another vhost than the first; every node of one broker \
                         must be given the same vhost"
                    ));
                }
                Some(_) => {}
            }
            nodes.push(Node {
                redacted: redact(&uri),
                uri: SecretString::from(part),
                host: uri.authority.host,
                port: uri.authority.port,
            });
        }
        Ok(Self {
            nodes,
            vhost: vhost.unwrap_or_default(),
        })
    }

    /// The virtual host, decoded (`/` for `%2f`).
    pub fn vhost(&self) -> &str {
        &self.vhost
    }

    /// The URIs with their passwords replaced by `***`, for logs and error messages.
    pub fn redacted(&self) -> String {
        self.nodes
            .iter()
            .map(|node| node.redacted.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The host and port of each node, in the order given.
    pub fn endpoints(&self) -> Vec<(&str, u16)> {
        self.nodes
            .iter()
            .map(|node| (node.host.as_str(), node.port))
            .collect()
    }
}

impl Node {
    fn to_uri(&self) -> AMQPUri {
        // Parsed successfully once already in `BrokerAddress::parse`.
        let mut uri: AMQPUri = self.uri.expose_secret().parse().unwrap_or_default();
        uri.query.heartbeat.get_or_insert(DEFAULT_HEARTBEAT_SECS);
        uri.query
            .connection_timeout
            .get_or_insert(DEFAULT_CONNECTION_TIMEOUT_MS);
        uri
    }
}

fn redact(uri: &AMQPUri) -> String {
    format!(
        "{}://{}@{}:{}/{}",
        match uri.scheme {
            lapin::uri::AMQPScheme::AMQP => "amqp",
            lapin::uri::AMQPScheme::AMQPS => "amqps",
        },
        crate::redact::credentials(
            &uri.authority.userinfo.username,
            &uri.authority.userinfo.password
        ),
        uri.authority.host,
        uri.authority.port,
        uri.vhost.replace('/', "%2f"),
    )
}

impl fmt::Debug for BrokerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for BrokerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Opens one connection, named so that an operator can tell the services apart in the
/// management UI and in `rabbitmqctl list_connections name client_properties`.
///
/// With several nodes, it tries them in turn from a random one, so that the clients of a
/// cluster spread over its nodes instead of all crowding the first, and a node that is
/// down costs one refused (or timed-out) attempt before the next is tried. The error is the
/// last node's.
pub async fn connect(address: &BrokerAddress, name: &str) -> Result<Connection, lapin::Error> {
    let first = fastrand::usize(..address.nodes.len().max(1));
    let mut last_error = None;
    for node in address
        .nodes
        .iter()
        .cycle()
        .skip(first)
        .take(address.nodes.len())
    {
        let properties = ConnectionProperties::default().with_connection_name(name.into());
        match Connection::connect_uri(node.to_uri(), properties).await {
            Ok(connection) => {
                if address.nodes.len() > 1 {
                    tracing::info!(node = %node.redacted, connection = name, "Connected to this node of the cluster.");
                }
                return Ok(connection);
            }
            Err(error) => {
                if address.nodes.len() > 1 {
                    tracing::warn!(node = %node.redacted, connection = name, %error, "Cannot connect to this node; trying the next.");
                }
                last_error = Some(error);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| {
        lapin::ErrorKind::InvalidConnectionState(lapin::ConnectionState::Closed).into()
    }))
}

/// `<role>@<host>`: names a connection after the service and the host it runs on (the
/// container id under Docker), so the management UI shows which replica owns it.
pub fn connection_name(role: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|name| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown-host".to_owned());
    format!("{role}@{host}")
}

/// Connects, retrying with exponential back-off and jitter (capped at `max_delay`) for as
/// long as it takes. Returns `None` only when `stop` is cancelled first.
pub async fn connect_with_retry(
    address: &BrokerAddress,
    name: &str,
    max_delay: Duration,
    stop: &CancellationToken,
) -> Option<Connection> {
    let mut delays = reconnect_delays(max_delay);
    loop {
        let attempt = tokio::select! {
            () = stop.cancelled() => return None,
            attempt = connect(address, name) => attempt,
        };
        match attempt {
            Ok(connection) => {
                tracing::info!(broker = %address, connection = name, "Connected to the broker.");
                return Some(connection);
            }
            Err(error) => {
                let delay = delays.next().unwrap_or(max_delay);
                tracing::warn!(
                    broker = %address,
                    connection = name,
                    %error,
                    retry_in_ms = delay.as_millis() as u64,
                    "Cannot connect to the broker; will retry."
                );
                tokio::select! {
                    () = stop.cancelled() => return None,
                    () = wait_for_retry(address, delay) => {}
                }
            }
        }
    }
}

/// How often, while the broker's port refuses connections, a waiting service checks it
/// again (jittered by a quarter either way, so that many clients do not knock in step).
const PROBE_EVERY: Duration = Duration::from_millis(200);
/// Longest a probe waits for the TCP handshake: a host that swallows packets costs this.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Waits `delay` before the next connection attempt, or less: the wait ends as soon as the
/// broker's port, refusing connections when the wait began, accepts one.
///
/// Back-off alone would leave a service waiting out its grown delay (up to
/// `RECONNECT_MAX_DELAY_SECS`) while the broker is back and serving others: after a long
/// outage, up to that delay of 503s for nothing. A TCP handshake a few times a
/// second costs a broker that is down nothing (its kernel answers), and one that is up a
/// connection it sees closed at once. When the port was open at the start (the broker
/// answered but refused us: a wrong password, a missing vhost, still booting), the probe
/// cannot tell anything new, so the full delay applies and a broker that is up is never
/// hammered with AMQP handshakes.
pub async fn wait_for_retry(address: &BrokerAddress, delay: Duration) {
    let deadline = tokio::time::Instant::now() + delay;
    if delay <= PROBE_EVERY || any_port_accepts(address).await {
        tokio::time::sleep_until(deadline).await;
        return;
    }
    loop {
        let next_probe =
            tokio::time::Instant::now() + PROBE_EVERY.mul_f64(0.75 + fastrand::f64() / 2.0);
        if next_probe >= deadline {
            tokio::time::sleep_until(deadline).await;
            return;
        }
        tokio::time::sleep_until(next_probe).await;
        if any_port_accepts(address).await {
            tracing::debug!(broker = %address, "The broker's port accepts connections again.");
            return;
        }
    }
}

/// Whether a TCP handshake with any node's port succeeds within [`PROBE_TIMEOUT`].
async fn any_port_accepts(address: &BrokerAddress) -> bool {
    let handshakes = address.nodes.iter().map(|node| {
        let handshake = tokio::net::TcpStream::connect((node.host.as_str(), node.port));
        async move {
            matches!(
                tokio::time::timeout(PROBE_TIMEOUT, handshake).await,
                Ok(Ok(_))
            )
        }
    });
    futures_util::future::join_all(handshakes)
        .await
        .into_iter()
        .any(|accepted| accepted)
}

/// How long a connection must have lasted for a loss to count as a fresh start. A broker
/// that accepts connections and drops them at once is then retried with growing delays,
/// not in a tight loop.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// The reconnection policy of a long-running service: connect (retrying with back-off),
/// and if the previous connection did not last, wait before connecting again.
#[derive(Debug)]
pub struct Reconnector {
    address: BrokerAddress,
    name: String,
    max_delay: Duration,
    delays: ExponentialBackoff,
    last_connected: Option<tokio::time::Instant>,
}

impl Reconnector {
    pub fn new(address: BrokerAddress, name: String, max_delay: Duration) -> Self {
        Self {
            address,
            name,
            max_delay,
            delays: reconnect_delays(max_delay),
            last_connected: None,
        }
    }

    /// The next connection, or `None` once `stop` is cancelled.
    pub async fn connect(&mut self, stop: &CancellationToken) -> Option<Connection> {
        if let Some(connected_at) = self.last_connected.take() {
            if connected_at.elapsed() < STABLE_AFTER {
                let delay = self.delays.next().unwrap_or(self.max_delay);
                tokio::select! {
                    () = stop.cancelled() => return None,
                    () = wait_for_retry(&self.address, delay) => {}
                }
            } else {
                self.delays = reconnect_delays(self.max_delay);
            }
        }
        let connection =
            connect_with_retry(&self.address, &self.name, self.max_delay, stop).await?;
        self.last_connected = Some(tokio::time::Instant::now());
        Some(connection)
    }

    pub fn connection_name(&self) -> &str {
        &self.name
    }
}

/// Delays between connection attempts: from 100 ms, doubling, never more than `max_delay`.
/// Jitter spreads the reconnections of many clients after a broker restart; backon's adds
/// up to 100% of the delay, so the base is capped at half of `max_delay`.
pub fn reconnect_delays(max_delay: Duration) -> ExponentialBackoff {
    let min_delay = Duration::from_millis(100).min(max_delay);
    ExponentialBuilder::default()
        .with_min_delay(min_delay / 2)
        .with_max_delay(max_delay / 2)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

/// What a service needs to know about its connection after it is open.
#[derive(Debug)]
pub enum ConnectionEvent {
    /// The connection is gone (closed by the broker, network error, missed heartbeats).
    /// Every channel on it is dead: reconnect.
    Lost(lapin::Error),
    /// The broker stopped reading from this connection (memory or disk alarm): publishes
    /// would hang until it is unblocked.
    Blocked(String),
    Unblocked,
}

/// The connection's events, from now on. Call it right after connecting: lapin only
/// reports events to listeners that exist when they happen.
pub fn connection_events(
    connection: &Connection,
) -> impl Stream<Item = ConnectionEvent> + Send + Unpin + 'static {
    connection
        .events_listener()
        .filter_map(|event| async move {
            match event {
                // A soft error closes one channel, not the connection (a refused
                // declaration, a publish to a missing exchange): whoever owns that channel
                // sees it fail and replaces it.
                Event::Error(error) if error.is_amqp_soft_error() => None,
                Event::Error(error) => Some(ConnectionEvent::Lost(error)),
                Event::ConnectionBlocked(reason) => Some(ConnectionEvent::Blocked(reason)),
                Event::ConnectionUnblocked => Some(ConnectionEvent::Unblocked),
                _ => None,
            }
        })
        .boxed()
}

/// How long a closing connection waits for the broker's answer.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

/// Closes `connection` (code 200, `reason`), waiting at most a few seconds for the broker's
/// answer: a connection whose socket has failed may never get one, and a service must not
/// hang on it (the consumer once stayed "reconnecting" for good after a broker restart).
/// Best effort: a failure is logged, and the broker requeues the connection's unacked
/// messages when it notices the connection gone either way.
pub async fn close(connection: &Connection, reason: &str) {
    match tokio::time::timeout(CLOSE_WITHIN, connection.close(200, reason.into())).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::debug!(%error, reason, "The broker connection did not close cleanly.");
        }
        Err(_) => {
            tracing::warn!(
                reason,
                "The broker did not answer the close in time; dropping the connection."
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_appears_in_debug_or_display() {
        let address =
            BrokerAddress::parse("amqp://app:s3cr3t-pa55@broker.internal:5672/%2f").unwrap();
        for shown in [
            format!("{address:?}"),
            address.to_string(),
            address.redacted(),
        ] {
            assert!(!shown.contains("s3cr3t"), "{shown}");
            assert!(shown.contains("app:***@broker.internal:5672"), "{shown}");
        }
    }

    #[test]
    fn an_invalid_uri_is_refused_without_echoing_it() {
        let error = BrokerAddress::parse("http//app:s3cr3t@nowhere").unwrap_err();
        assert!(!error.contains("s3cr3t"), "{error}");
    }

    #[test]
    fn defaults_for_heartbeat_and_timeout_are_added_unless_the_uri_sets_them() {
        let plain = BrokerAddress::parse("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap();
        assert_eq!(
            plain.nodes[0].to_uri().query.heartbeat,
            Some(DEFAULT_HEARTBEAT_SECS)
        );
        let tuned =
            BrokerAddress::parse("amqp://guest:guest@127.0.0.1:5672/%2f?heartbeat=30").unwrap();
        assert_eq!(tuned.nodes[0].to_uri().query.heartbeat, Some(30));
    }

    #[test]
    fn a_comma_separated_list_names_the_nodes_of_one_broker() {
        let cluster = BrokerAddress::parse(
            "amqp://app:s3cr3t@rabbit-1:5672/coc, amqp://app:s3cr3t@rabbit-2:5672/coc,amqp://app:s3cr3t@rabbit-3:5673/coc",
        )
        .unwrap();
        assert_eq!(
            cluster.endpoints(),
            [("rabbit-1", 5672), ("rabbit-2", 5672), ("rabbit-3", 5673)]
        );
        assert_eq!(cluster.vhost(), "coc");
        assert_eq!(
            cluster.to_string(),
            "amqp://app:***@rabbit-1:5672/coc,amqp://app:***@rabbit-2:5672/coc,amqp://app:***@rabbit-3:5673/coc"
        );
    }

    #[test]
    fn the_nodes_of_one_broker_share_one_vhost_and_each_must_parse() {
        let mixed =
            BrokerAddress::parse("amqp://app:s3cr3t@rabbit-1/coc,amqp://app:s3cr3t@rabbit-2/other")
                .unwrap_err();
        assert!(mixed.contains("address 2 of the list"), "{mixed}");
        let broken =
            BrokerAddress::parse("amqp://app:s3cr3t@rabbit-1/coc,http//app:s3cr3t@x").unwrap_err();
        assert!(
            broken.contains("address 2 of the list") && !broken.contains("s3cr3t"),
            "{broken}"
        );
    }

    #[test]
    fn reconnect_delays_grow_and_stay_under_the_cap() {
        let cap = Duration::from_secs(30);
        let delays: Vec<_> = reconnect_delays(cap).take(40).collect();
        assert!(delays[0] <= Duration::from_millis(100));
        assert!(delays.iter().all(|d| *d <= cap), "{delays:?}");
        assert!(delays[39] >= cap / 2, "{delays:?}");
    }
}
