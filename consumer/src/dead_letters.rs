//! The dead-letter queue, for a person: see what is in it and why, and replay it into the
//! work queue once the cause is fixed (a bug deployed, a database restored).

use crate::outcome::{
    DEAD_LETTERED_AT_HEADER, LAST_ERROR_HEADER, ORIGINAL_ROUTING_KEY_HEADER, REASON_HEADER,
    RETRY_COUNT_HEADER, original_routing_key, retry_count,
};
use lapin::{
    Channel, Confirmation, Connection,
    message::Delivery,
    options::{BasicAckOptions, BasicGetOptions, BasicNackOptions, ConfirmSelectOptions},
    types::FieldTable,
};
use serde::Serialize;
use shared::{
    amqp::headers::{self, long_string},
    message::message_id,
    topology::WorkQueue,
};
use std::sync::Arc;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use tokio::sync::watch;

/// Header on a replayed message: when it was put back into the work queue.
pub const REPLAYED_AT_HEADER: &str = "x-replayed-at";

/// One dead letter as `GET /api/v1/dead-letters` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub message_id: Option<String>,
    pub reason: Option<String>,
    pub routing_key: String,
    pub dead_lettered_at: Option<String>,
    pub retry_count: u32,
    /// The body as JSON when it is JSON, else as text (lossy for binary bodies).
    pub body: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("not connected to the broker at the moment")]
    Unavailable,
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the work queue did not take a replayed message ({0}); {1} replayed before it")]
    NotConfirmed(String, usize),
}

/// Cheap to clone. Uses the worker's connection, so it works while the worker is connected.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    connection: watch::Receiver<Option<Arc<Connection>>>,
    queue: WorkQueue,
}

impl DeadLetters {
    pub fn new(connection: watch::Receiver<Option<Arc<Connection>>>, queue: WorkQueue) -> Self {
        Self { connection, queue }
    }

    pub fn queue_name(&self) -> String {
        self.queue.dead_letter_queue()
    }

    /// Up to `limit` dead letters, oldest first, left in the queue: they are fetched without
    /// acknowledgement and handed back with one `basic.nack` (requeue) before the channel
    /// closes. Handing them back explicitly, rather than leaving it to the close, puts the
    /// return in the queue's order before the next listing's fetches: a quorum queue
    /// processes a closed channel's returns asynchronously, and a listing right after
    /// another could find it empty.
    pub async fn list(&self, limit: usize) -> Result<Vec<DeadLetter>, DeadLetterError> {
        let channel = self.channel().await?;
        let mut letters = Vec::new();
        let mut last_tag = None;
        while letters.len() < limit {
            let Some(delivery) = self.next(&channel).await? else {
                break;
            };
            last_tag = Some(delivery.delivery_tag);
            let delivery = &delivery;
            letters.push(DeadLetter {
                message_id: message_id(&delivery.properties).map(str::to_owned),
                reason: headers::read_string(&delivery.properties, REASON_HEADER),
                routing_key: original_routing_key(delivery),
                dead_lettered_at: headers::read_string(
                    &delivery.properties,
                    DEAD_LETTERED_AT_HEADER,
                ),
                retry_count: retry_count(&delivery.properties),
                body: serde_json::from_slice(&delivery.data).unwrap_or_else(|_| {
                    String::from_utf8_lossy(&delivery.data).into_owned().into()
                }),
            });
        }
        if let Some(tag) = last_tag {
            channel
                .basic_nack(
                    tag,
                    BasicNackOptions {
                        multiple: true,
                        requeue: true,
                    },
                )
                .await?;
        }
        channel.close(200, "listed dead letters".into()).await?;
        Ok(letters)
    }

    /// Moves up to `limit` dead letters back into the work queue, each with its attempts
    /// reset: publish to the work queue, wait for the confirm, then remove it from the
    /// dead-letter queue (an ack of the dead letter: the one ack outside `outcome`, whose
    /// `Settler` settles deliveries of the work queue). Returns how many were moved.
    pub async fn replay(&self, limit: usize) -> Result<usize, DeadLetterError> {
        let channel = self.channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let mut replayed = 0;
        while replayed < limit {
            let Some(delivery) = self.next(&channel).await? else {
                break;
            };
            let routing_key = original_routing_key(&delivery);
            // A fresh start: the attempt count and the reasons of the last run are dropped.
            let mut headers = FieldTable::default();
            for (key, value) in delivery.properties.headers().iter().flat_map(|h| h.inner()) {
                if ![RETRY_COUNT_HEADER, REASON_HEADER, LAST_ERROR_HEADER].contains(&key.as_str()) {
                    headers.insert(key.clone(), value.clone());
                }
            }
            let now = OffsetDateTime::now_utc()
                .format(&Rfc3339)
                .unwrap_or_default();
            headers.insert(REPLAYED_AT_HEADER.into(), long_string(&now));
            headers.insert(
                ORIGINAL_ROUTING_KEY_HEADER.into(),
                long_string(&routing_key),
            );
            let confirmation = channel
                .basic_publish(
                    "".into(),
                    self.queue.name.as_str().into(),
                    shared::message::MANDATORY,
                    &delivery.data,
                    delivery.properties.clone().with_headers(headers),
                )
                .await?
                .await?;
            match confirmation {
                Confirmation::Ack(None) => {}
                other => {
                    let detail = format!("{other:?}");
                    let _ = channel.close(200, "replay stopped".into()).await;
                    return Err(DeadLetterError::NotConfirmed(detail, replayed));
                }
            }
            delivery.ack(BasicAckOptions::default()).await?;
            replayed += 1;
        }
        channel.close(200, "replayed dead letters".into()).await?;
        Ok(replayed)
    }

    /// The oldest dead letter not yet taken on `channel`, unacknowledged: it returns to
    /// the queue unless acked before the channel closes.
    async fn next(&self, channel: &Channel) -> Result<Option<Delivery>, lapin::Error> {
        let message = channel
            .basic_get(
                self.queue.dead_letter_queue().into(),
                BasicGetOptions { no_ack: false },
            )
            .await?;
        Ok(message.map(|message| message.delivery))
    }

    async fn channel(&self) -> Result<Channel, DeadLetterError> {
        let connection = self
            .connection
            .borrow()
            .clone()
            .ok_or(DeadLetterError::Unavailable)?;
        Ok(connection.create_channel().await?)
    }
}
