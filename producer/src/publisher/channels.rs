//! The confirm channels all requests share, with many publishes in flight on each.
//!
//! A request's confirm is matched to its publish by delivery tag, which lapin assigns when
//! the publish is registered. Registering and queueing a publish's frames are two steps in
//! lapin 4.12 (both in the first poll of `basic_publish`, so a dropped future never leaves
//! one without the other), and two publishes racing on one channel could swap tags and so
//! swap confirms: each channel therefore takes one publish at a time for that first poll.
//! The waits that follow, for lapin's I/O thread to write the frames and for the broker's
//! confirms, overlap freely. (Unroutable messages come back as `basic.nack`s through the
//! exchange's alternate exchange, not as `basic.return`s, which lapin could not attribute
//! to the right publish once several are in flight.)

use lapin::{
    BasicProperties, Channel, Connection, PublisherConfirm, options::ConfirmSelectOptions,
};
use std::{
    future::{Future, poll_fn},
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::Poll,
};
use tokio::sync::Mutex;

#[derive(Debug)]
pub(super) struct ConfirmChannels {
    connection: Arc<Connection>,
    /// Each slot is one channel in confirm mode, opened on first use and reopened after a
    /// channel-level error closes it. The lock is held only for a publish's first poll.
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
        let publish = channel.basic_publish(
            exchange.into(),
            routing_key.into(),
            shared::message::MANDATORY,
            body,
            properties,
        );
        let mut publish = pin!(publish);
        // Only the first poll needs the channel to itself: it registers the delivery tag and
        // queues the frames. The rest is the wait for lapin's I/O thread to write them,
        // during which other publishes may go ahead (holding the lock through it serialised
        // a channel's publishes on that thread's round trips).
        let first = poll_fn(|cx| Poll::Ready(publish.as_mut().poll(cx))).await;
        drop(open);
        match first {
            Poll::Ready(written) => written,
            Poll::Pending => publish.await,
        }
    }
}
