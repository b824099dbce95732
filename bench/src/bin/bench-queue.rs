//! The benchmark's broker chores: fill a backlog of valid events fast, time a drain by
//! watching the queue's depth, purge between runs, and delete the run's exchange and queues.

// Printing the measurements is this program's purpose.
#![allow(clippy::print_stdout)]

use anyhow::{Context, bail};
use bench::{Target, ready_messages, sample_event};
use clap::{Parser, Subcommand};
use lapin::{
    Confirmation, Connection,
    options::{ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeleteOptions, QueuePurgeOptions},
};
use shared::message::EventMessage;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(
    name = "bench-queue",
    about = "Fill, watch, purge and delete the benchmark's queues."
)]
struct Args {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Declare the exchange and QUEUE, then publish COUNT `address.changed` events to the
    /// exchange with confirms, WINDOW at a time.
    Fill {
        #[arg(long)]
        count: u64,
        #[arg(long, default_value_t = 1_000)]
        window: usize,
    },
    /// Print QUEUE's ready messages.
    Depth,
    /// Wait until QUEUE, holding COUNT messages, is empty; print the drain rate, timed from
    /// the first message taken to the queue being empty.
    Watch {
        #[arg(long)]
        count: u32,
        #[arg(long, default_value_t = 10)]
        poll_ms: u64,
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
    },
    /// Remove every ready message from QUEUE.
    Purge,
    /// Delete the named queues and exchanges; missing ones are skipped.
    Delete {
        #[arg(long, value_delimiter = ',')]
        queues: Vec<String>,
        #[arg(long, value_delimiter = ',')]
        exchanges: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let connection = args.target.connect("bench-queue").await?;
    let queue = args.target.queue.queue.clone();
    match args.command {
        Command::Fill { count, window } => fill(&connection, &args.target, count, window).await?,
        Command::Depth => {
            let channel = connection.create_channel().await?;
            println!("{}", ready_messages(&channel, &queue).await?);
        }
        Command::Watch {
            count,
            poll_ms,
            timeout_secs,
        } => watch(&connection, &queue, count, poll_ms, timeout_secs).await?,
        Command::Purge => {
            let channel = connection.create_channel().await?;
            let purged = channel
                .queue_purge(queue.as_str().into(), QueuePurgeOptions::default())
                .await?;
            println!("purged={purged}");
        }
        Command::Delete { queues, exchanges } => delete(&connection, &queues, &exchanges).await?,
    }
    // Bounded (a close was once never answered after a watch, and the benchmark hung).
    shared::amqp::close(&connection, "bench-queue done").await;
    Ok(())
}

async fn fill(
    connection: &Connection,
    target: &Target,
    count: u64,
    window: usize,
) -> anyhow::Result<()> {
    target.topology().declare(connection).await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let exchange = target.broker.exchange.as_str();
    let started = Instant::now();
    let mut pending = Vec::with_capacity(window);
    for n in 0..count {
        let message = EventMessage::address_changed(&sample_event(n), "bench");
        let options = shared::message::MANDATORY;
        let confirm = channel
            .basic_publish(
                exchange.into(),
                message.routing_key.as_str().into(),
                options,
                &message.body,
                message.properties,
            )
            .await?;
        pending.push(confirm);
        if pending.len() == window || n + 1 == count {
            for confirm in pending.drain(..) {
                match confirm.await? {
                    Confirmation::Ack(None) => {}
                    other => bail!("message {n}'s window was not accepted: {other:?}"),
                }
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "published={count} secs={seconds:.3} rate={:.0}",
        count as f64 / seconds.max(f64::EPSILON)
    );
    Ok(())
}

async fn watch(
    connection: &Connection,
    queue: &str,
    count: u32,
    poll_ms: u64,
    timeout_secs: u64,
) -> anyhow::Result<()> {
    let channel = connection.create_channel().await?;
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    let mut interval = tokio::time::interval(Duration::from_millis(poll_ms));
    let mut started = None;
    loop {
        interval.tick().await;
        let ready = ready_messages(&channel, queue).await?;
        if started.is_none() && ready < count {
            started = Some(Instant::now());
        }
        if ready == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("{queue} still holds {ready} messages after {timeout_secs} s");
        }
    }
    let seconds = started
        .context("the queue was empty at the first look")?
        .elapsed()
        .as_secs_f64();
    println!(
        "drained={count} secs={seconds:.3} rate={:.0}",
        f64::from(count) / seconds.max(f64::EPSILON)
    );
    Ok(())
}

/// Each delete gets a channel of its own: a refused one closes its channel. Deleting what
/// does not exist succeeds; any other failure is printed and makes the command fail, so
/// that `bench/run.sh` can say what it left behind.
async fn delete(
    connection: &Connection,
    queues: &[String],
    exchanges: &[String],
) -> anyhow::Result<()> {
    let mut failed = 0;
    for queue in queues {
        let deleted = match connection.create_channel().await {
            Ok(channel) => channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await
                .map(|messages| format!("deleted queue {queue} ({messages} messages)")),
            Err(error) => Err(error),
        };
        report(
            deleted.map_err(|e| format!("queue {queue}: {e}")),
            &mut failed,
        );
    }
    for exchange in exchanges {
        let deleted = match connection.create_channel().await {
            Ok(channel) => channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await
                .map(|()| format!("deleted exchange {exchange}")),
            Err(error) => Err(error),
        };
        report(
            deleted.map_err(|e| format!("exchange {exchange}: {e}")),
            &mut failed,
        );
    }
    anyhow::ensure!(failed == 0, "{failed} deletes failed");
    Ok(())
}

fn report(outcome: Result<String, String>, failed: &mut usize) {
    match outcome {
        Ok(done) => println!("{done}"),
        Err(error) => {
            eprintln!("{error}");
            *failed += 1;
        }
    }
}
