//! HTTP plumbing shared by the services: the health check, the index
//! page, and the server that serves every route within the connection
//! limits ([`server`]), over TLS when given a certificate ([`tls`]). Each service contributes its own routes (the
//! gateway its WebSocket and return pages, the payment service its webhook
//! and checkout pages).

pub mod html;
pub mod server;
pub mod tls;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

/// One readiness check: answers whether a dependency is usable now.
pub type Check = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// What `/healthz` checks, by name. The services and the composition root
/// add their checks; this module knows none of them.
#[derive(Clone, Default)]
pub struct Health {
    checks: Vec<(String, Check)>,
}

impl Health {
    /// Adds the check `name`, which `/healthz` reports as `true` or `false`.
    pub fn check<F, Fut>(&mut self, name: impl Into<String>, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        self.checks
            .push((name.into(), Arc::new(move || Box::pin(check()))));
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/healthz", get(healthz))
            .with_state(self)
    }
}

/// `200` with every check `true` when the process can serve; `503` naming
/// the failing checks otherwise.
async fn healthz(State(health): State<Health>) -> Response {
    let mut checks = serde_json::Map::new();
    for (name, check) in &health.checks {
        checks.insert(name.clone(), json!(check().await));
    }
    let healthy = checks.values().all(|ok| ok == &json!(true));
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({ "status": if healthy { "ok" } else { "unavailable" }, "checks": checks });
    (status, Json(body)).into_response()
}

/// `GET /`: what this is and how to use it.
pub fn index_router() -> Router {
    Router::new().route(
        "/",
        get(|| async {
            html::page(
                "shop",
                "<h1>shop backend</h1>\
                 <p>This is the backend of <b>shop</b>. Clients connect to the WebSocket at <code>/ws</code>: \
                 use the <code>shop</code> command-line client or the <code>shop-tui</code> terminal shop, \
                 or speak the protocol described in <code>docs/protocol.md</code>.</p>\
                 <p>Health: <a href=\"/healthz\">/healthz</a></p>",
            )
        }),
    )
}
