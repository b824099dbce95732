//! Declaring a topology on the broker, idempotently, on every (re)connection: the
//! exchange with its refusing alternate exchange, the work queue and its bindings, and the
//! consumer's dead-letter and retry queues, each with the arguments that bound it.

use super::{QueueType, Topology, WorkQueue, inspect::inspect_queue};
use crate::amqp::{errors::is_precondition_failed, headers::long_string};
use lapin::{
    BasicProperties, Channel, Connection, ExchangeKind,
    options::{
        BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
        QueueDeclareOptions, QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable, ShortString},
};
use std::time::Duration;

/// How many times a quorum work queue lets one message come back unacknowledged before the
/// broker gives up on it: never, in practice. RabbitMQ 4 drops a message past 20 by default
/// (4.0 counts every return of an unacknowledged message, as when a consumer dies holding
/// it; 4.3 only rejects), and dead-lettering it instead would need a dead-letter exchange
/// that every user declaring the queue may write to (the producer's may not write to the
/// default exchange). Our consumer never rejects or requeues: a failure is a confirmed copy
/// into a retry queue, counted against `MAX_ATTEMPTS`, and then a copy into `<queue>.dlq`
/// with its reason. So the limit is set out of reach, as classic queues had none.
pub const DELIVERY_LIMIT: i64 = 1_000_000_000;

/// Longest a service waits for the broker to declare its topology.
pub const DECLARE_WITHIN: Duration = Duration::from_secs(15);

/// The body of the one message a quorum unroutable queue holds so that it refuses all others.
const UNROUTABLE_PLACEHOLDER: &[u8] =
    b"placeholder: keeps this queue full, so that it refuses every unroutable message";

/// What declaring found that an operator should act on, without stopping the service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Declared {
    pub warnings: Vec<String>,
}

impl WorkQueue {
    /// The work queue's arguments were it of type `queue_type`.
    fn arguments_as(&self, queue_type: QueueType) -> FieldTable {
        if queue_type == QueueType::Classic {
            return refuse_beyond(self.max_length);
        }
        // A quorum queue refuses a publish only once it holds *more* than its limit, so it
        // would take one message more than a classic queue: `max_length` stays the most it
        // holds whatever the type.
        let mut arguments = refuse_beyond(self.max_length.saturating_sub(1));
        arguments.insert("x-queue-type".into(), long_string("quorum"));
        arguments.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(DELIVERY_LIMIT),
        );
        arguments
    }

    /// The dead-letter queue's arguments were it of type `queue_type`.
    fn dead_letter_arguments_as(&self, queue_type: QueueType) -> FieldTable {
        let mut arguments = FieldTable::default();
        if queue_type == QueueType::Quorum {
            arguments.insert("x-queue-type".into(), long_string("quorum"));
            // Out of reach too: listing the dead letters returns each to the queue
            // unacknowledged, and the broker must never drop one because someone looked at
            // it 20 times (4.0's default).
            arguments.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongLongInt(DELIVERY_LIMIT),
            );
        }
        arguments
    }
}

