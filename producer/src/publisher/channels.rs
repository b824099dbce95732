//! The confirm channels all requests share, with many publishes in flight on each.
//!
//! A request's confirm is matched to its publish by delivery tag, which lapin assigns when
//! the publish is registered. Registering and queueing a publish's frames are two steps in
//! lapin 4.12 (both in the first poll of `basic_publish`, so a dropped future never leaves
//! one without the other), and two publishes racing on one channel could swap tags and so
//! swap confirms: each channel therefore takes one publish at a time for the moment it is
//! written, while the waits for confirms overlap freely. (Unroutable messages come back as `basic.nack`s
//! through the exchange's alternate exchange, not as `basic.return`s, which lapin could
//! not attribute to the right publish once several are in flight.)

use lapin::{
    BasicProperties, Channel, Connection, PublisherConfirm,
    options::{BasicPublishOptions, ConfirmSelectOptions},
};
use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};
use tokio::sync::Mutex;

#[derive(Debug)]
pub(super) struct ConfirmChannels {
    connection: Arc<Connection>,
    /// Each slot is one channel in confirm mode, opened on first use and reopened after a
    /// channel-level error closes it. The lock is held only while a publish is written.
    slots: Vec<Mutex<Option<Channel>>>,
    /// Spreads the requests over the slots in turn.
    next: AtomicUsize,
}

impl ConfirmChannels {
    pub(super) fn new(connection: Arc<Connection>, count: usize) -> Self {
        Self {
            connection,
            slots: (0..count.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// Writes one message (mandatory, so that even a broken alternate exchange cannot
    /// drop it silently) and returns the future of its confirm.
    pub(super) async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<PublisherConfirm, lapin::Error> {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        let mut open = slot.lock().await;
        let channel = match open.as_ref().filter(|channel| channel.status().connected()) {
            Some(channel) => channel.clone(),
            None => {
                let channel = self.connection.create_channel().await?;
                channel
                    .confirm_select(ConfirmSelectOptions::default())
                    .await?;
                *open = Some(channel.clone());
                channel
            }
        };
        channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body,
                properties,
            )
            .await
    }
}
