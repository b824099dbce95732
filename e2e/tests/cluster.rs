//! Losing one node of a three-node RabbitMQ 4 cluster (`e2e/scripts/rabbitmq4.sh cluster`),
//! for real: the node's Erlang VM is killed with SIGKILL while posts stream in and the
//! consumer drains. Quorum queues keep every change the broker confirmed, both services go
//! on through the nodes left, and every post is accounted for. Skipped with a notice when
//! no cluster is configured (CI sets `REQUIRE_CLUSTER_TESTS=1`, which fails instead).

use e2e::{
    ServiceConfigs, TestConsumer, TestEnv, TestProducer,
    cluster::Cluster,
    eventually,
    faults::StoreFault,
    stream::{PostStream, assert_accounted},
};
use reqwest::StatusCode;
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};

/// One node down at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// A node killed or cut off; the cluster is made whole again by `restore`, or when dropped
/// if the test panicked first.
struct ClusterFault(Option<Cluster>);

impl ClusterFault {
    async fn kill(cluster: &Cluster, node: usize) -> Self {
        cluster.kill(node).await;
        Self(Some(cluster.clone()))
    }

    async fn partition(cluster: &Cluster, node: usize) -> Self {
        cluster.partition(node).await;
        Self(Some(cluster.clone()))
    }

    async fn restore(mut self) {
        if let Some(cluster) = self.0.take() {
            cluster.restore().await;
        }
    }
}

