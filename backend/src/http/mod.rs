//! HTTP plumbing shared by the services: the health check and the index
//! page. Each service contributes its own routes (the gateway its WebSocket
//! and return pages, the payment service its webhook and checkout pages).

pub mod html;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::bus::Bus;
use crate::db::Db;
use crate::gateway::Gateway;

/// What `/healthz` checks.
#[derive(Clone)]
pub struct Health {
    pub databases: Vec<(&'static str, Db)>,
    pub bus: Arc<dyn Bus>,
    pub gateway: Option<Gateway>,
}

impl Health {
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
    for (name, db) in &health.databases {
        checks.insert(format!("{name}_database"), json!(db.is_healthy().await));
    }
    checks.insert("bus".into(), json!(health.bus.is_healthy().await));
    if let Some(gateway) = &health.gateway {
        checks.insert("read_model_loaded".into(), json!(gateway.is_ready()));
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
            Html(html::page(
                "shop",
                "<h1>shop backend</h1>\
                 <p>This is the backend of <b>shop</b>. Clients connect to the WebSocket at <code>/ws</code>: \
                 use the <code>shop</code> command-line client or the <code>shop-tui</code> terminal shop, \
                 or speak the protocol described in <code>docs/protocol.md</code>.</p>\
                 <p>Health: <a href=\"/healthz\">/healthz</a></p>",
            ))
        }),
    )
}
