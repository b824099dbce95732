//! The ceiling for any consumer: a plain lapin consume-and-ack loop over the work queue (one
//! manual ack per message, right after receipt, with the consumer's prefetch), which exits
//! after `--count` acks and prints its rate, timed from the first delivery to the last ack.

// Printing the measurement is this program's purpose.
#![allow(clippy::print_stdout)]

use anyhow::{Context, bail};
use bench::Target;
use clap::Parser;
use futures_util::StreamExt;
use lapin::{
    options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
};
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(
    name = "raw-drain",
    about = "Consume and ack N messages; print the rate."
)]
struct Args {
    /// Messages to ack before exiting.
    #[arg(long)]
    count: u64,
    /// Unacknowledged messages the broker sends ahead; the consumer's default.
    #[arg(long, env = "PREFETCH", default_value_t = 128)]
    prefetch: u16,
    /// Give up (exit 1) if the count is not reached by then.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    #[command(flatten)]
    target: Target,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let connection = args.target.connect("raw-drain").await?;
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(args.prefetch, BasicQosOptions::default())
        .await?;
    let mut deliveries = channel
        .basic_consume(
            args.target.queue.queue.as_str().into(),
            "raw-drain".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;

    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let mut first = None;
    let mut acked = 0_u64;
    while acked < args.count {
        let next = tokio::time::timeout_at(deadline.into(), deliveries.next())
            .await
            .with_context(|| format!("timed out after {acked} acks"))?;
        let Some(delivery) = next else {
            bail!("the broker cancelled the subscription after {acked} acks");
        };
        let delivery = delivery?;
        first.get_or_insert_with(Instant::now);
        delivery.ack(BasicAckOptions::default()).await?;
        acked += 1;
    }
    let seconds = first.map_or(0.0, |first| first.elapsed().as_secs_f64());
    println!(
        "acked={acked} secs={seconds:.3} rate={:.0}",
        acked as f64 / seconds.max(f64::EPSILON)
    );
    // A round trip on the channel before closing: the broker answers the cancel only after
    // the acks sent before it, whereas a connection closed straight after the last ack could
    // overtake some of them (seen on RabbitMQ 4.0 with a quorum queue: a few dozen messages
    // back in the queue, and the next drain of the benchmark waiting for them for ever).
    // Closed cleanly even when the cancel fails, which is then reported.
    let cancelled = channel
        .basic_cancel(deliveries.tag(), BasicCancelOptions::default())
        .await;
    shared::amqp::close(&connection, "raw-drain done").await;
    cancelled.context("cancelling the subscription after the last ack")?;
    Ok(())
}
