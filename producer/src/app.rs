//! Building and running the producer: `build` binds and wires, `run_until_stopped` starts
//! the publisher's link and the queue sampler, then serves until shutdown.

use crate::{
    config::Config,
    consumer_client::ConsumerClient,
    idempotency::RecentKeys,
    publisher::{Link, Publisher, PublisherSettings},
    routes::{self, AppState},
};
use shared::{config::topology, http, queue_stats, readiness::Readiness, shutdown};
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;

/// A producer bound to its port, not yet connecting or serving.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    readiness: Readiness,
    publisher: Publisher,
    link: Link,
    sampler: queue_stats::Sampler,
    shutdown_grace: Duration,
}

impl Application {
    /// Binds `config.http_addr` (port 0 picks a free port, as the tests do) and builds
    /// the router. Nothing connects to the broker until it runs.
    pub async fn build(config: Config) -> std::io::Result<Self> {
        crate::metrics::install();
        let listener = TcpListener::bind(config.http_addr).await?;
        let readiness = Readiness::new("connecting to the broker");
        let connection_name = config.broker.connection_name("producer");
        let sampler = queue_stats::Sampler::new(
            "producer",
            config.broker.queue_stats_source(&connection_name),
            config.watched_queues(),
            Duration::from_secs(1),
        );
        let (publisher, link) = Publisher::new(PublisherSettings {
            broker: config.broker.address(),
            topology: topology(&config.broker, &config.queue),
            connection_name,
            channels: config.publish_channels as usize,
            publish_timeout: config.publish_timeout(),
            reconnect_max_delay: config.broker.reconnect_max_delay(),
        });
        // The HTTP deadline sits above the publish and consumer timeouts, which answer first
        // with their own errors.
        let request_timeout =
            config.publish_timeout().max(config.consumer_timeout()) + Duration::from_secs(5);
        let router = http::with_common_layers(
            routes::router(
                AppState {
                    publisher: publisher.clone(),
                    consumer: ConsumerClient::new(&config.consumer_url, config.consumer_timeout()),
                    in_flight: Arc::new(Semaphore::new(config.max_in_flight_requests as usize)),
                    recent_keys: RecentKeys::new(
                        config.idempotency_window(),
                        config.idempotency_window_keys,
                    ),
                },
                readiness.clone(),
                sampler.watch(),
            ),
            "producer",
            request_timeout,
        );
        Ok(Self {
            listener,
            router,
            readiness,
            publisher,
            link,
            sampler,
            shutdown_grace: config.shutdown_grace(),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn readiness(&self) -> Readiness {
        self.readiness.clone()
    }

    /// The HTTP API with every layer the service serves it with, for tests that call it
    /// in-process (`tower::ServiceExt::oneshot`); it needs no broker.
    pub fn router(&self) -> axum::Router {
        self.router.clone()
    }

    pub fn publisher(&self) -> Publisher {
        self.publisher.clone()
    }

    /// Connects and serves until `shutdown` is cancelled; then stops accepting
    /// connections, gives in-flight requests up to the grace period to get their confirm
    /// and answer, and closes the broker connection.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let publisher_task = self.link.start(self.readiness.clone());
        // Stops the queue sampler after the server.
        let background = CancellationToken::new();
        self.sampler.spawn(background.clone());
        tracing::info!(addr = %self.listener.local_addr()?, "Producer listening.");
        let server = http::serve(self.listener, self.router, shutdown.clone());
        let grace = self.shutdown_grace;
        let result = shutdown::within_grace(server, &shutdown, grace)
            .await
            .unwrap_or_else(|| {
                tracing::warn!(
                    grace_secs = grace.as_secs(),
                    "Requests still in flight after the grace period; stopping anyway."
                );
                Ok(())
            });
        publisher_task.close().await;
        background.cancel();
        tracing::info!("Producer stopped.");
        result
    }
}
