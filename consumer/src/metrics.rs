//! The consumer's metrics, beside the HTTP ones every service has (`shared::metrics`).

/// Deliveries taken from the queue (redeliveries included).
pub const DELIVERIES_RECEIVED: &str = "consumer_deliveries_received_total";
/// Deliveries acked after their change was committed, by `outcome` (updated, superseded,
/// duplicate).
pub const DELIVERIES_ACKED: &str = "consumer_deliveries_acked_total";
/// Deliveries sent to a retry queue after a passing failure.
pub const DELIVERIES_RETRIED: &str = "consumer_deliveries_retried_total";
/// Deliveries sent to the dead-letter queue, by `reason`: `invalid_event` (it can never be
/// read), `idempotency_key_reused` (its id was applied from a different request) or
/// `gave_up` (it failed `MAX_ATTEMPTS` times).
pub const DELIVERIES_DEAD_LETTERED: &str = "consumer_deliveries_dead_lettered_total";
/// Time to decode, apply and commit a batch, recorded once per message in it.
pub const PROCESSING_DURATION: &str = "consumer_processing_duration_seconds";
/// 1 while subscribed to the queue, else 0.
pub const BROKER_CONNECTED: &str = "consumer_broker_connected";

/// Installs the process's recorder (if no service in this process did yet) and describes
/// this service's metrics. Call before anything is recorded.
pub fn install() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    shared::metrics::handle();
    describe_counter!(DELIVERIES_RECEIVED, "Deliveries received from the queue.");
    describe_counter!(
        DELIVERIES_ACKED,
        "Deliveries acked after their change was committed, by outcome."
    );
    describe_counter!(DELIVERIES_RETRIED, "Deliveries sent to a retry queue.");
    describe_counter!(
        DELIVERIES_DEAD_LETTERED,
        "Deliveries sent to the dead-letter queue, by reason."
    );
    describe_histogram!(
        PROCESSING_DURATION,
        Unit::Seconds,
        "Time to decode, apply and commit a message's batch."
    );
    describe_gauge!(BROKER_CONNECTED, "1 while subscribed to the queue.");
    shared::queue_stats::describe("consumer");
}
