//! The consumer's own record of addresses: an embedded SQLite file by default, or a
//! PostgreSQL database shared by every instance of one queue. One SQL dialect serves both.

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use shared::{
    domain::{Address, AddressText, Country, CustomerId, EffectiveDate, Postcode},
    event::AddressChanged,
};
use sqlx::{
    AnyConnection, AnyPool, Executor, Row,
    any::{AnyPoolOptions, AnyRow},
    pool::PoolConnectionMetadata,
};
use std::{
    collections::{HashMap, HashSet},
    fmt, iter,
    path::Path,
    sync::LazyLock,
    time::Duration,
};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use uuid::Uuid;

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Why the store could not do what was asked. Every variant is worth retrying later except
/// `Corrupt`, which needs a person.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot prepare the database: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create the directory for the database file: {0}")]
    Directory(#[source] std::io::Error),
    #[error("stored row for customer {customer_id} is invalid: {reason}")]
    Corrupt { customer_id: String, reason: String },
}

/// What applying one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// It is now the customer's current address.
    Updated,
    /// Recorded, but a change that takes effect later was already applied and stays current.
    Superseded,
    /// Its id had been applied before (a redelivery or a client retry): nothing changed.
    Duplicate,
    /// Its id had been applied before from a different request: the client reused an
    /// `Idempotency-Key` for another change. Nothing changed, and this change must not be
    /// taken for a duplicate: it cannot be applied under this id at all.
    KeyReused,
}

impl Applied {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Updated => "updated",
            Self::Superseded => "superseded",
            Self::Duplicate => "duplicate",
            Self::KeyReused => "idempotency_key_reused",
        }
    }
}

