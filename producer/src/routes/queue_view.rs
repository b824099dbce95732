//! The live queue view: `GET /api/v1/queues` (the latest sample of every watched queue),
//! `GET /api/v1/queues/history` (the depths sampled before it, so that the chart of a page
//! opened late starts with what already happened) and `GET /`, a page that charts them
//! every second and posts sample changes. The page is one
//! static file compiled into the binary: nothing to build, nothing to serve beside it.

use axum::{Json, extract::State, response::Html};
use shared::queue_stats::{DepthSample, QueueWatch, Snapshot};

const PAGE: &str = include_str!("../../static/index.html");

pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

pub async fn queues(State(watch): State<QueueWatch>) -> Json<Snapshot> {
    Json(watch.latest())
}

pub async fn history(State(watch): State<QueueWatch>) -> Json<Vec<DepthSample>> {
    Json(watch.history())
}
