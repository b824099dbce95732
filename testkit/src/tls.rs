//! The AMQP-over-TLS listener of `e2e/scripts/rabbitmq4.sh`'s single node (127.0.0.1:5674),
//! for the tests of `amqps://`: its address, the test CA that signed its certificate, and an
//! impostor CA (same name, other key) that did not.

use shared::amqp::{BrokerAddress, CaCertificates};

/// Where the TLS listener is and what to trust, from `TEST_AMQPS_ADDR`, `TEST_AMQP_CA_FILE`
/// and `TEST_AMQP_IMPOSTOR_CA_FILE` (`eval "$(e2e/scripts/rabbitmq4.sh env)"`). The listener
/// is on the node `AMQP_ADDR` names, so a test's exchange and queues are the same over both.
#[derive(Debug, Clone)]
pub struct TlsListener {
    pub amqps_addr: String,
    pub ca_file: String,
    pub impostor_ca_file: String,
}

impl TlsListener {
    /// The listener, or `None` with a notice when it is not configured; with
    /// `REQUIRE_TLS_TESTS=1` (as CI sets it) a missing listener fails the test instead.
    pub fn from_env() -> Option<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        match (
            var("TEST_AMQPS_ADDR"),
            var("TEST_AMQP_CA_FILE"),
            var("TEST_AMQP_IMPOSTOR_CA_FILE"),
        ) {
            (Some(amqps_addr), Some(ca_file), Some(impostor_ca_file)) => Some(Self {
                amqps_addr,
                ca_file,
                impostor_ca_file,
            }),
            _ if var("REQUIRE_TLS_TESTS").as_deref() == Some("1") => panic!(
                "REQUIRE_TLS_TESTS=1 but no TLS listener is configured: run \
                 `e2e/scripts/rabbitmq4.sh start` and `eval \"$(e2e/scripts/rabbitmq4.sh env)\"`"
            ),
            _ => {
                eprintln!(
                    "skipped: no AMQP TLS listener (TEST_AMQPS_ADDR); see e2e/scripts/rabbitmq4.sh"
                );
                None
            }
        }
    }

    /// The listener's address, as `AMQP_ADDR` takes it.
    pub fn address(&self) -> BrokerAddress {
        BrokerAddress::parse(&self.amqps_addr).unwrap_or_else(|error| panic!("{error}"))
    }

    /// The CA that signed the listener's certificate, as `AMQP_CA_FILE` loads it.
    pub fn ca(&self) -> CaCertificates {
        CaCertificates::from_file(&self.ca_file).unwrap_or_else(|error| panic!("{error}"))
    }

    /// A CA with the same name that did not sign it.
    pub fn impostor_ca(&self) -> CaCertificates {
        CaCertificates::from_file(&self.impostor_ca_file).unwrap_or_else(|error| panic!("{error}"))
    }
}
