//! Where events go: the exchange, the queues and their bindings, declared from this one
//! definition by both services so that neither depends on the other having started first.
//!
//! The exchange has an alternate exchange, `<exchange>.unroutable`, whose only queue holds
//! nothing (`x-max-length` 0, `reject-publish`): a message no queue is bound for is routed
//! there and refused, so its publisher gets a `basic.nack` for exactly that message. That
//! keeps "unroutable" on the same per-message confirm as everything else, where a
//! `basic.return` could not be matched to its publish once many are in flight on a channel.
//!
//! For a work queue `Q` the consumer also declares `Q.dlq`, where messages that can never be
//! applied are kept for a person to look at, and one retry queue per delay, `Q.retry.<ms>ms`,
//! where a message that failed for a passing reason waits before going back to `Q`.

use crate::event::{AddressChanged, EVENT_TYPE};
use lapin::{
    Channel, Connection, ExchangeKind,
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    protocol::{AMQPErrorKind, AMQPSoftError},
    types::{AMQPValue, FieldTable, LongString, ShortString},
};
use std::time::Duration;

/// The topic exchange every change-of-circumstances event is published to.
pub const DEFAULT_EXCHANGE: &str = "customer.events";
/// The queue of the change-of-circumstances consumer, which the producer also declares so
/// that events are kept while no consumer has ever run.
pub const DEFAULT_QUEUE: &str = "change-of-circumstances";
/// Every address change, whatever the postcode area.
pub const DEFAULT_BINDING_KEY: &str = "address.changed.#";
/// Most messages a work queue holds before the broker refuses new ones.
pub const DEFAULT_MAX_LENGTH: u32 = 100_000;

/// `address.changed.<postcode area in lower case>`, e.g. `address.changed.pr` for Preston,
/// so a subscriber interested in one area binds `address.changed.pr` and sees nothing else.
pub fn routing_key(event: &AddressChanged) -> String {
    format!(
        "{EVENT_TYPE}.{}",
        event.new_address.postcode.area().to_ascii_lowercase()
    )
}

/// The broker objects one service needs. Declaring is idempotent, so every (re)connection
/// declares it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub exchange: String,
    pub queue: WorkQueue,
    /// The delays of the retry queues. Empty for the producer, which declares only what it
    /// needs to publish safely: the exchange and the work queue with its bindings.
    pub retry_delays: Vec<Duration>,
}

/// A durable queue, the routing-key patterns that bind it to the exchange, and its bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkQueue {
    pub name: String,
    pub binding_keys: Vec<String>,
    /// Beyond this many ready messages the broker refuses (nacks) new publishes instead of
    /// growing without limit: the producer turns that into a 503.
    pub max_length: u32,
}

impl WorkQueue {
    /// Where messages that can never be applied wait for a person: `<queue>.dlq`.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dlq", self.name)
    }

    /// Where a message waits `delay` before going back to the work queue.
    pub fn retry_queue(&self, delay: Duration) -> String {
        format!("{}.retry.{}ms", self.name, delay.as_millis())
    }

    fn arguments(&self) -> FieldTable {
        refuse_beyond(self.max_length)
    }
}

/// What declaring found that an operator should act on, without stopping the service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Declared {
    pub warnings: Vec<String>,
}

impl Topology {
    /// The alternate exchange that refuses what nothing else is bound for.
    pub fn unroutable_exchange(&self) -> String {
        format!("{}.unroutable", self.exchange)
    }

    /// The alternate exchange's only queue (zero-length, refusing): named like it.
    pub fn unroutable_queue(&self) -> String {
        self.unroutable_exchange()
    }

    /// Whether this topology's work queue is bound for `routing_key`. When the broker
    /// refuses a message the producer publishes, this tells "its queue is full" (bound)
    /// from "no queue is bound for it" (as far as this service knows).
    pub fn binds(&self, routing_key: &str) -> bool {
        self.queue
            .binding_keys
            .iter()
            .any(|pattern| topic_matches(pattern, routing_key))
    }

    /// What every topology on this exchange shares: the exchange itself and its alternate
    /// exchange (and [`Self::unroutable_queue`]).
    pub fn shared_exchange_names(&self) -> [String; 2] {
        [self.exchange.clone(), self.unroutable_exchange()]
    }

