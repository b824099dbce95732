//! The three ways a delivery can end, and the one place that tells the broker how a
//! delivery of the work queue ended. (The dead-letter endpoints settle what they fetch from
//! the dead-letter queue themselves: see `dead_letters`.)

use crate::store::StoreError;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection,
    message::Delivery,
    options::{BasicAckOptions, ConfirmSelectOptions},
    types::{AMQPValue, FieldTable, ShortString},
};
use shared::{
    amqp::headers::{self, long_string},
    sync_api::RecordedAs,
    topology::WorkQueue,
};
use std::{sync::Arc, time::Duration};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use uuid::Uuid;

/// Header counting how many times a message has been sent to a retry queue.
pub const RETRY_COUNT_HEADER: &str = "x-retry-count";
/// Header on a dead letter: why it could not be applied.
pub const REASON_HEADER: &str = "x-dead-letter-reason";
/// Header on a retried message: the error of the last attempt.
pub const LAST_ERROR_HEADER: &str = "x-last-error";
/// Headers on a dead letter: where the message was first published.
pub const ORIGINAL_EXCHANGE_HEADER: &str = "x-original-exchange";
pub const ORIGINAL_ROUTING_KEY_HEADER: &str = "x-original-routing-key";
/// Header on a dead letter: when it was dead-lettered (RFC 3339).
pub const DEAD_LETTERED_AT_HEADER: &str = "x-dead-lettered-at";

/// What processing decided should happen to a delivery.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The change is committed (or was already): remove the message from the queue.
    Ack(RecordedAs),
    /// Processing failed for a reason that may pass (database unavailable): try again
    /// after a delay, up to the attempt limit.
    Retry(Transient),
    /// The message can never be applied: move it aside at once so the rest of the queue
    /// keeps flowing.
    DeadLetter(Unappliable),
}

/// Why a change was not applied this time, for a reason that may pass.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Transient {
    /// The store failed: unavailable, locked, out of space. Shared, because one failed
    /// batch is the reason of each of its changes.
    #[error("{0}")]
    Store(Arc<StoreError>),
    /// The store answered for fewer changes than it was given (a bug, not a fault).
    #[error("the store returned no result for this change")]
    NoResult,
}

/// Why a message can never be applied, however often it is delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unappliable {
    /// The body is not an event this build can read: not JSON, an unknown schema version,
    /// an invalid field.
    #[error("{0}")]
    Undecodable(String),
    /// Its event id was applied before from a different request: the client reused an
    /// `Idempotency-Key` for another change. Skipping it as a duplicate would lose the
    /// change silently; it needs the client to send it again with a new key.
    #[error(
        "idempotency_key_reused: event {event_id} was applied before from a different request (an Idempotency-Key reused for another change); this change was NOT applied and must be sent again with a new key"
    )]
    KeyReused { event_id: Uuid },
}

impl Unappliable {
    /// The error code of the sync endpoint's 422 and the `reason` label of the
    /// dead-lettered metric.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Undecodable(_) => "invalid_event",
            Self::KeyReused { .. } => "idempotency_key_reused",
        }
    }
}

/// What settling did, for the log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    Acked(RecordedAs),
    /// Sent to a retry queue; back in the work queue after `delay`.
    RetryScheduled {
        attempt: u32,
        delay: Duration,
    },
    /// Sent to `<queue>.dlq`.
    DeadLettered {
        /// `invalid_event`, `idempotency_key_reused` or `gave_up` (after `MAX_ATTEMPTS`).
        code: &'static str,
        reason: String,
    },
}

impl Settled {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Acked(recorded) => recorded.as_str(),
            Self::RetryScheduled { .. } => "retry-scheduled",
            Self::DeadLettered { .. } => "dead-lettered",
        }
    }
}

/// Why a delivery could not be settled. The delivery stays unacknowledged, and the broker
/// delivers it again once the channel is replaced.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error("the broker connection failed: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker did not take the message for {queue}: {detail}")]
    NotConfirmed { queue: String, detail: String },
    /// lapin sent no ack: the channel had failed, so the broker will redeliver.
    #[error("the ack could not be sent: the channel has failed")]
    NotAcked,
}

/// Settles deliveries of one work queue: acks, and moves messages to its retry queues and
/// dead-letter queue. Moving is publish-confirm, then ack (one `multiple` ack per batch), so
/// a message is always in at least one queue; if the consumer dies in between, the copy and
/// the redelivery are both applied once at most, thanks to the store's record of applied
/// event ids.
#[derive(Debug)]
pub struct Settler {
    /// In confirm mode; used by one batch at a time, so one message in flight at a time.
    channel: Channel,
    queue: WorkQueue,
    retry_delays: Vec<Duration>,
    max_attempts: u32,
}

