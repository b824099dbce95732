//! What the store has recorded, counted: how tests and diagnostics see that each event was
//! applied once, and by which instance.

use super::{Store, StoreError, Value};
use uuid::Uuid;

impl Store {
    /// How many events with this id are recorded: 0 or 1. For tests and diagnostics.
    pub async fn times_recorded(&self, event_id: Uuid) -> Result<i64, StoreError> {
        let id = event_id.to_string();
        self.count(
            "SELECT COUNT(*) FROM applied_events WHERE event_id = $1",
            &[Value::Text(&id)],
        )
        .await
    }

    /// How many events are recorded in all.
    pub async fn events_recorded(&self) -> Result<i64, StoreError> {
        self.count("SELECT COUNT(*) FROM applied_events", &[]).await
    }

    /// How many events each instance recorded, by instance name. For tests and diagnostics.
    pub async fn events_recorded_by_instance(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.pool
            .rows(
                "SELECT recorded_by, COUNT(*) FROM applied_events GROUP BY recorded_by ORDER BY recorded_by",
                &[],
            )
            .await
    }

    async fn count(&self, sql: &'static str, values: &[Value<'_>]) -> Result<i64, StoreError> {
        self.pool.one(sql, values).await
    }
}
