//! Who may call the API, decided before any handler runs.
//!
//! - **Host** (every route): a web page can make a browser send requests to
//!   the node by pointing a name it controls at 127.0.0.1 (DNS rebinding);
//!   the browser then sends that name as `Host`. The node answers only to
//!   the names it expects (`AllowedHosts`): its bind address, `localhost`,
//!   `127.0.0.1`, `[::1]` and every `--rpc-allowed-host`. The port is not
//!   compared: a rebinding page cannot choose the host part, and Docker's
//!   published ports differ from the one the node binds. A request without
//!   `Host` (HTTP/1.0, tests) is let through, since no browser sends one.
//! - **Admin routes** (`AdminGuard`): a page may also post to the node
//!   directly. A cross-site `text/plain` POST needs no CORS preflight, so
//!   admin routes refuse any present `Origin` that is not the node's own
//!   (403), then every type but `application/json` (415: a page can send
//!   JSON only after a preflight the node never grants for its admin
//!   routes), before the loopback or bearer-token check.
//! - **CORS** is off unless `--rpc-cors-origin` names origins; then those
//!   origins may read the public routes and submit transactions from a
//!   page (`cors_layer`).
//!
//! Every refusal is 403 `forbidden`, except a wrong media type on an admin
//! route: 415 `unsupported_media_type`, as HTTP clients expect.

use super::error::ApiError;
use super::RpcState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

/// The `Host` names (without port, lower case) the node answers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedHosts {
    names: BTreeSet<String>,
    /// `--rpc-allowed-host '*'`: any host (for a proxy that checks it).
    any: bool,
}

impl AllowedHosts {
    /// The defaults for a node bound to `bind` (`bind_name`: the host part
    /// of `--rpc-addr` as typed, when it was a name), plus `extra`.
    pub fn new(bind: SocketAddr, bind_name: Option<&str>, extra: &[String]) -> AllowedHosts {
        let mut names: BTreeSet<String> = ["localhost", "127.0.0.1", "[::1]"]
            .into_iter()
            .map(String::from)
            .collect();
        if !bind.ip().is_unspecified() {
            names.insert(host_of_ip(bind.ip()));
        }
        names.extend(bind_name.and_then(normalize_host));
        let mut any = false;
        for name in extra {
            if name.trim() == "*" {
                any = true;
            } else {
                names.extend(normalize_host(name));
            }
        }
        AllowedHosts { names, any }
    }

    /// Whether a request with this `Host` value may be answered.
    pub fn allows(&self, host: &str) -> bool {
        self.any || normalize_host(host).is_some_and(|host| self.names.contains(&host))
    }

    /// The names, for the start-up log.
    pub fn describe(&self) -> String {
        if self.any {
            return "*".into();
        }
        self.names.iter().cloned().collect::<Vec<_>>().join(",")
    }
}

fn host_of_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    }
}

/// The host part of a `Host` value or `host[:port]` name, lower case,
/// without the port and a trailing dot; `None` when it is empty or not
/// well formed.
pub fn normalize_host(value: &str) -> Option<String> {
    let value = value.trim().to_ascii_lowercase();
    let host = if value.starts_with('[') {
        let end = value.find(']')?;
        let rest = &value[end + 1..];
        if !(rest.is_empty() || rest.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        // Canonical IPv6 text, so `[0:0::1]` and `[::1]` compare equal.
        let ip: std::net::Ipv6Addr = value[1..end].parse().ok()?;
        format!("[{ip}]")
    } else {
        let host = match value.split_once(':') {
            Some((host, port)) if is_port(port) => host,
            Some(_) => {
                // A bare IPv6 address, as someone may type it for
                // `--rpc-allowed-host`.
                let ip: std::net::Ipv6Addr = value.parse().ok()?;
                return Some(format!("[{ip}]"));
            }
            None => value.as_str(),
        };
        host.strip_suffix('.').unwrap_or(host).to_string()
    };
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-._[]:".contains(&byte));
    valid.then_some(host)
}

fn is_port(text: &str) -> bool {
    !text.is_empty() && text.len() <= 5 && text.bytes().all(|byte| byte.is_ascii_digit())
}

/// The `Host` a request names: the header, or for HTTP/2 the URI's
/// authority. `Err` when the header is not text.
fn request_host(request: &Request) -> Result<Option<String>, ()> {
    match request.headers().get(header::HOST) {
        Some(value) => value
            .to_str()
            .map(|text| Some(text.to_string()))
            .map_err(|_| ()),
        None => Ok(request
            .uri()
            .authority()
            .map(|authority| authority.to_string())),
    }
}

/// Middleware on every route: 403 `forbidden` for a `Host` the node does
/// not answer to.
pub async fn check_host(State(state): State<RpcState>, request: Request, next: Next) -> Response {
    match request_host(&request) {
        Ok(None) => next.run(request).await,
        Ok(Some(host)) if state.guard.allowed_hosts.allows(&host) => next.run(request).await,
        Ok(Some(host)) => {
            tracing::debug!(%host, path = request.uri().path(), "refused a request for a foreign Host");
            ApiError::Forbidden(format!(
                "this node does not answer to Host {host:?} (start it with --rpc-allowed-host to add a name)"
            ))
            .into_response()
        }
        Err(()) => ApiError::Forbidden("the Host header is not text".into()).into_response(),
    }
}

/// What the RPC needs to decide who may call it.
#[derive(Clone, Debug)]
pub struct GuardConfig {
    pub allowed_hosts: AllowedHosts,
    /// Origins that may call the API from a page (CORS); empty: none.
    pub cors_origins: Vec<HeaderValue>,
}

/// The checks an admin route makes before it reads its body, in this
/// order: Origin, then Content-Type (both refuse what a page could send
/// cross-site), then the caller (`RpcState::authorize_admin`).
pub fn check_admin_request(headers: &HeaderMap) -> Result<(), ApiError> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let own = headers
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .zip(origin.to_str().ok())
            .is_some_and(|(host, origin)| is_same_origin(origin, host));
        if !own {
            return Err(ApiError::Forbidden(format!(
                "admin routes refuse requests from other web pages (Origin {:?})",
                String::from_utf8_lossy(origin.as_bytes())
            )));
        }
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ApiError::UnsupportedMediaType(
            "admin routes need the header Content-Type: application/json".into(),
        ));
    }
    Ok(())
}