impl Settler {
    pub async fn open(
        connection: &Connection,
        queue: WorkQueue,
        retry_delays: Vec<Duration>,
        max_attempts: u32,
    ) -> Result<Self, lapin::Error> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            channel,
            queue,
            retry_delays,
            max_attempts,
        })
    }

    /// Tells the broker how each delivery of a batch ended, in order: first every move a
    /// retry or a dead letter needs (each copy confirmed), then one ack for the whole batch.
    /// The only code that acks a delivery of the work queue.
    ///
    /// One `multiple` ack is enough because deliveries are settled in the order they
    /// arrived on this channel, batch after batch: when a batch ends, every earlier delivery
    /// is settled already, so "everything up to the last tag" is exactly this batch.
    ///
    /// If a move fails, what was settled before it is acked first, so that its copies are
    /// not made again when the rest of the batch is redelivered.
    pub async fn settle_batch(
        &self,
        batch: impl IntoIterator<Item = (&Delivery, Outcome)>,
    ) -> Result<Vec<Settled>, SettleError> {
        let mut settled = Vec::new();
        let mut last_settled = None;
        for (delivery, outcome) in batch {
            match self.move_if_needed(delivery, outcome).await {
                Ok(done) => {
                    settled.push(done);
                    last_settled = Some(delivery);
                }
                Err(error) => {
                    if let Some(done) = last_settled
                        && let Err(ack_error) = ack_up_to(done).await
                    {
                        tracing::warn!(%ack_error, "Could not ack the part of the batch settled before a failed move; it will be redelivered.");
                    }
                    return Err(error);
                }
            }
        }
        if let Some(last) = last_settled {
            ack_up_to(last).await?;
        }
        Ok(settled)
    }

    /// Copies `delivery` to a retry queue or the dead-letter queue when its outcome says so.
    async fn move_if_needed(
        &self,
        delivery: &Delivery,
        outcome: Outcome,
    ) -> Result<Settled, SettleError> {
        let settled = match outcome {
            Outcome::Ack(recorded) => Settled::Acked(recorded),
            Outcome::Retry(error) => {
                let retries = retry_count(&delivery.properties);
                let attempt = retries + 1;
                if attempt >= self.max_attempts {
                    let reason = format!("gave up after {attempt} attempts: {error}");
                    self.dead_letter(delivery, &reason).await?;
                    Settled::DeadLettered {
                        code: "gave_up",
                        reason,
                    }
                } else {
                    let delay = self.retry_delay(retries);
                    let queue = self.queue.retry_queue(delay);
                    let mut headers = headers::cloned_from(&delivery.properties);
                    headers.insert(RETRY_COUNT_HEADER.into(), AMQPValue::LongUInt(attempt));
                    headers.insert(LAST_ERROR_HEADER.into(), long_string(&error.to_string()));
                    headers.insert(
                        ORIGINAL_ROUTING_KEY_HEADER.into(),
                        long_string(&original_routing_key(delivery)),
                    );
                    self.publish_to(&queue, delivery, headers).await?;
                    Settled::RetryScheduled { attempt, delay }
                }
            }
            Outcome::DeadLetter(unappliable) => {
                let reason = unappliable.to_string();
                self.dead_letter(delivery, &reason).await?;
                Settled::DeadLettered {
                    code: unappliable.code(),
                    reason,
                }
            }
        };
        Ok(settled)
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), SettleError> {
        let mut headers = headers::cloned_from(&delivery.properties);
        headers.insert(REASON_HEADER.into(), long_string(reason));
        headers.insert(
            ORIGINAL_EXCHANGE_HEADER.into(),
            long_string(delivery.exchange.as_str()),
        );
        headers.insert(
            ORIGINAL_ROUTING_KEY_HEADER.into(),
            long_string(&original_routing_key(delivery)),
        );
        let now = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        headers.insert(DEAD_LETTERED_AT_HEADER.into(), long_string(&now));
        self.publish_to(&self.queue.dead_letter_queue(), delivery, headers)
            .await
    }

    /// Publishes a copy of `delivery` straight to `queue` (default exchange) and waits for
    /// the broker to confirm it.
    async fn publish_to(
        &self,
        queue: &str,
        delivery: &Delivery,
        headers: FieldTable,
    ) -> Result<(), SettleError> {
        let properties = delivery.properties.clone().with_headers(headers);
        let confirmation = self
            .channel
            .basic_publish(
                ShortString::from(""),
                queue.into(),
                shared::message::MANDATORY,
                &delivery.data,
                properties,
            )
            .await?
            .await?;
        let not_confirmed = |detail: &str| SettleError::NotConfirmed {
            queue: queue.to_owned(),
            detail: detail.to_owned(),
        };
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
                Err(not_confirmed(returned.reply_text.as_str()))
            }
            Confirmation::Nack(None) => Err(not_confirmed("nacked")),
            Confirmation::NotRequested => Err(not_confirmed("confirms are off")),
        }
    }

    fn retry_delay(&self, retries: u32) -> Duration {
        let index = (retries as usize).min(self.retry_delays.len().saturating_sub(1));
        self.retry_delays
            .get(index)
            .copied()
            .unwrap_or(Duration::from_secs(1))
    }
}

/// How many times this message has been through a retry queue already.
pub fn retry_count(properties: &BasicProperties) -> u32 {
    headers::read_u32(properties, RETRY_COUNT_HEADER).unwrap_or(0)
}

/// The routing key the producer used: a retried message comes back to the work queue with
/// the queue's name as its routing key, and keeps the original in a header.
pub fn original_routing_key(delivery: &Delivery) -> String {
    headers::read_string(&delivery.properties, ORIGINAL_ROUTING_KEY_HEADER)
        .unwrap_or_else(|| delivery.routing_key.to_string())
}

/// Acks `delivery` and every earlier one on its channel.
async fn ack_up_to(delivery: &Delivery) -> Result<(), SettleError> {
    if delivery.ack(BasicAckOptions { multiple: true }).await? {
        Ok(())
    } else {
        Err(SettleError::NotAcked)
    }
}
