//! The consumer's HTTP API: what it has applied, and its health.

use crate::store::{CurrentAddress, Store};
use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use shared::{
    domain::CustomerId,
    http::{error_response, health_routes},
    readiness::Readiness,
};

pub fn router(store: Store, readiness: Readiness) -> Router {
    Router::new()
        .route(
            "/api/v1/customers/{customer_id}/address",
            get(current_address),
        )
        .with_state(store)
        .merge(health_routes(readiness))
}

/// `GET /api/v1/customers/{customer_id}/address`: 200 with the current address, 404 when
/// no change has been applied for that customer, 400 for an id that cannot exist.
async fn current_address(
    State(store): State<Store>,
    Path(customer_id): Path<String>,
) -> Result<Json<CurrentAddress>, Response> {
    let customer_id = CustomerId::parse(&customer_id).map_err(|error| {
        error_response(
            StatusCode::BAD_REQUEST,
            "invalid_customer_id",
            format!("customer_id {error}"),
            Some("customer_id".into()),
        )
    })?;
    match store.current_address(&customer_id).await {
        Ok(Some(address)) => Ok(Json(address)),
        Ok(None) => Err(error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("No address change has been applied for customer {customer_id}."),
            None,
        )),
        Err(error) => {
            tracing::error!(%error, %customer_id, "Cannot read the address.");
            Err((
                StatusCode::SERVICE_UNAVAILABLE,
                error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "The address store cannot be read at the moment.",
                    None,
                ),
            )
                .into_response())
        }
    }
}
