//! Publishing events with publisher confirms over one long-lived connection.
//!
//! A request gets `Ok(())` only when the broker has confirmed (acked) its message, i.e. the
//! message is routed to at least one queue and, being persistent, written to disk.

mod link;
mod pool;

use crate::metrics as metric;
use lapin::{Confirmation, Connection, options::BasicPublishOptions};
use pool::ChannelPool;
use shared::{
    amqp::BrokerAddress, message::EventMessage, readiness::Readiness, topology::Topology,
};
use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};
use tokio::{sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;

/// Why a message was not confirmed. Every variant becomes a 503 with `Retry-After`: the
/// request was fine, the broker could not take it now.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No connection to the broker at the moment (starting, or reconnecting).
    #[error("the broker is not reachable at the moment")]
    Unavailable,
    /// The broker has blocked publishing on this connection (memory or disk alarm).
    #[error("the broker is refusing new messages (resource alarm: {0})")]
    Blocked(String),
    /// The broker refused the message with `basic.nack`, e.g. because the queue is full.
    #[error("the broker refused the message")]
    Nacked,
    /// No queue is bound for the routing key; the broker returned the mandatory message.
    #[error("no queue is bound for routing key {routing_key:?} ({reply})")]
    Unroutable { routing_key: String, reply: String },
    /// No confirm within the publish timeout. The message may still arrive: a client that
    /// retries with the same `Idempotency-Key` cannot cause a second application.
    #[error("the broker did not confirm the message within {0:?}")]
    Timeout(Duration),
    /// The channel or connection failed while the message was in flight.
    #[error("the broker connection failed during the publish: {0}")]
    Broker(#[from] lapin::Error),
}

/// What the publisher needs to run.
#[derive(Debug, Clone)]
pub struct PublisherSettings {
    pub broker: BrokerAddress,
    pub topology: Topology,
    /// Shown in the management UI's connection list.
    pub connection_name: String,
    pub channels: usize,
    pub publish_timeout: Duration,
    pub reconnect_max_delay: Duration,
}

/// Cheap to clone; every request handler holds one.
#[derive(Debug, Clone)]
pub struct Publisher {
    session: watch::Receiver<Option<Arc<Session>>>,
    exchange: Arc<str>,
    publish_timeout: Duration,
}

/// The task that keeps the connection open; stop it with [`PublisherTask::close`] once no
/// request can publish any more.
#[derive(Debug)]
pub struct PublisherTask {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// One connection's worth of publishing state. Replaced wholesale on reconnection.
#[derive(Debug)]
struct Session {
    connection: Arc<Connection>,
    channels: ChannelPool,
    /// The broker's reason while it has blocked the connection: publishing then fails at
    /// once rather than hanging until the timeout.
    blocked: Mutex<Option<String>>,
}

impl Publisher {
    /// Starts connecting in the background and returns at once: the producer serves
    /// `/healthz` (and answers 503 to posts) while the broker is unreachable.
    pub fn start(settings: PublisherSettings, readiness: Readiness) -> (Self, PublisherTask) {
        let (sessions, session) = watch::channel(None);
        let stop = CancellationToken::new();
        let publisher = Self {
            session,
            exchange: settings.topology.exchange.as_str().into(),
            publish_timeout: settings.publish_timeout,
        };
        let task = tokio::spawn(link::maintain(settings, sessions, readiness, stop.clone()));
        (publisher, PublisherTask { stop, task })
    }

    /// Publishes `message` and waits for the broker's confirm, for at most the publish
    /// timeout in total (including waiting for a free channel).
    pub async fn publish(&self, message: EventMessage) -> Result<(), PublishError> {
        let session = self
            .session
            .borrow()
            .clone()
            .ok_or(PublishError::Unavailable)?;
        if let Some(reason) = session.blocked_reason() {
            return Err(PublishError::Blocked(reason));
        }
        let exchange = Arc::clone(&self.exchange);
        let timeout = self.publish_timeout;
        // A task of its own, so that a client hanging up mid-request cannot abandon the
        // publish half-way: it completes (or times out) and frees its channel properly.
        let publish = tokio::spawn(async move {
            tokio::time::timeout(timeout, session.publish(&exchange, &message))
                .await
                .unwrap_or(Err(PublishError::Timeout(timeout)))
        });
        match publish.await {
            Ok(outcome) => {
                record(&outcome);
                outcome
            }
            // Nothing cancels the task; it fails only by panicking (a bug: let it surface) or
            // when the runtime shuts down under it.
            Err(join_error) if join_error.is_panic() => {
                std::panic::resume_unwind(join_error.into_panic())
            }
            Err(_) => Err(PublishError::Unavailable),
        }
    }
}

/// Counts how each publish ended.
fn record(outcome: &Result<(), PublishError>) {
    let name = match outcome {
        Ok(()) => metric::EVENTS_CONFIRMED,
        Err(PublishError::Nacked) => metric::EVENTS_NACKED,
        Err(PublishError::Unroutable { .. }) => metric::EVENTS_RETURNED,
        Err(error) => {
            let reason = match error {
                PublishError::Unavailable => "unavailable",
                PublishError::Blocked(_) => "blocked",
                PublishError::Timeout(_) => "timeout",
                _ => "broker_error",
            };
            metrics::counter!(metric::PUBLISH_FAILURES, "reason" => reason).increment(1);
            return;
        }
    };
    metrics::counter!(name).increment(1);
}

impl PublisherTask {
    /// Closes the connection cleanly. Call after the HTTP server has drained, so that no
    /// accepted request is left without its confirm.
    pub async fn close(self) {
        self.stop.cancel();
        if let Err(error) = self.task.await {
            tracing::error!(%error, "The publisher task failed.");
        }
    }
}

impl Session {
    fn new(connection: Connection, channels: usize) -> Self {
        let connection = Arc::new(connection);
        Self {
            channels: ChannelPool::new(Arc::clone(&connection), channels),
            connection,
            blocked: Mutex::new(None),
        }
    }

    async fn publish(&self, exchange: &str, message: &EventMessage) -> Result<(), PublishError> {
        let lease = self.channels.lease().await?;
        let started = Instant::now();
        let confirm = lease
            .channel()
            .basic_publish(
                exchange.into(),
                message.routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &message.body,
                message.properties.clone(),
            )
            .await?;
        metrics::counter!(metric::EVENTS_PUBLISHED).increment(1);
        let confirmation = confirm.await?;
        metrics::histogram!(metric::CONFIRM_DURATION).record(started.elapsed().as_secs_f64());
        lease.settled();
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
                Err(PublishError::Unroutable {
                    routing_key: message.routing_key.clone(),
                    reply: returned.reply_text.to_string(),
                })
            }
            Confirmation::Nack(None) => Err(PublishError::Nacked),
            Confirmation::NotRequested => {
                unreachable!("every pooled channel is put in confirm mode when opened")
            }
        }
    }

    fn set_blocked(&self, reason: Option<String>) {
        *self.blocked.lock().unwrap_or_else(PoisonError::into_inner) = reason;
    }

    fn blocked_reason(&self) -> Option<String> {
        self.blocked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
