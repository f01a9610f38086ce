//! The block explorer: a single static page (`explorer/index.html`, `app.css`,
//! `app.js`) compiled into the binary with `include_str!` and served at `/`,
//! so every node carries its own explorer and nothing is fetched from outside
//! at run time. The page reads only the public `/v1` API and `/v1/events`
//! from the same origin; this module does no more than hand out the three
//! files with their content types. They are sent with `cache-control:
//! no-cache` so a browser revalidates after the node is upgraded instead of
//! mixing an old script with a new page.

use axum::{
    http::header,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};

/// One embedded file: the path it is served at, its content type and its text.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// The explorer's files. The page refers to the other two with relative
/// URLs (`explorer/app.css`), which resolve to these paths from `/`.
const ASSETS: [Asset; 3] = [
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_str!("explorer/index.html"),
    },
    Asset {
        path: "/explorer/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("explorer/app.css"),
    },
    Asset {
        path: "/explorer/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("explorer/app.js"),
    },
];

/// Routes serving the explorer: `GET /`, `GET /explorer/app.css` and
/// `GET /explorer/app.js` (and `HEAD` for each, which axum derives from
/// `GET`). Generic over the state so it merges into the RPC router as is.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS.iter().fold(Router::new(), |router, asset| {
        let (content_type, body) = (asset.content_type, asset.body);
        router.route(
            asset.path,
            get(move || async move { serve(content_type, body) }),
        )
    })
}

fn serve(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            // The content type is exact, so browsers must not guess another.
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{
        body::{to_bytes, Body},
        http::{Request, StatusCode},
    };
    use tower::ServiceExt;

    async fn get_path(path: &str) -> Response {
        let request = Request::builder().uri(path).body(Body::empty()).unwrap();
        routes::<()>().oneshot(request).await.unwrap()
    }

    #[tokio::test]
    async fn serves_each_file_with_its_content_type() {
        let expected = [
            ("/", "text/html; charset=utf-8", "<!doctype html>"),
            ("/explorer/app.css", "text/css; charset=utf-8", ":root"),
            (
                "/explorer/app.js",
                "text/javascript; charset=utf-8",
                "'use strict';",
            ),
        ];
        for (path, content_type, snippet) in expected {
            let response = get_path(path).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let headers = response.headers();
            assert_eq!(headers[header::CONTENT_TYPE], content_type, "{path}");
            assert_eq!(headers[header::CACHE_CONTROL], "no-cache", "{path}");
            let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
            let text = std::str::from_utf8(&body).unwrap();
            assert!(
                text.contains(snippet),
                "{path} does not contain {snippet:?}"
            );
        }
    }

    #[test]
    fn page_links_to_the_served_assets() {
        // The page must reference the other two files by the paths served
        // above, or the explorer loads unstyled and dead.
        let page = ASSETS[0].body;
        assert!(page.contains(r#"href="explorer/app.css""#));
        assert!(page.contains(r#"src="explorer/app.js""#));
    }

    #[tokio::test]
    async fn other_paths_are_not_found() {
        let response = get_path("/explorer/missing.js").await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
}