impl Topology {
    /// Declares the exchange, the work queue and its bindings, and (for the consumer) the
    /// dead-letter and retry queues. Each declaration that can be refused gets a channel of
    /// its own, because a refusal closes the channel it happened on.
    ///
    /// A work queue that already exists with other arguments (say `QUEUE_MAX_LENGTH` was
    /// changed) does not stop the service: it is used as it is, and the returned warning says
    /// how to apply the new setting.
    ///
    /// Bounded by [`DECLARE_WITHIN`]: a declaration that touches a queue whose node is down
    /// can wait for that node indefinitely, and a service must reconnect (elsewhere, in a
    /// cluster) rather than hang; the timeout is an error like any other.
    pub async fn declare(&self, connection: &Connection) -> Result<Declared, lapin::Error> {
        tokio::time::timeout(DECLARE_WITHIN, self.declare_now(connection))
            .await
            .unwrap_or_else(|_| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "the broker did not finish declaring within {} s (is a node that holds one of the queues down?)",
                        DECLARE_WITHIN.as_secs()
                    ),
                )
                .into())
            })
    }

    async fn declare_now(&self, connection: &Connection) -> Result<Declared, lapin::Error> {
        let channel = connection.create_channel().await?;
        let (unroutable, unroutable_queue) = (self.unroutable_exchange(), self.unroutable_queue());
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        channel
            .exchange_declare(
                unroutable.as_str().into(),
                ExchangeKind::Fanout,
                durable,
                FieldTable::default(),
            )
            .await?;
        self.declare_unroutable_queue(connection).await?;
        channel
            .queue_bind(
                unroutable_queue.as_str().into(),
                unroutable.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        self.fill_unroutable_queue(connection).await?;
        let mut with_alternate = FieldTable::default();
        with_alternate.insert("alternate-exchange".into(), long_string(&unroutable));
        channel
            .exchange_declare(
                self.exchange.as_str().into(),
                ExchangeKind::Topic,
                durable,
                with_alternate,
            )
            .await?;
        let mut warnings: Vec<String> = self
            .declare_or_keep(connection, &self.queue.name, |queue_type| {
                self.queue.arguments_as(queue_type)
            })
            .await?
            .into_iter()
            .collect();

        for key in &self.queue.binding_keys {
            channel
                .queue_bind(
                    self.queue.name.as_str().into(),
                    self.exchange.as_str().into(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        if !self.retry_delays.is_empty() {
            let dead_letters = self.queue.dead_letter_queue();
            warnings.extend(
                self.declare_or_keep(connection, &dead_letters, |queue_type| {
                    self.queue.dead_letter_arguments_as(queue_type)
                })
                .await?,
            );
            for delay in &self.retry_delays {
                let retry = self.queue.retry_queue(*delay);
                declare_queue(&channel, &retry, self.retry_arguments(*delay)).await?;
            }
        }
        let _ = channel.close(200, "declared".into()).await;
        Ok(Declared { warnings })
    }

    /// Declares queue `name` with the arguments `arguments_as` gives for the configured
    /// type, on a channel of its own. If it exists with other arguments, it is used as it
    /// is, because RabbitMQ cannot change a queue's arguments in place and refusing to start
    /// would turn a setting into an outage; the returned warning says what to do. The
    /// broker names only the first argument that differs, so whether the queue is of the
    /// other type is asked by declaring it with that type's arguments (which changes
    /// nothing: a declare that matches is a no-op).
    async fn declare_or_keep(
        &self,
        connection: &Connection,
        name: &str,
        arguments_as: impl Fn(QueueType) -> FieldTable,
    ) -> Result<Option<String>, lapin::Error> {
        let configured = self.queue.queue_type;
        let channel = connection.create_channel().await?;
        let mismatch = match declare_queue(&channel, name, arguments_as(configured)).await {
            Ok(()) => {
                let _ = channel.close(200, "declared".into()).await;
                return Ok(None);
            }
            Err(error) if is_precondition_failed(&error) => error,
            Err(error) => return Err(error),
        };
        let other = match configured {
            QueueType::Quorum => QueueType::Classic,
            QueueType::Classic => QueueType::Quorum,
        };
        let channel = connection.create_channel().await?;
        let of_other_type = match declare_queue(&channel, name, arguments_as(other)).await {
            Ok(()) => true,
            Err(error) if is_precondition_failed(&error) => false,
            Err(error) => return Err(error),
        };
        let channel = connection.create_channel().await?;
        inspect_queue(&channel, name).await?;
        let _ = channel.close(200, "checked".into()).await;
        let (work, dlq) = (&self.queue.name, self.queue.dead_letter_queue());
        let max_length = self.queue.max_length;
        Ok(Some(if of_other_type {
            format!(
                "queue {name:?} is a {other} queue, not {configured} (QUEUE_TYPE={configured}), \
                 so it is used as it is{}. To make it a {configured} queue, follow \
                 \"Changing the queue type\" in docs/quorum-queues.md: stop the producers, let \
                 the consumers drain {work:?}, move aside what {dlq:?} holds, delete both \
                 (`rabbitmqctl delete_queue {work}`, and the same for {dlq}) and restart the \
                 services, which declare them again; or keep it with QUEUE_TYPE={other}.",
                if other == QueueType::Classic {
                    ": on one node, not replicated"
                } else {
                    ""
                },
            )
        } else {
            format!(
                "queue {name:?} already exists with different arguments, so it is used as it is \
                 ({mismatch}). To apply the configured ones (QUEUE_TYPE={configured}, \
                 QUEUE_MAX_LENGTH={max_length}), stop the producers, let the consumers drain \
                 the queue, delete it (`rabbitmqctl delete_queue {name}`) and restart: it is \
                 declared again."
            )
        }))
    }

    /// Declares the alternate exchange's queue, which must refuse every message routed to
    /// it. With quorum queues it is a quorum queue too, so that losing one node does not take
    /// it away: a classic queue whose node is down cannot even be declared (the declaration
    /// waits for the node), and its producers would stay unready. A quorum queue refuses a
    /// publish only once it holds more than its limit, so it is kept holding one placeholder
    /// message, with a limit of 0: from then on it refuses everything. Should someone purge
    /// it, the next unroutable message takes the placeholder's place (kept, but confirmed),
    /// and the queue refuses again from the one after.
    async fn declare_unroutable_queue(&self, connection: &Connection) -> Result<(), lapin::Error> {
        let name = self.unroutable_queue();
        let queue_type = self.queue.queue_type;
        let arguments = || {
            let mut arguments = refuse_beyond(0);
            if queue_type == QueueType::Quorum {
                arguments.insert("x-queue-type".into(), long_string("quorum"));
            }
            arguments
        };
        let channel = connection.create_channel().await?;
        match declare_queue(&channel, &name, arguments()).await {
            Ok(()) => {}
            // The other type (an earlier version's, or QUEUE_TYPE changed). It holds nothing
            // worth keeping, so it is replaced rather than kept with a warning.
            Err(error) if is_precondition_failed(&error) => {
                let channel = connection.create_channel().await?;
                channel
                    .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                    .await?;
                declare_queue(&channel, &name, arguments()).await?;
            }
            Err(error) => return Err(error),
        }
        Ok(())
    }

    /// Puts the placeholder into an empty quorum unroutable queue (see
    /// [`Self::declare_unroutable_queue`]), once it is bound. Published through the
    /// alternate exchange itself, which every service that declares it may write to (the
    /// producer's user may not publish through the default exchange).
    async fn fill_unroutable_queue(&self, connection: &Connection) -> Result<(), lapin::Error> {
        if self.queue.queue_type != QueueType::Quorum {
            return Ok(());
        }
        let channel = connection.create_channel().await?;
        if inspect_queue(&channel, &self.unroutable_queue())
            .await?
            .message_count()
            == 0
        {
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            // Acked: it holds the placeholder now. Nacked: another service's got there
            // first. Either way the queue is full.
            channel
                .basic_publish(
                    self.unroutable_exchange().as_str().into(),
                    "".into(),
                    BasicPublishOptions::default(),
                    UNROUTABLE_PLACEHOLDER,
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await?
                .await?;
        }
        let _ = channel.close(200, "filled".into()).await;
        Ok(())
    }

    /// A retry queue holds each message `delay`, then dead-letters it to the work queue
    /// through the default exchange. It is a quorum queue with at-least-once dead-lettering:
    /// if the work queue is full at that moment, the message stays here and is moved again
    /// later, instead of being dropped as a classic queue would.
    fn retry_arguments(&self, delay: Duration) -> FieldTable {
        let mut arguments = FieldTable::default();
        arguments.insert("x-queue-type".into(), long_string("quorum"));
        arguments.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(delay.as_millis() as i64),
        );
        arguments.insert("x-dead-letter-exchange".into(), long_string(""));
        arguments.insert(
            "x-dead-letter-routing-key".into(),
            long_string(&self.queue.name),
        );
        arguments.insert(
            "x-dead-letter-strategy".into(),
            long_string("at-least-once"),
        );
        arguments.insert("x-overflow".into(), long_string("reject-publish"));
        arguments
    }
}

async fn declare_queue(
    channel: &Channel,
    name: &str,
    arguments: FieldTable,
) -> Result<(), lapin::Error> {
    channel
        .queue_declare(
            ShortString::from(name),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await
        .map(|_| ())
}

/// Queue arguments for a queue that holds at most `max_length` ready messages and refuses
/// (nacks) what would go beyond, rather than dropping its oldest.
fn refuse_beyond(max_length: u32) -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-max-length".into(),
        AMQPValue::LongLongInt(i64::from(max_length)),
    );
    arguments.insert("x-overflow".into(), long_string("reject-publish"));
    arguments
}
