//! The store on both databases: each scenario runs once on SQLite and once on PostgreSQL,
//! since one SQL text must mean the same on each.

use super::{Applied, Store, Value, statements::MAX_ROWS};
use shared::{domain::CustomerId, event::AddressChanged};
use std::time::Duration;
use testkit::postgres::TestDatabase;
use time::{OffsetDateTime, macros::datetime};
use uuid::Uuid;

/// A redelivery can arrive in the same batch as the first delivery.
async fn the_same_event_twice_in_one_batch_is_recorded_once(store: &Store) {
    let change = change_for("C-1");
    let other = change_for("C-2");

    let applied = store.apply(&[&change, &other, &change]).await.unwrap();

    assert_eq!(
        applied,
        [Applied::Updated, Applied::Updated, Applied::Duplicate]
    );
    assert_eq!(store.times_recorded(change.event_id).await.unwrap(), 1);
    assert_eq!(store.events_recorded().await.unwrap(), 2);
    assert_eq!(current_event(store, "C-1").await, change.event_id);
}

/// What is recorded of an applied event is its envelope, as the producer writes it.
async fn the_stored_payload_is_the_events_envelope(store: &Store) {
    let change = change_for("C-1");

    store.apply(&[&change]).await.unwrap();

    let payloads: Vec<String> = store
        .pool
        .column(
            "SELECT payload FROM applied_events WHERE event_id = $1",
            &[Value::Text(&change.event_id.to_string())],
        )
        .await
        .unwrap();
    let [payload] = &payloads[..] else {
        panic!("one payload is recorded, not {payloads:?}")
    };
    assert_eq!(payload.as_bytes(), change.to_json());
    assert_eq!(
        AddressChanged::from_json(payload.as_bytes()).unwrap(),
        change
    );
}

/// Each customer's pair is decided by a different part of the order, and the later change
/// comes first in the batch for some and last for others.
async fn of_two_changes_for_one_customer_in_one_batch_the_latest_becomes_current(store: &Store) {
    use Applied::{Superseded, Updated};
    let at = datetime!(2026-11-30 12:00 UTC);
    // Takes effect later, though accepted earlier.
    let by_date = change(1, "C-1", "2026-12-02", at);
    let by_date_earlier = change(2, "C-1", "2026-12-01", at + Duration::from_secs(1));
    // Same day: accepted later, though its id sorts first.
    let by_occurrence = change(3, "C-2", "2026-12-01", at + Duration::from_secs(1));
    let by_occurrence_earlier = change(4, "C-2", "2026-12-01", at);
    // Same day, same moment: the larger id.
    let by_id = change(6, "C-3", "2026-12-01", at);
    let by_id_earlier = change(5, "C-3", "2026-12-01", at);
    let batch = [
        &by_date,
        &by_date_earlier,
        &by_occurrence_earlier,
        &by_occurrence,
        &by_id,
        &by_id_earlier,
    ];

    let applied = store.apply(&batch).await.unwrap();

    assert_eq!(
        applied,
        [
            Updated, Superseded, Superseded, Updated, Updated, Superseded
        ]
    );
    assert_eq!(current_event(store, "C-1").await, by_date.event_id);
    assert_eq!(current_event(store, "C-2").await, by_occurrence.event_id);
    assert_eq!(current_event(store, "C-3").await, by_id.event_id);
    for (change, applied) in batch.into_iter().zip(applied) {
        let outcome = if applied == Superseded {
            "superseded"
        } else {
            "applied"
        };
        assert_eq!(recorded_outcomes(store, change.event_id).await, [outcome]);
    }
}

