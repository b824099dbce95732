//! Structured logs for both services: human-readable text by default, JSON lines for
//! containers (`LOG_FORMAT=json`), filtered by `RUST_LOG` (default `info`).
//!
//! lapin's own log lines are off unless `RUST_LOG` names `lapin`: every error it logs also
//! reaches our code as a `Result`, which logs it once, where it is handled, with context
//! (and a passive declare of a queue that does not exist yet is not an ERROR).

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init() {
    let filter = filter();
    let json = std::env::var("LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        registry
            .with(fmt::layer().json().flatten_event(true))
            .init();
    } else {
        let colours = std::io::IsTerminal::is_terminal(&std::io::stdout());
        registry.with(fmt::layer().with_ansi(colours)).init();
    }
}

/// For tests: silent unless `TEST_LOG` is set, so a failing test can be rerun with logs.
/// Safe to call from every test; only the first call installs anything.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::registry()
            .with(filter())
            .with(fmt::layer().with_test_writer())
            .try_init();
    }
}

fn filter() -> EnvFilter {
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    if directives.contains("lapin") {
        EnvFilter::new(directives)
    } else {
        EnvFilter::new(format!("{directives},lapin=off"))
    }
}
