//! How full the queues are, sampled from the broker once a second: for the producer's live
//! queue view and for both services' queue-depth gauges.
//!
//! The depth and the consumers always come from a passive `queue.declare` on the
//! sampler's own connection: the broker answers with the queue's state at that moment.
//! With `MANAGEMENT_URL` the sampler also asks the management HTTP API for what only it
//! knows: messages delivered but not yet acked, and the rates at which messages come in and
//! go out. Those figures are the broker's statistics, refreshed every
//! `collect_statistics_interval` (5 s by default), so they trail the depth; the depth
//! itself is never read from them.
//!
//! The watch keeps the last [`HISTORY_LEN`] samples of each queue's depth, so that a page
//! opened after the queue filled still shows it filling.

use crate::amqp::{BrokerAddress, Reconnector};
use crate::topology::inspect_queue;
use lapin::{Channel, Connection};
use serde::Serialize;
use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, RwLock},
    time::Duration,
};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// How many samples of each queue's depth a watch keeps: 15 minutes at one a second.
pub const HISTORY_LEN: usize = 900;

/// One queue at one moment. What the source cannot tell is `None`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueStats {
    pub name: String,
    /// False when the queue does not exist (yet).
    pub exists: bool,
    pub messages_ready: Option<u64>,
    pub messages_unacked: Option<u64>,
    pub consumers: Option<u64>,
    /// Messages published into the queue per second, as the management UI shows it.
    pub publish_rate: Option<f64>,
    /// Messages delivered to consumers (or fetched) per second.
    pub deliver_rate: Option<f64>,
}

impl QueueStats {
    fn missing(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            exists: false,
            messages_ready: None,
            messages_unacked: None,
            consumers: None,
            publish_rate: None,
            deliver_rate: None,
        }
    }
}

/// The latest sample of every watched queue.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    #[serde(with = "time::serde::rfc3339::option")]
    pub sampled_at: Option<OffsetDateTime>,
    /// `amqp` or `management`: which source answered.
    pub source: &'static str,
    pub queues: Vec<QueueStats>,
}

/// Where the numbers come from.
#[derive(Debug, Clone)]
pub struct Source {
    /// Passive declares go here, on a connection of the sampler's own, named so.
    pub broker: BrokerAddress,
    pub connection_name: String,
    /// The management API, when configured, for the unacked count and the rates.
    pub management: Option<Management>,
}

/// `GET <url>/api/queues/<vhost>/<queue>` of the management plugin; the URL carries the
/// credentials (`http://user:password@host:15672`).
#[derive(Debug, Clone)]
pub struct Management {
    pub url: String,
    pub vhost: String,
}

/// The messages ready in each queue at one moment (queues that do not exist are left out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DepthSample {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub ready: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
struct Watched {
    latest: Snapshot,
    history: VecDeque<DepthSample>,
}

impl Watched {
    fn record(&mut self, snapshot: Snapshot) {
        if let Some(at) = snapshot.sampled_at {
            if self.history.len() == HISTORY_LEN {
                self.history.pop_front();
            }
            self.history.push_back(DepthSample {
                at,
                ready: snapshot
                    .queues
                    .iter()
                    .filter_map(|queue| Some((queue.name.clone(), queue.messages_ready?)))
                    .collect(),
            });
        }
        self.latest = snapshot;
    }
}

/// A handle on the latest snapshot and the depths before it; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct QueueWatch(Arc<RwLock<Watched>>);

impl QueueWatch {
    pub fn latest(&self) -> Snapshot {
        self.read().latest.clone()
    }

