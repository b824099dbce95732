//! Publish/subscribe with a fanout exchange: every queue bound to it gets its own copy of
//! every message, whatever the routing key. Adding a subscriber (a payments service, a
//! mail-shot) is binding one more queue; the publisher does not change.
//!
//! ```sh
//! cargo run --example fanout        # AMQP_ADDR as for the services
//! ```
//! The queues are exclusive to the example's connection: they vanish when it exits.

// Printing what each queue received is what an example is for.
#![allow(clippy::print_stdout)]

use course::{Received, collect, show};
use lapin::{
    BasicProperties, Connection, ExchangeKind,
    options::{
        BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
        QueueDeclareOptions,
    },
    types::FieldTable,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let connection = course::connect("example: fanout").await?;
    let subscribers = ["change-of-circumstances", "payments", "preston-mailshot"];
    let received = fan_out(
        &connection,
        "demo.fanout",
        &subscribers,
        &["C-1 moved to PR1 2HE", "C-2 moved to LA1 1PJ"],
    )
    .await?;
    println!(
        "Fanout exchange, three subscribers, two messages:\n{}",
        show(&received)
    );
    connection.close(200, "done".into()).await?;
    Ok(())
}

/// Binds one queue per subscriber to a fanout exchange, publishes `messages` (each with a
/// different routing key, which a fanout exchange ignores) and collects what each got.
async fn fan_out(
    connection: &Connection,
    exchange: &str,
    subscribers: &[&str],
    messages: &[&str],
) -> lapin::Result<Received> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let queues: Vec<String> = subscribers
        .iter()
        .map(|name| format!("{exchange}.{name}"))
        .collect();
    for queue in &queues {
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    exclusive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        // The binding key is ignored by a fanout exchange; it is empty by convention.
        channel
            .queue_bind(
                queue.as_str().into(),
                exchange.into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    for (n, body) in messages.iter().enumerate() {
        channel
            .basic_publish(
                exchange.into(),
                format!("ignored.{n}").as_str().into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default(),
            )
            .await?
            .await?;
    }
    collect(&channel, &queues).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_subscriber_gets_every_message_whatever_the_routing_key() {
        let connection = Connection::connect(
            &testkit::broker::broker_uri(),
            lapin::ConnectionProperties::default(),
        )
        .await
        .unwrap();
        let exchange = format!(
            "test.fanout.{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let messages = ["first", "second"];

        let received = fan_out(&connection, &exchange, &["a", "b", "c"], &messages)
            .await
            .unwrap();
        connection.close(200, "done".into()).await.unwrap();

        assert_eq!(received.len(), 3);
        for (queue, bodies) in &received {
            assert_eq!(bodies, &messages, "{queue}");
        }
    }
}
