//! Request extractors whose every rejection is an `ApiError`, so malformed
//! JSON, wrong types, unknown fields, oversized bodies and bad query
//! strings all answer in SPEC's error shape instead of axum's plain text.
//! Bodies are read as bytes under the router's 256 KiB limit and parsed
//! with serde_json whatever the content type says (curl's `-d` sends a
//! form type; refusing it would help nobody).

use super::error::ApiError;
use super::BODY_LIMIT_BYTES;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;

/// A JSON body parsed into `T`.
pub struct ApiJson<T>(pub T);

/// The raw body bytes, under the size limit.
pub struct ApiBytes(pub Bytes);

fn bytes_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge {
            limit: BODY_LIMIT_BYTES,
        }
    } else {
        ApiError::Malformed(format!("cannot read the request body: {rejection}"))
    }
}

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(request, state)
            .await
            .map(ApiBytes)
            .map_err(bytes_rejection)
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ApiBytes(bytes) = ApiBytes::from_request(request, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses JSON, describing the first problem (syntax, type, unknown field).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|error| ApiError::Malformed(format!("invalid JSON body: {error}")))
}

/// A query string parsed into `T`; unknown parameters and bad numbers are
/// `malformed`.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded_like(query).map(ApiQuery)
    }
}

/// Query strings here are flat `key=value` lists of numbers and plain
/// tokens (a history cursor); serde_json does the typing after the pairs
/// are split, so no extra dependency is needed. A value that is not a u64
/// stays text, and a field that wants a number then refuses it.
fn serde_urlencoded_like<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let mut object = serde_json::Map::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = match value.parse::<u64>() {
            Ok(number) => number.into(),
            Err(_)
                if value
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b',') =>
            {
                serde_json::Value::String(value.to_string())
            }
            Err(_) => {
                return Err(ApiError::Malformed(format!(
                    "query parameter {key:?} has an unexpected value"
                )))
            }
        };
        object.insert(key.to_string(), value);
    }
    serde_json::from_value(serde_json::Value::Object(object)).map_err(|error| {
        ApiError::Malformed(format!(
            "invalid query (numbers must be non-negative integers): {error}"
        ))
    })
}

/// The TCP peer of the request, when the server recorded it (tests that
/// call the router directly may set it with `MockConnectInfo`).
pub struct ClientAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            ConnectInfo::<SocketAddr>::from_request_parts(parts, state)
                .await
                .ok()
                .map(|ConnectInfo(addr)| addr),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Page {
        from: Option<u64>,
        limit: Option<u64>,
    }

    #[test]
    fn query_parsing() {
        let page: Page = serde_urlencoded_like("from=3&limit=10").unwrap();
        assert_eq!((page.from, page.limit), (Some(3), Some(10)));
        let page: Page = serde_urlencoded_like("").unwrap();
        assert_eq!((page.from, page.limit), (None, None));
        assert!(serde_urlencoded_like::<Page>("from=-1").is_err());
        assert!(serde_urlencoded_like::<Page>("from=99999999999999999999999").is_err());
        assert!(serde_urlencoded_like::<Page>("bogus=1").is_err());
    }
}