    /// This topology's own queues (work queue, dead letters, retries): what to delete to
    /// remove this consumer's part. The shared names are [`Self::shared_exchange_names`].
    pub fn queue_names(&self) -> Vec<String> {
        let mut names = vec![self.queue.name.clone()];
        if !self.retry_delays.is_empty() {
            names.push(self.queue.dead_letter_queue());
            names.extend(
                self.retry_delays
                    .iter()
                    .map(|delay| self.queue.retry_queue(*delay)),
            );
        }
        names
    }

    /// Declares the exchange, the work queue and its bindings, and (for the consumer) the
    /// dead-letter and retry queues. Each declaration that can be refused gets a channel of
    /// its own, because a refusal closes the channel it happened on.
    ///
    /// A work queue that already exists with other arguments (say `QUEUE_MAX_LENGTH` was
    /// changed) does not stop the service: it is used as it is, and the returned warning says
    /// how to apply the new setting.
    pub async fn declare(&self, connection: &Connection) -> Result<Declared, lapin::Error> {
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
        declare_queue(&channel, &unroutable_queue, refuse_beyond(0)).await?;
        channel
            .queue_bind(
                unroutable_queue.as_str().into(),
                unroutable.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut with_alternate = FieldTable::default();
        with_alternate.insert("alternate-exchange".into(), string(&unroutable));
        channel
            .exchange_declare(
                self.exchange.as_str().into(),
                ExchangeKind::Topic,
                durable,
                with_alternate,
            )
            .await?;
        let warnings = self
            .declare_work_queue(connection)
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
            declare_queue(&channel, &dead_letters, FieldTable::default()).await?;
            for delay in &self.retry_delays {
                let retry = self.queue.retry_queue(*delay);
                declare_queue(&channel, &retry, self.retry_arguments(*delay)).await?;
            }
        }
        let _ = channel.close(200, "declared".into()).await;
        Ok(Declared { warnings })
    }

    /// Which of the objects a publish goes through are gone from the broker: the exchange,
    /// its alternate exchange and their queues. They go when someone deletes them by hand, or
    /// with a broker that lost its definitions; declaring again brings them back. Passive
    /// declares only: nothing is created or changed. (Bindings cannot be checked this way.)
    pub async fn missing(&self, connection: &Connection) -> Result<Vec<String>, lapin::Error> {
        let (unroutable, unroutable_queue) = (self.unroutable_exchange(), self.unroutable_queue());
        let objects = [
            (self.exchange.as_str(), true),
            (unroutable.as_str(), true),
            (self.queue.name.as_str(), false),
            (unroutable_queue.as_str(), false),
        ];
        let mut missing = Vec::new();
        for (name, is_exchange) in objects {
            // A missing object closes the channel it was asked on: one channel per question.
            let channel = connection.create_channel().await?;
            let found = if is_exchange {
                let passive = ExchangeDeclareOptions {
                    passive: true,
                    ..ExchangeDeclareOptions::default()
                };
                channel
                    .exchange_declare(
                        name.into(),
                        ExchangeKind::Topic,
                        passive,
                        FieldTable::default(),
                    )
                    .await
            } else {
                inspect_queue(&channel, name).await.map(|_| ())
            };
            match found {
                Ok(()) => {
                    let _ = channel.close(200, "checked".into()).await;
                }
                Err(error) if is_not_found(&error) => {
                    let kind = if is_exchange { "exchange" } else { "queue" };
                    missing.push(format!("{kind} {name}"));
                }
                Err(error) => return Err(error),
            }
        }
        Ok(missing)
    }

    /// Declares the work queue with its arguments, on a channel of its own. If it exists
    /// with other arguments, checks that it exists and returns the warning for operators.
    async fn declare_work_queue(
        &self,
        connection: &Connection,
    ) -> Result<Option<String>, lapin::Error> {
        let name = self.queue.name.as_str();
        let channel = connection.create_channel().await?;
        let mismatch = match declare_queue(&channel, name, self.queue.arguments()).await {
            Ok(()) => {
                let _ = channel.close(200, "declared".into()).await;
                return Ok(None);
            }
            Err(error) if is_precondition_failed(&error) => error,
            Err(error) => return Err(error),
        };
        let channel = connection.create_channel().await?;
        inspect_queue(&channel, name).await?;
        let _ = channel.close(200, "checked".into()).await;
        Ok(Some(format!(
            "queue {name:?} already exists with different arguments, so it is used as it is \
             ({mismatch}). To apply the configured ones (QUEUE_MAX_LENGTH={}), stop the \
             producers, let the consumers drain the queue, delete it (`rabbitmqctl \
             delete_queue {name}`) and restart: it is declared again.",
            self.queue.max_length
        )))
    }

