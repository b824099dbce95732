//! Integration tests of the producer, the consumer and both together, against a real
//! RabbitMQ. One binary, so the services' crates are linked once; each test isolates itself
//! with its own exchange and queues (see `e2e::TestEnv`) and the tests run in parallel.

mod consumer_applies;
mod end_to_end;
mod failures;
mod idempotency;
mod observability;
mod patterns;
mod producer_accepts;
mod producer_refuses;
mod queue_types;
