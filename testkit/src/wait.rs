//! Waiting for an outcome with a deadline: the tests' only way to wait.

use std::{fmt::Debug, future::Future, time::Duration};

/// Polls `check` every 50 ms until it returns `Some`, and returns that. Panics with
/// `what` and the last value seen if `within` passes first.
pub async fn eventually<T, L, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, L>>,
    L: Debug,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if tokio::time::Instant::now() >= deadline => {
                panic!("timed out after {within:?} waiting for {what}; last seen: {last:?}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Runs `cleanup` to completion on a thread with a runtime of its own, for `Drop`
/// implementations: they cannot await, and may run inside the test's runtime, where
/// blocking on another future would panic. Best effort: a failure to start is ignored.
pub fn block_on_own_thread<F>(cleanup: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let _ = std::thread::spawn(move || {
        if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            runtime.block_on(cleanup);
        }
    })
    .join();
}
