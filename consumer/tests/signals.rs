//! The consumer as a real process, sent real signals in the middle of a drain: SIGKILL
//! loses nothing and applies nothing twice; SIGTERM settles what it started and leaves the
//! rest queued.

use nix::sys::signal::Signal;
use std::{process::ExitStatus, time::Duration};
use testkit::{TestEnv, address_changed, eventually, process::ServiceProcess};

const CONSUMER: &str = env!("CARGO_BIN_EXE_consumer");

const N: usize = 1000;

/// Queues `N` changes, one per customer, with the consumer not running.
async fn queue_changes(env: &TestEnv) -> Vec<uuid::Uuid> {
    let events: Vec<_> = (0..N)
        .map(|i| {
            address_changed(
                &format!("C-{i}"),
                &format!("{i} Fishergate"),
                "PR1 2HE",
                "2026-12-01",
            )
        })
        .collect();
    env.publish_events(&events).await;
    events.iter().map(|event| event.event_id).collect()
}

/// Waits, for at most `within`, until the count of changes `store` has recorded is `enough`.
async fn records_reach(
    store: &consumer::store::Store,
    what: &str,
    within: Duration,
    enough: impl Fn(i64) -> bool,
) {
    eventually(what, within, || async {
        match store.events_recorded().await {
            Ok(n) if enough(n) => Ok(()),
            other => Err(other),
        }
    })
    .await;
}

async fn drained(env: &TestEnv, store: &consumer::store::Store) {
    env.depth_becomes(&env.queue, 0).await;
    let what = format!("{N} events to be recorded");
    records_reach(store, &what, testkit::WITHIN, |n| n == N as i64).await;
}

/// The consumer's store of the test's queue, opened from the test beside the process.
async fn open_store(env: &TestEnv) -> consumer::store::Store {
    consumer::store::Store::open(&env.database_url(&env.queue).into(), "test")
        .await
        .unwrap_or_else(|error| panic!("cannot open the consumer's store: {error}"))
}

async fn each_applied_once(store: &consumer::store::Store, ids: &[uuid::Uuid]) {
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            store.times_recorded(*id).await.unwrap(),
            1,
            "change {i} recorded once"
        );
        let current = store
            .current_address(&shared::domain::CustomerId::parse(&format!("C-{i}")).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(current.event_id, *id);
    }
}

/// Queues `N` changes, starts a consumer with prefetch 1 (one message per transaction, so
/// the drain takes long enough to interrupt) and sends it `signal` once 50 are recorded.
/// Returns the events' ids, the store, and how the process exited.
async fn interrupt_a_drain(
    env: &TestEnv,
    signal: Signal,
) -> (Vec<uuid::Uuid>, consumer::store::Store, ExitStatus) {
    // Declare the topology and the store once, then stop: the queue fills with no consumer.
    ServiceProcess::start(CONSUMER, &env.consumer_env(1))
        .await
        .signal(Signal::SIGTERM);
    let ids = queue_changes(env).await;
    let store = open_store(env).await;

    let consumer = ServiceProcess::start(CONSUMER, &env.consumer_env(1)).await;
    let what = "at least 50 changes to be recorded";
    records_reach(&store, what, Duration::from_secs(30), |n| n >= 50).await;
    consumer.signal(signal);
    let exit = consumer.exited(Duration::from_secs(15)).await;
    let recorded = store.events_recorded().await.unwrap();
    assert!(
        recorded < N as i64,
        "the {signal} came mid-drain ({recorded} of {N})"
    );
    (ids, store, exit)
}

#[tokio::test]
async fn a_consumer_killed_mid_drain_loses_nothing_and_applies_nothing_twice() {
    let env = TestEnv::new().await;
    let (ids, store, _) = interrupt_a_drain(&env, Signal::SIGKILL).await;

    let restarted = ServiceProcess::start(CONSUMER, &env.consumer_env(32)).await;
    drained(&env, &store).await;
    each_applied_once(&store, &ids).await;
    restarted.signal(Signal::SIGTERM);
    assert!(restarted.exited(Duration::from_secs(15)).await.success());
}

#[tokio::test]
async fn sigterm_to_the_consumer_mid_drain_settles_what_it_started_and_leaves_the_rest_queued() {
    let env = TestEnv::new().await;
    let (ids, store, exit) = interrupt_a_drain(&env, Signal::SIGTERM).await;
    assert!(exit.success(), "a clean exit within the grace period");

    // Every message is either recorded (and acked) or back in the queue, never both:
    // nothing committed was left unacked, nothing unacked was lost.
    let recorded = store.events_recorded().await.unwrap();
    let queued = env.queue_depth(&env.queue).await.unwrap();
    assert_eq!(
        recorded + i64::from(queued),
        N as i64,
        "recorded {recorded} + queued {queued}"
    );

    let restarted = ServiceProcess::start(CONSUMER, &env.consumer_env(32)).await;
    drained(&env, &store).await;
    each_applied_once(&store, &ids).await;
    assert_eq!(
        restarted.processed_with_outcome("duplicate"),
        0,
        "no message was processed twice"
    );
    restarted.signal(Signal::SIGTERM);
    assert!(restarted.exited(Duration::from_secs(15)).await.success());
}
