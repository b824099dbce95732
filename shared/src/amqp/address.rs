//! The broker's address, `AMQP_ADDR`: one URI or one per node of a cluster, parsed once,
//! shown everywhere with its password masked.

use super::CaCertificates;
use lapin::uri::{AMQPScheme, AMQPUri};
use secrecy::{ExposeSecret, SecretString};
use std::fmt;

/// Heartbeat interval asked for when the URI does not set one: a broker or a network path
/// that died silently is noticed within about two intervals rather than at the next write.
const DEFAULT_HEARTBEAT_SECS: u16 = 10;
/// TCP and AMQP handshake deadline when the URI does not set one, so that an address that
/// swallows packets costs a few seconds per attempt, not minutes.
const DEFAULT_CONNECTION_TIMEOUT_MS: u64 = 5_000;

/// The `AMQP_ADDR`: one broker URI, or several separated by commas, one per node of a
/// cluster (same credentials and vhost in each). `Debug` and `Display` show them with the
/// passwords masked; only [`connect`](super::connect) sees the secrets.
#[derive(Clone)]
pub struct BrokerAddress {
    pub(super) nodes: Vec<Node>,
    vhost: String,
    /// Trusted for `amqps://` besides the system's authorities (`AMQP_CA_FILE`).
    pub(super) ca_certificates: Option<CaCertificates>,
}

/// One broker node's URI.
#[derive(Clone)]
pub(super) struct Node {
    uri: SecretString,
    pub(super) redacted: String,
    /// Where it listens, for the probe between connection attempts and for logs.
    pub(super) host: String,
    pub(super) port: u16,
    tls: bool,
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
                tls: uri.scheme == AMQPScheme::AMQPS,
            });
        }
        Ok(Self {
            nodes,
            vhost: vhost.unwrap_or_default(),
            ca_certificates: None,
        })
    }

    /// The same address, its `amqps://` connections trusting these authorities besides
    /// the system's.
    pub fn trusting(self, ca_certificates: CaCertificates) -> Self {
        Self {
            ca_certificates: Some(ca_certificates),
            ..self
        }
    }

    /// Whether any node is reached over TLS (`amqps://`).
    pub fn uses_tls(&self) -> bool {
        self.nodes.iter().any(|node| node.tls)
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
    pub(super) fn to_uri(&self) -> AMQPUri {
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
            AMQPScheme::AMQP => "amqp",
            AMQPScheme::AMQPS => "amqps",
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
}
