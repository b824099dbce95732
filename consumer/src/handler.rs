//! Processing: decode each message and apply the changes to the store.

use crate::{
    outcome::{Outcome, Transient, Unappliable},
    store::{Applied, Store},
};
use shared::{domain::CustomerId, event::AddressChanged, sync_api::RecordedAs};
use std::sync::Arc;
use uuid::Uuid;

/// How one message was handled, with what the log line needs to say about it.
#[derive(Debug, Clone)]
pub struct Processed {
    pub outcome: Outcome,
    /// Known when the body decoded.
    pub event: Option<(Uuid, CustomerId)>,
}

/// Decodes and applies a batch of message bodies, returning one result per body, in order.
///
/// The batch is applied in one transaction (one commit for many messages). If that fails,
/// each change is tried on its own, so that one failing change cannot hold back the others.
pub async fn process(store: &Store, bodies: &[&[u8]]) -> Vec<Processed> {
    let decoded: Vec<Result<AddressChanged, String>> = bodies
        .iter()
        .map(|body| AddressChanged::from_json(body).map_err(|error| error.to_string()))
        .collect();
    let events: Vec<&AddressChanged> = decoded.iter().filter_map(|d| d.as_ref().ok()).collect();
    let mut outcomes = apply(store, &events).await.into_iter();

    decoded
        .iter()
        .map(|decoded| match decoded {
            Ok(event) => Processed {
                outcome: outcomes
                    .next()
                    .unwrap_or(Outcome::Retry(Transient::NoResult)),
                event: Some((event.event_id, event.customer_id.clone())),
            },
            Err(reason) => Processed {
                outcome: Outcome::DeadLetter(Unappliable::Undecodable(reason.clone())),
                event: None,
            },
        })
        .collect()
}

/// [`process`] for one body: the synchronous path's.
pub async fn process_one(store: &Store, body: &[u8]) -> Processed {
    process(store, &[body])
        .await
        .pop()
        .unwrap_or_else(|| unreachable!("process answers once per body"))
}

async fn apply(store: &Store, events: &[&AddressChanged]) -> Vec<Outcome> {
    if events.is_empty() {
        return Vec::new();
    }
    match store.apply(events).await {
        Ok(applied) => events
            .iter()
            .zip(applied)
            .map(|(event, applied)| settle(event, applied))
            .collect(),
        Err(batch_error) if events.len() > 1 => {
            tracing::warn!(error = %batch_error, batch = events.len(), "Batch failed; applying its changes one by one.");
            let mut outcomes = Vec::with_capacity(events.len());
            for event in events {
                outcomes.push(match store.apply(&[event]).await {
                    Ok(mut applied) => settle(event, applied.remove(0)),
                    Err(error) => Outcome::Retry(Transient::Store(Arc::new(error))),
                });
            }
            outcomes
        }
        Err(error) => vec![Outcome::Retry(Transient::Store(Arc::new(error))); events.len()],
    }
}

/// What the store's answer means for the message: a reused key is dead-lettered, the rest
/// is committed (or was already) and acked.
fn settle(event: &AddressChanged, applied: Applied) -> Outcome {
    match applied {
        Applied::KeyReused => Outcome::DeadLetter(Unappliable::KeyReused {
            event_id: event.event_id,
        }),
        Applied::Updated => Outcome::Ack(RecordedAs::Updated),
        Applied::Superseded => Outcome::Ack(RecordedAs::Superseded),
        Applied::Duplicate => Outcome::Ack(RecordedAs::Duplicate),
    }
}
