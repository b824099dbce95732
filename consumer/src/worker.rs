//! The consume loop: connect, declare, subscribe with a prefetch limit, process deliveries
//! in batches, ack each only after its change is committed, and reconnect when the
//! connection is lost. Stops cleanly on cancellation.

use crate::{
    handler::{self, Processed},
    outcome::{Outcome, settle},
    store::Store,
};
use futures_util::{FutureExt, StreamExt};
use lapin::{
    Channel, Connection, Consumer,
    message::Delivery,
    options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
};
use shared::{
    amqp::{
        BrokerAddress, ConnectionEvent, connect_with_retry, connection_events, reconnect_delays,
    },
    readiness::Readiness,
    topology::Topology,
};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What the worker needs to run.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub broker: BrokerAddress,
    pub topology: Topology,
    /// Most unacknowledged messages the broker sends ahead; also the largest batch.
    pub prefetch: u16,
    /// Shown in the management UI's connection list.
    pub connection_name: String,
    pub reconnect_max_delay: Duration,
}

/// Why a subscription ended.
enum Ended {
    /// Shutdown was requested; the subscription is cancelled and in-flight work settled.
    Stopped,
    /// The connection or channel failed, or the broker cancelled the subscription.
    Lost(String),
}

/// Runs until `stop` is cancelled. In-flight messages are processed and settled before
/// it returns; messages prefetched but not started go back to the queue.
pub async fn run(
    settings: WorkerSettings,
    store: Store,
    readiness: Readiness,
    stop: CancellationToken,
) {
    let mut retry_delays = reconnect_delays(settings.reconnect_max_delay);
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

        let (channel, mut consumer) = match subscribe(&connection, &settings).await {
            Ok(subscription) => subscription,
            Err(error) => {
                tracing::error!(%error, queue = %settings.topology.queue.name, "Cannot subscribe; will retry.");
                readiness.set_not_ready(format!("cannot subscribe to the queue: {error}"));
                let _ = connection.close(200, "subscription failed".into()).await;
                let delay = retry_delays.next().unwrap_or(settings.reconnect_max_delay);
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(delay) => continue,
                }
            }
        };
        retry_delays = reconnect_delays(settings.reconnect_max_delay);
        readiness.set_ready();
        tracing::info!(queue = %settings.topology.queue.name, prefetch = settings.prefetch, "Consuming.");

        let ended = consume(
            &mut consumer,
            &mut events,
            &store,
            usize::from(settings.prefetch),
            &stop,
        )
        .await;
        match ended {
            Ended::Stopped => {
                readiness.set_not_ready("shutting down");
                if let Err(error) = channel
                    .basic_cancel(consumer.tag(), BasicCancelOptions::default())
                    .await
                {
                    tracing::warn!(%error, "Could not cancel the subscription cleanly.");
                }
                // Closing the connection returns every unacked, unstarted message to the queue.
                let _ = connection.close(200, "consumer shutting down".into()).await;
                tracing::info!("Subscription cancelled; connection closed.");
                return;
            }
            Ended::Lost(reason) => {
                tracing::warn!(%reason, "Lost the subscription; reconnecting.");
                readiness.set_not_ready(format!("reconnecting: {reason}"));
                let _ = connection.close(200, "reconnecting".into()).await;
            }
        }
    }
}

async fn subscribe(
    connection: &Connection,
    settings: &WorkerSettings,
) -> Result<(Channel, Consumer), lapin::Error> {
    let channel = connection.create_channel().await?;
    settings.topology.declare(&channel).await?;
    channel
        .basic_qos(settings.prefetch, BasicQosOptions::default())
        .await?;
    let consumer = channel
        .basic_consume(
            settings.topology.queue.name.as_str().into(),
            settings.connection_name.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok((channel, consumer))
}

async fn consume(
    consumer: &mut Consumer,
    events: &mut (impl futures_util::Stream<Item = ConnectionEvent> + Unpin),
    store: &Store,
    max_batch: usize,
    stop: &CancellationToken,
) -> Ended {
    loop {
        let first = tokio::select! {
            biased;
            () = stop.cancelled() => return Ended::Stopped,
            event = events.next() => match event {
                Some(ConnectionEvent::Lost(error)) => return Ended::Lost(error.to_string()),
                None => return Ended::Lost("connection closed".into()),
                Some(_) => continue,
            },
            delivery = consumer.next() => delivery,
        };
        let first = match first {
            Some(Ok(delivery)) => delivery,
            Some(Err(error)) => return Ended::Lost(error.to_string()),
            None => return Ended::Lost("the broker cancelled the subscription".into()),
        };
        // Whatever else has already arrived joins the batch; nothing waits for more.
        let mut batch = vec![first];
        let mut interrupted = None;
        while batch.len() < max_batch {
            match consumer.next().now_or_never() {
                Some(Some(Ok(delivery))) => batch.push(delivery),
                Some(Some(Err(error))) => {
                    interrupted = Some(error.to_string());
                    break;
                }
                Some(None) => {
                    interrupted = Some("the broker cancelled the subscription".into());
                    break;
                }
                None => break,
            }
        }
        process_batch(store, &batch).await;
        if let Some(reason) = interrupted {
            return Ended::Lost(reason);
        }
    }
}

async fn process_batch(store: &Store, batch: &[Delivery]) {
    let bodies: Vec<&[u8]> = batch
        .iter()
        .map(|delivery| delivery.data.as_slice())
        .collect();
    let results = handler::process(store, &bodies).await;
    for (delivery, processed) in batch.iter().zip(&results) {
        log_outcome(delivery, processed);
        if let Err(error) = settle(delivery, &processed.outcome).await {
            // The channel is gone: the broker redelivers the message, and the store's
            // record of applied ids makes the second delivery a no-op.
            tracing::warn!(%error, delivery_tag = delivery.delivery_tag, "Could not settle a delivery; it will be redelivered.");
        }
    }
}

/// The one log line per message: which event, whose, how it was routed, whether it is a
/// redelivery, and how it ended.
fn log_outcome(delivery: &Delivery, processed: &Processed) {
    let (event_id, customer_id) = match &processed.event {
        Some((event_id, customer_id)) => (event_id.to_string(), customer_id.to_string()),
        None => (
            delivery
                .properties
                .message_id()
                .as_ref()
                .map(|id| id.to_string())
                .unwrap_or_default(),
            String::new(),
        ),
    };
    let routing_key = delivery.routing_key.as_str();
    let redelivered = delivery.redelivered;
    let outcome = processed.outcome.label();
    match &processed.outcome {
        Outcome::Ack(_) => tracing::info!(
            event_id,
            customer_id,
            routing_key,
            redelivered,
            outcome,
            "Message processed."
        ),
        Outcome::Retry(reason) => {
            tracing::warn!(event_id, customer_id, routing_key, redelivered, outcome, %reason, "Message will be retried.");
        }
        Outcome::DeadLetter(reason) => {
            tracing::warn!(event_id, customer_id, routing_key, redelivered, outcome, %reason, "Message dead-lettered.");
        }
    }
}
