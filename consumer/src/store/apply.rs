//! Applying a chunk of events with three statements whatever its size (claim the ids,
//! upsert the addresses, mark the superseded), instead of three per event: the database
//! round trips, not the disk, are what a batch would otherwise spend its time on.

use super::{
    Applied, StoreError,
    database::{Transaction, Value},
    rows::{micros_since_epoch, rfc3339},
    statements::{BySize, Placeholders, padded, placeholders},
};
use shared::{
    domain::{AddressText, EffectiveDate},
    event::AddressChanged,
};
use std::{
    collections::{HashMap, HashSet},
    sync::LazyLock,
};
use time::OffsetDateTime;
use uuid::Uuid;

/// Applies `events` (at most `MAX_ROWS`) inside the caller's transaction and returns one
/// result per event, in their order.
pub(super) async fn apply_chunk(
    connection: &mut Transaction,
    events: &[&AddressChanged],
    instance: &str,
) -> Result<Vec<Applied>, StoreError> {
    let chunk = Chunk::new(events, connection.placeholders());
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
    /// Each event's effective date, as stored.
    dates: Vec<String>,
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
            dates: events
                .iter()
                .map(|event| event.effective_date.to_string())
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
        connection: &mut Transaction,
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
        let mut values = Vec::with_capacity(9 * self.events.len().next_power_of_two());
        for index in padded(self.events.len()) {
            let event = self.events[index];
            values.extend([
                Value::Text(&self.ids[index]),
                Value::Text(event.customer_id.as_str()),
                Value::Text(&self.dates[index]),
                Value::Integer(micros_since_epoch(event.occurred_at)),
                Value::Text("applied"),
                Value::Text(&payloads[index]),
                Value::Text(&self.now),
                Value::Text(instance),
                Value::OptionalText(event.request_fingerprint.as_deref()),
            ]);
        }
        let mut claimed: HashSet<String> = connection
            .column(
                CLAIM.for_rows(self.events.len(), self.placeholders),
                &values,
            )
            .await?
            .into_iter()
            .collect();
        // The first occurrence of a claimed id is the one that applies it.
        Ok(self.ids.iter().map(|id| claimed.remove(id)).collect())
    }

    /// Which of the events that were not fresh (their id already claimed, by an earlier
    /// batch or earlier in this chunk) came from a different request than the claimed one:
    /// both fingerprints known, and different. Only duplicates that carry a fingerprint are
    /// looked up, so the usual batch, with no duplicates, costs no extra round trip.
    async fn reused_keys(
        &self,
        connection: &mut Transaction,
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
        let values: Vec<Value> = padded(keyed_duplicates.len())
            .map(|index| Value::Text(&self.ids[keyed_duplicates[index]]))
            .collect();
        let recorded: HashMap<String, String> = connection
            .rows::<(String, Option<String>)>(
                RECORDED.for_rows(keyed_duplicates.len(), self.placeholders),
                &values,
            )
            .await?
            .into_iter()
            .filter_map(|(id, fingerprint)| Some((id, fingerprint?)))
            .collect();
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
        connection: &mut Transaction,
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
        if candidates.is_empty() {
            return Ok(HashSet::new());
        }
        let mut values = Vec::with_capacity(10 * candidates.len().next_power_of_two());
        for index in padded(candidates.len()).map(|candidate| candidates[candidate]) {
            let (event, address) = (self.events[index], &self.events[index].new_address);
            values.extend([
                Value::Text(event.customer_id.as_str()),
                Value::Text(address.line1.as_str()),
                Value::OptionalText(address.line2.as_ref().map(AddressText::as_str)),
                Value::Text(address.town.as_str()),
                Value::Text(address.postcode.as_str()),
                Value::Text(address.country.as_str()),
                Value::Text(&self.dates[index]),
                Value::Integer(micros_since_epoch(event.occurred_at)),
                Value::Text(&self.ids[index]),
                Value::Text(&self.now),
            ]);
        }
        let became_current: Vec<String> = connection
            .column(
                UPSERT.for_rows(candidates.len(), self.placeholders),
                &values,
            )
            .await?;
        Ok(became_current.into_iter().collect())
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
        connection: &mut Transaction,
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
            let values: Vec<Value> = padded(superseded.len())
                .map(|index| Value::Text(superseded[index]))
                .collect();
            connection
                .execute(MARK.for_rows(superseded.len(), self.placeholders), &values)
                .await?;
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
