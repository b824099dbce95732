//! One test's private corner of the broker: its own exchange and queue names, a scratch
//! directory for stores, and helpers to look at the broker the way a user would. Dropping
//! it deletes what the test declared, even when the test panicked.

use crate::broker::broker_uri;
use lapin::{BasicProperties, Connection, options::ConfirmSelectOptions};
use shared::{
    amqp::BrokerAddress,
    config::{BrokerConfig, QueueConfig},
};
use std::{sync::Mutex, time::Duration};
use tempfile::TempDir;

/// Retry delays of the tests' consumers: short, so a retry test takes a second, not minutes.
pub const TEST_RETRY_DELAYS_MS: [u64; 2] = [200, 400];

#[derive(Debug)]
pub struct TestEnv {
    /// Unique to this test; part of every name it uses.
    pub id: String,
    pub uri: String,
    pub exchange: String,
    /// The main work queue (what `QUEUE` is for both services in this test).
    pub queue: String,
    /// Further queues the test declared (other subscribers), deleted with the rest.
    extra_queues: Mutex<Vec<String>>,
    /// Stores of this test's consumers.
    pub data_dir: TempDir,
    /// The test's own connection for looking at the broker; replaced if the broker restarts.
    admin: tokio::sync::Mutex<Connection>,
}

/// Through the services' own connect, so that a cluster's list of nodes works here too.
async fn admin_connection(uri: &str, id: &str) -> Connection {
    let address = BrokerAddress::parse(uri).unwrap_or_else(|error| panic!("{error}"));
    shared::amqp::connect(&address, &format!("test-{id}-admin"))
        .await
        .unwrap_or_else(|error| panic!("cannot connect to the test broker: {error}"))
}

impl TestEnv {
    /// A new channel on the admin connection, reconnecting first if the broker restarted.
    async fn admin_channel(&self) -> Result<lapin::Channel, lapin::Error> {
        let mut admin = self.admin.lock().await;
        if !admin.status().connected() {
            *admin = admin_connection(&self.uri, &self.id).await;
        }
        admin.create_channel().await
    }

    pub async fn new() -> Self {
        Self::on(broker_uri()).await
    }

    /// A test's corner of the broker at `uri` (one URI, or a cluster's comma-separated list).
    pub async fn on(uri: String) -> Self {
        shared::telemetry::init_for_tests();
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let admin = tokio::sync::Mutex::new(admin_connection(&uri, &id).await);
        Self {
            exchange: format!("test.{id}.events"),
            queue: format!("test.{id}.coc"),
            extra_queues: Mutex::new(Vec::new()),
            data_dir: tempfile::tempdir().unwrap_or_else(|error| panic!("no temp dir: {error}")),
            admin,
            uri,
            id,
        }
    }

    /// A further queue name private to this test, deleted at the end like the main one.
    pub fn queue_named(&self, suffix: &str) -> String {
        let name = format!("{}.{suffix}", self.queue);
        self.extra_queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(name.clone());
        name
    }

    pub fn broker_config(&self) -> BrokerConfig {
        BrokerConfig {
            amqp_addr: BrokerAddress::parse(&self.uri).unwrap_or_else(|error| panic!("{error}")),
            exchange: self.exchange.clone(),
            reconnect_max_delay_secs: 1,
            connection_name: None,
            management_url: None,
            amqp_ca_file: None,
        }
    }

    pub fn queue_config(&self, queue: &str, binding_keys: &[&str]) -> QueueConfig {
        QueueConfig {
            queue: queue.to_owned(),
            binding_keys: binding_keys.iter().map(|key| (*key).to_owned()).collect(),
            max_length: shared::topology::DEFAULT_MAX_LENGTH,
            queue_type: shared::topology::QueueType::default(),
        }
    }

    /// The environment of a producer process for this test.
    pub fn producer_env(&self) -> Vec<(String, String)> {
        self.common_env(&self.connection_name("producer"))
    }

