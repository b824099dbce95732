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
use std::{fmt, path::Path, time::Duration};
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
}

impl Applied {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Updated => "updated",
            Self::Superseded => "superseded",
            Self::Duplicate => "duplicate",
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
            .after_connect(|connection, metadata| Box::pin(configure(connection, metadata)))
            .connect(&sqlite_create_mode(url))
            .await?;
        MIGRATIONS.run(&pool).await?;
        Ok(Self {
            pool,
            description: redact(url),
            instance: instance.to_owned(),
        })
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    /// Applies `events` in order, in one transaction: all of them are durable when this
    /// returns `Ok`, none of them if it returns `Err`. Batching is what lets one commit
    /// (and one disk flush) serve many messages.
    pub async fn apply(&self, events: &[&AddressChanged]) -> Result<Vec<Applied>, StoreError> {
        let mut transaction = self.pool.begin().await?;
        let mut results = Vec::with_capacity(events.len());
        for event in events {
            results.push(apply_one(&mut transaction, event, &self.instance).await?);
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

async fn apply_one(
    connection: &mut AnyConnection,
    event: &AddressChanged,
    instance: &str,
) -> Result<Applied, StoreError> {
    let event_id = event.event_id.to_string();
    let effective_date = event.effective_date.to_string();
    let occurred_at_us = micros_since_epoch(event.occurred_at);
    let now = rfc3339(OffsetDateTime::now_utc());

    // Claim the id first. On PostgreSQL a concurrent transaction claiming the same id waits
    // here and then finds it taken, so two instances can never both apply one event.
    let claimed = sqlx::query(
        "INSERT INTO applied_events \
         (event_id, customer_id, effective_date, occurred_at_us, outcome, payload, recorded_at, recorded_by) \
         VALUES ($1, $2, $3, $4, 'applied', $5, $6, $7) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(&event_id)
    .bind(event.customer_id.as_str())
    .bind(&effective_date)
    .bind(occurred_at_us)
    .bind(String::from_utf8_lossy(&event.to_json()).into_owned())
    .bind(&now)
    .bind(instance)
    .execute(&mut *connection)
    .await?
    .rows_affected();
    if claimed == 0 {
        return Ok(Applied::Duplicate);
    }

    // Becomes current only if it sorts after the current one; an older change loses.
    let address = &event.new_address;
    let updated = sqlx::query(
        "INSERT INTO customer_addresses \
         (customer_id, line1, line2, town, postcode, country, effective_date, occurred_at_us, event_id, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (customer_id) DO UPDATE SET \
           line1 = excluded.line1, line2 = excluded.line2, town = excluded.town, \
           postcode = excluded.postcode, country = excluded.country, \
           effective_date = excluded.effective_date, occurred_at_us = excluded.occurred_at_us, \
           event_id = excluded.event_id, updated_at = excluded.updated_at \
         WHERE (excluded.effective_date, excluded.occurred_at_us, excluded.event_id) \
             > (customer_addresses.effective_date, customer_addresses.occurred_at_us, customer_addresses.event_id)",
    )
    .bind(event.customer_id.as_str())
    .bind(address.line1.as_str())
    .bind(address.line2.as_ref().map(AddressText::as_str))
    .bind(address.town.as_str())
    .bind(address.postcode.as_str())
    .bind(address.country.as_str())
    .bind(&effective_date)
    .bind(occurred_at_us)
    .bind(&event_id)
    .bind(&now)
    .execute(&mut *connection)
    .await?
    .rows_affected();
    if updated == 1 {
        return Ok(Applied::Updated);
    }
    sqlx::query("UPDATE applied_events SET outcome = 'superseded' WHERE event_id = $1")
        .bind(&event_id)
        .execute(&mut *connection)
        .await?;
    Ok(Applied::Superseded)
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

/// `scheme://user:***@host/db` for URLs with a password; others unchanged.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
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

    #[test]
    fn passwords_are_masked_in_the_description() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/coc"),
            "postgres://app:***@db:5432/coc"
        );
        assert_eq!(redact("sqlite://data/coc.db"), "sqlite://data/coc.db");
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
}
