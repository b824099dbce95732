//! Faults of the whole broker: a restart in the middle of a stream of posts, and a memory
//! alarm that blocks publishing. They affect every client of the broker, so they live in a
//! test binary of their own (cargo runs test binaries one after another) and take turns.

use e2e::{
    ServiceConfigs, TestConsumer, TestEnv, TestProducer,
    broker::rabbitmqctl,
    change_of_address, eventually,
    stream::{PostStream, assert_accounted},
};
use reqwest::StatusCode;
use shared::{amqp::BrokerAddress, config::BrokerConfig};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// One broker-wide fault at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Stops the broker application; starts it again when dropped, even if the test panicked.
struct BrokerStopped;

impl BrokerStopped {
    async fn now() -> Self {
        tokio::task::spawn_blocking(|| rabbitmqctl(&["stop_app"]))
            .await
            .unwrap();
        Self
    }

    async fn start_again(self) {
        tokio::task::spawn_blocking(|| {
            rabbitmqctl(&["start_app"]);
            rabbitmqctl(&["await_startup"]);
        })
        .await
        .unwrap();
        std::mem::forget(self);
    }
}

impl Drop for BrokerStopped {
    fn drop(&mut self) {
        rabbitmqctl(&["start_app"]);
        rabbitmqctl(&["await_startup"]);
    }
}

/// Raises a memory alarm (the broker then blocks publishers); clears it when dropped.
struct MemoryAlarm(String);

impl MemoryAlarm {
    async fn raise() -> Self {
        tokio::task::spawn_blocking(|| {
            let watermark =
                rabbitmqctl(&["eval", "vm_memory_monitor:get_vm_memory_high_watermark()."]);
            rabbitmqctl(&["set_vm_memory_high_watermark", "0.000001"]);
            Self(watermark.trim().to_owned())
        })
        .await
        .unwrap()
    }
}

impl Drop for MemoryAlarm {
    fn drop(&mut self) {
        // A plain fraction (the default, 0.4) restores as it was read.
        let watermark = if self.0.parse::<f64>().is_ok() {
            self.0.as_str()
        } else {
            "0.4"
        };
        rabbitmqctl(&["set_vm_memory_high_watermark", watermark]);
    }
}

#[tokio::test]
async fn a_broker_restart_mid_stream_loses_no_accepted_change_and_both_services_recover_by_themselves()
 {
    let _turn = ONE_AT_A_TIME.lock().await;
    let env = TestEnv::new().await;
    let producer = TestProducer::start(env.producer_config()).await;
    let consumer = TestConsumer::start(env.consumer_config()).await;
    let stream = PostStream::start(&producer.url);

    stream
        .at_least(
            "changes accepted before the restart",
            StatusCode::ACCEPTED,
            "",
            50,
        )
        .await;
    let stopped = BrokerStopped::now().await;
    stream
        .at_least(
            "posts refused while the broker is down",
            StatusCode::SERVICE_UNAVAILABLE,
            "broker_unavailable",
            20,
        )
        .await;
    assert!(
        !producer.readiness.is_ready() && !consumer.readiness.is_ready(),
        "neither is ready without a broker"
    );
    let accepted_before = stream.count(StatusCode::ACCEPTED, "").await;
    stopped.start_again().await;

    stream
        .at_least(
            "changes accepted after the restart",
            StatusCode::ACCEPTED,
            "",
            accepted_before + 50,
        )
        .await;
    let posted = stream.stop().await;
    eventually(
        "the consumer to be ready again",
        Duration::from_secs(30),
        || async {
            if consumer.readiness.is_ready() {
                Ok(())
            } else {
                Err(consumer.readiness.status())
            }
        },
    )
    .await;
    consumer.caught_up(&env).await;

    assert_accounted(&consumer, &posted).await;
    producer.stop().await;
    consumer.stop().await;
}

