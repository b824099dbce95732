//! The connection pool, sized and configured for the database behind the URL.

use super::{StoreError, url};
use sqlx::{AnyConnection, AnyPool, Executor, any::AnyPoolOptions, pool::PoolConnectionMetadata};
use std::time::Duration;

/// A pool on the database at `url`, its SQLite file (and directory) created if missing.
pub(super) async fn open(url: &str) -> Result<AnyPool, StoreError> {
    sqlx::any::install_default_drivers();
    let sqlite = url::is_sqlite(url);
    if sqlite {
        url::create_parent_directory(url)?;
    }
    let pool = AnyPoolOptions::new()
        // SQLite takes one writer at a time anyway; readers run beside it (WAL).
        .max_connections(if sqlite { 4 } else { 8 })
        .acquire_timeout(Duration::from_secs(5))
        // A failed connection shows at its next use and the batch is retried; checking
        // before every use would cost a round trip per batch.
        .test_before_acquire(false)
        .after_connect(|connection, metadata| Box::pin(configure(connection, metadata)))
        .connect(&url::sqlite_create_mode(url))
        .await?;
    Ok(pool)
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
