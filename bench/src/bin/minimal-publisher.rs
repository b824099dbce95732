//! The simplest producer a user could write to do the same job, and so the first ceiling a
//! user would compare us with: parse the JSON body, wrap it with a fresh id, publish it
//! persistent to a durable queue through the default exchange on ONE shared confirm channel,
//! answer 202 on the broker's ack. No topic exchange, no alternate exchange, no message
//! properties beyond the delivery mode, no `mandatory` flag, no length limit on the queue, no
//! validation, no logging, no middleware.
//!
//! `bare-publisher` is the second ceiling: our contract without our code. The gap between the
//! two is what the contract costs; the gap between `bare-publisher` and the producer is what
//! our code costs (bench/README.md).

use axum::{Json, Router, extract::State, http::StatusCode, routing::post};
use bench::Target;
use clap::Parser;
use lapin::{
    BasicProperties, Channel, Confirmation,
    options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
};
use shared::{message::PERSISTENT, topology::QueueType};
use std::{net::SocketAddr, sync::Arc};
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(
    name = "minimal-publisher",
    about = "POST JSON -> {id, data} -> default exchange, one confirm channel -> 202."
)]
struct Args {
    /// Address and port to listen on.
    #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:8091")]
    http_addr: SocketAddr,
    #[command(flatten)]
    target: Target,
}

/// What every request shares: the one confirm channel and the queue it publishes to.
#[derive(Debug)]
struct Shared {
    channel: Channel,
    queue: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let connection = args.target.connect("minimal-publisher").await?;
    let channel = connection.create_channel().await?;
    // A durable queue of the run's type (so classic and quorum runs compare like with like),
    // and nothing else: no length limit, no dead-lettering.
    let mut arguments = FieldTable::default();
    if args.target.queue.queue_type == QueueType::Quorum {
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
    }
    let queue = args.target.queue.queue.clone();
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let router = Router::new()
        .route("/api/v1/address-changes", post(publish))
        .route("/readyz", axum::routing::get(|| async { StatusCode::OK }))
        .with_state(Arc::new(Shared { channel, queue }));
    let listener = tokio::net::TcpListener::bind(args.http_addr).await?;
    shared::http::serve(listener, router, shared::shutdown::on_signal()).await?;
    let _ = connection
        .close(200, "minimal-publisher stopping".into())
        .await;
    Ok(())
}

async fn publish(
    State(shared): State<Arc<Shared>>,
    Json(data): Json<serde_json::Value>,
) -> StatusCode {
    let message = serde_json::json!({ "id": Uuid::new_v4(), "data": data });
    let Ok(body) = serde_json::to_vec(&message) else {
        return StatusCode::INTERNAL_SERVER_ERROR;
    };
    let sent = shared
        .channel
        .basic_publish(
            "".into(),
            shared.queue.as_str().into(),
            BasicPublishOptions::default(),
            &body,
            BasicProperties::default().with_delivery_mode(PERSISTENT),
        )
        .await;
    match sent {
        Ok(confirm) => match confirm.await {
            Ok(Confirmation::Ack(_)) => StatusCode::ACCEPTED,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        },
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}
