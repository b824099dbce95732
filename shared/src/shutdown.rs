//! One shutdown design for both services: SIGINT or SIGTERM cancels a token, and every
//! long-running part (HTTP server, publisher, consumer) watches that token.

use std::{future::Future, time::Duration};
use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGINT (Ctrl-C) or SIGTERM (`docker stop`, systemd).
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("Shutdown signal received; finishing in-flight work.");
        cancel.cancel();
    });
    token
}

/// Runs `work` (a service draining after `shutdown`) to its end, or until `grace` has passed
/// since `shutdown` was cancelled, whichever comes first: `None` when the grace ran out and
/// the work was dropped unfinished.
pub async fn within_grace<T>(
    work: impl Future<Output = T>,
    shutdown: &CancellationToken,
    grace: Duration,
) -> Option<T> {
    tokio::select! {
        done = work => Some(done),
        () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => None,
    }
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut interrupt), Ok(mut terminate)) => {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
        _ => {
            tracing::error!("Cannot install signal handlers; only Ctrl-C will stop the service.");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