impl Drop for ClusterFault {
    fn drop(&mut self) {
        if let Some(cluster) = self.0.take() {
            cluster.restore_blocking();
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

/// Waits (at most 60 s) until `consumer` has applied 50 more changes than now.
async fn applies_more(consumer: &TestConsumer, when: &str) {
    let recorded = consumer.store.events_recorded().await.unwrap_or_default();
    eventually(
        &format!("the consumer to apply more changes {when}"),
        Duration::from_secs(60),
        || async {
            match consumer.store.events_recorded().await {
                Ok(now) if now >= recorded + 50 => Ok(()),
                other => Err(other),
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
    running_with(|_| {}).await
}

/// [`running`] with the consumer's configuration adjusted first.
async fn running_with(adjust: impl FnOnce(&mut consumer::Config)) -> Option<Running> {
    let cluster = Cluster::from_env()?;
    let turn = ONE_AT_A_TIME.lock().await;
    let env = TestEnv::on(cluster.amqp_addr.clone()).await;
    let producer = TestProducer::start(env.producer_config()).await;
    let mut consumer_config = env.consumer_config();
    adjust(&mut consumer_config);
    let consumer = TestConsumer::start(consumer_config).await;
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
    let down = ClusterFault::kill(&run.cluster, leader).await;
    run.stream
        .accepts_more("changes accepted with the leader's node down", 100)
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
        let down = ClusterFault::kill(&run.cluster, node).await;
        run.stream
            .accepts_more(
                &format!("changes accepted with the {service}'s node down"),
                100,
            )
            .await;
        // Both at work again while the node is still down: so on another node.
        applies_more(&run.consumer, "with the node down").await;
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

#[tokio::test]
async fn a_node_cut_off_from_the_others_takes_no_change_and_nothing_accepted_is_lost_when_it_heals()
{
    let Some(run) = running().await else {
        return;
    };
    // The node that leads the work queue is cut off; a second producer knows only that
    // node, so it sees what every client of the minority side sees.
    let cut_off = run.cluster.leader_of(&run.env.queue).await;
    let mut config = run.env.producer_config();
    config.broker.amqp_addr = shared::amqp::BrokerAddress::parse(&run.cluster.node_uri(cut_off))
        .unwrap_or_else(|error| panic!("{error}"));
    config.broker.connection_name = Some(run.env.connection_name("producer-of-the-minority"));
    let minority = TestProducer::start(config).await;
    let minority_stream = PostStream::for_customers(&minority.url, "M-");
    minority_stream
        .at_least(
            "the minority's producer to accept",
            StatusCode::ACCEPTED,
            "",
            20,
        )
        .await;

    let partition = ClusterFault::partition(&run.cluster, cut_off).await;
    // A post already confirmed when the partition began may still be answered 202.
    let accepted_by_the_minority = minority_stream.count(StatusCode::ACCEPTED, "").await + 1;
    run.stream
        .accepts_more("the majority to go on accepting changes", 100)
        .await;
    eventually(
        "the minority's node to pause",
        Duration::from_secs(60),
        || async {
            let status = minority.get("/readyz").await.status();
            if status == StatusCode::SERVICE_UNAVAILABLE {
                Ok(())
            } else {
                Err(status)
            }
        },
    )
    .await;
    applies_more(&run.consumer, "while the node is cut off").await;
    assert!(
        minority_stream.count(StatusCode::ACCEPTED, "").await <= accepted_by_the_minority,
        "the minority side took changes while cut off"
    );
    assert!(
        minority_stream.refused().await > 0,
        "the minority's producer was refused nothing while cut off"
    );

    partition.restore().await;
    ready_again("producer of the minority", &minority.readiness).await;
    minority_stream
        .accepts_more("the healed node's producer to accept again", 20)
        .await;
    let (posted, posted_to_the_minority) = (run.stream.stop().await, minority_stream.stop().await);
    run.consumer.caught_up(&run.env).await;

    assert_accounted(&run.consumer, &posted).await;
    assert_accounted(&run.consumer, &posted_to_the_minority).await;
    minority.stop().await;
    run.producer.stop().await;
    run.consumer.stop().await;
}

#[tokio::test]
async fn losing_the_node_that_leads_the_work_queue_while_changes_hop_back_from_retry_queues_loses_none()
 {
    // Every change fails until the fault is healed, so each goes back and forth between the
    // work queue and the retry queues: the node is killed in the middle of those hops.
    let Some(run) = running_with(|config| config.max_attempts = 10_000).await else {
        return;
    };
    let fault = StoreFault::reject_every_change(&run.env.database_url(&run.env.queue)).await;
    run.stream
        .accepts_more("changes accepted that cannot be applied yet", 100)
        .await;
    let retry_queues: Vec<String> = e2e::env::TEST_RETRY_DELAYS_MS
        .iter()
        .map(|delay| format!("{}.retry.{delay}ms", run.env.queue))
        .collect();
    let waiting_in_retry_queues = || async {
        let mut waiting = 0;
        for queue in &retry_queues {
            waiting += run.env.queue_depth(queue).await.unwrap_or(0);
        }
        waiting
    };
    eventually(
        "changes to wait in the retry queues",
        Duration::from_secs(30),
        || async {
            match waiting_in_retry_queues().await {
                waiting if waiting >= 50 => Ok(()),
                waiting => Err(waiting),
            }
        },
    )
    .await;

    let leader = run.cluster.leader_of(&run.env.queue).await;
    let down = ClusterFault::kill(&run.cluster, leader).await;
    run.stream
        .accepts_more("changes accepted with the node down", 100)
        .await;
    ready_again("consumer", &run.consumer.readiness).await;
    fault.heal().await;
    let posted = run.stream.stop().await;
    eventually(
        "the retry queues to empty once the fault is healed",
        Duration::from_secs(60),
        || async {
            match waiting_in_retry_queues().await {
                0 => Ok(()),
                waiting => Err(waiting),
            }
        },
    )
    .await;
    run.consumer.caught_up(&run.env).await;
    down.restore().await;

    assert_accounted(&run.consumer, &posted).await;
    assert_eq!(
        run.env
            .queue_depth(&format!("{}.dlq", run.env.queue))
            .await
            .unwrap_or_default(),
        0,
        "no change was given up"
    );
    run.producer.stop().await;
    run.consumer.stop().await;
}
