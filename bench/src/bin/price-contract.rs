//! What each item of our message contract costs the broker, one item at a time.
//!
//! `minimal-publisher` and `bare-publisher` differ in five ways at once: the exchange (the
//! default one, or our topic exchange), its alternate exchange, the `mandatory` flag, the
//! message properties with the `traceparent` header, and the queue's `x-max-length`. This
//! program publishes the same messages, over one confirm channel with a fixed number in
//! flight, with each combination in the table below, and reports the rate and the broker's
//! own CPU time per message (from `/proc/<broker pid>/stat`). No HTTP and no service in the
//! way: only the broker's work differs from one row to the next. Every exchange and queue it
//! declares is named `<prefix>.<row>...` and deleted after the row's round.

// Printing the measurement is this program's purpose.
#![allow(clippy::print_stdout)]

use anyhow::{Context, bail};
use bench::{Target, sample_event};
use clap::Parser;
use futures_util::{StreamExt, stream::FuturesUnordered};
use lapin::{
    BasicProperties, Channel, Confirmation, ExchangeKind,
    options::{
        BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
        QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable},
};
use shared::{
    amqp::headers::long_string,
    message::{CONTENT_TYPE, EventMessage, MANDATORY, PERSISTENT},
    topology::{DEFAULT_BINDING_KEY, QueueType},
    trace_context::TraceContext,
};
use std::time::Instant;

#[derive(Debug, Parser)]
#[command(
    name = "price-contract",
    about = "Broker CPU per message for each item of the message contract."
)]
struct Args {
    /// PID of the broker's Erlang VM (beam.smp), whose CPU time is measured.
    #[arg(long)]
    broker_pid: u32,
    /// Messages published per row and round.
    #[arg(long, default_value_t = 40_000)]
    messages: usize,
    /// Messages awaiting their confirm at any time (the load tool's 64 connections).
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Rounds; each runs every row, in reverse order every other round, and the table shows
    /// the medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The kernel's clock ticks a second, in which `/proc` gives CPU times (`getconf CLK_TCK`).
    #[arg(long, default_value_t = 100)]
    clock_ticks: u32,
    /// Names of the run's exchanges and queues start with this.
    #[arg(long, default_value = "price")]
    prefix: String,
    #[command(flatten)]
    target: Target,
}

/// Which exchange the messages go through.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Via {
    /// The default exchange, straight to the queue by its name.
    DefaultExchange,
    /// A direct exchange, the queue bound by the exact routing key.
    Direct,
    /// Our topic exchange, the queue bound by `address.changed.#`.
    Topic,
    /// Our topic exchange, the queue bound by `address.changed.*`: the same messages (every
    /// routing key is three words), matched without the multi-word wildcard.
    TopicOneWord,
}

/// One row: a combination of the contract's items.
#[derive(Debug, Clone, Copy)]
struct Row {
    name: &'static str,
    via: Via,
    alternate_exchange: bool,
    mandatory: bool,
    properties: bool,
    max_length: bool,
}

const fn row(
    name: &'static str,
    via: Via,
    [alternate_exchange, mandatory, properties, max_length]: [bool; 4],
) -> Row {
    Row {
        name,
        via,
        alternate_exchange,
        mandatory,
        properties,
        max_length,
    }
}

/// From the minimal peer's way up to our contract one item at a time, then the contract
/// without each item in turn. The flags are [alternate exchange, mandatory, properties,
/// x-max-length].
#[rustfmt::skip] // a table: one row a line reads better than rustfmt's layout
const ROWS: [Row; 12] = [
    row("minimal",                              Via::DefaultExchange, [false, false, false, false]),
    row("+ topic exchange",                     Via::Topic,           [false, false, false, false]),
    row("+ alternate exchange",                 Via::Topic,           [true,  false, false, false]),
    row("+ mandatory",                          Via::Topic,           [true,  true,  false, false]),
    row("+ properties",                         Via::Topic,           [true,  true,  true,  false]),
    row("+ x-max-length = contract",            Via::Topic,           [true,  true,  true,  true]),
    row("contract, direct exchange",            Via::Direct,          [true,  true,  true,  true]),
    row("contract, bound by address.changed.*", Via::TopicOneWord,    [true,  true,  true,  true]),
    row("contract - alternate exchange",        Via::Topic,           [false, true,  true,  true]),
    row("contract - mandatory",                 Via::Topic,           [true,  false, true,  true]),
    row("contract - properties",                Via::Topic,           [true,  true,  false, true]),
    row("contract - x-max-length",              Via::Topic,           [true,  true,  true,  false]),
];

