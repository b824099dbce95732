//! `producer`: serves the change-of-address API until SIGTERM or SIGINT.

use producer::{Application, Config};

/// Faster than the system allocator for many small, short-lived allocations (see Cargo.toml).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = shared::telemetry::init("producer");
    let config: Config = shared::config::parse();
    let shutdown = shared::shutdown::on_signal();
    let app = Application::build(config).await?;
    app.run_until_stopped(shutdown).await?;
    Ok(())
}
