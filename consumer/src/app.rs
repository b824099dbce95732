//! Building and running the consumer: open the store, bind, then consume and serve until
//! shutdown.

use crate::{
    config::Config,
    dead_letters::DeadLetters,
    http,
    store::{Store, StoreError},
    worker::{self, WorkerSettings},
};
use shared::{config::topology, queue_stats, readiness::Readiness, shutdown, topology::Topology};
use std::{net::SocketAddr, time::Duration};
use tokio::{net::TcpListener, sync::watch};
use tokio_util::sync::CancellationToken;

/// Why the consumer could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen for HTTP: {0}")]
    Listen(#[from] std::io::Error),
}

/// A consumer with its store open and its port bound, not yet consuming.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    store: Store,
    readiness: Readiness,
    worker: WorkerSettings,
    /// Samples the work queue and its DLQ for the queue-depth gauges.
    sampler: queue_stats::Sampler,
    shutdown_grace: Duration,
}

impl Application {
    /// Opens the store (a bad `DATABASE_URL` fails here, at start-up, not at the first
    /// message) and binds `config.http_addr` (port 0 picks a free port).
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let connection_name = config
            .broker
            .connection_name(&format!("consumer:{}", config.queue.queue));
        crate::metrics::install();
        let store = Store::open(&config.database_url(), &connection_name).await?;
        tracing::info!(database = store.description(), "Store open.");
        let listener = TcpListener::bind(config.http_addr).await?;
        let queue = topology(&config.broker, &config.queue).queue;
        let sampler = queue_stats::Sampler::new(
            "consumer",
            config.broker.queue_stats_source(&connection_name),
            vec![queue.name.clone(), queue.dead_letter_queue()],
            Duration::from_secs(1),
        );
        let worker = WorkerSettings {
            broker: config.broker.address(),
            topology: Topology {
                retry_delays: config.retry_delays(),
                ..topology(&config.broker, &config.queue)
            },
            prefetch: config.prefetch,
            max_attempts: config.max_attempts,
            connection_name,
            reconnect_max_delay: config.broker.reconnect_max_delay(),
        };
        Ok(Self {
            listener,
            store,
            readiness: Readiness::new("connecting to the broker"),
            worker,
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

    pub fn store(&self) -> Store {
        self.store.clone()
    }

    /// Consumes and serves until `shutdown` is cancelled. Then the subscription is
    /// cancelled, in-flight messages are committed and acked (within the grace period),
    /// the connection is closed, and the HTTP server drains.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        tracing::info!(addr = %self.listener.local_addr()?, "Consumer listening.");
        let background = CancellationToken::new();
        self.sampler.spawn(background.clone());
        let (connection_slot, connection) = watch::channel(None);
        let dead_letters = DeadLetters::new(connection, self.worker.topology.queue.clone());
        let worker = tokio::spawn(worker::run(
            self.worker,
            self.store.clone(),
            self.readiness.clone(),
            connection_slot,
            shutdown.clone(),
        ));
        let router = shared::http::with_common_layers(
            http::router(self.store.clone(), dead_letters, self.readiness.clone()),
            "consumer",
            Duration::from_secs(10),
        );
        let server = shared::http::serve(self.listener, router, shutdown.clone());
        let grace = self.shutdown_grace;
        let drained = async {
            let (server, worker) = tokio::join!(server, worker);
            if let Err(error) = worker {
                tracing::error!(%error, "The consumer worker failed.");
            }
            server
        };
        let result = shutdown::within_grace(drained, &shutdown, grace)
            .await
            .unwrap_or_else(|| {
                tracing::warn!(grace_secs = grace.as_secs(), "Work still in flight after the grace period; stopping anyway. Unacked messages will be redelivered.");
                Ok(())
            });
        background.cancel();
        self.store.close().await;
        tracing::info!("Consumer stopped.");
        result
    }
}
