//! Failure is normal: poison messages, passing failures, a full queue, a changed queue
//! setting, connections closed by the broker, and exchanges and queues deleted by hand. Each
//! fault is injected for real.

use e2e::{
    ServiceConfigs, TestConsumer, TestEnv, TestProducer, address_changed, assert_unavailable,
    broker::close_connections_named,
    change_of_address, eventually,
    faults::{FullQueue, SilentLink, StoreFault, StoreWriteLock},
};
use reqwest::StatusCode;
use shared::{amqp::BrokerAddress, readiness::Status};
use std::{str::FromStr, time::Duration};

#[tokio::test]
async fn poison_messages_go_to_the_dead_letter_queue_at_once_and_the_rest_keep_flowing() {
    let env = TestEnv::new().await;
    let consumer = TestConsumer::start(env.consumer_config()).await;
    let good = [
        address_changed("C-1", "1 Fishergate", "PR1 2HE", "2026-12-01"),
        address_changed("C-2", "2 Fishergate", "PR1 2HE", "2026-12-01"),
    ];
    let mut future_version: serde_json::Value = serde_json::from_slice(&good[0].to_json()).unwrap();
    future_version["schema_version"] = 2.into();
    let mut invalid: serde_json::Value = serde_json::from_slice(&good[1].to_json()).unwrap();
    invalid["new_address"]["postcode"] = "not a postcode".into();

    env.publish_raw("address.changed.pr", b"{not json", Default::default())
        .await;
    env.publish_event(&good[0]).await;
    env.publish_raw(
        "address.changed.pr",
        future_version.to_string().as_bytes(),
        Default::default(),
    )
    .await;
    env.publish_raw(
        "address.changed.pr",
        invalid.to_string().as_bytes(),
        Default::default(),
    )
    .await;
    env.publish_event(&good[1]).await;

    let dlq = format!("{}.dlq", env.queue);
    env.depth_becomes(&dlq, 3).await;
    consumer.applied(good[0].event_id).await;
    consumer.applied(good[1].event_id).await;
    env.depth_becomes(&env.queue, 0).await;

    let listed = consumer.dead_letters().await;
    assert_eq!(listed["count"], 3);
    let reasons: Vec<&str> = listed["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons[0].contains("not a JSON event envelope"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("schema_version 2 is not supported"),
        "{reasons:?}"
    );
    assert!(reasons[2].contains("new_address.postcode"), "{reasons:?}");
    assert!(
        listed["dead_letters"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["routing_key"] == "address.changed.pr")
    );
    env.depth_becomes(&dlq, 3).await; // listing leaves them where they are
    consumer.stop().await;
}

#[tokio::test]
async fn a_change_that_fails_for_a_passing_reason_waits_in_a_retry_queue_and_is_then_applied() {
    let env = TestEnv::new().await;
    let mut config = env.consumer_config();
    config.max_attempts = 100;
    let consumer = TestConsumer::start(config).await;
    let fault = StoreFault::reject_changes_for(&env.database_url(&env.queue), "C-FLAKY").await;
    let flaky = address_changed("C-FLAKY", "1 Fishergate", "PR1 2HE", "2026-12-01");
    let steady = address_changed("C-STEADY", "2 Fishergate", "PR1 2HE", "2026-12-01");

    env.publish_event(&flaky).await;
    env.publish_event(&steady).await;

    consumer.applied(steady.event_id).await;
    let retry_queues = [
        format!("{}.retry.200ms", env.queue),
        format!("{}.retry.400ms", env.queue),
    ];
    eventually(
        "the failing change to wait in a retry queue",
        e2e::WITHIN,
        || async {
            let mut waiting = 0;
            for queue in &retry_queues {
                waiting += env.queue_depth(queue).await.unwrap_or(0);
            }
            if waiting == 1 { Ok(()) } else { Err(waiting) }
        },
    )
    .await;
    assert_eq!(
        consumer.store.times_recorded(flaky.event_id).await.unwrap(),
        0
    );

    fault.heal().await;
    consumer.applied(flaky.event_id).await;
    assert_eq!(consumer.address_of("C-FLAKY").await.0, StatusCode::OK);
    assert_eq!(
        env.queue_depth(&format!("{}.dlq", env.queue))
            .await
            .unwrap(),
        0
    );
    consumer.stop().await;
}

