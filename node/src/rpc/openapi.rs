//! `GET /openapi.json`: a hand-written OpenAPI 3 description of every
//! route (`openapi.json` next to this file, compiled in). The router tests
//! prove that it lists exactly the routes the router serves.

use axum::http::header;
use axum::response::IntoResponse;

/// The document, as served.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

pub async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}
