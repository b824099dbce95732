//! The producer's metrics, beside the HTTP ones every service has (`shared::metrics`).

/// Messages written to the broker (each then gets exactly one of the three below, or fails).
pub const EVENTS_PUBLISHED: &str = "producer_events_published_total";
/// Acked by the broker: routed to a queue and stored. Only these get a 202.
pub const EVENTS_CONFIRMED: &str = "producer_events_confirmed_total";
/// Refused by the broker with `basic.nack` (a full queue, say).
pub const EVENTS_NACKED: &str = "producer_events_nacked_total";
/// Returned as unroutable: no queue is bound for the routing key.
pub const EVENTS_RETURNED: &str = "producer_events_returned_total";
/// Publishes that failed without a broker answer, by `reason`.
pub const PUBLISH_FAILURES: &str = "producer_publish_failures_total";
/// From publishing to the broker's answer.
pub const CONFIRM_DURATION: &str = "producer_publish_confirm_duration_seconds";
/// 1 while connected with the topology declared, else 0.
pub const BROKER_CONNECTED: &str = "producer_broker_connected";

/// Installs the process's recorder (if no service in this process did yet) and describes
/// this service's metrics. Call before anything is recorded.
pub fn install() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    shared::metrics::handle();
    describe_counter!(EVENTS_PUBLISHED, "Events written to the broker.");
    describe_counter!(
        EVENTS_CONFIRMED,
        "Events the broker confirmed (acked and routed)."
    );
    describe_counter!(EVENTS_NACKED, "Events the broker refused with basic.nack.");
    describe_counter!(EVENTS_RETURNED, "Events the broker returned as unroutable.");
    describe_counter!(
        PUBLISH_FAILURES,
        "Publishes that got no broker answer, by reason."
    );
    describe_histogram!(
        CONFIRM_DURATION,
        Unit::Seconds,
        "Time from publish to the broker's confirm."
    );
    describe_gauge!(
        BROKER_CONNECTED,
        "1 while connected to the broker with the topology declared."
    );
    shared::queue_stats::describe("producer");
}