/// A producer exists to accept posts: once the broker accepts connections again, both
/// services must be ready within a second, however long the outage grew their back-off.
#[tokio::test]
async fn after_short_and_long_outages_both_services_are_ready_within_a_second_of_the_broker() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let env = TestEnv::new().await;
    // The shipped back-off cap (the other tests shorten it to 1 s), so that a long outage
    // grows the wait between attempts as it does in production.
    let shipped = |mut broker: BrokerConfig| {
        broker.reconnect_max_delay_secs = 30;
        broker
    };
    let mut producer_config = env.producer_config();
    producer_config.broker = shipped(producer_config.broker);
    let mut consumer_config = env.consumer_config();
    consumer_config.broker = shipped(consumer_config.broker);
    let producer = TestProducer::start(producer_config).await;
    let consumer = TestConsumer::start(consumer_config).await;
    let broker = BrokerAddress::parse(&e2e::broker::broker_uri()).unwrap();
    let (host, port) = broker.endpoints()[0];
    let both_ready = || async {
        let producer_ready = producer.get("/readyz").await.status();
        let consumer_ready = consumer.get("/readyz").await.status();
        if producer_ready == StatusCode::OK && consumer_ready == StatusCode::OK {
            Ok(Instant::now())
        } else {
            Err((producer_ready, consumer_ready))
        }
    };

    for outage in [Duration::from_secs(5), Duration::from_secs(40)] {
        let stopped = BrokerStopped::now().await;
        eventually(
            "both services to notice",
            Duration::from_secs(15),
            || async {
                match both_ready().await {
                    Err((StatusCode::SERVICE_UNAVAILABLE, StatusCode::SERVICE_UNAVAILABLE)) => {
                        Ok(())
                    }
                    other => Err(other),
                }
            },
        )
        .await;
        // The outage itself: the services' back-off grows meanwhile.
        tokio::time::sleep(outage).await;
        let restart = tokio::spawn(stopped.start_again());
        let accepting = loop {
            if tokio::net::TcpStream::connect((host, port)).await.is_ok() {
                break Instant::now();
            }
            assert!(
                !restart.is_finished(),
                "the broker started, yet refuses connections"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let ready = eventually(
            "both services to be ready",
            Duration::from_secs(30),
            both_ready,
        )
        .await;
        restart.await.unwrap();

        let took = ready - accepting;
        eprintln!(
            "after a {outage:?} outage: both ready {took:?} after the broker accepted connections"
        );
        assert!(
            took < Duration::from_secs(1),
            "after a {outage:?} outage both were ready {took:?} after the broker accepted connections"
        );
        producer.accepts(&change_of_address("C-1", "PR1 2HE")).await;
    }
    consumer.shows("C-1").await;
    producer.stop().await;
    consumer.stop().await;
}

#[tokio::test]
async fn while_the_broker_blocks_publishers_the_producer_answers_503_at_once() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let env = TestEnv::new().await;
    let producer = TestProducer::start(env.producer_config()).await;
    producer.accepts(&change_of_address("C-0", "PR1 2HE")).await;

    let alarm = MemoryAlarm::raise().await;
    let refused = eventually(
        "the producer to refuse changes while blocked",
        Duration::from_secs(15),
        || async {
            let started = Instant::now();
            let response = producer
                .post_change(&change_of_address("C-1", "PR1 2HE"))
                .await;
            let took = started.elapsed();
            let status = response.status();
            let code = response.json::<serde_json::Value>().await.unwrap()["error"]["code"].clone();
            if status == StatusCode::SERVICE_UNAVAILABLE && code == "broker_blocked" {
                Ok(took)
            } else {
                Err((status, code))
            }
        },
    )
    .await;
    assert!(
        refused < Duration::from_secs(1),
        "refused in {refused:?}, not after a timeout"
    );
    let ready = producer.get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    drop(alarm);
    producer
        .eventually_accepts(
            &change_of_address("C-2", "PR1 2HE"),
            "the producer to accept again once unblocked",
            Duration::from_secs(15),
        )
        .await;
    producer.stop().await;
}