#[tokio::test]
async fn a_change_that_keeps_failing_is_dead_lettered_after_max_attempts_and_replayed_once_fixed() {
    let env = TestEnv::new().await;
    let consumer = TestConsumer::start(env.consumer_config()).await; // MAX_ATTEMPTS=3 in tests
    let fault = StoreFault::reject_changes_for(&env.database_url(&env.queue), "C-BROKEN").await;
    let broken = address_changed("C-BROKEN", "1 Fishergate", "PR1 2HE", "2026-12-01");

    env.publish_event(&broken).await;

    let dlq = format!("{}.dlq", env.queue);
    env.depth_becomes(&dlq, 1).await;
    let listed = consumer.dead_letters().await;
    let letter = &listed["dead_letters"][0];
    assert_eq!(letter["message_id"], broken.event_id.to_string());
    assert_eq!(letter["routing_key"], "address.changed.pr");
    assert_eq!(
        letter["retry_count"], 2,
        "delivered 3 times: first try and 2 retries"
    );
    let reason = letter["reason"].as_str().unwrap();
    assert!(
        reason.contains("gave up after 3 attempts") && reason.contains("injected fault"),
        "{reason}"
    );
    assert_eq!(
        consumer
            .store
            .times_recorded(broken.event_id)
            .await
            .unwrap(),
        0
    );

    fault.heal().await;
    let replay = consumer
        .http
        .post(format!("{}/api/v1/dead-letters/replay", consumer.url))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::OK);
    assert_eq!(
        replay.json::<serde_json::Value>().await.unwrap()["replayed"],
        1
    );

    consumer.applied(broken.event_id).await;
    env.depth_becomes(&dlq, 0).await;
    consumer.stop().await;
}

