//! Faults injected for real: the consumer's own database refusing a customer's changes, a
//! dead network path to the broker, and a queue that refuses what is published to it.

use sqlx::{Executor, SqlitePool};

/// While it exists, every attempt to apply a change for one customer (or for every
/// customer) fails inside the consumer's SQLite database (a trigger aborts the insert), as a
/// failing disk or a locked table would make it fail.
#[derive(Debug)]
pub struct StoreFault {
    pool: SqlitePool,
    trigger: String,
}

impl StoreFault {
    pub async fn reject_changes_for(database_url: &str, customer_id: &str) -> Self {
        // The id is a test constant made of letters, digits and '-'.
        Self::install(
            database_url,
            &format!("fault_{}", customer_id.replace('-', "_")),
            &format!("NEW.customer_id = '{customer_id}'"),
            &format!("the store refuses {customer_id}"),
        )
        .await
    }

    /// Every change fails until healed: each one waits in the retry queues, again and again.
    pub async fn reject_every_change(database_url: &str) -> Self {
        Self::install(
            database_url,
            "fault_every_change",
            "1",
            "the store refuses every change",
        )
        .await
    }

    async fn install(database_url: &str, trigger: &str, condition: &str, message: &str) -> Self {
        let pool = SqlitePool::connect(database_url)
            .await
            .unwrap_or_else(|error| panic!("cannot open the consumer's database: {error}"));
        let sql = format!(
            "CREATE TRIGGER {trigger} BEFORE INSERT ON applied_events WHEN {condition} \
             BEGIN SELECT RAISE(ABORT, 'injected fault: {message}'); END;"
        );
        pool.execute(sqlx::AssertSqlSafe(sql))
            .await
            .unwrap_or_else(|error| panic!("cannot install the fault: {error}"));
        Self {
            pool,
            trigger: trigger.to_owned(),
        }
    }

    /// Removes the fault: the next attempt succeeds.
    pub async fn heal(self) {
        let sql = format!("DROP TRIGGER {}", self.trigger);
        self.pool
            .execute(sqlx::AssertSqlSafe(sql))
            .await
            .unwrap_or_else(|error| panic!("cannot remove the fault: {error}"));
        self.pool.close().await;
    }
}

/// While it exists, the consumer's SQLite database is locked for writing (a transaction of
/// the test's holds it), so the consumer's next commit waits in SQLite's busy handler, as it
/// would behind a long write of another process. Tests use it to hold a batch in the store
/// while more deliveries arrive, so that they reach the consumer together.
#[derive(Debug)]
pub struct StoreWriteLock {
    connection: sqlx::pool::PoolConnection<sqlx::Sqlite>,
    pool: SqlitePool,
}

impl StoreWriteLock {
    pub async fn take(database_url: &str) -> Self {
        let pool = SqlitePool::connect(database_url)
            .await
            .unwrap_or_else(|error| panic!("cannot open the consumer's database: {error}"));
        let mut connection = pool.acquire().await.unwrap();
        connection
            .execute("BEGIN IMMEDIATE")
            .await
            .unwrap_or_else(|error| panic!("cannot lock the consumer's database: {error}"));
        Self { connection, pool }
    }

    /// Ends the transaction: the waiting commit goes ahead.
    pub async fn release(mut self) {
        self.connection
            .execute("ROLLBACK")
            .await
            .unwrap_or_else(|error| panic!("cannot unlock the consumer's database: {error}"));
        drop(self.connection);
        self.pool.close().await;
    }
}

/// A TCP proxy in front of the broker that can go silent: while frozen it forwards
/// nothing, in either direction, but keeps every connection open — a dead network path,
/// which only heartbeats can reveal.
#[derive(Debug)]
pub struct SilentLink {
    /// Where clients connect instead of the broker.
    pub addr: std::net::SocketAddr,
    frozen: tokio::sync::watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl SilentLink {
    pub async fn start(broker: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|error| panic!("cannot bind the proxy: {error}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|error| panic!("{error}"));
        let (frozen, watching) = tokio::sync::watch::channel(false);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let watching = watching.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(broker).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        forward(client_read, server_write, watching.clone()),
                        forward(server_read, client_write, watching),
                    );
                });
            }
        });
        Self {
            addr,
            frozen,
            accept,
        }
    }

    /// From now on, nothing gets through.
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Traffic flows again (for new connections and any old one still open).
    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }
}

impl Drop for SilentLink {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let Ok(read) = from.read(&mut buffer).await else {
            return;
        };
        if read == 0 {
            return;
        }
        // Held, not dropped, while frozen: a silent path loses nothing, it just says nothing.
        if frozen.wait_for(|frozen| !frozen).await.is_err() {
            return;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

/// While it exists, a queue holds at most `max_length` messages and the broker refuses
/// (nacks) any publish beyond that: a full dead-letter or retry queue, set by a broker
/// policy as an operator would. Removed on drop.
#[derive(Debug)]
pub struct FullQueue {
    policy: String,
    vhost: String,
}

impl FullQueue {
    /// `queue` in the test's virtual host, holding at most `max_length` (at least 1) ready
    /// messages. A quorum queue refuses a publish only once it holds *more* than its
    /// policy's limit, so its limit is set one lower.
    pub fn at_most(env: &crate::TestEnv, queue: &str, max_length: u32) -> Self {
        let vhost = env.broker_config().amqp_addr.vhost().to_owned();
        let policy = format!("{queue}.full");
        let pattern = format!("^{}$", regex_escape(queue));
        let max_length = match crate::broker::queue_type(queue).as_deref() {
            Some("quorum") => max_length.saturating_sub(1),
            _ => max_length,
        };
        let definition = format!(r#"{{"max-length":{max_length},"overflow":"reject-publish"}}"#);
        crate::broker::rabbitmqctl(&[
            "set_policy",
            "-p",
            &vhost,
            "--apply-to",
            "queues",
            "--priority",
            "10",
            &policy,
            &pattern,
            &definition,
        ]);
        Self { policy, vhost }
    }
}

impl Drop for FullQueue {
    fn drop(&mut self) {
        // Not the panicking helper: this may run while a failed test unwinds.
        if let Err(error) =
            crate::broker::try_rabbitmqctl(&["clear_policy", "-p", &self.vhost, &self.policy])
        {
            eprintln!(
                "could not remove the test's policy {}: {error}",
                self.policy
            );
        }
    }
}

/// `name` with the regular expression metacharacters it may hold (test names have `.`, `-`)
/// escaped.
/// `name` as a regular expression that matches exactly it (for policies and permissions).
pub fn regex_escape(name: &str) -> String {
    name.chars()
        .flat_map(|c| {
            let escape = !c.is_ascii_alphanumeric() && c != '_' && c != '-';
            escape.then_some('\\').into_iter().chain([c])
        })
        .collect()
}
