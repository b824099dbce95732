//! Whether a service can do its job right now: what `/readyz` reports.

use std::sync::Arc;
use tokio::sync::watch;

/// Shared between the task that owns the broker connection (which flips it) and the HTTP
/// handlers (which read it). Cloning shares the same state.
#[derive(Debug, Clone)]
pub struct Readiness {
    status: Arc<watch::Sender<Status>>,
    /// Problems that do not stop the service but need an operator (a queue declared
    /// earlier with other arguments); `/readyz` lists them.
    warnings: Arc<std::sync::Mutex<Vec<String>>>,
}

/// `Ready`, or why not, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ready,
    NotReady(String),
}

impl Readiness {
    pub fn new(initial_reason: impl Into<String>) -> Self {
        Self {
            status: Arc::new(watch::Sender::new(Status::NotReady(initial_reason.into()))),
            warnings: Arc::default(),
        }
    }

    pub fn set_ready(&self) {
        self.status.send_if_modified(|status| {
            let changed = *status != Status::Ready;
            *status = Status::Ready;
            changed
        });
    }

    pub fn set_not_ready(&self, reason: impl Into<String>) {
        self.status.send_replace(Status::NotReady(reason.into()));
    }

    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    pub fn is_ready(&self) -> bool {
        *self.status.borrow() == Status::Ready
    }

    pub fn set_warnings(&self, warnings: Vec<String>) {
        *self
            .warnings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = warnings;
    }

    pub fn warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Waits until the service is ready; for start-up code and tests.
    pub async fn wait_until_ready(&self) {
        let mut receiver = self.status.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = receiver.wait_for(|status| *status == Status::Ready).await;
    }
}