    /// The environment of a consumer process of the test's queue, with `prefetch`.
    pub fn consumer_env(&self, prefetch: u16) -> Vec<(String, String)> {
        let mut env = self.common_env(&self.connection_name(&format!("consumer:{}", self.queue)));
        let delays: Vec<String> = TEST_RETRY_DELAYS_MS.iter().map(u64::to_string).collect();
        env.extend([
            ("PREFETCH".to_owned(), prefetch.to_string()),
            ("DATABASE_URL".to_owned(), self.database_url(&self.queue)),
            ("RETRY_DELAYS_MS".to_owned(), delays.join(",")),
            ("MAX_ATTEMPTS".to_owned(), "3".to_owned()),
        ]);
        env
    }

    fn common_env(&self, connection_name: &str) -> Vec<(String, String)> {
        [
            ("AMQP_ADDR", self.uri.as_str()),
            ("EXCHANGE", &self.exchange),
            ("QUEUE", &self.queue),
            ("BINDING_KEYS", "address.changed.#"),
            ("CONNECTION_NAME", connection_name),
            ("RECONNECT_MAX_DELAY_SECS", "1"),
            ("SHUTDOWN_GRACE_SECS", "10"),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
    }

    /// Where this test's consumer of `queue` stores its changes.
    pub fn database_url(&self, queue: &str) -> String {
        format!(
            "sqlite://{}",
            self.data_dir.path().join(format!("{queue}.db")).display()
        )
    }

    /// The name this test's `role` connects with: unique, so that a test can find its own
    /// connection among all the broker's (to close it from the broker side, say).
    pub fn connection_name(&self, role: &str) -> String {
        format!("test-{}-{role}", self.id)
    }

    /// Messages ready in `queue`, as the broker reports them (what the management UI's
    /// "Ready" column shows).
    pub async fn queue_depth(&self, queue: &str) -> Result<u32, lapin::Error> {
        Ok(self.inspect_queue(queue).await?.message_count())
    }

    /// The queue's state as a passive declare reports it (its depth and its consumers).
    async fn inspect_queue(&self, queue: &str) -> Result<lapin::Queue, lapin::Error> {
        // A passive declare of a missing queue closes its channel: use a throwaway one.
        let channel = self.admin_channel().await?;
        let declared = shared::topology::inspect_queue(&channel, queue).await?;
        let _ = channel.close(200, "done".into()).await;
        Ok(declared)
    }

    /// Publishes `body` to the test's exchange as another service might (a poison message,
    /// a duplicate), waiting for the broker's confirm.
    pub async fn publish_raw(&self, routing_key: &str, body: &[u8], properties: BasicProperties) {
        self.publish_confirmed([(routing_key, body, properties)])
            .await;
    }

    /// Publishes every message to the test's exchange, all at once on one confirm channel,
    /// then waits for each confirm: each must be an ack, with nothing returned.
    async fn publish_confirmed<'a>(
        &self,
        messages: impl IntoIterator<Item = (&'a str, &'a [u8], BasicProperties)>,
    ) {
        let channel = self
            .admin_channel()
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        let mut confirms = Vec::new();
        for (routing_key, body, properties) in messages {
            confirms.push(
                channel
                    .basic_publish(
                        self.exchange.as_str().into(),
                        routing_key.into(),
                        shared::message::MANDATORY,
                        body,
                        properties,
                    )
                    .await
                    .unwrap_or_else(|error| panic!("{error}")),
            );
        }
        for confirm in confirms {
            let confirmation = confirm.await.unwrap_or_else(|error| panic!("{error}"));
            assert!(
                confirmation.is_ack() && confirmation.take_message().is_none(),
                "the broker did not take a test message (refused, or not routed)"
            );
        }
        let _ = channel.close(200, "done".into()).await;
    }

    /// Deletes exchanges and queues as an operator might by hand (the management UI's
    /// Delete button), whatever they hold and whoever consumes them.
    pub async fn delete_by_hand(&self, exchanges: &[&str], queues: &[&str]) {
        let channel = self
            .admin_channel()
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        for queue in queues {
            channel
                .queue_delete((*queue).into(), Default::default())
                .await
                .unwrap_or_else(|error| panic!("deleting queue {queue}: {error}"));
        }
        for exchange in exchanges {
            channel
                .exchange_delete((*exchange).into(), Default::default())
                .await
                .unwrap_or_else(|error| panic!("deleting exchange {exchange}: {error}"));
        }
        let _ = channel.close(200, "done".into()).await;
    }

