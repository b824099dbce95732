//! Keeps the producer connected: connect with back-off, declare the topology, hand a fresh
//! session to the requests, and start again whenever the connection is lost.

use super::{PublisherSettings, Session};
use crate::metrics::BROKER_CONNECTED;
use futures_util::StreamExt;
use shared::{
    amqp::{ConnectionEvent, Reconnector, connection_events},
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
    let mut reconnector = Reconnector::new(
        settings.broker.clone(),
        settings.connection_name.clone(),
        settings.reconnect_max_delay,
    );
    loop {
        readiness.set_not_ready("connecting to the broker");
        let Some(connection) = reconnector.connect(&stop).await else {
            return;
        };
        let mut events = connection_events(&connection);

        let declared = match settings.topology.declare(&connection).await {
            Ok(declared) => declared,
            Err(error) => {
                tracing::error!(%error, exchange = %settings.topology.exchange, queue = %settings.topology.queue.name, "Cannot declare the topology; will retry.");
                readiness.set_not_ready(format!("cannot declare the topology: {error}"));
                let _ = connection
                    .close(200, "topology declaration failed".into())
                    .await;
                continue;
            }
        };
        for warning in &declared.warnings {
            tracing::warn!(%warning, "Topology warning.");
        }
        readiness.set_warnings(declared.warnings);

        let session = Arc::new(Session::new(connection, settings.channels));
        sessions.send_replace(Some(Arc::clone(&session)));
        readiness.set_ready();
        metrics::gauge!(BROKER_CONNECTED).set(1.0);
        tracing::info!(exchange = %settings.topology.exchange, "Ready to publish.");

        loop {
            let event = tokio::select! {
                () = stop.cancelled() => {
                    sessions.send_replace(None);
                    metrics::gauge!(BROKER_CONNECTED).set(0.0);
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
        metrics::gauge!(BROKER_CONNECTED).set(0.0);
    }
}
