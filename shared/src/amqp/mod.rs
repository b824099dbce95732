//! Connecting to RabbitMQ: the broker's address (whose password never reaches a log), named
//! connections with heartbeats, the back-off between attempts, and the connection's events.
//! Beside it, what every user of the protocol needs: what a refusal means ([`errors`]),
//! header values ([`headers`]) and topic matching ([`topic`]).

mod address;
mod connect;
pub mod errors;
mod events;
pub mod headers;
mod tls;
pub mod topic;

pub use address::BrokerAddress;
pub use connect::{Reconnector, connect, connection_name};
pub use events::{ConnectionEvent, close, connection_events};
pub use tls::CaCertificates;
