//! Which RabbitMQ the tests use: `AMQP_ADDR` if set, else one on 127.0.0.1:5672, else one
//! started in Docker with testcontainers (kept running and reused by later test runs).
//! `TEST_RABBITMQCTL` says how to run `rabbitmqctl` against a broker given by `AMQP_ADDR`
//! (e.g. `e2e/scripts/rabbitmq4.sh ctl` for the RabbitMQ 4 node that CI runs beside the
//! host's own).

use std::{
    net::TcpStream,
    process::Command,
    sync::{
        OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

const LOCAL_BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The container the tests start when there is no broker; reused until removed by hand.
const CONTAINER_NAME: &str = "change-of-circumstances-test-rabbitmq";
/// Set when the tests' broker is the container above, so `rabbitmqctl` runs inside it.
static IN_CONTAINER: AtomicBool = AtomicBool::new(false);

/// The management API of the tests' broker, from `TEST_MANAGEMENT_URL`
/// (`http://user:password@host:port`; `e2e/scripts/rabbitmq4.sh env` sets it), if it has one.
pub fn management_url() -> Option<String> {
    std::env::var("TEST_MANAGEMENT_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

/// The AMQP URI of the broker the tests run against. Panics, saying what to do, when there
/// is none to be had.
pub fn broker_uri() -> String {
    static URI: OnceLock<String> = OnceLock::new();
    URI.get_or_init(|| {
        if let Ok(uri) = std::env::var("AMQP_ADDR") {
            return uri;
        }
        if TcpStream::connect_timeout(
            &"127.0.0.1:5672".parse().unwrap_or_else(|_| unreachable!()),
            Duration::from_secs(1),
        )
        .is_ok()
        {
            return LOCAL_BROKER.to_owned();
        }
        // testcontainers' blocking runner cannot run inside the tests' tokio runtime.
        std::thread::spawn(start_container)
            .join()
            .unwrap_or_else(|_| panic!("starting the RabbitMQ container panicked"))
    })
    .clone()
}

fn start_container() -> String {
    use testcontainers::{
        GenericImage, ImageExt,
        core::{IntoContainerPort, WaitFor},
        runners::SyncRunner,
    };
    let started = GenericImage::new("rabbitmq", "3.13-management")
        .with_exposed_port(5672.tcp())
        .with_wait_for(WaitFor::message_on_stdout("Server startup complete"))
        .with_container_name(CONTAINER_NAME)
        .with_reuse(testcontainers::ReuseDirective::Always)
        .start();
    IN_CONTAINER.store(true, Ordering::Release);
    match started.and_then(|container| {
        let port = container.get_host_port_ipv4(5672)?;
        // Reused containers are not removed on drop; forgetting it keeps it for later tests.
        std::mem::forget(container);
        Ok(port)
    }) {
        Ok(port) => format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
        Err(error) => panic!(
            "\n\nThe integration tests need RabbitMQ, and none was found:\n\
             - AMQP_ADDR is not set,\n\
             - nothing answers on 127.0.0.1:5672,\n\
             - and Docker could not start one ({error}).\n\
             Start a broker (`rabbitmq-server -detached`, or \
             `docker run -d -p 5672:5672 rabbitmq:3.13-management`), or set AMQP_ADDR.\n\n"
        ),
    }
}

/// Runs `rabbitmqctl` against the tests' broker (inside its container when the tests
/// started one) and returns its standard output. Panics, saying why, if it fails: the
/// tests that use it inject faults from the broker's side and mean nothing without it.
pub fn rabbitmqctl(args: &[&str]) -> String {
    try_rabbitmqctl(args).unwrap_or_else(|error| panic!("{error}"))
}

/// [`rabbitmqctl`] that reports failure instead of panicking, for clean-up code.
pub fn try_rabbitmqctl(args: &[&str]) -> Result<String, String> {
    let mut command = if IN_CONTAINER.load(Ordering::Acquire) {
        let mut docker = Command::new("docker");
        docker.args(["exec", CONTAINER_NAME, "rabbitmqctl"]);
        docker
    } else if let Ok(given) = std::env::var("TEST_RABBITMQCTL") {
        // A command line split on spaces: its own arguments cannot contain any.
        let mut words = given.split_whitespace();
        let mut command = Command::new(words.next().unwrap_or("rabbitmqctl"));
        command.args(words);
        command
    } else {
        Command::new("rabbitmqctl")
    };
    let output = command.args(args).output().map_err(|error| {
        format!("cannot run rabbitmqctl {args:?} (it must be on PATH, and these tests run as a user allowed to use it): {error}")
    })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "rabbitmqctl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The tests' broker's RabbitMQ version, major and minor (`(4, 0)`), as its node reports it.
pub fn broker_version() -> (u32, u32) {
    static VERSION: OnceLock<(u32, u32)> = OnceLock::new();
    *VERSION.get_or_init(|| {
        let printed = rabbitmqctl(&["eval", "rabbit:product_version()."]);
        let mut parts = printed
            .trim()
            .trim_matches('"')
            .split('.')
            .map(str::parse::<u32>);
        match (parts.next(), parts.next()) {
            (Some(Ok(major)), Some(Ok(minor))) => (major, minor),
            _ => panic!("cannot read the broker's version from {printed:?}"),
        }
    })
}

/// The type (`quorum`, `classic`) of queue `name` in the default vhost, as the broker lists
/// it; `None` when there is no such queue.
pub fn queue_type(name: &str) -> Option<String> {
    rabbitmqctl(&["list_queues", "-q", "--no-table-headers", "name", "type"])
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .find(|(queue, _)| *queue == name)
        .map(|(_, kind)| kind.trim().to_owned())
}

/// The broker's ids (Erlang pids) of every open connection whose client-given name is
/// `name`. A reconnection shows as a new id.
pub fn connections_named(name: &str) -> Vec<String> {
    let listing = rabbitmqctl(&["list_connections", "-s", "pid", "client_properties"]);
    let quoted = format!("\"{name}\"");
    listing
        .lines()
        .filter(|line| line.contains(&quoted))
        .filter_map(|line| line.split('\t').next())
        .map(str::to_owned)
        .collect()
}

/// Closes, from the broker's side, every connection whose client-given name is `name`
/// (what an operator does with "Force Close" in the management UI). Returns how many were
/// closed.
pub fn close_connections_named(name: &str) -> usize {
    let pids = connections_named(name);
    for pid in &pids {
        rabbitmqctl(&[
            "close_connection",
            pid,
            "closed by a test, as by an operator",
        ]);
    }
    pids.len()
}