/// A batch longer than a statement is applied in chunks; a change in a later chunk must
/// not replace a later one from an earlier chunk.
async fn one_customers_changes_in_two_chunks_of_a_batch_end_with_the_latest(store: &Store) {
    let at = datetime!(2026-11-30 12:00 UTC);
    let first_latest = change(1, "C-1", "2026-12-02", at);
    let second_earlier = change(2, "C-2", "2026-12-01", at);
    let others: Vec<_> = (0..MAX_ROWS - 2)
        .map(|n| change(1_000 + n as u128, &format!("O-{n}"), "2026-12-01", at))
        .collect();
    let first_earlier = change(3, "C-1", "2026-12-01", at);
    let second_latest = change(4, "C-2", "2026-12-02", at);
    // Three rows in the second chunk, so its statements are padded.
    let third = change(5, "C-3", "2026-12-01", at);
    let batch: Vec<&AddressChanged> = [&first_latest, &second_earlier]
        .into_iter()
        .chain(&others)
        .chain([&first_earlier, &second_latest, &third])
        .collect();
    assert_eq!(batch.len(), MAX_ROWS + 3);

    let applied = store.apply(&batch).await.unwrap();

    assert_eq!(
        applied[MAX_ROWS..],
        [Applied::Superseded, Applied::Updated, Applied::Updated]
    );
    assert_eq!(current_event(store, "C-1").await, first_latest.event_id);
    assert_eq!(current_event(store, "C-2").await, second_latest.event_id);
    assert_eq!(current_event(store, "C-3").await, third.event_id);
    assert_eq!(store.events_recorded().await.unwrap(), batch.len() as i64);
}

/// One key, two requests: the second is refused, in the same batch as the first and in
/// a later one; the first stays applied; a retry of the first, or an event with that id
/// and no fingerprint (recorded before fingerprints existed), stays a plain duplicate.
async fn an_id_applied_from_another_request_is_a_reused_key(store: &Store) {
    let keyed = |line1: &str, fingerprint: Option<&str>| AddressChanged {
        event_id: Uuid::from_u128(7),
        request_fingerprint: fingerprint.map(str::to_owned),
        ..testkit::address_changed("C-1", line1, "PR1 2HE", "2026-12-01")
    };
    let first = keyed("1 First Street", Some("first"));
    let second = keyed("2 Second Street", Some("second"));
    let unkeyed = keyed("3 Third Street", None);
    let other = change_for("C-2");

    assert_eq!(
        store.apply(&[&first, &second, &other]).await.unwrap(),
        [Applied::Updated, Applied::KeyReused, Applied::Updated]
    );
    assert_eq!(
        store
            .apply(&[&second, &first, &unkeyed, &second])
            .await
            .unwrap(),
        [
            Applied::KeyReused,
            Applied::Duplicate,
            Applied::Duplicate,
            Applied::KeyReused
        ]
    );
    assert_eq!(store.times_recorded(first.event_id).await.unwrap(), 1);
    assert_eq!(current_event(store, "C-1").await, first.event_id);
    let address = store
        .current_address(&first.customer_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(address.address.line1.as_str(), "1 First Street");
}

#[tokio::test]
async fn an_id_applied_from_another_request_is_a_reused_key_in_sqlite() {
    in_sqlite(an_id_applied_from_another_request_is_a_reused_key).await;
}

#[tokio::test]
async fn an_id_applied_from_another_request_is_a_reused_key_in_postgresql() {
    in_postgresql(an_id_applied_from_another_request_is_a_reused_key).await;
}

#[tokio::test]
async fn the_same_event_twice_in_one_batch_is_recorded_once_in_sqlite() {
    in_sqlite(the_same_event_twice_in_one_batch_is_recorded_once).await;
}

#[tokio::test]
async fn the_same_event_twice_in_one_batch_is_recorded_once_in_postgresql() {
    in_postgresql(the_same_event_twice_in_one_batch_is_recorded_once).await;
}

#[tokio::test]
async fn the_stored_payload_is_the_events_envelope_in_sqlite() {
    in_sqlite(the_stored_payload_is_the_events_envelope).await;
}

#[tokio::test]
async fn the_stored_payload_is_the_events_envelope_in_postgresql() {
    in_postgresql(the_stored_payload_is_the_events_envelope).await;
}

#[tokio::test]
async fn of_two_changes_for_one_customer_in_one_batch_the_latest_becomes_current_in_sqlite() {
    in_sqlite(of_two_changes_for_one_customer_in_one_batch_the_latest_becomes_current).await;
}

#[tokio::test]
async fn of_two_changes_for_one_customer_in_one_batch_the_latest_becomes_current_in_postgresql() {
    in_postgresql(of_two_changes_for_one_customer_in_one_batch_the_latest_becomes_current).await;
}

#[tokio::test]
async fn one_customers_changes_in_two_chunks_of_a_batch_end_with_the_latest_in_sqlite() {
    in_sqlite(one_customers_changes_in_two_chunks_of_a_batch_end_with_the_latest).await;
}

#[tokio::test]
async fn one_customers_changes_in_two_chunks_of_a_batch_end_with_the_latest_in_postgresql() {
    in_postgresql(one_customers_changes_in_two_chunks_of_a_batch_end_with_the_latest).await;
}

/// What makes an acked message survive a power cut on SQLite: every connection writes
/// ahead and syncs in full on each commit.
#[tokio::test]
async fn a_sqlite_store_writes_ahead_and_syncs_every_commit() {
    in_sqlite(async |store: &Store| {
        // Each open transaction holds a connection of its own: all of the pool's at once.
        let mut transactions = Vec::new();
        for _ in 0..4 {
            transactions.push(store.pool.begin().await.unwrap());
        }
        for transaction in &mut transactions {
            let journal: Vec<String> = transaction
                .column("PRAGMA journal_mode", &[])
                .await
                .unwrap();
            let synchronous: Vec<i64> =
                transaction.column("PRAGMA synchronous", &[]).await.unwrap();
            assert_eq!((journal, synchronous), (vec!["wal".to_owned()], vec![2]));
        }
    })
    .await;
}

/// A file is created unless the URL says how to open it: `mode=rw` opens only a file that
/// is there.
#[tokio::test]
async fn a_sqlite_file_is_created_unless_the_url_says_how_to_open_it() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("nested").join("store.db");
    let url = |query: &str| format!("sqlite://{}{query}", path.display());

    let refused = Store::open(&url("?mode=rw").into(), "test").await;
    assert!(refused.is_err(), "mode=rw opened a missing file");
    assert!(!path.exists());

    Store::open(&url("").into(), "test")
        .await
        .unwrap()
        .close()
        .await;
    assert!(path.exists());
    Store::open(&url("?mode=rw").into(), "test")
        .await
        .unwrap()
        .close()
        .await;
}

