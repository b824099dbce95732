//! The connection pool, sized and configured for the database behind the URL.

use super::{StoreError, database::Pool, url};
use sqlx::{
    postgres::PgPoolOptions,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use std::{str::FromStr, time::Duration};

/// How long a caller waits for a free connection before the batch fails (and is retried).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a SQLite statement waits for another process's lock on the file before it
/// fails. sqlx's default too, set here so that it is said.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A pool on the database at `url`, its SQLite file (and directory) created if missing.
///
/// A failed connection shows at its next use and the batch is retried; checking each one
/// before use (`test_before_acquire`) would cost a round trip per batch.
pub(super) async fn open(url: &str) -> Result<Pool, StoreError> {
    if url::kind(url)? == url::Kind::Sqlite {
        url::create_parent_directory(url)?;
        Ok(Pool::Sqlite(
            SqlitePoolOptions::new()
                // SQLite takes one writer at a time anyway; readers run beside it (WAL).
                .max_connections(4)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .test_before_acquire(false)
                .connect_with(sqlite_options(url)?)
                .await?,
        ))
    } else {
        Ok(Pool::Postgres(
            PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .test_before_acquire(false)
                .connect(url)
                .await?,
        ))
    }
}

/// Write-ahead logging so readers do not block the writer, a full sync on every commit so
/// that an acked message survives a power cut, and a busy timeout so a second process on
/// the same file waits instead of failing. The file is created if missing, unless the URL
/// says how to open it (`mode=`).
fn sqlite_options(url: &str) -> Result<SqliteConnectOptions, StoreError> {
    let options = SqliteConnectOptions::from_str(url)?;
    let options = if url::has_sqlite_mode(url) {
        options
    } else {
        options.create_if_missing(true)
    };
    Ok(options
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT))
}
