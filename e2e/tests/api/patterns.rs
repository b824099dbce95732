//! The patterns side by side: synchronous HTTP against asynchronous messaging, topic
//! routing, publish/subscribe with a new subscriber, and competing consumers.

use e2e::{
    ServiceConfigs, TestConsumer, TestEnv, TestProducer, address_changed, change_of_address,
    faults::StoreFault, postgres::TestDatabase,
};
use producer::routes::{Accepted, RecordedByConsumer};
use reqwest::StatusCode;
use shared::http::ErrorBody;
use std::time::Duration;

#[tokio::test]
async fn with_the_consumer_up_the_sync_path_answers_once_the_change_is_visible() {
    let env = TestEnv::new().await;
    let consumer = TestConsumer::start(env.consumer_config()).await;
    let mut config = env.producer_config();
    config.consumer_url = consumer.url.clone();
    let producer = TestProducer::start(config).await;

    let response = producer
        .post_sync_change(&change_of_address("C-1", "pr12he"), Some("sync-1"))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let applied: RecordedByConsumer = response.json().await.unwrap();
    assert_eq!(
        (applied.status.as_str(), applied.outcome.as_str()),
        ("applied", "updated")
    );

    // No waiting: the answer came after the consumer had recorded it.
    let (status, body) = consumer.address_of("C-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["event_id"], applied.event_id.to_string());
    assert_eq!(body["address"]["postcode"], "PR1 2HE");

    let retry = producer
        .post_sync_change(&change_of_address("C-1", "pr12he"), Some("sync-1"))
        .await;
    assert_eq!(retry.status(), StatusCode::OK, "a retry is recognised");
    let retried: RecordedByConsumer = retry.json().await.unwrap();
    assert_eq!(
        (retried.event_id, retried.outcome.as_str()),
        (applied.event_id, "duplicate")
    );
    assert_eq!(consumer.store.events_recorded().await.unwrap(), 1);
    producer.stop().await;
    consumer.stop().await;
}

#[tokio::test]
async fn with_the_consumer_down_sync_fails_saying_not_recorded_while_async_queues_and_applies_later()
 {
    let env = TestEnv::new().await;
    let consumer = TestConsumer::start(env.consumer_config()).await;
    let consumer_url = consumer.url.clone();
    consumer.stop().await; // its port is closed now
    let mut config = env.producer_config();
    config.consumer_url = consumer_url;
    let producer = TestProducer::start(config).await;

    let sync = producer
        .post_sync_change(&change_of_address("C-SYNC", "PR1 2HE"), None)
        .await;
    let asynchronous = producer
        .post_change(&change_of_address("C-ASYNC", "PR1 2HE"))
        .await;

    assert_eq!(sync.status(), StatusCode::SERVICE_UNAVAILABLE);
    let error = sync.json::<ErrorBody>().await.unwrap().error;
    assert_eq!(error.code, "consumer_unavailable");
    assert!(
        error.message.starts_with("The change was NOT recorded"),
        "{}",
        error.message
    );
    assert_eq!(
        asynchronous.status(),
        StatusCode::ACCEPTED,
        "the producer does not need the consumer"
    );
    let accepted: Accepted = asynchronous.json().await.unwrap();

    let consumer = TestConsumer::start(env.consumer_config()).await;
    let body = consumer.shows("C-ASYNC").await;
    assert_eq!(body["event_id"], accepted.event_id.to_string());
    env.depth_becomes(&env.queue, 0).await;
    assert_eq!(
        consumer.address_of("C-SYNC").await.0,
        StatusCode::NOT_FOUND,
        "the sync change was not recorded"
    );
    assert_eq!(consumer.store.events_recorded().await.unwrap(), 1);
    producer.stop().await;
    consumer.stop().await;
}

#[tokio::test]
async fn when_the_consumer_is_too_slow_the_sync_path_times_out_with_504() {
    let env = TestEnv::new().await;
    // A consumer that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((connection, _)) = silent.accept().await {
            open.push(connection);
        }
    });
    let mut config = env.producer_config();
    config.consumer_url = silent_url;
    config.consumer_timeout_ms = 300;
    let producer = TestProducer::start(config).await;

    let started = std::time::Instant::now();
    let response = producer
        .post_sync_change(&change_of_address("C-1", "PR1 2HE"), None)
        .await;

    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    let error = response.json::<ErrorBody>().await.unwrap().error;
    assert_eq!(error.code, "consumer_timeout");
    assert!(
        error.message.contains("NOT recorded") && error.message.contains("300 ms"),
        "{}",
        error.message
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    held.abort();
    producer.stop().await;
}

