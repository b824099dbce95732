//! Losing one node of a three-node RabbitMQ 4 cluster (`e2e/scripts/rabbitmq4.sh cluster`),
//! for real: the node's Erlang VM is killed with SIGKILL while posts stream in and the
//! consumer drains. Quorum queues keep every change the broker confirmed, both services go
//! on through the nodes left, and every post is accounted for. Skipped with a notice when
//! no cluster is configured (CI sets `REQUIRE_CLUSTER_TESTS=1`, which fails instead).

use e2e::{
    TestConsumer, TestEnv, TestProducer,
    cluster::Cluster,
    eventually,
    stream::{PostStream, assert_accounted},
};
use reqwest::StatusCode;
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};

/// One node down at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// A killed node; restarted by `restore` (and the cluster whole again), or when dropped if
/// the test panicked first.
struct NodeDown(Option<Cluster>);

impl NodeDown {
    async fn kill(cluster: &Cluster, node: usize) -> Self {
        cluster.kill(node).await;
        Self(Some(cluster.clone()))
    }

    async fn restore(mut self) {
        if let Some(cluster) = self.0.take() {
            cluster.start_all().await;
        }
    }
}

impl Drop for NodeDown {
    fn drop(&mut self) {
        if let Some(cluster) = self.0.take() {
            cluster.start_all_blocking();
        }
    }
}

async fn ready_again(service: &str, readiness: &shared::readiness::Readiness) {
    eventually(
        &format!("the {service} to be ready again"),
        Duration::from_secs(30),
        || async {
            if readiness.is_ready() {
                Ok(())
            } else {
                Err(readiness.status())
            }
        },
    )
    .await;
}

/// The cluster (this test's turn with it), both services on it, posts streaming in and the
/// first 50 accepted; `None` when no cluster is configured.
struct Running {
    /// Held for the test's whole run: one node down at a time.
    _turn: MutexGuard<'static, ()>,
    cluster: Cluster,
    env: TestEnv,
    producer: TestProducer,
    consumer: TestConsumer,
    stream: PostStream,
}

async fn running() -> Option<Running> {
    let cluster = Cluster::from_env()?;
    let turn = ONE_AT_A_TIME.lock().await;
    let env = TestEnv::on(cluster.amqp_addr.clone()).await;
    let producer = TestProducer::start(env.producer_config()).await;
    let consumer = TestConsumer::start(env.consumer_config()).await;
    let stream = PostStream::start(&producer.url);
    stream
        .at_least("changes accepted before", StatusCode::ACCEPTED, "", 50)
        .await;
    Some(Running {
        _turn: turn,
        cluster,
        env,
        producer,
        consumer,
        stream,
    })
}

#[tokio::test]
async fn losing_the_node_that_leads_the_work_queue_mid_stream_loses_no_accepted_change() {
    let Some(run) = running().await else {
        return;
    };

    let leader = run.cluster.leader_of(&run.env.queue).await;
    let down = NodeDown::kill(&run.cluster, leader).await;
    let accepted_before = run.stream.count(StatusCode::ACCEPTED, "").await;
    run.stream
        .at_least(
            "changes accepted with the leader's node down",
            StatusCode::ACCEPTED,
            "",
            accepted_before + 100,
        )
        .await;
    let posted = run.stream.stop().await;
    ready_again("consumer", &run.consumer.readiness).await;
    run.consumer.caught_up(&run.env).await;
    down.restore().await;

    assert_ne!(
        run.cluster.leader_of(&run.env.queue).await,
        leader,
        "another node took the lead"
    );
    assert_accounted(&run.consumer, &posted).await;
    run.producer.stop().await;
    run.consumer.stop().await;
}

#[tokio::test]
async fn losing_the_node_of_the_producer_then_of_the_consumer_loses_no_accepted_change() {
    let Some(run) = running().await else {
        return;
    };

    for (service, connection) in [
        ("producer", run.env.connection_name("producer")),
        (
            "consumer",
            run.env
                .connection_name(&format!("consumer:{}", run.env.queue)),
        ),
    ] {
        let node = run.cluster.node_of_connection(&connection).await;
        let down = NodeDown::kill(&run.cluster, node).await;
        let accepted = run.stream.count(StatusCode::ACCEPTED, "").await + 100;
        run.stream
            .at_least(
                &format!("changes accepted with the {service}'s node down"),
                StatusCode::ACCEPTED,
                "",
                accepted,
            )
            .await;
        // Both at work again while the node is still down: so on another node.
        let recorded = run
            .consumer
            .store
            .events_recorded()
            .await
            .unwrap_or_default();
        eventually(
            "the consumer to apply more changes with the node down",
            Duration::from_secs(30),
            || async {
                match run.consumer.store.events_recorded().await {
                    Ok(now) if now >= recorded + 50 => Ok(()),
                    other => Err(other),
                }
            },
        )
        .await;
        ready_again("producer", &run.producer.readiness).await;
        ready_again("consumer", &run.consumer.readiness).await;
        down.restore().await;
        assert_ne!(
            run.cluster.node_of_connection(&connection).await,
            node,
            "the {service} moved to another node"
        );
    }
    let posted = run.stream.stop().await;
    run.consumer.caught_up(&run.env).await;

    assert_accounted(&run.consumer, &posted).await;
    run.producer.stop().await;
    run.consumer.stop().await;
}
