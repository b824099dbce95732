//! The consume loop: connect, declare, subscribe with a prefetch limit, process deliveries
//! in batches, settle each only after its change is committed, and reconnect when the
//! connection is lost. Stops cleanly on cancellation.

use crate::{
    handler, metrics as metric,
    outcome::{SettleError, Settled, Settler, original_routing_key},
    store::Store,
};
use futures_util::{Stream, StreamExt};
use lapin::{
    Channel, Connection, Consumer,
    message::Delivery,
    options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
};
use shared::{
    amqp::{BrokerAddress, ConnectionEvent, Reconnector},
    link::{Established, establish},
    message::{EventMessage, message_id},
    readiness::Readiness,
    topology::Topology,
    trace_context::TraceContext,
};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// What the worker needs to run.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub broker: BrokerAddress,
    pub topology: Topology,
    /// Most unacknowledged messages the broker sends ahead. A batch is at most half of it
    /// (rounded up), so that one half can be committed while the other is acked and the
    /// broker sends what replaces it.
    pub prefetch: u16,
    /// Deliveries before a passing failure is given up on and dead-lettered.
    pub max_attempts: u32,
    /// Shown in the management UI's connection list.
    pub connection_name: String,
    pub reconnect_max_delay: Duration,
}

/// Why a subscription ended.
enum Ended {
    /// Shutdown was requested; in-flight work is settled.
    Stopped,
    /// The connection or channel failed, or the broker cancelled the subscription.
    Lost(Lost),
}