    /// Waits (with a deadline) until `queue` holds exactly `expected` ready messages.
    pub async fn depth_becomes(&self, queue: &str, expected: u32) {
        crate::eventually(
            &format!("{queue} to hold {expected} ready messages"),
            crate::WITHIN,
            || async {
                match self.queue_depth(queue).await {
                    Ok(depth) if depth == expected => Ok(()),
                    other => Err(other),
                }
            },
        )
        .await;
    }

    /// Waits (with a deadline) until `queue` exists and the broker counts exactly `expected`
    /// consumers of it.
    pub async fn consumers_become(&self, queue: &str, expected: u32) {
        crate::eventually(
            &format!("{queue} to exist with {expected} consumers"),
            crate::WITHIN,
            || async {
                match self.inspect_queue(queue).await {
                    Ok(declared) if declared.consumer_count() == expected => Ok(()),
                    Ok(declared) => Err(format!("{} consumers", declared.consumer_count())),
                    Err(error) => Err(error.to_string()),
                }
            },
        )
        .await;
    }

    /// Publishes `events` as the producer would, all at once on one channel, and waits for
    /// every confirm.
    pub async fn publish_events(&self, events: &[shared::event::AddressChanged]) {
        let messages: Vec<_> = events
            .iter()
            .map(|event| shared::message::EventMessage::address_changed(event, "test"))
            .collect();
        self.publish_confirmed(messages.iter().map(|message| {
            (
                message.routing_key.as_str(),
                message.body.as_slice(),
                message.properties.clone(),
            )
        }))
        .await;
    }

    /// Publishes `event` to the test's exchange exactly as the producer would.
    pub async fn publish_event(&self, event: &shared::event::AddressChanged) {
        self.publish_events(std::slice::from_ref(event)).await;
    }

    /// Takes one message off `queue` (acknowledging it), to inspect what was published.
    pub async fn take_message(&self, queue: &str) -> Option<lapin::message::Delivery> {
        let channel = self
            .admin_channel()
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        let message = channel
            .basic_get(
                queue.into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        let _ = channel.close(200, "done".into()).await;
        message.map(|message| message.delivery)
    }

    /// Every topology the test's consumers may have declared on its exchange.
    fn declared_topologies(&self) -> Vec<shared::topology::Topology> {
        let mut queues = vec![self.queue.clone()];
        queues.extend(
            self.extra_queues
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .cloned(),
        );
        let retry_delays: Vec<Duration> = TEST_RETRY_DELAYS_MS
            .iter()
            .copied()
            .map(Duration::from_millis)
            .collect();
        queues
            .into_iter()
            .map(|name| shared::topology::Topology {
                exchange: self.exchange.clone(),
                queue: shared::topology::WorkQueue {
                    name,
                    binding_keys: Vec::new(),
                    max_length: 0,
                    queue_type: shared::topology::QueueType::default(),
                },
                retry_delays: retry_delays.clone(),
            })
            .collect()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let uri = self.uri.clone();
        let topologies = self.declared_topologies();
        let exchanges = topologies[0].shared_exchange_names();
        let mut queues: Vec<String> = topologies.iter().flat_map(|t| t.queue_names()).collect();
        queues.push(topologies[0].unroutable_queue());
        crate::wait::block_on_own_thread(async move {
            let Ok(address) = BrokerAddress::parse(&uri) else {
                return;
            };
            let connect = shared::amqp::connect(&address, "test-cleanup");
            let Ok(Ok(connection)) = tokio::time::timeout(Duration::from_secs(5), connect).await
            else {
                return;
            };
            for queue in queues {
                if let Ok(channel) = connection.create_channel().await {
                    let _ = channel
                        .queue_delete(queue.as_str().into(), Default::default())
                        .await;
                }
            }
            for exchange in exchanges {
                if let Ok(channel) = connection.create_channel().await {
                    let _ = channel
                        .exchange_delete(exchange.as_str().into(), Default::default())
                        .await;
                }
            }
            let _ = connection.close(200, "test cleanup".into()).await;
        });
    }
}