    /// The depths sampled so far, oldest first: at most [`HISTORY_LEN`].
    pub fn history(&self) -> Vec<DepthSample> {
        self.read().history.iter().cloned().collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Watched> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn record(&self, snapshot: Snapshot) {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .record(snapshot);
    }
}

/// The metric names `describe` registers for `service`; the gauges are labelled by queue.
fn gauge_names(service: &str) -> (String, String) {
    (
        format!("{service}_queue_messages"),
        format!("{service}_queue_consumers"),
    )
}

pub fn describe(service: &str) {
    let (messages, consumers) = gauge_names(service);
    metrics::describe_gauge!(
        messages,
        "Messages in a watched queue, by queue and state (ready, unacked)."
    );
    metrics::describe_gauge!(consumers, "Consumers of a watched queue.");
}

/// What samples the watched queues, built with the service and started when it runs.
#[derive(Debug)]
pub struct Sampler {
    pub service: &'static str,
    pub source: Source,
    pub queues: Vec<String>,
    pub every: Duration,
    watch: QueueWatch,
}

impl Sampler {
    pub fn new(
        service: &'static str,
        source: Source,
        queues: Vec<String>,
        every: Duration,
    ) -> Self {
        Self {
            service,
            source,
            queues,
            every,
            watch: QueueWatch::default(),
        }
    }

    /// Where the samples will appear; empty until the sampler runs.
    pub fn watch(&self) -> QueueWatch {
        self.watch.clone()
    }

