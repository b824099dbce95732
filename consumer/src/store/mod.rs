//! The consumer's own record of addresses: an embedded SQLite file by default, or a
//! PostgreSQL database shared by every instance of one queue. One SQL dialect serves both,
//! each through its own driver (`database`).

mod apply;
mod counts;
mod database;
mod pool;
mod rows;
mod statements;
#[cfg(test)]
mod tests;
mod url;

use database::{Pool, Value};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use shared::{
    domain::{Address, CustomerId, EffectiveDate},
    event::AddressChanged,
};
use std::fmt;
use time::OffsetDateTime;
use uuid::Uuid;

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Why the store could not do what was asked. Every variant is worth retrying later except
/// `Corrupt`, which needs a person, and `UnsupportedUrl`, which only opening returns.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot prepare the database: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create the directory for the database file: {0}")]
    Directory(#[source] std::io::Error),
    #[error(
        "DATABASE_URL must start with sqlite: or postgres:// (or postgresql://), not {scheme:?}"
    )]
    UnsupportedUrl { scheme: String },
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
    pool: Pool,
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
        let url = url.expose_secret();
        let pool = pool::open(url).await?;
        pool.migrate(&MIGRATIONS).await?;
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
        for chunk in events.chunks(statements::MAX_ROWS) {
            results.extend(apply::apply_chunk(&mut transaction, chunk, &self.instance).await?);
        }
        transaction.commit().await?;
        Ok(results)
    }

    pub async fn current_address(
        &self,
        customer_id: &CustomerId,
    ) -> Result<Option<CurrentAddress>, StoreError> {
        let row: Option<rows::StoredAddress> = self
            .pool
            .optional_row(
                "SELECT customer_id, line1, line2, town, postcode, country, effective_date, \
                 event_id, updated_at FROM customer_addresses WHERE customer_id = $1",
                &[Value::Text(customer_id.as_str())],
            )
            .await?;
        row.map(rows::StoredAddress::parse).transpose()
    }

    /// Whether the database answers; part of the consumer's readiness.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.pool.ping().await
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
