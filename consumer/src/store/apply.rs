//! Applying a chunk of events with three statements whatever its size (claim the ids,
//! upsert the addresses, mark the superseded), instead of three per event: the database
//! round trips, not the disk, are what a batch would otherwise spend its time on.

use super::{
    Applied, StoreError,
    rows::{micros_since_epoch, rfc3339},
    statements::{BySize, Placeholders, padded, placeholders},
};
use shared::{
    domain::{AddressText, EffectiveDate},
    event::AddressChanged,
};
use sqlx::{AnyConnection, Row};
use std::{
    collections::{HashMap, HashSet},
    sync::LazyLock,
};
use time::OffsetDateTime;
use uuid::Uuid;

/// Applies `events` (at most `MAX_ROWS`) inside the caller's transaction and returns one
/// result per event, in their order.
pub(super) async fn apply_chunk(
    connection: &mut AnyConnection,
    events: &[&AddressChanged],
    instance: &str,
    placeholders: Placeholders,
) -> Result<Vec<Applied>, StoreError> {
    let chunk = Chunk::new(events, placeholders);
    let fresh = chunk.claim_ids(connection, instance).await?;
    let reused = chunk.reused_keys(connection, &fresh).await?;
    let candidates = chunk.latest_per_customer(&fresh);
    let became_current = chunk.make_current(connection, &candidates).await?;
    let results = chunk.results(&fresh, &reused, &became_current);
    chunk.mark_superseded(connection, &results).await?;
    Ok(results)
}

/// A chunk's events, with the values every step binds for them made once.
struct Chunk<'a> {
    events: &'a [&'a AddressChanged],
    /// Each event's id, as stored.
    ids: Vec<String>,
    /// When the chunk is recorded, as stored.
    now: String,
    /// How the database behind the connection writes its statements' parameters.
    placeholders: Placeholders,
}