/// How a subscription was lost. Each ends in a reconnect; the unsettled deliveries come back.
#[derive(Debug, thiserror::Error)]
enum Lost {
    #[error("the connection failed: {0}")]
    Connection(lapin::Error),
    #[error("the connection closed")]
    Closed,
    #[error("the delivery stream failed: {0}")]
    Delivery(lapin::Error),
    #[error("the broker cancelled the subscription")]
    Cancelled,
    #[error("a delivery could not be settled: {0}")]
    Settle(#[from] SettleError),
    #[error("the consume loop stopped without a reason")]
    Halted,
}

/// Runs until `stop` is cancelled. In-flight messages are processed and settled before it
/// returns; messages prefetched but not started go back to the queue. The open connection
/// is published on `connection` for the dead-letter endpoints.
pub async fn run(
    settings: WorkerSettings,
    store: Store,
    readiness: Readiness,
    connection_slot: watch::Sender<Option<Arc<Connection>>>,
    stop: CancellationToken,
) {
    let mut reconnector = Reconnector::new(
        settings.broker.clone(),
        settings.connection_name.clone(),
        settings.reconnect_max_delay,
    );
    loop {
        let Some(Established {
            connection,
            mut events,
            set_up: (channel, mut consumer, settler),
        }) = establish(
            &mut reconnector,
            &settings.topology,
            &readiness,
            &stop,
            "subscribe to the queue",
            |connection| subscribe(connection, &settings),
        )
        .await
        else {
            return;
        };
        connection_slot.send_replace(Some(Arc::clone(&connection)));
        readiness.set_ready();
        metrics::gauge!(metric::BROKER_CONNECTED).set(1.0);
        tracing::info!(queue = %settings.topology.queue.name, prefetch = settings.prefetch, "Consuming.");

        let ended = consume(
            &mut consumer,
            &mut events,
            &store,
            &settler,
            // Half the window: while one half is being committed, the other is acked and
            // replaced, instead of the whole window waiting for one ack.
            usize::from(settings.prefetch.div_ceil(2)),
            &stop,
        )
        .await;
        connection_slot.send_replace(None);
        metrics::gauge!(metric::BROKER_CONNECTED).set(0.0);
        match ended {
            Ended::Stopped => {
                readiness.set_not_ready("shutting down");
                if let Err(error) = channel
                    .basic_cancel(consumer.tag(), BasicCancelOptions::default())
                    .await
                {
                    tracing::warn!(%error, "Could not cancel the subscription cleanly.");
                }
                // Closing returns every prefetched, unstarted message to the queue.
                shared::amqp::close(&connection, "consumer shutting down").await;
                tracing::info!("Subscription cancelled; connection closed.");
                return;
            }
            Ended::Lost(reason) => {
                tracing::warn!(%reason, "Lost the subscription; reconnecting.");
                readiness.set_not_ready(format!("reconnecting: {reason}"));
                shared::amqp::close(&connection, "reconnecting").await;
            }
        }
    }
}

/// The consumer's own set-up on a connection whose topology is declared: the settler's
/// confirm channel, then the subscription with its prefetch window.
async fn subscribe(
    connection: Arc<Connection>,
    settings: &WorkerSettings,
) -> Result<(Channel, Consumer, Settler), lapin::Error> {
    let settler = Settler::open(
        &connection,
        settings.topology.queue.clone(),
        settings.topology.retry_delays.clone(),
        settings.max_attempts,
    )
    .await?;
    let channel = connection.create_channel().await?;
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
    Ok((channel, consumer, settler))
}

/// Consumes until stopped or lost, in three stages that run at once in this task: receiving
/// deliveries, applying them in batches (one commit each), and settling each batch with
/// the broker. So while the database commits one batch (for SQLite, a flush to disk), the
/// previous batch is being acked and the deliveries that replace it are arriving, instead
/// of the store waiting for each ack and the next deliveries in turn. Every guarantee of the
/// serial loop holds: a delivery is settled only after its batch is committed, batches are
/// settled in the order they were taken (a `multiple` ack covers earlier ones only), and
/// the store's record of applied ids makes a redelivery of a committed, unsettled batch a
/// no-op.
async fn consume(
    consumer: &mut Consumer,
    events: &mut (impl Stream<Item = ConnectionEvent> + Unpin),
    store: &Store,
    settler: &Settler,
    max_batch: usize,
    stop: &CancellationToken,
) -> Ended {
    // Cancelled when shutdown is asked for or any stage ends: no new batch starts after it,
    // but the one being applied is still committed and settled.
    let halt = stop.child_token();
    // Unbounded, but never holds more than the prefetch window: the broker sends no more.
    let (arrived, arrivals) = mpsc::unbounded_channel();
    let (committed, commits) = mpsc::channel(1);
    let (received, (), settled) = tokio::join!(
        receive(consumer, events, arrived, &halt),
        apply_batches(store, arrivals, max_batch, committed, &halt),
        settle_batches(settler, commits, &halt),
    );
    match (received, settled) {
        // The broker went first: its reason is the cause, a settle failing after it is not.
        (Some(reason), _) => Ended::Lost(reason),
        (None, Err(error)) => Ended::Lost(error.into()),
        (None, Ok(())) if stop.is_cancelled() => Ended::Stopped,
        // Not expected (only shutdown or a failed settle halts receiving); subscribing
        // again is the safe answer.
        (None, Ok(())) => Ended::Lost(Lost::Halted),
    }
}

/// Stage 1: passes each delivery on as it arrives. Ends when the connection, the channel or
/// the subscription ends, saying why, or when halted (`None`).
async fn receive(
    consumer: &mut Consumer,
    events: &mut (impl Stream<Item = ConnectionEvent> + Unpin),
    arrived: mpsc::UnboundedSender<Delivery>,
    halt: &CancellationToken,
) -> Option<Lost> {
    let _halt_the_others = halt.clone().drop_guard();
    loop {
        let delivery = tokio::select! {
            biased;
            () = halt.cancelled() => return None,
            event = events.next() => match event {
                Some(ConnectionEvent::Lost(error)) => return Some(Lost::Connection(error)),
                None => return Some(Lost::Closed),
                Some(_) => continue,
            },
            delivery = consumer.next() => delivery,
        };
        match delivery {
            Some(Ok(delivery)) => {
                if arrived.send(delivery).is_err() {
                    return None;
                }
            }
            Some(Err(error)) => return Some(Lost::Delivery(error)),
            None => return Some(Lost::Cancelled),
        }
    }
}

/// A batch whose changes are committed (or found unappliable), on its way to the broker.
struct Committed {
    deliveries: Vec<Delivery>,
    results: Vec<handler::Processed>,
    /// Seconds the batch took to process, recorded for each of its messages.
    took: f64,
}

/// Stage 2: takes whatever has arrived (at most `max_batch`; nothing waits for more),
/// applies it in one transaction and hands it on to be settled, then takes the next.
async fn apply_batches(
    store: &Store,
    mut arrivals: mpsc::UnboundedReceiver<Delivery>,
    max_batch: usize,
    committed: mpsc::Sender<Committed>,
    halt: &CancellationToken,
) {
    let _halt_the_others = halt.clone().drop_guard();
    loop {
        let first = tokio::select! {
            biased;
            () = halt.cancelled() => return,
            first = arrivals.recv() => match first {
                Some(delivery) => delivery,
                None => return,
            },
        };
        let mut deliveries = vec![first];
        while deliveries.len() < max_batch {
            match arrivals.try_recv() {
                Ok(delivery) => deliveries.push(delivery),
                Err(_) => break,
            }
        }
        metrics::counter!(metric::DELIVERIES_RECEIVED).increment(deliveries.len() as u64);
        let started = Instant::now();
        let bodies: Vec<&[u8]> = deliveries
            .iter()
            .map(|delivery| delivery.data.as_slice())
            .collect();
        let results = handler::process(store, &bodies).await;
        let took = started.elapsed().as_secs_f64();
        let batch = Committed {
            deliveries,
            results,
            took,
        };
        if committed.send(batch).await.is_err() {
            return;
        }
    }
}

/// Stage 3: settles each committed batch in order. A delivery that cannot be settled (the
/// broker went away, or refused to take a copy set aside) ends the subscription: it and
/// the rest of its batch, and any batch committed after it, stay unacked (what was settled
/// before it is acked if the broker still allows) and come back; the changes among them
/// that were committed are found applied and acked, the rest is decided again. Otherwise
/// it settles every batch it is handed, also after shutdown began.
async fn settle_batches(
    settler: &Settler,
    mut commits: mpsc::Receiver<Committed>,
    halt: &CancellationToken,
) -> Result<(), SettleError> {
    while let Some(batch) = commits.recv().await {
        let size = batch.deliveries.len();
        if let Err(error) = settle_batch(settler, batch).await {
            tracing::warn!(%error, batch = size, "Could not settle a batch; its deliveries will be redelivered.");
            halt.cancel();
            return Err(error);
        }
    }
    Ok(())
}

/// Settles one committed batch, then counts and logs its messages.
async fn settle_batch(settler: &Settler, batch: Committed) -> Result<(), SettleError> {
    let Committed {
        deliveries,
        results,
        took,
    } = batch;
    let (events, outcomes): (Vec<_>, Vec<_>) = results
        .into_iter()
        .map(|processed| (processed.event, processed.outcome))
        .unzip();
    let settled = settler
        .settle_batch(deliveries.iter().zip(outcomes))
        .await?;
    // One lookup of each metric a batch, not one a message.
    let duration = metrics::histogram!(metric::PROCESSING_DURATION);
    for _ in &settled {
        duration.record(took);
    }
    count(&settled);
    for ((delivery, event), settled) in deliveries.iter().zip(&events).zip(&settled) {
        // The producer's trace continues here: this message's log line carries its trace id.
        let trace = EventMessage::trace_context_of(&delivery.properties)
            .map_or_else(TraceContext::new_root, |parent| parent.child());
        let span = tracing::info_span!("message", trace_id = %trace.trace_id());
        shared::telemetry::continue_trace(&span, &trace);
        span.in_scope(|| log_settled(delivery, event.as_ref(), settled));
    }
    Ok(())
}

/// Counts a batch's outcomes: one increment for each run of alike outcomes (usually the
/// whole batch), as looking a labelled counter up costs more than the increment.
fn count(settled: &[Settled]) {
    for (counted, times) in runs(settled) {
        match counted {
            Counted::Acked(outcome) => {
                metrics::counter!(metric::DELIVERIES_ACKED, "outcome" => outcome).increment(times);
            }
            Counted::Retried => metrics::counter!(metric::DELIVERIES_RETRIED).increment(times),
            Counted::DeadLettered(reason) => {
                metrics::counter!(metric::DELIVERIES_DEAD_LETTERED, "reason" => reason)
                    .increment(times);
            }
        }
    }
}

/// Each run of outcomes that add to the same counter, and its length, in order.
fn runs(settled: &[Settled]) -> Vec<(Counted, u64)> {
    let mut runs: Vec<(Counted, u64)> = Vec::new();
    for counted in settled.iter().map(counted_as) {
        match runs.last_mut() {
            Some((last, times)) if *last == counted => *times += 1,
            _ => runs.push((counted, 1)),
        }
    }
    runs
}

/// Which counter, with which label, an outcome adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counted {
    Acked(&'static str),
    Retried,
    DeadLettered(&'static str),
}

fn counted_as(settled: &Settled) -> Counted {
    match settled {
        Settled::Acked(recorded) => Counted::Acked(recorded.as_str()),
        Settled::RetryScheduled { .. } => Counted::Retried,
        Settled::DeadLettered { code, .. } => Counted::DeadLettered(code),
    }
}

/// The one log line per message: which event, whose, how it was routed, whether it is a
/// redelivery, and how it ended.
fn log_settled(
    delivery: &Delivery,
    event: Option<&(uuid::Uuid, shared::domain::CustomerId)>,
    settled: &Settled,
) {
    let (event_id, customer_id) = match event {
        Some((event_id, customer_id)) => (event_id.to_string(), customer_id.to_string()),
        None => (
            message_id(&delivery.properties)
                .unwrap_or_default()
                .to_owned(),
            String::new(),
        ),
    };
    let routing_key = original_routing_key(delivery);
    let redelivered = delivery.redelivered;
    let outcome = settled.label();
    match settled {
        Settled::Acked(_) => {
            tracing::info!(
                event_id,
                customer_id,
                routing_key,
                redelivered,
                outcome,
                "Message processed."
            );
        }
        Settled::RetryScheduled { attempt, delay } => {
            tracing::warn!(
                event_id,
                customer_id,
                routing_key,
                redelivered,
                outcome,
                attempt,
                retry_in_ms = delay.as_millis() as u64,
                "Message processing failed; retry scheduled."
            );
        }
        Settled::DeadLettered { reason, .. } => {
            tracing::warn!(event_id, customer_id, routing_key, redelivered, outcome, %reason, "Message dead-lettered.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::sync_api::RecordedAs;

    #[test]
    fn a_batch_is_counted_once_for_each_run_of_alike_outcomes() {
        let updated = Settled::Acked(RecordedAs::Updated);
        let dead = Settled::DeadLettered {
            code: "invalid_event",
            reason: "not json".to_owned(),
        };
        let retried = Settled::RetryScheduled {
            attempt: 1,
            delay: Duration::from_secs(1),
        };
        let batch = [
            updated.clone(),
            updated.clone(),
            dead,
            Settled::Acked(RecordedAs::Duplicate),
            updated,
            retried.clone(),
            retried,
        ];

        assert_eq!(
            runs(&batch),
            [
                (Counted::Acked("updated"), 2),
                (Counted::DeadLettered("invalid_event"), 1),
                (Counted::Acked("duplicate"), 1),
                (Counted::Acked("updated"), 1),
                (Counted::Retried, 2),
            ]
        );
        assert_eq!(runs(&[]), []);
    }
}
