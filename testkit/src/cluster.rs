//! The three-node RabbitMQ cluster of `e2e/scripts/rabbitmq4.sh cluster`, for the tests of
//! losing a node: where to find it, which node leads a queue or holds a connection, killing
//! a node for real (SIGKILL of its Erlang VM), cutting one off from the others (iptables
//! drops its distribution traffic), and making the cluster whole again. Every call runs the
//! script on a blocking thread, bounded in time: `rabbitmqctl` listings wait for every node,
//! so ask them while the cluster is whole.

use std::{process::Command, time::Duration};

/// Longest any one call to the cluster's script may take (a restart waits for the node to
/// boot and rejoin).
const SCRIPT_WITHIN: Duration = Duration::from_secs(120);

/// The cluster named by `TEST_CLUSTER_AMQP_ADDR`, `TEST_CLUSTER_NODES` and
/// `TEST_CLUSTER_SCRIPT` (`eval "$(e2e/scripts/rabbitmq4.sh cluster env)"`).
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Every node's AMQP URI, comma-separated: what `AMQP_ADDR` takes.
    pub amqp_addr: String,
    /// Node names, in the order of their AMQP ports (5681, 5682, …).
    pub nodes: Vec<String>,
    script: String,
}

impl Cluster {
    /// The cluster, or `None` with a notice when it is not configured; with
    /// `REQUIRE_CLUSTER_TESTS=1` (as CI sets it) a missing cluster fails the test instead.
    pub fn from_env() -> Option<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        match (
            var("TEST_CLUSTER_AMQP_ADDR"),
            var("TEST_CLUSTER_NODES"),
            var("TEST_CLUSTER_SCRIPT"),
        ) {
            (Some(amqp_addr), Some(nodes), Some(script)) => Some(Self {
                amqp_addr,
                nodes: nodes.split(',').map(str::to_owned).collect(),
                script,
            }),
            _ if var("REQUIRE_CLUSTER_TESTS").as_deref() == Some("1") => panic!(
                "REQUIRE_CLUSTER_TESTS=1 but no cluster is configured: run \
                 `e2e/scripts/rabbitmq4.sh cluster start` and \
                 `eval \"$(e2e/scripts/rabbitmq4.sh cluster env)\"`"
            ),
            _ => {
                eprintln!(
                    "skipped: no RabbitMQ cluster (TEST_CLUSTER_AMQP_ADDR); see e2e/scripts/rabbitmq4.sh"
                );
                None
            }
        }
    }

    /// `rabbitmqctl -n <node> args…`, on the first node that answers.
    pub async fn ctl(&self, args: &[&str]) -> String {
        let mut last = String::new();
        for node in &self.nodes {
            match self
                .run(&[&["ctl", "-n", node.as_str(), "-q"], args].concat())
                .await
            {
                Ok(output) => return output,
                Err(error) => last = error,
            }
        }
        panic!("no node of the cluster answered rabbitmqctl {args:?}: {last}")
    }

    /// The index (0-based) of the node that leads quorum queue `queue`.
    pub async fn leader_of(&self, queue: &str) -> usize {
        let listing = self
            .ctl(&["list_queues", "--no-table-headers", "name", "leader"])
            .await;
        let leader = listing
            .lines()
            .filter_map(|line| line.split_once('\t'))
            .find(|(name, _)| *name == queue)
            .map(|(_, leader)| leader.trim().to_owned())
            .unwrap_or_else(|| panic!("queue {queue} is not listed:\n{listing}"));
        self.index_of(&leader)
    }

    /// The index of the node holding the connection named `name` (by the port it reached),
    /// waiting (at most 30 s) for it to be listed: a service may be reconnecting.
    pub async fn node_of_connection(&self, name: &str) -> usize {
        let quoted = format!("\"{name}\"");
        let port: usize = crate::eventually(
            &format!("a connection named {name}"),
            Duration::from_secs(30),
            || async {
                let listing = self
                    .ctl(&[
                        "list_connections",
                        "--no-table-headers",
                        "port",
                        "client_properties",
                    ])
                    .await;
                listing
                    .lines()
                    .find(|line| line.contains(&quoted))
                    .and_then(|line| line.split('\t').next())
                    .and_then(|port| port.trim().parse().ok())
                    .ok_or(listing)
            },
        )
        .await;
        // The script's nodes listen on 5681, 5682, …
        port.checked_sub(5681)
            .filter(|index| *index < self.nodes.len())
            .unwrap_or_else(|| panic!("connection {name} is on port {port}, not a cluster node's"))
    }

    /// Kills node `index`'s Erlang VM with SIGKILL: the machine is lost, nothing is flushed.
    pub async fn kill(&self, index: usize) {
        let node = (index + 1).to_string();
        self.run(&["cluster", "kill", &node])
            .await
            .unwrap_or_else(|error| panic!("cannot kill node {node}: {error}"));
    }

    /// The AMQP URI of node `index` alone: what a client that knows only that node is given.
    pub fn node_uri(&self, index: usize) -> String {
        self.amqp_addr
            .split(',')
            .nth(index)
            .unwrap_or_else(|| panic!("the cluster has no node {index}"))
            .to_owned()
    }

    /// Cuts node `index` off from the other nodes: nothing passes between them, while
    /// clients still reach every node. The node sees it is in a minority and pauses.
    pub async fn partition(&self, index: usize) {
        let node = (index + 1).to_string();
        self.run(&["cluster", "partition", &node])
            .await
            .unwrap_or_else(|error| panic!("cannot cut node {node} off: {error}"));
    }

    /// Heals any partition, starts every node that is down and waits until all are back in
    /// the cluster.
    pub async fn restore(&self) {
        self.run(&["cluster", "start"])
            .await
            .unwrap_or_else(|error| panic!("cannot start the cluster: {error}"));
    }

    /// [`Self::restore`] for `Drop` implementations, which cannot await.
    pub fn restore_blocking(&self) {
        if let Err(error) = run_script(&self.script, &["cluster", "start"]) {
            eprintln!("could not restart the cluster's nodes: {error}");
        }
    }

    fn index_of(&self, node: &str) -> usize {
        self.nodes
            .iter()
            .position(|name| name == node)
            .unwrap_or_else(|| panic!("{node} is not a node of {:?}", self.nodes))
    }

    async fn run(&self, args: &[&str]) -> Result<String, String> {
        let script = self.script.clone();
        let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_script(&script, &args)
        })
        .await
        .unwrap_or_else(|error| Err(format!("the script's thread failed: {error}")))
    }
}

/// Runs the cluster script with `args`, killed if it takes longer than [`SCRIPT_WITHIN`].
fn run_script(script: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new("timeout")
        .arg(SCRIPT_WITHIN.as_secs().to_string())
        .arg(script)
        .args(args)
        .output()
        .map_err(|error| format!("cannot run {script}: {error}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{script} {args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}
