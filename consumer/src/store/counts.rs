//! What the store has recorded, counted: how tests and diagnostics see that each event was
//! applied once, and by which instance.

use super::{Store, StoreError};
use sqlx::Row;
use uuid::Uuid;

impl Store {
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
}