    /// A retry queue holds each message `delay`, then dead-letters it to the work queue
    /// through the default exchange. It is a quorum queue with at-least-once dead-lettering:
    /// if the work queue is full at that moment, the message stays here and is moved again
    /// later, instead of being dropped as a classic queue would.
    fn retry_arguments(&self, delay: Duration) -> FieldTable {
        let mut arguments = FieldTable::default();
        arguments.insert("x-queue-type".into(), string("quorum"));
        arguments.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(delay.as_millis() as i64),
        );
        arguments.insert("x-dead-letter-exchange".into(), string(""));
        arguments.insert("x-dead-letter-routing-key".into(), string(&self.queue.name));
        arguments.insert("x-dead-letter-strategy".into(), string("at-least-once"));
        arguments.insert("x-overflow".into(), string("reject-publish"));
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

/// A passive declare: the queue's ready messages and consumers as the broker counts them,
/// without creating or changing it. A missing queue is `NOT_FOUND`, which closes `channel`.
pub async fn inspect_queue(channel: &Channel, name: &str) -> Result<lapin::Queue, lapin::Error> {
    channel
        .queue_declare(
            ShortString::from(name),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

/// Topic-exchange matching: words separated by `.`, `*` matches exactly one word, `#` zero
/// or more.
pub fn topic_matches(pattern: &str, routing_key: &str) -> bool {
    fn matches(pattern: &[&str], key: &[&str]) -> bool {
        match (pattern.split_first(), key.split_first()) {
            (None, None) => true,
            (Some((&"#", rest)), _) => {
                matches(rest, key)
                    || key
                        .split_first()
                        .is_some_and(|(_, tail)| matches(pattern, tail))
            }
            (Some((&"*", rest)), Some((_, tail))) => matches(rest, tail),
            (Some((word, rest)), Some((first, tail))) => word == first && matches(rest, tail),
            _ => false,
        }
    }
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = routing_key.split('.').collect();
    matches(&pattern, &key)
}

/// Queue arguments for a queue that holds at most `max_length` ready messages and refuses
/// (nacks) what would go beyond, rather than dropping its oldest.
fn refuse_beyond(max_length: u32) -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-max-length".into(),
        AMQPValue::LongLongInt(i64::from(max_length)),
    );
    arguments.insert("x-overflow".into(), string("reject-publish"));
    arguments
}

fn string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// The broker's 404: the exchange or queue named does not exist.
pub fn is_not_found(error: &lapin::Error) -> bool {
    matches!(
        error.kind(),
        lapin::ErrorKind::ProtocolError(amqp) if amqp.kind() == &AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)
    )
}

/// The broker's 406: the object exists with different properties.
pub fn is_precondition_failed(error: &lapin::Error) -> bool {
    matches!(
        error.kind(),
        lapin::ErrorKind::ProtocolError(amqp) if amqp.kind() == &AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_patterns_match_as_rabbitmq_does() {
        let cases = [
            ("address.changed.#", "address.changed.pr", true),
            ("address.changed.#", "address.changed", true),
            ("address.changed.pr", "address.changed.pr", true),
            ("address.changed.pr", "address.changed.la", false),
            ("address.*.pr", "address.changed.pr", true),
            ("address.*", "address.changed.pr", false),
            ("#", "anything.at.all", true),
            ("#.pr", "address.changed.pr", true),
            ("*.changed.#", "address.changed.pr.extra", true),
            ("address.changed.pr", "address.changed.pr.extra", false),
        ];
        for (pattern, key, expected) in cases {
            assert_eq!(topic_matches(pattern, key), expected, "{pattern} vs {key}");
        }
    }
}
