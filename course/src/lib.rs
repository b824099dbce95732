//! The course's examples of the exchange types the services do not use (`examples/`: run
//! `cargo run --example direct` or `fanout`), and what both need besides their exchange: a
//! connection from `AMQP_ADDR`, and a way to see what each queue received.

use futures_util::StreamExt;
use lapin::{
    Channel, Connection, ConnectionProperties,
    options::{BasicAckOptions, BasicConsumeOptions},
    types::FieldTable,
};
use std::{collections::BTreeMap, time::Duration};

/// What each queue received, by queue name.
pub type Received = BTreeMap<String, Vec<String>>;

/// A queue quiet for this long has delivered everything published to it.
const QUIET: Duration = Duration::from_millis(300);

/// Connects to `AMQP_ADDR` (default: the local broker as guest), named for the UI.
pub async fn connect(name: &str) -> lapin::Result<Connection> {
    let addr = std::env::var("AMQP_ADDR")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    Connection::connect(
        &addr,
        ConnectionProperties::default().with_connection_name(name.into()),
    )
    .await
}

/// Consumes from each of `queues` until it has been quiet for a moment.
pub async fn collect(channel: &Channel, queues: &[String]) -> lapin::Result<Received> {
    let mut received = Received::new();
    for queue in queues {
        let bodies = received.entry(queue.clone()).or_default();
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        while let Ok(Some(delivery)) = tokio::time::timeout(QUIET, consumer.next()).await {
            let delivery = delivery?;
            delivery.ack(BasicAckOptions::default()).await?;
            bodies.push(String::from_utf8_lossy(&delivery.data).into_owned());
        }
    }
    Ok(received)
}

/// One line per queue.
pub fn show(received: &Received) -> String {
    received
        .iter()
        .map(|(queue, bodies)| format!("  {queue}: {bodies:?}\n"))
        .collect()
}
