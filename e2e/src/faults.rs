//! Faults injected for real: the consumer's own database refusing a customer's changes.

use sqlx::{Executor, SqlitePool};

/// While it exists, every attempt to apply a change for one customer fails inside the
/// consumer's SQLite database (a trigger aborts the insert), as a failing disk or a locked
/// table would make it fail. Changes for other customers are unaffected.
#[derive(Debug)]
pub struct StoreFault {
    pool: SqlitePool,
    trigger: String,
}

impl StoreFault {
    pub async fn reject_changes_for(database_url: &str, customer_id: &str) -> Self {
        let pool = SqlitePool::connect(database_url)
            .await
            .unwrap_or_else(|error| panic!("cannot open the consumer's database: {error}"));
        let trigger = format!("fault_{}", customer_id.replace('-', "_"));
        // The id is a test constant made of letters, digits and '-'.
        let sql = format!(
            "CREATE TRIGGER {trigger} BEFORE INSERT ON applied_events \
             WHEN NEW.customer_id = '{customer_id}' \
             BEGIN SELECT RAISE(ABORT, 'injected fault: the store refuses {customer_id}'); END;"
        );
        pool.execute(sqlx::AssertSqlSafe(sql))
            .await
            .unwrap_or_else(|error| panic!("cannot install the fault: {error}"));
        Self { pool, trigger }
    }

    /// Removes the fault: the next attempt succeeds.
    pub async fn heal(self) {
        let sql = format!("DROP TRIGGER {}", self.trigger);
        self.pool
            .execute(sqlx::AssertSqlSafe(sql))
            .await
            .unwrap_or_else(|error| panic!("cannot remove the fault: {error}"));
        self.pool.close().await;
    }
}
