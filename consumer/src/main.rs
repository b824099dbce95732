//! `consumer`: consumes its queue and serves its API until SIGTERM or SIGINT.

use consumer::{Application, Config};

/// Faster than the system allocator for many small, short-lived allocations (see Cargo.toml).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = shared::telemetry::init("consumer");
    let config: Config = shared::config::parse();
    let shutdown = shared::shutdown::on_signal();
    let app = Application::build(config).await?;
    app.run_until_stopped(shutdown).await?;
    Ok(())
}
