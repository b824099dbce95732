//! An open connection's life: what a service must hear about it, and closing it without
//! hanging on a broker that no longer answers.

use futures_util::{Stream, StreamExt};
use lapin::{Connection, Event};
use std::time::Duration;

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
