//! `ApiError`: every failure an HTTP handler can answer with, and the one
//! place that maps each to a status and a SPEC error code. Every error
//! answer has the shape `{"error": {"code": "...", "message": "..."}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ledger::json::{ErrorBody, ErrorDetail};
use ledger::mempool::MempoolError;

/// An error answer. Handlers return `Result<_, ApiError>` and use `?`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// Input that cannot be understood: bad JSON, wrong types, unknown
    /// fields, invalid addresses, hashes or numbers.
    #[error("{0}")]
    Malformed(String),
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    NotFound(String),
    #[error("{method} is not allowed here")]
    MethodNotAllowed { method: String },
    #[error("{0}")]
    Forbidden(String),
    /// A body in a media type the route does not take (admin routes take
    /// only `application/json`).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// `POST /v1/peers` when every pinned-peer slot holds a live peer.
    #[error("{0}")]
    TooManyPinnedPeers(String),
    /// A transaction the mempool refused (its code is SPEC's).
    #[error("{0}")]
    Rejected(#[from] MempoolError),
    /// The node cannot take a transaction now; `Retry-After` says when to
    /// try again.
    #[error("the node is busy ({why}); retry after {} s", retry_after.as_secs())]
    Busy {
        retry_after: std::time::Duration,
        why: &'static str,
    },
    #[error("the node is not ready yet: {0}")]
    NotReady(&'static str),
    #[error("the request took longer than {0} s")]
    Timeout(u64),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// HTTP status and stable snake_case code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed"),
            ApiError::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
            }
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::TooManyPinnedPeers(_) => (StatusCode::CONFLICT, "too_many_pinned_peers"),
            ApiError::Rejected(error) => (mempool_status(error), error.code()),
            ApiError::Busy { .. } => (StatusCode::TOO_MANY_REQUESTS, "busy"),
            ApiError::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
            ApiError::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// SPEC's statuses for `POST /v1/txs`: 400 for what is wrong with the tx
/// itself, 409 for conflicts with pending or confirmed txs, 422 for what
/// the sender's account or the fee rule refuse, 503 when the pool is full.
fn mempool_status(error: &MempoolError) -> StatusCode {
    match error.code() {
        "malformed" | "bad_signature" | "wrong_chain" => StatusCode::BAD_REQUEST,
        "duplicate" | "nonce_too_low" | "nonce_too_high" | "replacement_underpriced" => {
            StatusCode::CONFLICT
        }
        "insufficient_funds" | "fee_too_low" => StatusCode::UNPROCESSABLE_ENTITY,
        "mempool_full" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let too_large = matches!(self, ApiError::PayloadTooLarge { .. });
        let retry_after = match &self {
            ApiError::Busy { retry_after, .. } => Some(retry_after.as_secs().max(1)),
            _ => None,
        };
        let (status, code) = self.status_and_code();
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message: self.to_string(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        if too_large {
            // The rest of an oversized body may be left unread (past what
            // `refuse_oversized` drains, or when the cap is found while
            // reading), so the connection cannot carry another request:
            // say so, so clients do not reuse it.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds),
            );
        }
        response
    }
}

impl From<crate::handle::SubmitError> for ApiError {
    fn from(error: crate::handle::SubmitError) -> ApiError {
        match error {
            crate::handle::SubmitError::Busy { retry_after, why } => {
                ApiError::Busy { retry_after, why }
            }
            crate::handle::SubmitError::Rejected(error) => ApiError::Rejected(error),
        }
    }
}