/// A customer's current address, as `GET /api/v1/customers/{id}/address` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CurrentAddress {
    pub customer_id: CustomerId,
    pub address: Address,
    pub effective_date: EffectiveDate,
    pub event_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A handle on the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// The URL with any password masked, for logs.
    description: String,
    /// Recorded with every event this instance applies.
    instance: String,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("database", &self.description)
            .finish()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `url` and brings its schema up to date.
    /// `sqlite://path/to/file.db` or `postgres://user:password@host/db`.
    pub async fn open(url: &SecretString, instance: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let url = url.expose_secret();
        let sqlite = url.starts_with("sqlite:");
        if sqlite {
            create_parent_directory(url)?;
        }
        let pool = AnyPoolOptions::new()
            // SQLite takes one writer at a time anyway; readers run beside it (WAL).
            .max_connections(if sqlite { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(5))
            // A failed connection shows at its next use and the batch is retried; checking
            // before every use would cost a round trip per batch.
            .test_before_acquire(false)
            .after_connect(|connection, metadata| Box::pin(configure(connection, metadata)))
            .connect(&sqlite_create_mode(url))
            .await?;
        MIGRATIONS.run(&pool).await?;
        Ok(Self {
            pool,
            description: shared::redact::url(url),
            instance: instance.to_owned(),
        })
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    /// Applies `events` in one transaction and returns one result per event, in their
    /// order: all of them are durable when this returns `Ok`, none of them if it returns
    /// `Err`. Each customer ends with its latest change (effective date, then occurrence);
    /// an earlier change for the same customer in the same batch may be recorded as
    /// superseded rather than updated.
    /// Batching is what lets one commit (and one disk flush) serve many messages.
    pub async fn apply(&self, events: &[&AddressChanged]) -> Result<Vec<Applied>, StoreError> {
        let mut transaction = self.pool.begin().await?;
        let mut results = Vec::with_capacity(events.len());
        for chunk in events.chunks(MAX_ROWS) {
            results.extend(apply_chunk(&mut transaction, chunk, &self.instance).await?);
        }
        transaction.commit().await?;
        Ok(results)
    }

    pub async fn current_address(
        &self,
        customer_id: &CustomerId,
    ) -> Result<Option<CurrentAddress>, StoreError> {
        let row = sqlx::query(
            "SELECT customer_id, line1, line2, town, postcode, country, effective_date, \
             event_id, updated_at FROM customer_addresses WHERE customer_id = $1",
        )
        .bind(customer_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| current_address_from(&row)).transpose()
    }

    /// How many events with this id are recorded: 0 or 1. For tests and diagnostics.
    pub async fn times_recorded(&self, event_id: Uuid) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM applied_events WHERE event_id = $1")
            .bind(event_id.to_string())
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// How many events are recorded in all.
    pub async fn events_recorded(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM applied_events")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// How many events each instance recorded, by instance name. For tests and diagnostics.
    pub async fn events_recorded_by_instance(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT recorded_by, COUNT(*) AS n FROM applied_events GROUP BY recorded_by ORDER BY recorded_by",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("recorded_by")?, row.try_get("n")?)))
            .collect()
    }

    /// Whether the database answers; part of the consumer's readiness.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Rows per statement at most: keeps every statement well under SQLite's and PostgreSQL's
/// limits on bound parameters, whatever PREFETCH is.
const MAX_ROWS: usize = 256;

/// One statement text for each power of two up to `MAX_ROWS` rows; a chunk's rows are
/// padded up to the next size (see `padded`). Were each row count its own text, every batch
/// size would be prepared anew on each pooled connection, and past a few dozen sizes the
/// connection's statement cache (100) would evict them and prepare them again, an extra
/// round trip on PostgreSQL. The three steps' 27 sizes all stay cached. Padding, rather
/// than splitting a chunk into pieces of those sizes, keeps each step one round trip.
struct BySize([String; MAX_ROWS.ilog2() as usize + 1]);

impl BySize {
    fn new(write: impl Fn(usize) -> String) -> Self {
        Self(std::array::from_fn(|power| write(1 << power)))
    }

    /// The statement for `rows` rows, padded.
    fn for_rows(&self, rows: usize) -> &str {
        &self.0[rows.next_power_of_two().trailing_zeros() as usize]
    }
}

/// `0..rows`, then `rows - 1` again up to the next power of two: which of a step's `rows`
/// (at least one) to bind, in order, to fill its statement. Each statement makes a repeated
/// row a no-op.
fn padded(rows: usize) -> impl Iterator<Item = usize> {
    (0..rows)
        .chain(iter::repeat(rows - 1))
        .take(rows.next_power_of_two())
}

/// Applies a chunk of events with three statements whatever its size (claim the ids, upsert
/// the addresses, mark the superseded), instead of three per event: the database round
/// trips, not the disk, are what a batch would otherwise spend its time on.
async fn apply_chunk(
    connection: &mut AnyConnection,
    events: &[&AddressChanged],
    instance: &str,
) -> Result<Vec<Applied>, StoreError> {
    let now = rfc3339(OffsetDateTime::now_utc());
    let ids: Vec<String> = events
        .iter()
        .map(|event| event.event_id.to_string())
        .collect();
    // Once per event: a padding row binds its row's again.
    let payloads: Vec<String> = events
        .iter()
        .map(|event| String::from_utf8_lossy(&event.to_json()).into_owned())
        .collect();

    // 1. Claim the ids. Those already there (or earlier in this chunk) are duplicates. On
    //    PostgreSQL a concurrent transaction claiming the same id waits here and then finds
    //    it taken, so two instances can never both apply one event. A padding row repeats
    //    the last one, so it is a duplicate too.
    static CLAIM: LazyLock<BySize> = LazyLock::new(|| {
        BySize::new(|rows| {
            format!(
                "INSERT INTO applied_events \
                 (event_id, customer_id, effective_date, occurred_at_us, outcome, payload, recorded_at, recorded_by, request_fingerprint) \
                 VALUES {} ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
                placeholders(rows, 9)
            )
        })
    });
    let mut claim = sqlx::query(CLAIM.for_rows(events.len()));
    for index in padded(events.len()) {
        let event = events[index];
        claim = claim
            .bind(ids[index].as_str())
            .bind(event.customer_id.as_str())
            .bind(event.effective_date.to_string())
            .bind(micros_since_epoch(event.occurred_at))
            .bind("applied")
            .bind(payloads[index].as_str())
            .bind(now.as_str())
            .bind(instance)
            .bind(event.request_fingerprint.as_deref());
    }
    let mut claimed: HashSet<String> = claim
        .fetch_all(&mut *connection)
        .await?
        .iter()
        .map(|row| row.try_get("event_id"))
        .collect::<Result<_, _>>()?;
    // The first occurrence of a claimed id is the one that applies it.
    let fresh: Vec<bool> = ids.iter().map(|id| claimed.remove(id)).collect();
    let reused = reused_keys(connection, events, &ids, &fresh).await?;

    // 2. Of each customer's fresh changes, only the latest can become current.
    let mut latest: HashMap<&str, usize> = HashMap::new();
    for (index, event) in events.iter().enumerate().filter(|(index, _)| fresh[*index]) {
        let current = latest.entry(event.customer_id.as_str()).or_insert(index);
        if order_key(event) > order_key(events[*current]) {
            *current = index;
        }
    }
    let mut candidates: Vec<usize> = latest.into_values().collect();
    candidates.sort_unstable();

    // 3. Each becomes current only if it sorts after the stored one. DISTINCT drops the
    //    padding's repeated rows: PostgreSQL refuses to upsert one row twice in a statement.
    //    (SQLite needs the WHERE to parse an upsert whose rows come from a SELECT.)
    static UPSERT: LazyLock<BySize> = LazyLock::new(|| {
        BySize::new(|rows| {
            format!(
                "INSERT INTO customer_addresses \
                 (customer_id, line1, line2, town, postcode, country, effective_date, occurred_at_us, event_id, updated_at) \
                 SELECT DISTINCT * FROM (VALUES {}) AS batch WHERE true \
                 ON CONFLICT (customer_id) DO UPDATE SET \
                   line1 = excluded.line1, line2 = excluded.line2, town = excluded.town, \
                   postcode = excluded.postcode, country = excluded.country, \
                   effective_date = excluded.effective_date, occurred_at_us = excluded.occurred_at_us, \
                   event_id = excluded.event_id, updated_at = excluded.updated_at \
                 WHERE (excluded.effective_date, excluded.occurred_at_us, excluded.event_id) \
                     > (customer_addresses.effective_date, customer_addresses.occurred_at_us, customer_addresses.event_id) \
                 RETURNING event_id",
                placeholders(rows, 10)
            )
        })
    });
    let mut became_current = HashSet::new();
    if !candidates.is_empty() {
        let mut upsert = sqlx::query(UPSERT.for_rows(candidates.len()));
        for index in padded(candidates.len()).map(|candidate| candidates[candidate]) {
            let (event, address) = (events[index], &events[index].new_address);
            upsert = upsert
                .bind(event.customer_id.as_str())
                .bind(address.line1.as_str())
                .bind(address.line2.as_ref().map(AddressText::as_str))
                .bind(address.town.as_str())
                .bind(address.postcode.as_str())
                .bind(address.country.as_str())
                .bind(event.effective_date.to_string())
                .bind(micros_since_epoch(event.occurred_at))
                .bind(ids[index].as_str())
                .bind(now.as_str());
        }
        for row in upsert.fetch_all(&mut *connection).await? {
            became_current.insert(row.try_get::<String, _>("event_id")?);
        }
    }

    // 4. Fresh changes that did not become current are kept as superseded.
    let results: Vec<Applied> = ids
        .iter()
        .zip(fresh.iter().zip(&reused))
        .map(
            |(id, (fresh, reused))| match (fresh, became_current.contains(id)) {
                (false, _) if *reused => Applied::KeyReused,
                (false, _) => Applied::Duplicate,
                (true, true) => Applied::Updated,
                (true, false) => Applied::Superseded,
            },
        )
        .collect();
    let superseded: Vec<&String> = ids
        .iter()
        .zip(&results)
        .filter(|(_, applied)| **applied == Applied::Superseded)
        .map(|(id, _)| id)
        .collect();
    static MARK: LazyLock<BySize> = LazyLock::new(|| {
        BySize::new(|rows| {
            format!(
                "UPDATE applied_events SET outcome = 'superseded' WHERE event_id IN {}",
                placeholders(1, rows)
            )
        })
    });
    if !superseded.is_empty() {
        let mut mark = sqlx::query(MARK.for_rows(superseded.len()));
        for index in padded(superseded.len()) {
            mark = mark.bind(superseded[index].as_str());
        }
        mark.execute(&mut *connection).await?;
    }
    Ok(results)
}

/// Which of a chunk's events that were not fresh (their id already claimed, by an earlier
/// batch or earlier in this chunk) came from a different request than the claimed one:
/// both fingerprints known, and different. Only duplicates that carry a fingerprint are
/// looked up, so the usual batch, with no duplicates, costs no extra round trip.
async fn reused_keys(
    connection: &mut AnyConnection,
    events: &[&AddressChanged],
    ids: &[String],
    fresh: &[bool],
) -> Result<Vec<bool>, StoreError> {
    let keyed_duplicates: Vec<usize> = (0..events.len())
        .filter(|&index| !fresh[index] && events[index].request_fingerprint.is_some())
        .collect();
    if keyed_duplicates.is_empty() {
        return Ok(vec![false; events.len()]);
    }
    static RECORDED: LazyLock<BySize> = LazyLock::new(|| {
        BySize::new(|rows| {
            format!(
                "SELECT event_id, request_fingerprint FROM applied_events WHERE event_id IN {}",
                placeholders(1, rows)
            )
        })
    });
    let mut lookup = sqlx::query(RECORDED.for_rows(keyed_duplicates.len()));
    for index in padded(keyed_duplicates.len()) {
        lookup = lookup.bind(ids[keyed_duplicates[index]].as_str());
    }
    let mut recorded: HashMap<String, String> = HashMap::new();
    for row in lookup.fetch_all(&mut *connection).await? {
        if let Some(fingerprint) = row.try_get::<Option<String>, _>("request_fingerprint")? {
            recorded.insert(row.try_get("event_id")?, fingerprint);
        }
    }
    Ok(events
        .iter()
        .zip(ids)
        .zip(fresh)
        .map(|((event, id), fresh)| {
            !fresh
                && matches!(
                    (recorded.get(id), &event.request_fingerprint),
                    (Some(stored), Some(sent)) if stored != sent
                )
        })
        .collect())
}

/// The order of changes for one customer: effective date, then when the producer accepted
/// it, then the event id so that the order is total and every instance agrees on it. The
/// SQL above compares the same three columns, as text and microseconds: a date's order is
/// its ISO text's, and a `Uuid`'s (by bytes) is its lowercase hyphenated text's.
fn order_key(event: &AddressChanged) -> (EffectiveDate, i64, Uuid) {
    (
        event.effective_date,
        micros_since_epoch(event.occurred_at),
        event.event_id,
    )
}

/// `($1, $2), ($3, $4)` for `rows` rows of `columns` values: numbered placeholders, which
/// both SQLite and PostgreSQL understand.
fn placeholders(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|row| {
            let values: Vec<String> = (1..=columns)
                .map(|column| format!("${}", row * columns + column))
                .collect();
            format!("({})", values.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn current_address_from(row: &AnyRow) -> Result<CurrentAddress, StoreError> {
    let customer_id: String = row.try_get("customer_id")?;
    let corrupt = |reason: String| StoreError::Corrupt {
        customer_id: customer_id.clone(),
        reason,
    };
    let text = |column: &str| -> Result<String, StoreError> { Ok(row.try_get(column)?) };
    let line2: Option<String> = row.try_get("line2")?;
    let address = Address {
        line1: AddressText::parse(&text("line1")?).map_err(|e| corrupt(format!("line1 {e}")))?,
        line2: line2
            .map(|line| AddressText::parse(&line))
            .transpose()
            .map_err(|e| corrupt(format!("line2 {e}")))?,
        town: AddressText::parse(&text("town")?).map_err(|e| corrupt(format!("town {e}")))?,
        postcode: Postcode::parse(&text("postcode")?).map_err(|e| corrupt(e.to_string()))?,
        country: Country::parse(&text("country")?).map_err(|e| corrupt(e.to_string()))?,
    };
    Ok(CurrentAddress {
        customer_id: CustomerId::parse(&customer_id).map_err(|e| corrupt(e.to_string()))?,
        address,
        effective_date: EffectiveDate::parse(&text("effective_date")?)
            .map_err(|e| corrupt(e.to_string()))?,
        event_id: Uuid::parse_str(&text("event_id")?).map_err(|e| corrupt(e.to_string()))?,
        updated_at: OffsetDateTime::parse(&text("updated_at")?, &Rfc3339)
            .map_err(|e| corrupt(e.to_string()))?,
    })
}

/// Per-connection settings. For SQLite: write-ahead logging so readers do not block the
/// writer, a full sync on every commit so that an acked message survives a power cut, and
/// a busy timeout so a second process on the same file waits instead of failing.
async fn configure(
    connection: &mut AnyConnection,
    _: PoolConnectionMetadata,
) -> Result<(), sqlx::Error> {
    if connection.backend_name().eq_ignore_ascii_case("sqlite") {
        connection
            .execute(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;",
            )
            .await?;
    }
    Ok(())
}

fn create_parent_directory(url: &str) -> Result<(), StoreError> {
    let path = sqlite_path(url);
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    match Path::new(path).parent() {
        Some(parent) if !parent.as_os_str().is_empty() => {
            std::fs::create_dir_all(parent).map_err(StoreError::Directory)
        }
        _ => Ok(()),
    }
}

fn sqlite_path(url: &str) -> &str {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    rest.split('?').next().unwrap_or_default()
}

/// SQLite refuses to open a missing file unless asked to create it.
fn sqlite_create_mode(url: &str) -> String {
    if url.starts_with("sqlite:") && !url.contains("mode=") {
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}mode=rwc")
    } else {
        url.to_owned()
    }
}

fn micros_since_epoch(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000) as i64
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use e2e::postgres::TestDatabase;
    use time::macros::datetime;

    #[test]
    fn placeholders_are_numbered_across_rows() {
        assert_eq!(placeholders(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(placeholders(1, 1), "($1)");
    }

    #[test]
    fn sqlite_urls_are_opened_in_create_mode() {
        assert_eq!(
            sqlite_create_mode("sqlite://data/a.db"),
            "sqlite://data/a.db?mode=rwc"
        );
        assert_eq!(
            sqlite_create_mode("sqlite://data/a.db?mode=ro"),
            "sqlite://data/a.db?mode=ro"
        );
        assert_eq!(sqlite_path("sqlite://data/a.db?x=1"), "data/a.db");
    }

    #[test]
    fn statements_are_padded_to_the_next_power_of_two_with_the_last_row() {
        assert_eq!(padded(1).collect::<Vec<_>>(), [0]);
        assert_eq!(padded(3).collect::<Vec<_>>(), [0, 1, 2, 2]);
        assert_eq!(padded(4).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(padded(MAX_ROWS).count(), MAX_ROWS);
    }

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

    /// Each customer's pair is decided by a different part of the order, and the later change
    /// comes first in the batch for some and last for others.
    async fn of_two_changes_for_one_customer_in_one_batch_the_latest_becomes_current(
        store: &Store,
    ) {
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
            ..e2e::address_changed("C-1", line1, "PR1 2HE", "2026-12-01")
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
    async fn of_two_changes_for_one_customer_in_one_batch_the_latest_becomes_current_in_sqlite() {
        in_sqlite(of_two_changes_for_one_customer_in_one_batch_the_latest_becomes_current).await;
    }

    #[tokio::test]
    async fn of_two_changes_for_one_customer_in_one_batch_the_latest_becomes_current_in_postgresql()
    {
        in_postgresql(of_two_changes_for_one_customer_in_one_batch_the_latest_becomes_current)
            .await;
    }

    #[tokio::test]
    async fn one_customers_changes_in_two_chunks_of_a_batch_end_with_the_latest_in_sqlite() {
        in_sqlite(one_customers_changes_in_two_chunks_of_a_batch_end_with_the_latest).await;
    }

    #[tokio::test]
    async fn one_customers_changes_in_two_chunks_of_a_batch_end_with_the_latest_in_postgresql() {
        in_postgresql(one_customers_changes_in_two_chunks_of_a_batch_end_with_the_latest).await;
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
    fn change(
        id: u128,
        customer: &str,
        effective_date: &str,
        at: OffsetDateTime,
    ) -> AddressChanged {
        AddressChanged {
            event_id: Uuid::from_u128(id),
            occurred_at: at,
            ..e2e::address_changed(customer, "1 Fishergate", "PR1 2HE", effective_date)
        }
    }

    fn change_for(customer: &str) -> AddressChanged {
        e2e::address_changed(customer, "1 Fishergate", "PR1 2HE", "2026-12-01")
    }

    /// The outcome of each record of `event_id`.
    async fn recorded_outcomes(store: &Store, event_id: Uuid) -> Vec<String> {
        sqlx::query_scalar("SELECT outcome FROM applied_events WHERE event_id = $1")
            .bind(event_id.to_string())
            .fetch_all(&store.pool)
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
}
