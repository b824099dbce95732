//! Keeps the producer connected: connect with back-off, declare the topology, hand a fresh
//! session to the requests, and start again whenever the connection is lost.

use super::{PublisherSettings, Session};
use futures_util::StreamExt;
use shared::{
    amqp::{ConnectionEvent, connect_with_retry, connection_events, reconnect_delays},
    readiness::Readiness,
};
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub(super) async fn maintain(
    settings: PublisherSettings,
    sessions: watch::Sender<Option<Arc<Session>>>,
    readiness: Readiness,
    stop: CancellationToken,
) {
    let mut setup_delays = reconnect_delays(settings.reconnect_max_delay);
    loop {
        readiness.set_not_ready("connecting to the broker");
        let Some(connection) = connect_with_retry(
            &settings.broker,
            &settings.connection_name,
            settings.reconnect_max_delay,
            &stop,
        )
        .await
        else {
            return;
        };
        let mut events = connection_events(&connection);

        if let Err(error) = declare_topology(&connection, &settings).await {
            tracing::error!(%error, exchange = %settings.topology.exchange, queue = %settings.topology.queue.name, "Cannot declare the topology; will retry.");
            readiness.set_not_ready(format!("cannot declare the topology: {error}"));
            let _ = connection
                .close(200, "topology declaration failed".into())
                .await;
            let delay = setup_delays.next().unwrap_or(settings.reconnect_max_delay);
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(delay) => continue,
            }
        }
        setup_delays = reconnect_delays(settings.reconnect_max_delay);

        let session = Arc::new(Session::new(connection, settings.channels));
        sessions.send_replace(Some(Arc::clone(&session)));
        readiness.set_ready();
        tracing::info!(exchange = %settings.topology.exchange, "Ready to publish.");

        loop {
            let event = tokio::select! {
                () = stop.cancelled() => {
                    sessions.send_replace(None);
                    readiness.set_not_ready("shutting down");
                    if let Err(error) = session.connection.close(200, "producer shutting down".into()).await {
                        tracing::warn!(%error, "Could not close the broker connection cleanly.");
                    }
                    return;
                }
                event = events.next() => event,
            };
            match event {
                Some(ConnectionEvent::Blocked(reason)) => {
                    tracing::warn!(%reason, "The broker blocked publishing.");
                    readiness.set_not_ready(format!("the broker blocked publishing: {reason}"));
                    session.set_blocked(Some(reason));
                }
                Some(ConnectionEvent::Unblocked) => {
                    tracing::info!("The broker unblocked publishing.");
                    session.set_blocked(None);
                    readiness.set_ready();
                }
                Some(ConnectionEvent::Lost(error)) => {
                    tracing::warn!(%error, "Lost the broker connection; reconnecting.");
                    break;
                }
                None => {
                    tracing::warn!("The broker connection's event stream ended; reconnecting.");
                    break;
                }
            }
        }
        sessions.send_replace(None);
    }
}

/// Declares on a channel of its own: a refused declaration closes the channel it ran on.
async fn declare_topology(
    connection: &lapin::Connection,
    settings: &PublisherSettings,
) -> Result<(), lapin::Error> {
    let channel = connection.create_channel().await?;
    settings.topology.declare(&channel).await?;
    channel.close(200, "topology declared".into()).await
}
