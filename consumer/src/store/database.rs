//! The two databases the store runs on, each through its own sqlx driver, and what the rest
//! of the store asks of them: a transaction, and statements bound from a list of values.
//!
//! sqlx's `Any` driver would serve both from one type, but it converts every bound value
//! and every returned row between its own representation and the driver's: about 8% of
//! the consumer's instructions a message (bench/README, "Each database through its own
//! driver"). Here the statements are written once, as texts and values, and only running
//! them is written for each database.
//!
//! Statements are `&'static str`: sqlx 0.9 runs only text it can take to be safe from
//! injection (`SqlSafeStr`), a literal or a static, which is why the batch statements are
//! kept in statics. Every value goes in as a bound parameter.

use super::{StoreError, statements::Placeholders};
use sqlx::{
    Arguments, Database, Encode, FromRow, PgPool, Postgres, Sqlite, SqlitePool, Type,
    postgres::PgRow, sqlite::SqliteRow,
};

/// `match`es `$value` (a `Pool` or a `Transaction`) and runs `$body` in each arm with
/// `$inner` bound to its pool or transaction, and optionally `$db` naming its database
/// type. The body is written once and compiled once for each driver: one generic function
/// would need sqlx's whole set of `Executor`, `Encode`, `Type` and `FromRow` bounds spelled
/// out, for every lifetime, on each method.
macro_rules! match_database {
    ($value:expr, $inner:ident => $body:expr) => {
        match_database!($value, $inner, _Database => $body)
    };
    ($value:expr, $inner:ident, $db:ident => $body:expr) => {
        match $value {
            Self::Sqlite($inner) => {
                #[allow(dead_code)]
                type $db = Sqlite;
                $body
            }
            Self::Postgres($inner) => {
                #[allow(dead_code)]
                type $db = Postgres;
                $body
            }
        }
    };
}

/// A value a statement binds. The steps write their parameters as these, so that the same
/// code binds them for either database.
#[derive(Debug, Clone, Copy)]
pub(super) enum Value<'a> {
    Text(&'a str),
    OptionalText(Option<&'a str>),
    Integer(i64),
}

/// A type that can be read from a row of either database.
pub(super) trait FromEitherRow:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}

impl<T> FromEitherRow for T where
    T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}

/// A pool of connections to one of the two databases.
#[derive(Clone)]
pub(super) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Pool {
    pub(super) async fn migrate(
        &self,
        migrator: &sqlx::migrate::Migrator,
    ) -> Result<(), StoreError> {
        match_database!(self, pool => migrator.run(pool).await?);
        Ok(())
    }

    pub(super) async fn begin(&self) -> Result<Transaction, StoreError> {
        Ok(match self {
            Self::Sqlite(pool) => Transaction::Sqlite(pool.begin().await?),
            Self::Postgres(pool) => Transaction::Postgres(pool.begin().await?),
        })
    }

    /// The first column of every row `sql` returns (see `Transaction::column`).
    #[cfg(test)]
    pub(super) async fn column<T>(
        &self,
        sql: &'static str,
        values: &[Value<'_>],
    ) -> Result<Vec<T>, StoreError>
    where
        T: Send + Unpin,
        (T,): FromEitherRow,
    {
        Ok(match_database!(self, pool, Db =>
            sqlx::query_scalar_with(sql, arguments::<Db>(values)?).fetch_all(pool).await?))
    }

    /// The first column of the one row `sql` returns; an error if it returns none.
    pub(super) async fn one<T>(
        &self,
        sql: &'static str,
        values: &[Value<'_>],
    ) -> Result<T, StoreError>
    where
        T: Send + Unpin,
        (T,): FromEitherRow,
    {
        Ok(match_database!(self, pool, Db =>
            sqlx::query_scalar_with(sql, arguments::<Db>(values)?).fetch_one(pool).await?))
    }

    /// The row `sql` returns, if any.
    pub(super) async fn optional_row<T: FromEitherRow>(
        &self,
        sql: &'static str,
        values: &[Value<'_>],
    ) -> Result<Option<T>, StoreError> {
        Ok(match_database!(self, pool, Db =>
            sqlx::query_as_with(sql, arguments::<Db>(values)?).fetch_optional(pool).await?))
    }

    /// Every row `sql` returns.
    pub(super) async fn rows<T: FromEitherRow>(
        &self,
        sql: &'static str,
        values: &[Value<'_>],
    ) -> Result<Vec<T>, StoreError> {
        Ok(match_database!(self, pool, Db =>
            sqlx::query_as_with(sql, arguments::<Db>(values)?).fetch_all(pool).await?))
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        match_database!(self, pool => {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    pub(super) async fn close(&self) {
        match_database!(self, pool => pool.close().await);
    }
}

/// A transaction on one of the two databases; rolled back if dropped uncommitted.
pub(super) enum Transaction {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

impl Transaction {
    /// How the batch statements write their parameters for this database.
    pub(super) fn placeholders(&self) -> Placeholders {
        match self {
            Self::Sqlite(_) => Placeholders::Positional,
            Self::Postgres(_) => Placeholders::Numbered,
        }
    }

    /// Runs `sql` and returns the first column of every row it returns. (sqlx reads a
    /// column alone as a tuple of one, hence the bound on `(T,)`.)
    pub(super) async fn column<T>(
        &mut self,
        sql: &'static str,
        values: &[Value<'_>],
    ) -> Result<Vec<T>, StoreError>
    where
        T: Send + Unpin,
        (T,): FromEitherRow,
    {
        Ok(match_database!(self, transaction, Db =>
            sqlx::query_scalar_with(sql, arguments::<Db>(values)?)
                .fetch_all(&mut **transaction)
                .await?))
    }

    /// Runs `sql` and returns every row it returns.
    pub(super) async fn rows<T: FromEitherRow>(
        &mut self,
        sql: &'static str,
        values: &[Value<'_>],
    ) -> Result<Vec<T>, StoreError> {
        Ok(match_database!(self, transaction, Db =>
            sqlx::query_as_with(sql, arguments::<Db>(values)?)
                .fetch_all(&mut **transaction)
                .await?))
    }

    pub(super) async fn execute(
        &mut self,
        sql: &'static str,
        values: &[Value<'_>],
    ) -> Result<(), StoreError> {
        match_database!(self, transaction, Db => {
            sqlx::query_with(sql, arguments::<Db>(values)?)
                .execute(&mut **transaction)
                .await?;
        });
        Ok(())
    }

    pub(super) async fn commit(self) -> Result<(), StoreError> {
        match_database!(self, transaction => transaction.commit().await?);
        Ok(())
    }
}

/// `values`, encoded in order for the database `DB`.
fn arguments<DB>(values: &[Value<'_>]) -> Result<DB::Arguments, sqlx::Error>
where
    DB: Database,
    for<'v> &'v str: Encode<'v, DB> + Type<DB>,
    for<'v> Option<&'v str>: Encode<'v, DB> + Type<DB>,
    for<'v> i64: Encode<'v, DB> + Type<DB>,
{
    let mut arguments = DB::Arguments::default();
    for value in values {
        match *value {
            Value::Text(text) => arguments.add(text),
            Value::OptionalText(text) => arguments.add(text),
            Value::Integer(number) => arguments.add(number),
        }
        .map_err(sqlx::Error::Encode)?;
    }
    Ok(arguments)
}
