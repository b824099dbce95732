//! Confirm channels shared by all requests, each lent to one publish at a time.
//!
//! Why one message per channel at a time: RabbitMQ sends `basic.return` for an unroutable
//! mandatory message before the `basic.ack` that confirms it, and may confirm many messages
//! with one `multiple` ack. lapin hands the returned message to whichever pending confirm it
//! resolves first, which under concurrency can be another request's. With a single message
//! outstanding per channel, the return and the confirm on a channel can only be its own.

use lapin::{Channel, Connection, options::ConfirmSelectOptions};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
pub(super) struct ChannelPool {
    connection: Arc<Connection>,
    /// Open channels in confirm mode that are not lent to anyone.
    idle: Mutex<Vec<Channel>>,
    /// One permit per channel the pool may have open, so at most that many publishes await
    /// a confirm; the others queue here (within the publish timeout) instead of piling up
    /// on the broker.
    permits: Arc<Semaphore>,
}

/// A channel lent to one publish. Unless [`Lease::settled`] is called, the channel may
/// still owe a confirm for an abandoned message, so it is closed rather than reused.
#[derive(Debug)]
pub(super) struct Lease<'pool> {
    pool: &'pool ChannelPool,
    channel: Option<Channel>,
    settled: bool,
    _permit: OwnedSemaphorePermit,
}

impl ChannelPool {
    pub(super) fn new(connection: Arc<Connection>, size: usize) -> Self {
        Self {
            connection,
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: Arc::new(Semaphore::new(size)),
        }
    }

    /// Waits for a free channel, opening one if none is idle.
    pub(super) async fn lease(&self) -> Result<Lease<'_>, lapin::Error> {
        // The semaphore is never closed, so `acquire_owned` cannot fail.
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .unwrap_or_else(|_| unreachable!("the pool's semaphore is never closed"));
        let channel = match self.take_idle() {
            Some(channel) => channel,
            None => self.open().await?,
        };
        Ok(Lease {
            pool: self,
            channel: Some(channel),
            settled: false,
            _permit: permit,
        })
    }

    fn take_idle(&self) -> Option<Channel> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        // A channel closed by a channel-level error stays dead: drop it and open another.
        while let Some(channel) = idle.pop() {
            if channel.status().connected() {
                return Some(channel);
            }
        }
        None
    }

    async fn open(&self) -> Result<Channel, lapin::Error> {
        let channel = self.connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(channel)
    }

    fn give_back(&self, channel: Channel) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(channel);
    }
}

impl Lease<'_> {
    pub(super) fn channel(&self) -> &Channel {
        // Only `Drop` takes the channel out.
        self.channel
            .as_ref()
            .unwrap_or_else(|| unreachable!("a lease holds its channel until dropped"))
    }

    /// The message's confirm has arrived: nothing is outstanding on the channel any more.
    pub(super) fn settled(mut self) {
        self.settled = true;
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let Some(channel) = self.channel.take() else {
            return;
        };
        if self.settled && channel.status().connected() {
            self.pool.give_back(channel);
        } else if channel.status().connected() {
            // Abandoned mid-publish (timeout): a late confirm or return would be taken for
            // the next message's. Close it; the pool opens a fresh one when needed.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = channel.close(200, "abandoned publish".into()).await;
                });
            }
        }
    }
}