/// One row's round: messages a second, and the broker's CPU microseconds a message.
#[derive(Debug, Clone, Copy)]
struct Measure {
    rate: f64,
    broker_us: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let connection = args.target.connect("price-contract").await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let quorum = args.target.queue.queue_type == QueueType::Quorum;
    let mut results: Vec<Vec<Measure>> = vec![Vec::new(); ROWS.len()];
    for round in 0..args.rounds {
        let mut order: Vec<usize> = (0..ROWS.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for index in order {
            let names = Names::new(&args.prefix, index);
            declare(&channel, &ROWS[index], &names, quorum).await?;
            let measured = publish_all(&channel, &ROWS[index], &names, &args).await;
            delete(&channel, &names).await?;
            let measured = measured.with_context(|| format!("row {:?}", ROWS[index].name))?;
            eprintln!(
                "round {} {:<32} {:>8.0} msg/s {:>6.1} µs broker CPU/msg",
                round + 1,
                ROWS[index].name,
                measured.rate,
                measured.broker_us
            );
            results[index].push(measured);
        }
    }
    println!("| row | messages/s | broker CPU a message |");
    println!("| --- | ---: | ---: |");
    for (row, measures) in ROWS.iter().zip(&results) {
        let rate = median(measures.iter().map(|m| m.rate));
        let broker_us = median(measures.iter().map(|m| m.broker_us));
        println!("| {} | {rate:.0} | {broker_us:.1} µs |", row.name);
    }
    shared::amqp::close(&connection, "price-contract done").await;
    Ok(())
}

/// The names of one row's exchange, its alternate exchange and the queue.
struct Names {
    exchange: String,
    unroutable: String,
    queue: String,
}

impl Names {
    fn new(prefix: &str, index: usize) -> Self {
        let base = format!("{prefix}.row{index}");
        Self {
            unroutable: format!("{base}.unroutable"),
            queue: base.clone(),
            exchange: base,
        }
    }
}

async fn declare(channel: &Channel, row: &Row, names: &Names, quorum: bool) -> anyhow::Result<()> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let mut queue_arguments = queue_type_arguments(quorum);
    if row.max_length {
        // As the contract bounds the work queue, with room for every message of the run.
        queue_arguments.insert("x-max-length".into(), AMQPValue::LongLongInt(10_000_000));
        queue_arguments.insert("x-overflow".into(), long_string("reject-publish"));
    }
    channel
        .queue_declare(names.queue.as_str().into(), durable, queue_arguments)
        .await?;
    let (kind, binding_key) = match row.via {
        Via::DefaultExchange => return Ok(()),
        Via::Direct => (ExchangeKind::Direct, "address.changed.pr"),
        Via::Topic => (ExchangeKind::Topic, DEFAULT_BINDING_KEY),
        Via::TopicOneWord => (ExchangeKind::Topic, "address.changed.*"),
    };
    let exchange_options = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    let mut exchange_arguments = FieldTable::default();
    if row.alternate_exchange {
        // As the contract's: a fanout exchange whose only queue refuses every message, so
        // that an unroutable message is nacked. None of this run's messages is unroutable.
        channel
            .exchange_declare(
                names.unroutable.as_str().into(),
                ExchangeKind::Fanout,
                exchange_options,
                FieldTable::default(),
            )
            .await?;
        let mut refuse_all = queue_type_arguments(quorum);
        refuse_all.insert("x-max-length".into(), AMQPValue::LongLongInt(0));
        refuse_all.insert("x-overflow".into(), long_string("reject-publish"));
        channel
            .queue_declare(names.unroutable.as_str().into(), durable, refuse_all)
            .await?;
        channel
            .queue_bind(
                names.unroutable.as_str().into(),
                names.unroutable.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        exchange_arguments.insert("alternate-exchange".into(), long_string(&names.unroutable));
    }
    channel
        .exchange_declare(
            names.exchange.as_str().into(),
            kind,
            exchange_options,
            exchange_arguments,
        )
        .await?;
    channel
        .queue_bind(
            names.queue.as_str().into(),
            names.exchange.as_str().into(),
            binding_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

fn queue_type_arguments(quorum: bool) -> FieldTable {
    let mut arguments = FieldTable::default();
    if quorum {
        arguments.insert("x-queue-type".into(), long_string("quorum"));
    }
    arguments
}

async fn delete(channel: &Channel, names: &Names) -> anyhow::Result<()> {
    for queue in [&names.queue, &names.unroutable] {
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await?;
    }
    for exchange in [&names.exchange, &names.unroutable] {
        channel
            .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await?;
    }
    Ok(())
}

/// Publishes `args.messages` messages (the producer's own bodies, each a fresh event),
/// keeping `args.in_flight` unconfirmed, and measures the rate and the broker's CPU.
async fn publish_all(
    channel: &Channel,
    row: &Row,
    names: &Names,
    args: &Args,
) -> anyhow::Result<Measure> {
    // Through the default exchange a message is addressed to the queue by its name; through
    // the others by the message's own routing key.
    let (exchange, queue_as_key) = match row.via {
        Via::DefaultExchange => ("", Some(names.queue.as_str())),
        Via::Direct | Via::Topic | Via::TopicOneWord => (names.exchange.as_str(), None),
    };
    let options = if row.mandatory {
        MANDATORY
    } else {
        BasicPublishOptions::default()
    };
    let plain = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_content_type(CONTENT_TYPE.into());
    let cpu_before = broker_cpu_ticks(args.broker_pid)?;
    let started = Instant::now();
    let mut pending = FuturesUnordered::new();
    for n in 0..args.messages {
        if pending.len() >= args.in_flight {
            confirmed(pending.next().await)?;
        }
        let message = EventMessage::address_changed(&sample_event(n as u64), "producer")
            .with_trace_context(&TraceContext::new_root());
        let routing_key = queue_as_key.unwrap_or(message.routing_key.as_str());
        let properties = if row.properties {
            message.properties
        } else {
            plain.clone()
        };
        let confirm = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                options,
                &message.body,
                properties,
            )
            .await?;
        pending.push(confirm);
    }
    while let Some(confirm) = pending.next().await {
        confirmed(Some(confirm))?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_secs =
        (broker_cpu_ticks(args.broker_pid)? - cpu_before) as f64 / f64::from(args.clock_ticks);
    Ok(Measure {
        rate: args.messages as f64 / elapsed,
        broker_us: cpu_secs * 1e6 / args.messages as f64,
    })
}

fn confirmed(confirm: Option<Result<Confirmation, lapin::Error>>) -> anyhow::Result<()> {
    match confirm {
        Some(Ok(Confirmation::Ack(None))) => Ok(()),
        other => bail!("a message was not confirmed as routed: {other:?}"),
    }
}

/// The broker VM's user plus system CPU time so far, in clock ticks.
fn broker_cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading the broker's CPU time (pid {pid})"))?;
    // Fields 14 and 15 (utime, stime) follow the command name, which is in parentheses.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("an unexpected /proc/<pid>/stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| -> anyhow::Result<u64> {
        Ok(fields
            .get(index)
            .context("a short /proc/<pid>/stat")?
            .parse()?)
    };
    Ok(ticks(11)? + ticks(12)?)
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}
