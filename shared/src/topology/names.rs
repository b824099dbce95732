//! The names a topology derives from its exchange and its work queue: every service, and
//! every operator, finds the same object under the same name without configuring it.

use super::{Topology, WorkQueue};
use std::time::Duration;

impl WorkQueue {
    /// Where messages that can never be applied wait for a person: `<queue>.dlq`.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dlq", self.name)
    }

    /// Where a message waits `delay` before going back to the work queue.
    pub fn retry_queue(&self, delay: Duration) -> String {
        format!("{}.retry.{}ms", self.name, delay.as_millis())
    }
}

impl Topology {
    /// The alternate exchange that refuses what nothing else is bound for.
    pub fn unroutable_exchange(&self) -> String {
        format!("{}.unroutable", self.exchange)
    }

    /// The alternate exchange's only queue (zero-length, refusing): named like it.
    pub fn unroutable_queue(&self) -> String {
        self.unroutable_exchange()
    }

    /// What every topology on this exchange shares: the exchange itself and its alternate
    /// exchange (and [`Self::unroutable_queue`]).
    pub fn shared_exchange_names(&self) -> [String; 2] {
        [self.exchange.clone(), self.unroutable_exchange()]
    }

    /// This topology's own queues (work queue, dead letters, retries): what to delete to
    /// remove this consumer's part. The shared names are [`Self::shared_exchange_names`].
    pub fn queue_names(&self) -> Vec<String> {
        let mut names = vec![self.queue.name.clone()];
        if !self.retry_delays.is_empty() {
            names.push(self.queue.dead_letter_queue());
            names.extend(
                self.retry_delays
                    .iter()
                    .map(|delay| self.queue.retry_queue(*delay)),
            );
        }
        names
    }
}