    /// Samples every `every` until `stop`, publishing each snapshot to the watch and to the
    /// `<service>_queue_messages` / `<service>_queue_consumers` gauges.
    pub fn spawn(self, stop: CancellationToken) {
        tokio::spawn(async move {
            sample(
                self.service,
                self.source,
                &self.queues,
                self.every,
                &self.watch,
                &stop,
            )
            .await;
        });
    }
}

async fn sample(
    service: &'static str,
    source: Source,
    queues: &[String],
    every: Duration,
    latest: &QueueWatch,
    stop: &CancellationToken,
) {
    let management = source.management.map(ManagementApi::new);
    let label = if management.is_some() {
        "amqp+management"
    } else {
        "amqp"
    };
    let mut reconnector = Reconnector::new(
        source.broker,
        source.connection_name,
        Duration::from_secs(30),
    );
    while let Some(connection) = reconnector.connect(stop).await {
        let mut channel: Option<Channel> = None;
        while connection.status().connected() {
            let mut stats = Vec::with_capacity(queues.len());
            for name in queues {
                let declared = declare_passively(&connection, &mut channel, name).await;
                stats.push(match &management {
                    Some(api) => api.add_to(declared).await,
                    None => declared,
                });
            }
            publish(service, latest, label, stats);
            tokio::select! {
                () = stop.cancelled() => {
                    crate::amqp::close(&connection, "sampler stopping").await;
                    return;
                }
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}

/// A passive declare of a missing queue closes the channel it ran on: the next one opens
/// a fresh channel.
async fn declare_passively(
    connection: &Connection,
    channel: &mut Option<Channel>,
    name: &str,
) -> QueueStats {
    let missing = QueueStats::missing(name);
    if channel.as_ref().is_none_or(|c| !c.status().connected()) {
        *channel = connection.create_channel().await.ok();
    }
    let Some(open) = channel.as_ref() else {
        return missing;
    };
    match inspect_queue(open, name).await {
        Ok(queue) => QueueStats {
            name: name.to_owned(),
            exists: true,
            messages_ready: Some(u64::from(queue.message_count())),
            messages_unacked: None,
            consumers: Some(u64::from(queue.consumer_count())),
            publish_rate: None,
            deliver_rate: None,
        },
        Err(_) => missing,
    }
}

struct ManagementApi {
    http: reqwest::Client,
    base: String,
    vhost: String,
}

impl ManagementApi {
    fn new(management: Management) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap_or_default(),
            base: management.url.trim_end_matches('/').to_owned(),
            vhost: management.vhost,
        }
    }

    /// `declared` with the unacked count and the rates, when the API answers for it.
    async fn add_to(&self, declared: QueueStats) -> QueueStats {
        if !declared.exists {
            return declared;
        }
        let endpoint = format!(
            "{}/api/queues/{}/{}",
            self.base,
            percent_encode(&self.vhost),
            percent_encode(&declared.name)
        );
        let found: Option<serde_json::Value> = match self.http.get(&endpoint).send().await {
            Ok(response) if response.status().is_success() => response.json().await.ok(),
            _ => None,
        };
        match found {
            Some(queue) => with_management(declared, &queue),
            None => declared,
        }
    }
}

/// `declared` with what `GET /api/queues/<vhost>/<name>` adds. A queue nothing has passed
/// through yet has no `message_stats`: its rates are 0.
fn with_management(declared: QueueStats, queue: &serde_json::Value) -> QueueStats {
    let rate = |stat: &str| {
        Some(
            queue["message_stats"][stat]["rate"]
                .as_f64()
                .unwrap_or_default(),
        )
    };
    QueueStats {
        messages_unacked: queue["messages_unacknowledged"].as_u64(),
        publish_rate: rate("publish_details"),
        deliver_rate: rate("deliver_get_details"),
        ..declared
    }
}

fn publish(service: &str, latest: &QueueWatch, source: &'static str, queues: Vec<QueueStats>) {
    let (messages, consumers) = gauge_names(service);
    for queue in &queues {
        let gauges = [
            (&messages, "ready", queue.messages_ready),
            (&messages, "unacked", queue.messages_unacked),
        ];
        for (name, state, value) in gauges {
            if let Some(value) = value {
                metrics::gauge!(name.clone(), "queue" => queue.name.clone(), "state" => state)
                    .set(value as f64);
            }
        }
        if let Some(value) = queue.consumers {
            metrics::gauge!(consumers.clone(), "queue" => queue.name.clone()).set(value as f64);
        }
    }
    latest.record(Snapshot {
        sampled_at: Some(OffsetDateTime::now_utc()),
        source,
        queues,
    });
}

/// Percent-encodes everything but RFC 3986's unreserved characters (the vhost `/` → `%2F`).
fn percent_encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vhosts_and_queue_names_are_percent_encoded() {
        assert_eq!(percent_encode("/"), "%2F");
        assert_eq!(
            percent_encode("change-of-circumstances.dlq"),
            "change-of-circumstances.dlq"
        );
        assert_eq!(percent_encode("a b"), "a%20b");
    }

    fn sample(second: i64, ready: Option<u64>) -> Snapshot {
        Snapshot {
            sampled_at: Some(OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(second)),
            source: "amqp",
            queues: vec![
                QueueStats {
                    messages_ready: ready,
                    exists: ready.is_some(),
                    ..QueueStats::missing("work")
                },
                QueueStats::missing("not-declared"),
            ],
        }
    }

    #[test]
    fn the_history_keeps_the_latest_samples_oldest_first_and_no_more() {
        let watch = QueueWatch::default();
        assert!(watch.history().is_empty());
        for second in 0..HISTORY_LEN as i64 + 5 {
            watch.record(sample(second, u64::try_from(second).ok()));
        }

        let history = watch.history();
        assert_eq!(history.len(), HISTORY_LEN);
        assert_eq!(history[0].ready["work"], 5, "the five oldest were dropped");
        assert_eq!(
            history[HISTORY_LEN - 1].ready["work"],
            HISTORY_LEN as u64 + 4
        );
        assert!(history.windows(2).all(|pair| pair[0].at < pair[1].at));
        assert!(
            !history[0].ready.contains_key("not-declared"),
            "a queue that does not exist has no depth"
        );
    }

    fn declared(ready: u64, consumers: u64) -> QueueStats {
        QueueStats {
            exists: true,
            messages_ready: Some(ready),
            consumers: Some(consumers),
            ..QueueStats::missing("work")
        }
    }

    #[test]
    fn the_management_api_adds_the_unacked_count_and_rates_but_never_the_depth() {
        // The API's figures trail the broker: its depth (7) is older than the declare's (9).
        let busy = serde_json::json!({
            "messages_ready": 7, "messages_unacknowledged": 2, "consumers": 1,
            "message_stats": {"publish_details": {"rate": 12.5}, "deliver_get_details": {"rate": 3.0}}
        });
        let stats = with_management(declared(9, 3), &busy);
        assert_eq!(
            (
                stats.messages_ready,
                stats.messages_unacked,
                stats.consumers
            ),
            (Some(9), Some(2), Some(3))
        );
        assert_eq!(
            (stats.publish_rate, stats.deliver_rate),
            (Some(12.5), Some(3.0))
        );

        let idle =
            serde_json::json!({"messages_ready": 0, "messages_unacknowledged": 0, "consumers": 0});
        let stats = with_management(declared(0, 0), &idle);
        assert_eq!(
            (stats.publish_rate, stats.deliver_rate),
            (Some(0.0), Some(0.0))
        );
    }
}
