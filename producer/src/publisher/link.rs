//! Keeps the producer connected: connect with back-off, declare the topology, hand a fresh
//! session to the requests, and start again whenever the connection is lost. While
//! connected, declare the topology again if a failed publish shows part of it was deleted.

use super::{PublisherSettings, Session};
use crate::metrics::BROKER_CONNECTED;
use futures_util::StreamExt;
use lapin::Connection;
use shared::{
    amqp::{ConnectionEvent, Reconnector},
    link::{Established, establish},
    readiness::Readiness,
    topology::Topology,
};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
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
        let Some(Established {
            set_up: session,
            mut events,
            ..
        }) = establish(
            &mut reconnector,
            &settings.topology,
            &readiness,
            &stop,
            "open the confirm channels",
            |connection| async move { Ok(Session::new(connection, settings.channels)) },
        )
        .await
        else {
            return;
        };
        let session = Arc::new(session);
        sessions.send_replace(Some(Arc::clone(&session)));
        readiness.set_ready();
        metrics::gauge!(BROKER_CONNECTED).set(1.0);
        tracing::info!(exchange = %settings.topology.exchange, "Ready to publish.");

        let mut last_check: Option<Instant> = None;
        loop {
            let event = tokio::select! {
                () = stop.cancelled() => {
                    sessions.send_replace(None);
                    metrics::gauge!(BROKER_CONNECTED).set(0.0);
                    readiness.set_not_ready("shutting down");
                    shared::amqp::close(&session.connection, "producer shutting down").await;
                    return;
                }
                () = session.topology_check.notified() => {
                    if last_check.is_none_or(|at| at.elapsed() >= TOPOLOGY_CHECK_INTERVAL) {
                        last_check = Some(Instant::now());
                        // Bounded: while it runs, this loop does not see the connection's
                        // events, and a dying connection may leave the check hanging (posts
                        // must turn to `broker_unavailable` as soon as it is lost).
                        let check = restore_topology(&settings.topology, &session.connection, &readiness);
                        if tokio::time::timeout(TOPOLOGY_CHECK_WITHIN, check).await.is_err() {
                            tracing::warn!("The topology check did not finish in time; the connection may be failing.");
                        }
                    }
                    continue;
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

/// Failed publishes ask for a topology check at most this often: under a flood every
/// refusal (a full queue) rings, and one look a second is plenty.
const TOPOLOGY_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// A topology check takes milliseconds on a healthy connection.
const TOPOLOGY_CHECK_WITHIN: Duration = Duration::from_secs(2);

/// Declares the topology again if part of it is gone from the broker (deleted by hand, or
/// a broker that lost its definitions), so publishing recovers without a restart. Only a
/// reconnection would declare it otherwise, and deleting an exchange does not drop
/// connections.
async fn restore_topology(topology: &Topology, connection: &Connection, readiness: &Readiness) {
    if !connection.status().connected() {
        return; // the event stream reports the loss; the next connection declares it all
    }
    let missing = match topology.missing(connection).await {
        Ok(missing) if missing.is_empty() => return,
        Ok(missing) => missing,
        Err(error) => {
            tracing::warn!(%error, "Could not check the topology after a failed publish.");
            return;
        }
    };
    tracing::warn!(
        ?missing,
        "Part of the topology is gone from the broker (deleted by hand?); declaring it again."
    );
    match topology.declare(connection).await {
        Ok(declared) => readiness.set_warnings(declared.warnings),
        Err(error) => {
            tracing::error!(%error, "Could not declare the topology again; the next failed publish retries.");
        }
    }
}
