//! Publishing events with publisher confirms over one long-lived connection.
//!
//! A request gets `Ok(())` only when the broker has confirmed (acked) its message, i.e. the
//! message is routed to at least one queue and, being persistent, written to disk.

mod channels;
mod link;

use crate::metrics as metric;
use channels::ConfirmChannels;
use lapin::{Confirmation, Connection};
use shared::{
    amqp::BrokerAddress,
    message::{EventMessage, message_id},
    readiness::Readiness,
    topology::Topology,
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
    /// The broker refused the message with `basic.nack`: a queue it is routed to is full.
    #[error("the broker refused the message: its queue is full")]
    Nacked,
    /// No queue is bound for the routing key: the broker refused it (through the
    /// exchange's alternate exchange) or returned it.
    #[error("no queue is bound for routing key {routing_key:?}")]
    Unroutable { routing_key: String },
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
    /// Confirm channels the publishes are spread over.
    pub channels: usize,
    pub publish_timeout: Duration,
    pub reconnect_max_delay: Duration,
}

/// Cheap to clone; every request handler holds one.
#[derive(Debug, Clone)]
pub struct Publisher {
    session: watch::Receiver<Option<Arc<Session>>>,
    /// The exchange, and which routing keys its own queue is bound for (to tell a full
    /// queue from no queue when the broker refuses a message).
    topology: Arc<Topology>,
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
    channels: ConfirmChannels,
    /// The broker's reason while it has blocked the connection: publishing then fails at
    /// once rather than hanging until the timeout.
    blocked: Mutex<Option<String>>,
    /// Rung by a publish the broker failed in a way that may mean the topology was deleted
    /// under us; the connection's task then checks it and declares it again if need be.
    topology_check: tokio::sync::Notify,
}

impl Publisher {
    /// A publisher with no connection yet (every publish answers `Unavailable`), and the
    /// link that will connect it once started. Nothing touches the network here, so a
    /// router can be built and tested without a broker.
    pub fn new(settings: PublisherSettings) -> (Self, Link) {
        let (sessions, session) = watch::channel(None);
        let publisher = Self {
            session,
            topology: Arc::new(settings.topology.clone()),
            publish_timeout: settings.publish_timeout,
        };
        (publisher, Link { settings, sessions })
    }

    /// Publishes `message` and waits for the broker's confirm, for at most the publish
    /// timeout in total (including waiting for a free channel).
    pub async fn publish(&self, message: EventMessage) -> Result<(), PublishError> {
        let outcome = self.try_publish(&message).await;
        record(&outcome);
        outcome
    }

    async fn try_publish(&self, message: &EventMessage) -> Result<(), PublishError> {
        let session = self
            .session
            .borrow()
            .clone()
            .ok_or(PublishError::Unavailable)?;
        if let Some(reason) = session.blocked_reason() {
            return Err(PublishError::Blocked(reason));
        }
        // Cancel-safe: a client hanging up drops this future, and with it at most an
        // unwritten publish or an awaited confirm, never half a publish (see `channels`).
        let outcome = tokio::time::timeout(
            self.publish_timeout,
            session.publish(&self.topology, message),
        )
        .await
        .unwrap_or(Err(PublishError::Timeout(self.publish_timeout)));
        if outcome
            .as_ref()
            .is_err_and(PublishError::may_mean_topology_lost)
        {
            session.topology_check.notify_one();
        }
        outcome
    }
}

impl PublishError {
    /// Whether this answer may mean that an exchange or queue was deleted on the broker: a
    /// publish to a missing exchange closes its channel (404), and with the queue gone its
    /// messages fall through to the alternate exchange, which refuses them.
    fn may_mean_topology_lost(&self) -> bool {
        matches!(
            self,
            Self::Broker(_) | Self::Nacked | Self::Unroutable { .. }
        )
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

/// The publisher's connection to the broker, not yet started.
#[derive(Debug)]
pub struct Link {
    settings: PublisherSettings,
    sessions: watch::Sender<Option<Arc<Session>>>,
}

impl Link {
    /// Starts connecting in the background and returns at once: the producer serves
    /// `/healthz` (and answers 503 to posts) while the broker is unreachable.
    pub fn start(self, readiness: Readiness) -> PublisherTask {
        let stop = CancellationToken::new();
        let task = tokio::spawn(link::maintain(
            self.settings,
            self.sessions,
            readiness,
            stop.clone(),
        ));
        PublisherTask { stop, task }
    }
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
    fn new(connection: Arc<Connection>, channels: usize) -> Self {
        Self {
            channels: ConfirmChannels::new(Arc::clone(&connection), channels),
            connection,
            blocked: Mutex::new(None),
            topology_check: tokio::sync::Notify::new(),
        }
    }

    async fn publish(
        &self,
        topology: &Topology,
        message: &EventMessage,
    ) -> Result<(), PublishError> {
        let started = Instant::now();
        let confirm = self
            .channels
            .publish(
                &topology.exchange,
                &message.routing_key,
                &message.body,
                message.properties.clone(),
            )
            .await?;
        metrics::counter!(metric::EVENTS_PUBLISHED).increment(1);
        let confirmation = confirm.await?;
        metrics::histogram!(metric::CONFIRM_DURATION).record(started.elapsed().as_secs_f64());
        let unroutable = || PublishError::Unroutable {
            routing_key: message.routing_key.clone(),
        };
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            // Refused: by the work queue (full) or, through the alternate exchange, because
            // no queue is bound for it. Whether this service's own queue is bound for the
            // routing key tells which.
            Confirmation::Nack(_) if topology.binds(&message.routing_key) => {
                Err(PublishError::Nacked)
            }
            Confirmation::Nack(_) => Err(unroutable()),
            // Only when the alternate exchange has been removed by hand: lapin may then give
            // a return to another publish's confirm, so it is reported, not trusted.
            Confirmation::Ack(Some(returned)) => {
                tracing::error!(
                    routing_key = %message.routing_key,
                    returned = ?message_id(&returned.properties),
                    "A message came back unroutable: the exchange has lost its alternate exchange; declaring the topology again."
                );
                Err(unroutable())
            }
            Confirmation::NotRequested => {
                unreachable!("every channel is put in confirm mode when opened")
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