impl<'a> Chunk<'a> {
    fn new(events: &'a [&'a AddressChanged], placeholders: Placeholders) -> Self {
        Self {
            events,
            ids: events
                .iter()
                .map(|event| event.event_id.to_string())
                .collect(),
            now: rfc3339(OffsetDateTime::now_utc()),
            placeholders,
        }
    }

    /// Step 1: claims the ids, and says of each event whether it is fresh. Those already
    /// there (or earlier in this chunk) are duplicates. On PostgreSQL a concurrent
    /// transaction claiming the same id waits here and then finds it taken, so two instances
    /// can never both apply one event. A padding row repeats the last one, so it is a
    /// duplicate too.
    async fn claim_ids(
        &self,
        connection: &mut AnyConnection,
        instance: &str,
    ) -> Result<Vec<bool>, StoreError> {
        static CLAIM: LazyLock<BySize> = LazyLock::new(|| {
            BySize::new(|rows, form| {
                format!(
                    "INSERT INTO applied_events \
                     (event_id, customer_id, effective_date, occurred_at_us, outcome, payload, recorded_at, recorded_by, request_fingerprint) \
                     VALUES {} ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
                    placeholders(rows, 9, form)
                )
            })
        });
        // Once per event: a padding row binds its row's again.
        let payloads: Vec<String> = self
            .events
            .iter()
            .map(|event| event.to_json_string())
            .collect();
        let mut claim = sqlx::query(CLAIM.for_rows(self.events.len(), self.placeholders));
        for index in padded(self.events.len()) {
            let event = self.events[index];
            claim = claim
                .bind(self.ids[index].as_str())
                .bind(event.customer_id.as_str())
                .bind(event.effective_date.to_string())
                .bind(micros_since_epoch(event.occurred_at))
                .bind("applied")
                .bind(payloads[index].as_str())
                .bind(self.now.as_str())
                .bind(instance)
                .bind(event.request_fingerprint.as_deref());
        }
        let rows = claim.fetch_all(&mut *connection).await?;
        // Sized once: collecting through a `Result` would grow it (and hash again) as it goes.
        let mut claimed = HashSet::with_capacity(rows.len());
        for row in &rows {
            claimed.insert(row.try_get::<String, _>("event_id")?);
        }
        // The first occurrence of a claimed id is the one that applies it.
        Ok(self.ids.iter().map(|id| claimed.remove(id)).collect())
    }

    /// Which of the events that were not fresh (their id already claimed, by an earlier
    /// batch or earlier in this chunk) came from a different request than the claimed one:
    /// both fingerprints known, and different. Only duplicates that carry a fingerprint are
    /// looked up, so the usual batch, with no duplicates, costs no extra round trip.
    async fn reused_keys(
        &self,
        connection: &mut AnyConnection,
        fresh: &[bool],
    ) -> Result<Vec<bool>, StoreError> {
        let keyed_duplicates: Vec<usize> = (0..self.events.len())
            .filter(|&index| !fresh[index] && self.events[index].request_fingerprint.is_some())
            .collect();
        if keyed_duplicates.is_empty() {
            return Ok(vec![false; self.events.len()]);
        }
        static RECORDED: LazyLock<BySize> = LazyLock::new(|| {
            BySize::new(|rows, form| {
                format!(
                    "SELECT event_id, request_fingerprint FROM applied_events WHERE event_id IN {}",
                    placeholders(1, rows, form)
                )
            })
        });
        let mut lookup = sqlx::query(RECORDED.for_rows(keyed_duplicates.len(), self.placeholders));
        for index in padded(keyed_duplicates.len()) {
            lookup = lookup.bind(self.ids[keyed_duplicates[index]].as_str());
        }
        let mut recorded: HashMap<String, String> = HashMap::new();
        for row in lookup.fetch_all(&mut *connection).await? {
            if let Some(fingerprint) = row.try_get::<Option<String>, _>("request_fingerprint")? {
                recorded.insert(row.try_get("event_id")?, fingerprint);
            }
        }
        Ok(self
            .events
            .iter()
            .zip(&self.ids)
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

    /// Step 2: of each customer's fresh changes, only the latest can become current. The
    /// indexes of those, in the chunk's order.
    fn latest_per_customer(&self, fresh: &[bool]) -> Vec<usize> {
        let mut latest: HashMap<&str, usize> = HashMap::with_capacity(self.events.len());
        for (index, event) in self
            .events
            .iter()
            .enumerate()
            .filter(|(index, _)| fresh[*index])
        {
            let current = latest.entry(event.customer_id.as_str()).or_insert(index);
            if order_key(event) > order_key(self.events[*current]) {
                *current = index;
            }
        }
        let mut candidates: Vec<usize> = latest.into_values().collect();
        candidates.sort_unstable();
        candidates
    }

    /// Step 3: each candidate becomes current only if it sorts after the stored one. The
    /// ids of those that did. DISTINCT drops the padding's repeated rows: PostgreSQL refuses
    /// to upsert one row twice in a statement. (SQLite needs the WHERE to parse an upsert
    /// whose rows come from a SELECT.)
    async fn make_current(
        &self,
        connection: &mut AnyConnection,
        candidates: &[usize],
    ) -> Result<HashSet<String>, StoreError> {
        static UPSERT: LazyLock<BySize> = LazyLock::new(|| {
            BySize::new(|rows, form| {
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
                    placeholders(rows, 10, form)
                )
            })
        });
        let mut became_current = HashSet::with_capacity(candidates.len());
        if candidates.is_empty() {
            return Ok(became_current);
        }
        let mut upsert = sqlx::query(UPSERT.for_rows(candidates.len(), self.placeholders));
        for index in padded(candidates.len()).map(|candidate| candidates[candidate]) {
            let (event, address) = (self.events[index], &self.events[index].new_address);
            upsert = upsert
                .bind(event.customer_id.as_str())
                .bind(address.line1.as_str())
                .bind(address.line2.as_ref().map(AddressText::as_str))
                .bind(address.town.as_str())
                .bind(address.postcode.as_str())
                .bind(address.country.as_str())
                .bind(event.effective_date.to_string())
                .bind(micros_since_epoch(event.occurred_at))
                .bind(self.ids[index].as_str())
                .bind(self.now.as_str());
        }
        for row in upsert.fetch_all(&mut *connection).await? {
            became_current.insert(row.try_get::<String, _>("event_id")?);
        }
        Ok(became_current)
    }

    /// What happened to each event: a fresh change that did not become current is
    /// superseded; one that was not fresh is a duplicate, or a reused key.
    fn results(
        &self,
        fresh: &[bool],
        reused: &[bool],
        became_current: &HashSet<String>,
    ) -> Vec<Applied> {
        self.ids
            .iter()
            .zip(fresh.iter().zip(reused))
            .map(
                |(id, (fresh, reused))| match (fresh, became_current.contains(id)) {
                    (false, _) if *reused => Applied::KeyReused,
                    (false, _) => Applied::Duplicate,
                    (true, true) => Applied::Updated,
                    (true, false) => Applied::Superseded,
                },
            )
            .collect()
    }

    /// Step 4: fresh changes that did not become current are kept as superseded.
    async fn mark_superseded(
        &self,
        connection: &mut AnyConnection,
        results: &[Applied],
    ) -> Result<(), StoreError> {
        let superseded: Vec<&String> = self
            .ids
            .iter()
            .zip(results)
            .filter(|(_, applied)| **applied == Applied::Superseded)
            .map(|(id, _)| id)
            .collect();
        static MARK: LazyLock<BySize> = LazyLock::new(|| {
            BySize::new(|rows, form| {
                format!(
                    "UPDATE applied_events SET outcome = 'superseded' WHERE event_id IN {}",
                    placeholders(1, rows, form)
                )
            })
        });
        if !superseded.is_empty() {
            let mut mark = sqlx::query(MARK.for_rows(superseded.len(), self.placeholders));
            for index in padded(superseded.len()) {
                mark = mark.bind(superseded[index].as_str());
            }
            mark.execute(&mut *connection).await?;
        }
        Ok(())
    }
}

/// The order of changes for one customer: effective date, then when the producer accepted
/// it, then the event id so that the order is total and every instance agrees on it. The
/// upsert's SQL compares the same three columns, as text and microseconds: a date's order is
/// its ISO text's, and a `Uuid`'s (by bytes) is its lowercase hyphenated text's.
fn order_key(event: &AddressChanged) -> (EffectiveDate, i64, Uuid) {
    (
        event.effective_date,
        micros_since_epoch(event.occurred_at),
        event.event_id,
    )
}
