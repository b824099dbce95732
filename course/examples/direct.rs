//! Direct routing, the first pattern of the course: a message goes to the queue whose
//! binding key equals its routing key exactly.
//!
//! Part 1 is the classic one-queue demo: the *default exchange* routes a message to the
//! queue named by its routing key, so a producer and a consumer share one queue and nothing
//! else. Part 2 is a named direct exchange with two queues bound by `pr` and `la`: each
//! message reaches the one queue whose key matches, and a key nobody bound reaches none.
//!
//! ```sh
//! cargo run --example direct        # AMQP_ADDR as for the services
//! ```
//! The queues are exclusive to the example's connection: they vanish when it exits.

// Printing what each queue received is what an example is for.
#![allow(clippy::print_stdout)]

use course::{Received, collect, show};
use lapin::{
    BasicProperties, Channel, Connection, ExchangeKind,
    options::{
        BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
        QueueDeclareOptions,
    },
    types::FieldTable,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let connection = course::connect("example: direct").await?;

    let one_queue = default_exchange_one_queue(&connection, "demo.one-queue").await?;
    println!("Default exchange, one queue:\n{}", show(&one_queue));

    let routed = direct_exchange(&connection, "demo.direct", &["pr", "la", "m"]).await?;
    println!(
        "Direct exchange, queues bound by 'pr' and 'la' (nobody bound 'm'):\n{}",
        show(&routed)
    );
    connection.close(200, "done".into()).await?;
    Ok(())
}

/// Publishes three messages to the default exchange with the queue's name as routing key,
/// then consumes them: the producer/consumer pair of the course's `rabbitOneQueue` demo.
async fn default_exchange_one_queue(
    connection: &Connection,
    queue: &str,
) -> lapin::Result<Received> {
    let channel = confirm_channel(connection).await?;
    declare_exclusive(&channel, queue).await?;
    for n in 1..=3 {
        publish(&channel, "", queue, &format!("change {n}")).await?;
    }
    collect(&channel, &[queue.to_owned()]).await
}

/// Declares a direct exchange and one queue per bound key except the last of `keys`, then
/// publishes one message per key: each lands in its own queue, the unbound one nowhere.
async fn direct_exchange(
    connection: &Connection,
    exchange: &str,
    keys: &[&str],
) -> lapin::Result<Received> {
    let channel = confirm_channel(connection).await?;
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let (bound, unbound) = keys.split_at(keys.len() - 1);
    let mut queues = Vec::new();
    for key in bound {
        let queue = format!("{exchange}.{key}");
        declare_exclusive(&channel, &queue).await?;
        channel
            .queue_bind(
                queue.as_str().into(),
                exchange.into(),
                (*key).into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        queues.push(queue);
    }
    for key in bound.iter().chain(unbound) {
        publish(&channel, exchange, key, &format!("address in {key}")).await?;
    }
    collect(&channel, &queues).await
}

async fn confirm_channel(connection: &Connection) -> lapin::Result<Channel> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

async fn declare_exclusive(channel: &Channel, queue: &str) -> lapin::Result<()> {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// Publishes and waits for the broker's confirm (an unroutable message is confirmed too:
/// it is simply not stored anywhere).
async fn publish(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &str,
) -> lapin::Result<()> {
    channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default(),
        )
        .await?
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn connect() -> Connection {
        Connection::connect(
            &testkit::broker::broker_uri(),
            lapin::ConnectionProperties::default(),
        )
        .await
        .unwrap()
    }

    fn unique(prefix: &str) -> String {
        format!(
            "{prefix}.{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        )
    }

    #[tokio::test]
    async fn the_default_exchange_delivers_to_the_queue_named_by_the_routing_key() {
        let connection = connect().await;
        let queue = unique("test.one-queue");
        let received = default_exchange_one_queue(&connection, &queue)
            .await
            .unwrap();
        connection.close(200, "done".into()).await.unwrap();
        assert_eq!(received[&queue], ["change 1", "change 2", "change 3"]);
    }

    #[tokio::test]
    async fn a_direct_exchange_delivers_each_message_to_the_queue_bound_with_its_exact_key() {
        let connection = connect().await;
        let exchange = unique("test.direct");
        let received = direct_exchange(&connection, &exchange, &["pr", "la", "m"])
            .await
            .unwrap();
        connection.close(200, "done".into()).await.unwrap();
        assert_eq!(received[&format!("{exchange}.pr")], ["address in pr"]);
        assert_eq!(received[&format!("{exchange}.la")], ["address in la"]);
        assert_eq!(
            received.values().map(Vec::len).sum::<usize>(),
            2,
            "the 'm' message reached no queue"
        );
    }
}
