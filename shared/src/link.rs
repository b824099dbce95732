//! The one way both services get to work on the broker: connect (with back-off), declare
//! the topology and report its warnings, then set up what the service itself needs (the
//! producer's confirm channels, the consumer's subscription). Any failure closes that
//! connection and starts again; the service is not ready until a whole pass succeeds.

use crate::{
    amqp::{ConnectionEvent, Reconnector, connection_events},
    readiness::Readiness,
    topology::Topology,
};
use futures_util::Stream;
use lapin::Connection;
use std::{future::Future, sync::Arc};
use tokio_util::sync::CancellationToken;

/// A connection with the topology declared and the service's own part set up.
pub struct Established<T> {
    pub connection: Arc<Connection>,
    /// What happens to the connection from now on (lost, blocked, unblocked).
    pub events: Box<dyn Stream<Item = ConnectionEvent> + Send + Unpin>,
    pub set_up: T,
}

impl<T: std::fmt::Debug> std::fmt::Debug for Established<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Established")
            .field("connection", &self.connection)
            .field("set_up", &self.set_up)
            .finish_non_exhaustive()
    }
}

/// Connects until a connection is declared and `set_up` succeeds on it; `None` once
/// `stop` is cancelled. `what` names the set-up in logs and in the readiness reason
/// (`subscribe to the queue`).
pub async fn establish<T, F, Fut>(
    reconnector: &mut Reconnector,
    topology: &Topology,
    readiness: &Readiness,
    stop: &CancellationToken,
    what: &str,
    mut set_up: F,
) -> Option<Established<T>>
where
    F: FnMut(Arc<Connection>) -> Fut,
    Fut: Future<Output = Result<T, lapin::Error>>,
{
    loop {
        readiness.set_not_ready("connecting to the broker");
        let connection = Arc::new(reconnector.connect(stop).await?);
        let events = Box::new(connection_events(&connection));
        match topology.declare(&connection).await {
            Ok(declared) => {
                for warning in &declared.warnings {
                    tracing::warn!(%warning, "Topology warning.");
                }
                readiness.set_warnings(declared.warnings);
            }
            Err(error) => {
                tracing::error!(%error, exchange = %topology.exchange, queue = %topology.queue.name, "Cannot declare the topology; will retry.");
                readiness.set_not_ready(format!("cannot declare the topology: {error}"));
                crate::amqp::close(&connection, "topology declaration failed").await;
                continue;
            }
        }
        match set_up(Arc::clone(&connection)).await {
            Ok(set_up) => {
                return Some(Established {
                    connection,
                    events,
                    set_up,
                });
            }
            Err(error) => {
                tracing::error!(%error, queue = %topology.queue.name, "Cannot {what}; will retry.");
                readiness.set_not_ready(format!("cannot {what}: {error}"));
                crate::amqp::close(&connection, "set-up failed").await;
            }
        }
    }
}