/// Whether `origin` (`scheme://host[:port]`) is the origin of a page the
/// node served at `host` (the request's `Host` value).
fn is_same_origin(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https")
        && authority.eq_ignore_ascii_case(host.trim())
}

/// The CORS layer for `--rpc-cors-origin`, or `None` (no CORS headers at
/// all, so browsers keep other pages from reading answers).
pub fn cors_layer(config: &GuardConfig) -> Option<tower_http::cors::CorsLayer> {
    if config.cors_origins.is_empty() {
        return None;
    }
    Some(
        tower_http::cors::CorsLayer::new()
            .allow_origin(tower_http::cors::AllowOrigin::list(
                config.cors_origins.iter().cloned(),
            ))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::CONTENT_TYPE, header::ACCEPT]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_normalized() {
        assert_eq!(
            normalize_host("LocalHost:8080").as_deref(),
            Some("localhost")
        );
        assert_eq!(normalize_host("127.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(normalize_host("[::1]:80").as_deref(), Some("[::1]"));
        assert_eq!(normalize_host("[0:0::1]").as_deref(), Some("[::1]"));
        assert_eq!(normalize_host("::1").as_deref(), Some("[::1]"));
        assert_eq!(normalize_host("node1.").as_deref(), Some("node1"));
        assert_eq!(normalize_host(""), None);
        assert_eq!(normalize_host("a b"), None);
        assert_eq!(normalize_host("evil.example:x"), None);
    }

    #[test]
    fn allowed_hosts_cover_the_defaults_and_the_bind_address() {
        let hosts = AllowedHosts::new("10.0.0.5:8080".parse().unwrap(), None, &["node1".into()]);
        for host in [
            "localhost",
            "127.0.0.1:8081",
            "[::1]:8080",
            "10.0.0.5:8080",
            "NODE1:8080",
        ] {
            assert!(hosts.allows(host), "{host}");
        }
        for host in [
            "evil.example",
            "10.0.0.6",
            "localhost.evil.example",
            "0.0.0.0",
        ] {
            assert!(!hosts.allows(host), "{host}");
        }
        let unspecified = AllowedHosts::new("0.0.0.0:8080".parse().unwrap(), None, &[]);
        assert!(!unspecified.allows("0.0.0.0:8080"));
        let any = AllowedHosts::new("0.0.0.0:8080".parse().unwrap(), None, &["*".into()]);
        assert!(any.allows("anything.example"));
    }

    #[test]
    fn admin_requests_need_json_and_no_foreign_origin() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, HeaderValue::from_static(value));
            }
            map
        };
        let json = ("content-type", "application/json");
        assert!(check_admin_request(&headers(&[json])).is_ok());
        assert!(check_admin_request(&headers(&[(
            "content-type",
            "application/json; charset=utf-8"
        )]))
        .is_ok());
        for wrong in [&[("content-type", "text/plain")][..], &[]] {
            assert!(matches!(
                check_admin_request(&headers(wrong)),
                Err(ApiError::UnsupportedMediaType(_))
            ));
        }
        let own = [
            json,
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ];
        assert!(check_admin_request(&headers(&own)).is_ok());
        let foreign = [
            json,
            ("host", "127.0.0.1:8080"),
            ("origin", "https://evil.example"),
        ];
        assert!(matches!(
            check_admin_request(&headers(&foreign)),
            Err(ApiError::Forbidden(_))
        ));
        let null = [json, ("host", "127.0.0.1:8080"), ("origin", "null")];
        assert!(check_admin_request(&headers(&null)).is_err());
        let other_port = [
            json,
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:9999"),
        ];
        assert!(check_admin_request(&headers(&other_port)).is_err());
    }
}
