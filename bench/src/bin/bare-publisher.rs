//! The ceiling for any HTTP-to-confirm producer of this contract's messages: one POST
//! handler that publishes the request body as it came (no parsing, no envelope) on ONE
//! shared confirm channel, with the properties every `address.changed` message must carry
//! (message id, type, timestamp, app id and a `traceparent` header: the contract, not the
//! producer's overhead), waits for that message's confirm, and answers 202. No validation,
//! no logging, no middleware.
//!
//! Three flags exist for investigating, not for the benchmark's figures: `--channels`
//! spreads the requests over several confirm channels (round robin, many messages in flight
//! on each), `--transient` publishes with delivery mode 1, so the broker does not write to
//! disk, and `--plain-properties` leaves out all but the delivery mode and content type, to
//! see what the contract's properties cost the broker.

use axum::{Router, body::Bytes, extract::State, http::StatusCode, routing::post};
use bench::Target;
use clap::Parser;
use lapin::{
    BasicProperties, Channel, Confirmation, options::ConfirmSelectOptions, types::FieldTable,
};
use shared::{
    amqp::headers::long_string,
    event::EVENT_TYPE,
    message::{CONTENT_TYPE, PERSISTENT},
    trace_context::{TRACEPARENT, TraceContext},
};
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(
    name = "bare-publisher",
    about = "POST body -> one confirm channel -> 202."
)]
struct Args {
    /// Address and port to listen on.
    #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:8090")]
    http_addr: SocketAddr,
    /// Routing key of every message, as the producer would compute it for a Preston postcode.
    #[arg(long, default_value = "address.changed.pr")]
    routing_key: String,
    /// Confirm channels the requests are spread over; the ceiling is measured with one.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    channels: u16,
    /// Publish with delivery mode 1 (not persistent).
    #[arg(long)]
    transient: bool,
    /// Leave out the contract's message properties and trace header.
    #[arg(long)]
    plain_properties: bool,
    #[command(flatten)]
    target: Target,
}

/// What every request shares: the channel (or channels), and what to publish with.
#[derive(Debug)]
struct Shared {
    channels: Vec<Channel>,
    next: AtomicUsize,
    exchange: String,
    routing_key: String,
    properties: BasicProperties,
    plain_properties: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let connection = args.target.connect("bare-publisher").await?;
    // Same exchange, queue and binding as the producer, so the broker does the same work.
    args.target.topology().declare(&connection).await?;
    let mut channels = Vec::new();
    for _ in 0..args.channels {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        channels.push(channel);
    }
    let shared = Arc::new(Shared {
        channels,
        next: AtomicUsize::new(0),
        exchange: args.target.broker.exchange.clone(),
        routing_key: args.routing_key,
        properties: BasicProperties::default()
            .with_delivery_mode(if args.transient { 1 } else { PERSISTENT })
            .with_content_type(CONTENT_TYPE.into()),
        plain_properties: args.plain_properties,
    });
    let router = Router::new()
        .route("/api/v1/address-changes", post(publish))
        .route("/readyz", axum::routing::get(|| async { StatusCode::OK }))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind(args.http_addr).await?;
    shared::http::serve(listener, router, shared::shutdown::on_signal()).await?;
    // The channel is being closed with the router that held it; the close is best effort.
    let _ = connection
        .close(200, "bare-publisher stopping".into())
        .await;
    Ok(())
}

async fn publish(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    let channel = match shared.channels.as_slice() {
        [only] => only,
        all => &all[shared.next.fetch_add(1, Ordering::Relaxed) % all.len()],
    };
    let sent = channel
        .basic_publish(
            shared.exchange.as_str().into(),
            shared.routing_key.as_str().into(),
            shared::message::MANDATORY,
            &body,
            if shared.plain_properties {
                shared.properties.clone()
            } else {
                with_producer_properties(&shared.properties)
            },
        )
        .await;
    let confirmation = match sent {
        Ok(confirm) => confirm.await,
        Err(error) => Err(error),
    };
    match confirmation {
        Ok(Confirmation::Ack(None)) => StatusCode::ACCEPTED,
        Ok(Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_))) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        Ok(Confirmation::Nack(None) | Confirmation::NotRequested) | Err(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// The properties `shared::message::EventMessage` sets, with values of the same size.
fn with_producer_properties(properties: &BasicProperties) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        TRACEPARENT.into(),
        long_string(&TraceContext::new_root().to_string()),
    );
    properties
        .clone()
        .with_message_id(Uuid::new_v4().to_string().into())
        .with_type(EVENT_TYPE.into())
        .with_timestamp(OffsetDateTime::now_utc().unix_timestamp().max(0) as u64)
        .with_app_id("producer".into())
        .with_headers(headers)
}
