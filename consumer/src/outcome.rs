//! The three ways a delivery can end, and the one function that tells the broker.

use crate::store::Applied;
use lapin::{
    message::Delivery,
    options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions},
};

/// What should happen to a delivery after processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The change is committed (or was already): remove the message from the queue.
    Ack(Applied),
    /// Processing failed for a reason that may pass (database unavailable): deliver again
    /// later.
    Retry(String),
    /// The message can never be applied (not JSON, unknown schema version, invalid): take
    /// it out of the flow so the rest of the queue keeps moving.
    DeadLetter(String),
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Ack(applied) => applied.as_str(),
            Self::Retry(_) => "retry",
            Self::DeadLetter(_) => "dead-lettered",
        }
    }
}

/// Tells the broker how `delivery` ended. Nothing else acks, nacks or rejects.
pub async fn settle(delivery: &Delivery, outcome: &Outcome) -> Result<(), lapin::Error> {
    match outcome {
        Outcome::Ack(_) => delivery.ack(BasicAckOptions::default()).await?,
        Outcome::Retry(_) => {
            delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await?
        }
        Outcome::DeadLetter(_) => {
            delivery
                .reject(BasicRejectOptions { requeue: false })
                .await?
        }
    };
    Ok(())
}