#[tokio::test]
async fn when_the_consumer_fails_the_sync_path_answers_502_and_nothing_is_recorded() {
    let env = TestEnv::new().await;
    let consumer = TestConsumer::start(env.consumer_config()).await;
    let fault = StoreFault::reject_changes_for(&env.database_url(&env.queue), "C-1").await;
    let mut config = env.producer_config();
    config.consumer_url = consumer.url.clone();
    let producer = TestProducer::start(config).await;

    let response = producer
        .post_sync_change(&change_of_address("C-1", "PR1 2HE"), None)
        .await;

    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let error = response.json::<ErrorBody>().await.unwrap().error;
    assert_eq!(error.code, "consumer_failed");
    assert!(error.message.contains("NOT recorded"), "{}", error.message);
    assert_eq!(consumer.address_of("C-1").await.0, StatusCode::NOT_FOUND);
    fault.heal().await;
    producer.stop().await;
    consumer.stop().await;
}

#[tokio::test]
async fn every_subscriber_gets_its_own_copy_and_the_preston_mailshot_only_pr_postcodes() {
    let env = TestEnv::new().await;
    let payments_queue = env.queue_named("payments");
    let mailshot_queue = env.queue_named("preston-mailshot");
    let producer = TestProducer::start(env.producer_config()).await;
    let main = TestConsumer::start(env.consumer_config()).await;
    // Adding subscribers is a consumer with a new QUEUE: nothing changes in the producer.
    let payments =
        TestConsumer::start(env.consumer_config_for(&payments_queue, &["address.changed.#"])).await;
    let mailshot =
        TestConsumer::start(env.consumer_config_for(&mailshot_queue, &["address.changed.pr"]))
            .await;

    // Lancaster first: a lone consumer applies its queue in order, so once the mailshot
    // shows Preston it would have applied Lancaster too, had Lancaster reached it.
    for (customer, postcode) in [("C-LANCASTER", "LA1 1PJ"), ("C-PRESTON", "PR1 2HE")] {
        producer
            .accepts(&change_of_address(customer, postcode))
            .await;
    }

    for subscriber in [&main, &payments] {
        subscriber.shows("C-PRESTON").await;
        subscriber.shows("C-LANCASTER").await;
    }
    mailshot.shows("C-PRESTON").await;
    for queue in [&env.queue, &payments_queue, &mailshot_queue] {
        env.depth_becomes(queue, 0).await;
    }
    assert_eq!(
        mailshot.address_of("C-LANCASTER").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        mailshot.store.events_recorded().await.unwrap(),
        1,
        "only the PR change reached the mailshot"
    );
    for consumer in [main, payments, mailshot] {
        consumer.stop().await;
    }
    producer.stop().await;
}

/// Two consumer instances on one queue and one store share N changes between them.
async fn competing_consumers_apply_each_change_once(env: &TestEnv, database_url: Option<String>) {
    const N: usize = 300;
    let instance = |name: &str| {
        let mut config = env.consumer_config();
        config.prefetch = 4;
        config.broker.connection_name = Some(env.connection_name(name));
        if let Some(url) = &database_url {
            config.database_url = Some(url.clone().into());
        }
        config
    };
    let first = TestConsumer::start(instance("instance-a")).await;
    let second = TestConsumer::start(instance("instance-b")).await;
    let events: Vec<_> = (0..N)
        .map(|i| address_changed(&format!("C-{i}"), "1 Fishergate", "PR1 2HE", "2026-12-01"))
        .collect();

    env.publish_events(&events).await;

    env.depth_becomes(&env.queue, 0).await;
    first.recorded(N as i64).await;
    for event in &events {
        assert_eq!(first.store.times_recorded(event.event_id).await.unwrap(), 1);
    }
    let shares = first.store.events_recorded_by_instance().await.unwrap();
    assert_eq!(
        shares.len(),
        2,
        "both instances did some of the work: {shares:?}"
    );
    assert!(shares.iter().all(|(_, n)| *n > 0), "{shares:?}");
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn competing_consumers_sharing_a_sqlite_file_apply_each_change_once() {
    let env = TestEnv::new().await;
    competing_consumers_apply_each_change_once(&env, None).await;
}

#[tokio::test]
async fn competing_consumers_sharing_postgresql_apply_each_change_once() {
    let env = TestEnv::new().await;
    let database = TestDatabase::create().await;
    competing_consumers_apply_each_change_once(&env, Some(database.url.clone())).await;
}
