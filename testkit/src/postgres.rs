//! A PostgreSQL database of the test's own, for the consumer instances that share a store.
//! Found like the broker: `TEST_POSTGRES_URL` (an admin URL), else a server on
//! 127.0.0.1:5432 (user postgres, trust auth), else one started with testcontainers.

use sqlx::{Connection, Executor, PgConnection};
use std::{net::TcpStream, sync::OnceLock, time::Duration};

const LOCAL_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const CONTAINER_NAME: &str = "change-of-circumstances-test-postgres";

/// A database created for one test and dropped when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
    /// The URL of the test's database, for `DATABASE_URL`.
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let admin_url = admin_url();
        let name = format!(
            "coc_test_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|error| panic!("cannot connect to PostgreSQL at {admin_url}: {error}"));
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .unwrap_or_else(|error| panic!("cannot create the test database: {error}"));
        let _ = admin.close().await;
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(base, _)| base);
        let url = format!("{base}/{name}");
        Self {
            admin_url,
            name,
            url,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        crate::wait::block_on_own_thread(async move {
            if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                let _ = admin
                    .execute(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .await;
                let _ = admin.close().await;
            }
        });
    }
}

fn admin_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("TEST_POSTGRES_URL") {
            return url;
        }
        let local = "127.0.0.1:5432".parse().unwrap_or_else(|_| unreachable!());
        if TcpStream::connect_timeout(&local, Duration::from_secs(1)).is_ok() {
            return LOCAL_SERVER.to_owned();
        }
        std::thread::spawn(start_container)
            .join()
            .unwrap_or_else(|_| panic!("starting the PostgreSQL container panicked"))
    })
    .clone()
}

fn start_container() -> String {
    use testcontainers::{
        GenericImage, ImageExt,
        core::{IntoContainerPort, WaitFor},
        runners::SyncRunner,
    };
    let started = GenericImage::new("postgres", "16-alpine")
        .with_exposed_port(5432.tcp())
        .with_wait_for(WaitFor::message_on_stderr(
            "database system is ready to accept connections",
        ))
        .with_env_var("POSTGRES_HOST_AUTH_METHOD", "trust")
        .with_container_name(CONTAINER_NAME)
        .with_reuse(testcontainers::ReuseDirective::Always)
        .start();
    match started.and_then(|container| {
        let port = container.get_host_port_ipv4(5432)?;
        std::mem::forget(container);
        Ok(port)
    }) {
        Ok(port) => format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        Err(error) => panic!(
            "\n\nThe tests of consumers sharing a PostgreSQL store need PostgreSQL, and none was found:\n\
             TEST_POSTGRES_URL is not set, nothing answers on 127.0.0.1:5432, and Docker could not\n\
             start one ({error}). Start PostgreSQL (trust auth for user postgres), or set\n\
             TEST_POSTGRES_URL to an admin URL such as postgres://postgres:secret@host:5432/postgres.\n\n"
        ),
    }
}
