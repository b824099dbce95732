//! Opening a connection, and opening it again: named connections, tried on each node of a
//! cluster, with a back-off between attempts that ends early when the broker's port opens.

use super::BrokerAddress;
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use lapin::{Connection, ConnectionProperties, tcp::OwnedTLSConfig};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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
        // For amqps://, the system's authorities and AMQP_CA_FILE's; unused for amqp://.
        let tls = OwnedTLSConfig {
            identity: None,
            cert_chain: address
                .ca_certificates
                .as_ref()
                .map(|ca| ca.pem().to_owned()),
        };
        let runtime = lapin::runtime::default_runtime()?;
        match Connection::connect_uri_with_config(node.to_uri(), properties, tls, runtime).await {
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
async fn connect_with_retry(
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
async fn wait_for_retry(address: &BrokerAddress, delay: Duration) {
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
fn reconnect_delays(max_delay: Duration) -> ExponentialBackoff {
    let min_delay = Duration::from_millis(100).min(max_delay);
    ExponentialBuilder::default()
        .with_min_delay(min_delay / 2)
        .with_max_delay(max_delay / 2)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delays_grow_and_stay_under_the_cap() {
        let cap = Duration::from_secs(30);
        let delays: Vec<_> = reconnect_delays(cap).take(40).collect();
        assert!(delays[0] <= Duration::from_millis(100));
        assert!(delays.iter().all(|d| *d <= cap), "{delays:?}");
        assert!(delays[39] >= cap / 2, "{delays:?}");
    }
}
