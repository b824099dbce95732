//! Asking the broker what exists without changing anything: passive declares, which a
//! missing object answers with `NOT_FOUND` (and a closed channel).

use super::Topology;
use crate::amqp::errors::is_not_found;
use lapin::{
    Channel, Connection, ExchangeKind,
    options::{ExchangeDeclareOptions, QueueDeclareOptions},
    types::{FieldTable, ShortString},
};

impl Topology {
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
