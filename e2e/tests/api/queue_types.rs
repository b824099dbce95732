//! Quorum queues by default, and the way from a classic queue left by an earlier version:
//! kept and used with advice, then changed by the steps docs/quorum-queues.md gives.

use e2e::{
    ServiceConfigs, TestConsumer, TestEnv, TestProducer,
    broker::{queue_type, rabbitmqctl},
    change_of_address,
    faults::regex_escape,
};
use reqwest::StatusCode;
use shared::topology::QueueType;

#[tokio::test]
async fn by_default_the_work_dead_letter_and_retry_queues_are_quorum_queues() {
    let env = TestEnv::new().await;
    let consumer = TestConsumer::start(env.consumer_config()).await;

    let dlq = format!("{}.dlq", env.queue);
    for queue in [&env.queue, &dlq, &format!("{}.retry.200ms", env.queue)] {
        assert_eq!(queue_type(queue).as_deref(), Some("quorum"), "{queue}");
    }
    consumer.stop().await;
}

/// Listing dead letters hands each back to the queue unacknowledged. RabbitMQ 4 counts that
/// as a delivery, and by default drops a message from a quorum queue after 20.
#[tokio::test]
async fn dead_letters_survive_being_listed_again_and_again() {
    let env = TestEnv::new().await;
    let consumer = TestConsumer::start(env.consumer_config()).await;
    let dlq = format!("{}.dlq", env.queue);
    env.publish_raw("address.changed.pr", b"{not json", Default::default())
        .await;
    env.depth_becomes(&dlq, 1).await;

    for _ in 0..25 {
        let listed = consumer.dead_letters().await;
        assert_eq!(listed["count"], 1, "{listed}");
    }
    env.depth_becomes(&dlq, 1).await;
    consumer.stop().await;
}

#[tokio::test]
async fn a_classic_queue_from_an_earlier_version_is_used_with_advice_then_changed_as_readme_says() {
    let env = TestEnv::new().await;
    let dlq = format!("{}.dlq", env.queue);
    // What an earlier version left: classic queues, one change still waiting.
    let classic = |mut config: producer::Config| {
        config.queue.queue_type = QueueType::Classic;
        config
    };
    let mut old_consumer = env.consumer_config();
    old_consumer.queue.queue_type = QueueType::Classic;
    TestConsumer::start(old_consumer).await.stop().await;
    let old_producer = TestProducer::start(classic(env.producer_config())).await;
    old_producer
        .accepts(&change_of_address("C-WAITING", "PR1 2HE"))
        .await;
    old_producer.stop().await;
    assert_eq!(queue_type(&env.queue).as_deref(), Some("classic"));

    // The new version starts on them, says what to do, and loses nothing meanwhile.
    let producer = TestProducer::start(env.producer_config()).await;
    let consumer = TestConsumer::start(env.consumer_config()).await;
    for (service, readyz) in [
        ("producer", producer.get("/readyz").await),
        ("consumer", consumer.get("/readyz").await),
    ] {
        assert_eq!(readyz.status(), StatusCode::OK, "{service}");
        let ready: serde_json::Value = readyz.json().await.unwrap();
        let warning = ready["warnings"][0].as_str().unwrap_or_default();
        assert!(
            warning.contains("QUEUE_TYPE=quorum")
                && warning.contains("is a classic queue")
                && warning.contains("Changing the queue type")
                && warning.contains(&format!("delete_queue {}", env.queue)),
            "{service}: {ready}"
        );
    }
    consumer.shows("C-WAITING").await;
    producer
        .accepts(&change_of_address("C-MEANWHILE", "PR1 2HE"))
        .await;
    consumer.shows("C-MEANWHILE").await;
    env.publish_raw("address.changed.pr", b"{not json", Default::default())
        .await;
    env.depth_becomes(&dlq, 1).await;

    // The steps of docs/quorum-queues.md: stop the producers, let the consumers drain,
    // delete, restart.
    producer.stop().await;
    env.depth_becomes(&env.queue, 0).await;
    consumer.stop().await;
    // A dead letter worth keeping is taken out (moved aside) before its queue is deleted.
    let kept = env.take_message(&dlq).await.unwrap();
    assert_eq!(kept.data, b"{not json");
    rabbitmqctl(&["delete_queue", &env.queue]);
    rabbitmqctl(&["delete_queue", &dlq]);
    let producer = TestProducer::start(env.producer_config()).await;
    let consumer = TestConsumer::start(env.consumer_config()).await;

    for queue in [&env.queue, &dlq] {
        assert_eq!(queue_type(queue).as_deref(), Some("quorum"), "{queue}");
    }
    let ready: serde_json::Value = producer.get("/readyz").await.json().await.unwrap();
    assert_eq!(
        ready,
        serde_json::json!({"status": "ready"}),
        "no warning left"
    );
    producer
        .accepts(&change_of_address("C-AFTER", "PR1 2HE"))
        .await;
    consumer.shows("C-AFTER").await;
    assert_eq!(consumer.address_of("C-WAITING").await.0, StatusCode::OK);
    producer.stop().await;
    consumer.stop().await;
}

/// A user allowed only what the deployment's producer user is (its exchange, the alternate
/// exchange and its queue by name; not the default exchange); deleted when dropped.
struct ProducerUser {
    name: String,
}

impl ProducerUser {
    fn for_env(env: &TestEnv) -> Self {
        let name = format!("test-{}-producer-user", env.id);
        rabbitmqctl(&["add_user", &name, "producer-password"]);
        let own = format!(
            "^({}|{}\\.unroutable|{})$",
            regex_escape(&env.exchange),
            regex_escape(&env.exchange),
            regex_escape(&env.queue)
        );
        let vhost = env.broker_config().amqp_addr.vhost().to_owned();
        rabbitmqctl(&["set_permissions", "-p", &vhost, &name, &own, &own, &own]);
        Self { name }
    }
}

impl Drop for ProducerUser {
    fn drop(&mut self) {
        let _ = e2e::broker::try_rabbitmqctl(&["delete_user", &self.name]);
    }
}

/// On a fresh broker the producer may start before any consumer (VM 1 boots before VM 2), with
/// a user that may not publish through the default exchange: it must get ready by itself.
#[tokio::test]
async fn a_producer_with_only_its_own_permissions_gets_ready_before_any_consumer() {
    let env = TestEnv::new().await;
    let user = ProducerUser::for_env(&env);
    let mut config = env.producer_config();
    let uri = env.uri.replacen(
        "guest:guest@",
        &format!("{}:producer-password@", user.name),
        1,
    );
    config.broker.amqp_addr = shared::amqp::BrokerAddress::parse(&uri).unwrap();

    let producer = TestProducer::start(config).await;

    producer.accepts(&change_of_address("C-1", "PR1 2HE")).await;
    assert_eq!(
        env.queue_depth(&format!("{}.unroutable", env.exchange))
            .await
            .unwrap(),
        1,
        "the placeholder, and nothing else"
    );
    producer.stop().await;
}
