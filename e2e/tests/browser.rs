//! The live queue view in a real browser: post through the page's form with the consumer
//! stopped and watch the depth rise, start the consumer and watch it fall. Headless
//! Chromium driven by chromedriver (Debian's `chromium` and `chromium-driver`).
//!
//! Where they are not installed the test says so and passes, unless
//! `REQUIRE_BROWSER_TESTS=1` (CI sets it), so a laptop without a browser can still run the
//! suite while CI cannot skip this.

use e2e::{ServiceConfigs, TestConsumer, TestEnv, TestProducer, eventually};
use fantoccini::{Client, ClientBuilder, Locator};
use std::{path::Path, process::Stdio, time::Duration};
use tokio::process::{Child, Command};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a free port, killed when dropped.
struct Driver {
    _process: Child,
    url: String,
}

impl Driver {
    async fn start() -> Self {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let process = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start chromedriver: {error}"));
        let url = format!("http://127.0.0.1:{port}");
        let status = format!("{url}/status");
        eventually(
            "chromedriver to listen",
            Duration::from_secs(15),
            || async {
                reqwest::get(&status)
                    .await
                    .map(|_| ())
                    .map_err(|error| error.to_string())
            },
        )
        .await;
        Self {
            _process: process,
            url,
        }
    }

    async fn browser(&self, profile: &Path) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .unwrap_or_else(|error| panic!("cannot start headless Chromium: {error}"))
    }
}

fn browser_installed() -> bool {
    let installed = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !installed && std::env::var_os("REQUIRE_BROWSER_TESTS").is_some() {
        panic!(
            "REQUIRE_BROWSER_TESTS is set but {CHROMIUM} or {CHROMEDRIVER} is missing: apt-get install chromium chromium-driver"
        );
    }
    if !installed {
        eprintln!(
            "SKIPPED: the browser test needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)."
        );
    }
    installed
}

/// The depth the page shows for `queue`, as its table row says.
async fn shown_depth(browser: &Client, queue: &str) -> Result<String, String> {
    let row = browser
        .find(Locator::Id(&format!("queue-{queue}")))
        .await
        .map_err(|error| error.to_string())?;
    row.attr("data-ready")
        .await
        .map_err(|error| error.to_string())?
        .ok_or_else(|| "no depth".to_owned())
}

async fn post_through_the_form(browser: &Client, customer_id: &str) {
    let field = browser.find(Locator::Id("customer_id")).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(customer_id).await.unwrap();
    browser
        .find(Locator::Id("post"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually(
        &format!("the page to show the answer for {customer_id}"),
        Duration::from_secs(10),
        || async {
            let result = browser
                .find(Locator::Id("result"))
                .await
                .map_err(|error| error.to_string())?;
            let text = result.text().await.map_err(|error| error.to_string())?;
            if text.starts_with("202") && text.contains("queued") {
                Ok(())
            } else {
                Err(text)
            }
        },
    )
    .await;
    // The next post must not read this answer: clear it.
    browser
        .execute("document.getElementById('result').textContent = ''", vec![])
        .await
        .unwrap();
}

#[tokio::test]
async fn the_page_shows_the_queue_fill_while_the_consumer_is_stopped_and_drain_when_it_starts() {
    if !browser_installed() {
        return;
    }
    let env = TestEnv::new().await;
    let producer = TestProducer::start(env.producer_config()).await;
    let driver = Driver::start().await;
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.browser(profile.path()).await;
    browser.goto(&producer.url).await.unwrap();
    let depth_becomes = |expected: &'static str| {
        let (browser, queue) = (&browser, env.queue.clone());
        async move {
            eventually(
                &format!("the page to show depth {expected}"),
                Duration::from_secs(15),
                || async {
                    match shown_depth(browser, &queue).await {
                        Ok(depth) if depth == expected => Ok(()),
                        other => Err(other),
                    }
                },
            )
            .await;
        }
    };
    depth_becomes("0").await;

    for customer in ["C-1", "C-2", "C-3"] {
        post_through_the_form(&browser, customer).await;
    }
    depth_becomes("3").await;

    // A page opened now still shows the queue filling: its chart starts from the producer's
    // record (at 0, before the posts), not from its own first sample (3).
    browser.goto(&producer.url).await.unwrap();
    eventually(
        "the reopened page's chart to start at 0 and reach 3",
        Duration::from_secs(15),
        || async {
            let series = browser
                .execute(
                    "const s = depths.get(arguments[0]) ?? []; \
                     return s.length ? [s[0], Math.max(...s)] : [];",
                    vec![serde_json::json!(env.queue)],
                )
                .await
                .map_err(|error| error.to_string())?;
            if series == serde_json::json!([0, 3]) {
                Ok(())
            } else {
                Err(series.to_string())
            }
        },
    )
    .await;

    let consumer = TestConsumer::start(env.consumer_config()).await;
    depth_becomes("0").await;
    // The page's depth counts ready messages: the last ones may still be in processing.
    consumer.recorded(3).await;

    browser.close().await.unwrap();
    consumer.stop().await;
    producer.stop().await;
}
