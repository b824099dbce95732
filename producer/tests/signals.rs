//! The producer as a real process, sent SIGTERM under load: every change it answered 202
//! for is in the queue.

use futures_util::StreamExt;
use nix::sys::signal::Signal;
use reqwest::StatusCode;
use std::{collections::HashSet, sync::Arc, time::Duration};
use testkit::{TestEnv, change_of_address, eventually, process::ServiceProcess};
use tokio::sync::Mutex;

const PRODUCER: &str = env!("CARGO_BIN_EXE_producer");

#[tokio::test]
async fn sigterm_to_the_producer_under_load_loses_nothing_that_got_202() {
    let env = TestEnv::new().await;
    let producer = ServiceProcess::start(PRODUCER, &env.producer_env()).await;
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let http = reqwest::Client::new();

    // 32 clients post as fast as they can; SIGTERM lands once 300 changes are accepted.
    let load = futures_util::stream::iter(0..100_000)
        .map(|i| {
            let (http, url, accepted) = (http.clone(), producer.url.clone(), Arc::clone(&accepted));
            async move {
                let response = http
                    .post(format!("{url}/api/v1/address-changes"))
                    .json(&change_of_address(&format!("C-{i}"), "PR1 2HE"))
                    .send()
                    .await;
                match response {
                    Ok(response) if response.status() == StatusCode::ACCEPTED => {
                        let body: producer::routes::Accepted = response.json().await.unwrap();
                        accepted.lock().await.push(body.event_id);
                        true
                    }
                    Ok(response) => {
                        assert_eq!(
                            response.status(),
                            StatusCode::SERVICE_UNAVAILABLE,
                            "only 202 or 503"
                        );
                        false
                    }
                    Err(_) => false, // the listener is closed: the producer is going away
                }
            }
        })
        .buffer_unordered(32)
        .take_while(|ok| std::future::ready(*ok))
        .for_each(|_| async {});
    let terminate = async {
        eventually("300 accepted changes", Duration::from_secs(30), || async {
            let n = accepted.lock().await.len();
            if n >= 300 { Ok(()) } else { Err(n) }
        })
        .await;
        producer.signal(Signal::SIGTERM);
    };
    tokio::join!(load, terminate);
    assert!(
        producer.exited(Duration::from_secs(15)).await.success(),
        "a clean exit within the grace period"
    );

    let accepted: HashSet<uuid::Uuid> = accepted.lock().await.iter().copied().collect();
    let mut queued = HashSet::new();
    while let Some(message) = env.take_message(&env.queue).await {
        let id = shared::message::message_id(&message.properties).unwrap_or_default();
        queued.insert(uuid::Uuid::parse_str(id).unwrap());
    }
    let lost: Vec<_> = accepted.difference(&queued).collect();
    assert!(
        lost.is_empty(),
        "{} of {} accepted changes are not in the queue: {lost:?}",
        lost.len(),
        accepted.len()
    );
}