#[tokio::test]
async fn a_database_url_of_another_scheme_is_refused_before_connecting() {
    let error = Store::open(
        &"mysql://user:secret@127.0.0.1/db".to_owned().into(),
        "test",
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&error, super::StoreError::UnsupportedUrl { scheme } if scheme == "mysql"),
        "{error}"
    );
}

/// Runs `scenario` on a store in a SQLite file of its own, removed afterwards.
async fn in_sqlite(scenario: impl AsyncFnOnce(&Store)) {
    let directory = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", directory.path().join("store.db").display());
    on(url, scenario).await;
}

/// Runs `scenario` on a store in a PostgreSQL database of its own, dropped afterwards.
async fn in_postgresql(scenario: impl AsyncFnOnce(&Store)) {
    let database = TestDatabase::create().await;
    on(database.url.clone(), scenario).await;
}

async fn on(url: String, scenario: impl AsyncFnOnce(&Store)) {
    let store = Store::open(&url.into(), "test")
        .await
        .unwrap_or_else(|error| panic!("cannot open the store: {error}"));
    scenario(&store).await;
    store.close().await;
}

/// A change whose id (`id`) and timing the test chooses.
fn change(id: u128, customer: &str, effective_date: &str, at: OffsetDateTime) -> AddressChanged {
    AddressChanged {
        event_id: Uuid::from_u128(id),
        occurred_at: at,
        ..testkit::address_changed(customer, "1 Fishergate", "PR1 2HE", effective_date)
    }
}

fn change_for(customer: &str) -> AddressChanged {
    testkit::address_changed(customer, "1 Fishergate", "PR1 2HE", "2026-12-01")
}

/// The outcome of each record of `event_id`.
async fn recorded_outcomes(store: &Store, event_id: Uuid) -> Vec<String> {
    store
        .pool
        .column(
            "SELECT outcome FROM applied_events WHERE event_id = $1",
            &[Value::Text(&event_id.to_string())],
        )
        .await
        .unwrap()
}

async fn current_event(store: &Store, customer: &str) -> Uuid {
    let customer = CustomerId::parse(customer).unwrap();
    store
        .current_address(&customer)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{customer} has no current address"))
        .event_id
}
