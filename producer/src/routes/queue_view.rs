//! The live queue view: `GET /api/v1/queues` (the latest sample of every watched queue) and
//! `GET /`, a page that charts it every second and posts sample changes. The page is one
//! static file compiled into the binary: nothing to build, nothing to serve beside it.

use axum::{Json, extract::State, response::Html};
use shared::queue_stats::{QueueWatch, Snapshot};

const PAGE: &str = include_str!("../../static/index.html");

pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

pub async fn queues(State(watch): State<QueueWatch>) -> Json<Snapshot> {
    Json(watch.latest())
}
