//! The services as real processes, for the faults only a process can suffer: SIGTERM and
//! SIGKILL. Tests in the producer's and consumer's own packages start their binary (cargo
//! builds it for them: `env!("CARGO_BIN_EXE_…")`), configured through the environment
//! exactly as in production, logging JSON lines that the tests read.

use crate::wait::eventually;
use nix::{sys::signal::Signal, unistd::Pid};
use std::{
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// A running service process and everything it has logged so far.
#[derive(Debug)]
pub struct ServiceProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`, read from the service's own "listening" log line.
    pub url: String,
    logs: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl ServiceProcess {
    /// Starts the binary at `path` with `env` (plus `HTTP_ADDR=127.0.0.1:0` and JSON logs)
    /// and waits until it reports ready.
    pub async fn start(path: &str, env: &[(String, String)]) -> Self {
        let binary_name = path.rsplit('/').next().unwrap_or(path);
        let mut child = Command::new(path)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("HTTP_ADDR", "127.0.0.1:0")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {binary_name}: {error}"));
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stdout = child
            .stdout
            .take()
            .unwrap_or_else(|| unreachable!("stdout is piped"));
        let sink = Arc::clone(&logs);
        let echo = std::env::var_os("TEST_LOG").is_some();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if echo {
                    eprintln!("{line}");
                }
                if let Ok(value) = serde_json::from_str(&line) {
                    sink.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(value);
                }
            }
        });
        let mut process = Self {
            child,
            url: String::new(),
            logs,
        };
        let addr = eventually(
            &format!("{binary_name} to say where it listens"),
            Duration::from_secs(15),
            || async {
                process
                    .log_lines()
                    .iter()
                    .find(|line| {
                        line["message"]
                            .as_str()
                            .is_some_and(|m| m.ends_with("listening."))
                    })
                    .and_then(|line| line["addr"].as_str().map(str::to_owned))
                    .ok_or("no listening line yet")
            },
        )
        .await;
        process.url = format!("http://{addr}");
        let http = reqwest::Client::new();
        let ready_url = format!("{}/readyz", process.url);
        eventually(
            &format!("{binary_name} to be ready"),
            Duration::from_secs(15),
            || async {
                match http.get(&ready_url).send().await {
                    Ok(response) if response.status().is_success() => Ok(()),
                    Ok(response) => Err(response.status().to_string()),
                    Err(error) => Err(error.to_string()),
                }
            },
        )
        .await;
        process
    }

    /// Every JSON log line so far.
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        self.logs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// How many "Message processed." lines had this `outcome`.
    pub fn processed_with_outcome(&self, outcome: &str) -> usize {
        self.log_lines()
            .iter()
            .filter(|line| line["outcome"] == outcome)
            .count()
    }

    pub fn signal(&self, signal: Signal) {
        let pid = self
            .child
            .id()
            .unwrap_or_else(|| panic!("the process has already exited"));
        nix::sys::signal::kill(Pid::from_raw(pid as i32), signal)
            .unwrap_or_else(|error| panic!("cannot signal {pid}: {error}"));
    }

    /// Waits for the process to exit, for at most `within`.
    pub async fn exited(mut self, within: Duration) -> ExitStatus {
        tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the process did not exit within {within:?}"))
            .unwrap_or_else(|error| panic!("cannot wait for the process: {error}"))
    }
}