#[tokio::test]
async fn at_its_bound_the_queue_refuses_more_and_the_producer_answers_503_until_it_drains() {
    let env = TestEnv::new().await;
    let mut producer_config = env.producer_config();
    producer_config.queue.max_length = 5;
    let mut consumer_config = env.consumer_config();
    consumer_config.queue.max_length = 5;
    let producer = TestProducer::start(producer_config).await;

    for i in 0..5 {
        let response = producer
            .post_change(&change_of_address(&format!("C-{i}"), "PR1 2HE"))
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    let refused = producer
        .post_change(&change_of_address("C-5", "PR1 2HE"))
        .await;
    assert_unavailable(refused, "publish_rejected").await;
    assert_eq!(
        env.queue_depth(&env.queue).await.unwrap(),
        5,
        "the refused change was not queued"
    );

    let consumer = TestConsumer::start(consumer_config).await;
    env.depth_becomes(&env.queue, 0).await;
    let accepted = producer
        .post_change(&change_of_address("C-5", "PR1 2HE"))
        .await;
    assert_eq!(
        accepted.status(),
        StatusCode::ACCEPTED,
        "accepted again once drained"
    );
    producer.stop().await;
    consumer.stop().await;
}

#[tokio::test]
async fn a_queue_declared_earlier_with_other_arguments_does_not_stop_start_up() {
    let env = TestEnv::new().await;
    let mut first = env.producer_config();
    first.queue.max_length = 10;
    TestProducer::start(first).await.stop().await;

    let mut changed = env.producer_config();
    changed.queue.max_length = 20;
    let producer = TestProducer::start(changed).await;
    let mut consumer_config = env.consumer_config();
    consumer_config.queue.max_length = 20;
    let consumer = TestConsumer::start(consumer_config).await;

    let ready: serde_json::Value = producer.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    let warning = ready["warnings"][0].as_str().unwrap_or_default();
    assert!(
        warning.contains("QUEUE_MAX_LENGTH=20") && warning.contains("delete_queue"),
        "{ready}"
    );
    let response = producer
        .post_change(&change_of_address("C-1", "PR1 2HE"))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    consumer.shows("C-1").await;
    producer.stop().await;
    consumer.stop().await;
}

#[tokio::test]
async fn each_service_recovers_by_itself_when_the_broker_closes_its_connection() {
    let env = TestEnv::new().await;
    let producer = TestProducer::start(env.producer_config()).await;
    let consumer = TestConsumer::start(env.consumer_config()).await;

    for (round, role) in ["producer", &format!("consumer:{}", env.queue)]
        .into_iter()
        .enumerate()
    {
        let name = env.connection_name(role);
        let closed = tokio::task::spawn_blocking(move || close_connections_named(&name))
            .await
            .unwrap();
        assert_eq!(closed, 1, "the {role}'s connection was found and closed");

        let customer = format!("C-{round}");
        let event_id = eventually(
            &format!("the producer to accept again after the {role} lost its connection"),
            e2e::WITHIN,
            || async {
                let response = producer
                    .post_change(&change_of_address(&customer, "PR1 2HE"))
                    .await;
                match response.status() {
                    StatusCode::ACCEPTED => Ok(response
                        .json::<producer::routes::Accepted>()
                        .await
                        .unwrap()
                        .event_id),
                    status => Err(status),
                }
            },
        )
        .await;
        consumer.applied(event_id).await;
    }
    producer.stop().await;
    consumer.stop().await;
}

#[tokio::test]
async fn a_silently_dead_network_path_is_noticed_by_heartbeats_and_the_producer_recovers() {
    let env = TestEnv::new().await;
    let broker = lapin::uri::AMQPUri::from_str(&env.uri).unwrap();
    let target = tokio::net::lookup_host((broker.authority.host.as_str(), broker.authority.port))
        .await
        .unwrap()
        .next()
        .unwrap();
    let link = SilentLink::start(target).await;
    let mut config = env.producer_config();
    config.publish_timeout_ms = 1_000;
    // Heartbeats every second: a silent path is noticed in a few seconds.
    config.broker.amqp_addr = BrokerAddress::parse(&format!(
        "amqp://{}:{}@{}/{}?heartbeat=1",
        broker.authority.userinfo.username,
        broker.authority.userinfo.password,
        link.addr,
        broker.vhost.replace('/', "%2f")
    ))
    .unwrap();
    let producer = TestProducer::start(config).await;
    producer.accepts(&change_of_address("C-1", "PR1 2HE")).await;

    link.freeze();
    // Nothing is answered 202 while the path is dead: the wait for a confirm is bounded.
    let during = producer
        .post_change(&change_of_address("C-2", "PR1 2HE"))
        .await;
    assert_eq!(during.status(), StatusCode::SERVICE_UNAVAILABLE);
    eventually(
        "the producer to notice the dead connection",
        Duration::from_secs(10),
        || async {
            if producer.readiness.is_ready() {
                Err("still ready")
            } else {
                Ok(())
            }
        },
    )
    .await;

    link.thaw();
    producer
        .eventually_accepts(
            &change_of_address("C-3", "PR1 2HE"),
            "the producer to reconnect and accept again",
            e2e::WITHIN,
        )
        .await;
    producer.stop().await;
}

/// Someone deletes the exchange and the work queue in the management UI while the producer
/// runs. Deleting them drops no connection, so no reconnection would declare them again:
/// the producer notices on the next publish (a 503: nothing was confirmed), declares the
/// topology again, and accepts from then on, without a restart.
#[tokio::test]
async fn the_producer_declares_again_an_exchange_and_queue_deleted_by_hand() {
    let env = TestEnv::new().await;
    let producer = TestProducer::start(env.producer_config()).await;
    producer.accepts(&change_of_address("C-1", "PR1 2HE")).await;

    env.delete_by_hand(&[&env.exchange], &[&env.queue]).await;

    producer
        .eventually_accepts(
            &change_of_address("C-2", "PR1 2HE"),
            "the producer to declare the topology again and accept",
            e2e::WITHIN,
        )
        .await;
    env.depth_becomes(&env.queue, 1).await;
    producer.stop().await;
}

/// A producer and a consumer of the test's queue that have applied one change, then the
/// queue deleted by hand under them.
async fn consuming_until_the_queue_is_deleted_by_hand(
    env: &TestEnv,
) -> (TestProducer, TestConsumer) {
    let producer = TestProducer::start(env.producer_config()).await;
    let consumer = TestConsumer::start(env.consumer_config()).await;
    producer.accepts(&change_of_address("C-1", "PR1 2HE")).await;
    consumer.shows("C-1").await;
    env.delete_by_hand(&[], &[&env.queue]).await;
    (producer, consumer)
}

/// The consumer's queue deleted by hand under it: the broker cancels the subscription and
/// the consumer subscribes again by itself, declaring the queue and its bindings, and what
/// the producer accepts from then on is applied.
#[tokio::test]
async fn the_consumer_subscribes_again_when_its_queue_is_deleted_by_hand() {
    let env = TestEnv::new().await;
    let (producer, consumer) = consuming_until_the_queue_is_deleted_by_hand(&env).await;
    // Nothing else declares the queue (the producer would only after a post found it gone):
    // back with a consumer, it is the consumer's doing.
    env.consumers_become(&env.queue, 1).await;

    producer.accepts(&change_of_address("C-2", "LA1 1AA")).await;
    consumer.shows("C-2").await;
    producer.stop().await;
    consumer.stop().await;
}

/// The same, when a post finds the queue gone first: the producer declares a new one of the
/// same name at once, before the broker has told the consumer, which must still end up
/// subscribed to the new queue.
#[tokio::test]
async fn the_consumer_subscribes_again_when_the_producer_declares_its_deleted_queue_first() {
    if e2e::broker::broker_version() < (4, 0) {
        // Seen on 3.10.8, every time on one 2-core machine: the consumer is neither cancelled
        // nor delivered to; the new queue counts it as a consumer and holds its first
        // message as delivered to it. Not seen on 4.0.5. docs/failures.md says what to do.
        eprintln!(
            "skipped: RabbitMQ 3.x can leave the consumer of a quorum queue deleted and \
             declared again at once attached to nothing (see docs/failures.md)"
        );
        return;
    }
    let env = TestEnv::new().await;
    let (producer, consumer) = consuming_until_the_queue_is_deleted_by_hand(&env).await;

    producer
        .eventually_accepts(
            &change_of_address("C-2", "LA1 1AA"),
            "the producer to accept again",
            e2e::WITHIN,
        )
        .await;
    consumer.shows("C-2").await;
    producer.stop().await;
    consumer.stop().await;
}

#[tokio::test]
async fn when_a_move_to_the_dead_letter_queue_is_refused_what_was_moved_before_it_is_not_moved_again()
 {
    let env = TestEnv::new().await;
    // Declares the topology, so that the poison messages below are queued.
    TestConsumer::start(env.consumer_config())
        .await
        .stop()
        .await;
    let dlq = format!("{}.dlq", env.queue);
    // Room for the first in the dead-letter queue, not for the second: the second move is
    // refused, the subscription ends and the unsettled part of the batch comes back.
    let full = FullQueue::at_most(&env, &dlq, 1);

    // The two poison messages must reach the consumer in one batch. A batch takes what has
    // arrived when the one before it ends, so the consumer is held in its store with a good
    // change while both are delivered, then let go.
    let lock = StoreWriteLock::take(&env.database_url(&env.queue)).await;
    let consumer = TestConsumer::start(env.consumer_config()).await;
    env.publish_event(&address_changed(
        "C-1",
        "1 New Road",
        "PR1 2HE",
        "2026-01-01",
    ))
    .await;
    env.depth_becomes(&env.queue, 0).await;
    for poison in [&b"{first poison"[..], b"{second poison"] {
        env.publish_raw("address.changed.pr", poison, Default::default())
            .await;
    }
    // Both delivered (the prefetch window is 32), while C-1's batch waits for the lock.
    env.depth_becomes(&env.queue, 0).await;
    lock.release().await;
    consumer.shows("C-1").await;
    env.depth_becomes(&dlq, 1).await;
    // The consumer has been ready and moved the first: from now on, only the refused move
    // of the second can make it not ready (it resubscribes, and is refused again, until
    // the queue has room).
    eventually(
        "the consumer to lose its subscription over the refused move",
        e2e::WITHIN,
        || async {
            match consumer.readiness.status() {
                Status::NotReady(reason) => Ok(reason),
                Status::Ready => Err("still ready"),
            }
        },
    )
    .await;
    drop(full);
    consumer.caught_up(&env).await;

    assert_eq!(
        env.queue_depth(&dlq).await.unwrap(),
        2,
        "each poison message is dead-lettered once: the first was acked with the move before the refusal"
    );
    consumer.stop().await;
}
