//! A stand-in for the Stripe API, started by the tests (Stripe itself cannot
//! be reached from here). It speaks Stripe's wire format where the shop can
//! tell:
//!
//! - form-encoded requests with `Authorization: Bearer <secret key>`;
//!   another key gets Stripe's 401;
//! - idempotency keys as Stripe checks them: a key's first completed
//!   result is saved and replayed (`Idempotent-Replayed: true`) for the same
//!   request; the same key with other parameters gets a 400
//!   `idempotency_error`; a request refused before it ran (a 429 from the
//!   rate limiter, a 500 from the edge) saves nothing, so a retry runs;
//! - Stripe-shaped JSON objects (`checkout.session`, `refund`) and errors;
//! - events signed with the webhook secret, posted to the shop's webhook.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use shop_backend::payment::signature;
use shop_shared::time::Timestamp;

use crate::harness::StripeKeys;

/// Stripe's largest charge: 999,999.99 in a two-decimal currency.
const MAX_AMOUNT: i64 = 99_999_999;

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub authorization: Option<String>,
    pub idempotency_key: Option<String>,
    pub params: Params,
}

impl Recorded {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Form parameters, in the order sent.
type Params = Vec<(String, String)>;

/// A completed request, as Stripe keeps it under its idempotency key.
struct Saved {
    path: String,
    params: Params,
    status: u16,
    body: String,
}

/// An answer given instead of running a request.
#[derive(Clone)]
enum Failure {
    /// Stripe's JSON error with this status and error type.
    Stripe(u16, &'static str),
    /// An HTML page with this status, as a proxy or load balancer in front
    /// of Stripe sends.
    Page(u16),
    /// Stripe refuses the request: a 400 `invalid_request_error` with this
    /// code and message.
    Refusal(&'static str, &'static str),
}

/// What the checks every endpoint applies decided.
enum Admission {
    /// Run the request.
    Run { params: Params, key: Option<String> },
    /// Answer with this, without running it.
    Answer(Response),
}

#[derive(Default)]
struct StubState {
    requests: Vec<Recorded>,
    /// The first result of each idempotency key.
    saved: HashMap<String, Saved>,
    sessions: HashMap<String, Value>,
    refunds: Vec<Value>,
    /// Answers to give the next requests to a path, before they run.
    failures: HashMap<String, VecDeque<Failure>>,
    /// Paths whose next completed request loses its response on the way
    /// back: the work is done and saved, the client sees a 502.
    lose: HashMap<String, usize>,
    /// Paths whose next completed request is answered only after a pause.
    slow: HashMap<String, Duration>,
    counter: u64,
}

/// The running stand-in.
#[derive(Clone)]
pub struct StripeStub {
    pub base: String,
    pub secret_key: String,
    pub webhook_secret: String,
    state: Arc<Mutex<StubState>>,
}

impl StripeStub {
    pub async fn start() -> StripeStub {
        let stub = StripeStub {
            base: String::new(),
            secret_key: "sk_test_shop_stub_0123456789".into(),
            webhook_secret: "whsec_shop_stub_9876543210".into(),
            state: Arc::default(),
        };
        let router = Router::new()
            .route("/v1/checkout/sessions", post(create_session))
            .route("/v1/checkout/sessions/{id}", get(retrieve_session))
            .route("/v1/checkout/sessions/{id}/expire", post(expire_session))
            .route("/v1/refunds", post(create_refund))
            .with_state(stub.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("stub port");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        StripeStub {
            base: format!("http://{address}"),
            ..stub
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StubState> {
        self.state.lock().expect("stub state")
    }

    /// Requests received on `path`, in order.
    pub fn requests(&self, path: &str) -> Vec<Recorded> {
        self.lock()
            .requests
            .iter()
            .filter(|request| request.path == path)
            .cloned()
            .collect()
    }

    pub fn session(&self, id: &str) -> Value {
        self.lock().sessions.get(id).cloned().unwrap_or(Value::Null)
    }

    pub fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }

    pub fn refunds(&self) -> Vec<Value> {
        self.lock().refunds.clone()
    }

    /// Answers the next requests to `path` with these (status, error type)
    /// before running them, as Stripe's edge or rate limiter does.
    pub fn fail_next(&self, path: &str, failures: &[(u16, &'static str)]) {
        self.lock()
            .failures
            .entry(path.to_owned())
            .or_default()
            .extend(
                failures
                    .iter()
                    .map(|(status, kind)| Failure::Stripe(*status, kind)),
            );
    }

    /// Answers the next `count` requests to `path` with an HTML error page
    /// of `status`, as a proxy in front of Stripe does while Stripe is out
    /// of its reach.
    pub fn fail_next_with_page(&self, path: &str, status: u16, count: usize) {
        self.lock()
            .failures
            .entry(path.to_owned())
            .or_default()
            .extend(std::iter::repeat_n(Failure::Page(status), count));
    }

    /// Refuses the next `count` requests to `path` with Stripe's 400, this
    /// error code and message (a refund of a disputed charge, say).
    pub fn refuse_next(&self, path: &str, count: usize, code: &'static str, message: &'static str) {
        self.lock()
            .failures
            .entry(path.to_owned())
            .or_default()
            .extend(std::iter::repeat_n(Failure::Refusal(code, message), count));
    }

    /// Stripe recovers: `path` stops failing.
    pub fn recover(&self, path: &str) {
        self.lock().failures.remove(path);
    }

    /// The next request to `path` runs, but its response is lost on the way
    /// back (the client sees a 502 from the edge).
    pub fn lose_next_response(&self, path: &str) {
        *self.lock().lose.entry(path.to_owned()).or_default() += 1;
    }

    /// The next request to `path` runs at once, but its answer comes only
    /// after `pause`.
    pub fn slow_next_response(&self, path: &str, pause: Duration) {
        self.lock().slow.insert(path.to_owned(), pause);
    }

    /// The keys the shop needs to use this stand-in.
    pub fn keys(&self) -> StripeKeys {
        StripeKeys {
            api_base: self.base.clone(),
            secret_key: self.secret_key.clone(),
            webhook_secret: self.webhook_secret.clone(),
        }
    }

    /// The customer pays on Stripe's page: the session completes, paid at
    /// once or (`paid` false) with a delayed payment method still pending.
    pub fn complete(&self, id: &str, paid: bool) -> Value {
        let mut state = self.lock();
        state.counter += 1;
        let payment_intent = format!("pi_test_stub_{}", state.counter);
        let session = state.sessions.get_mut(id).expect("known session");
        session["status"] = "complete".into();
        session["payment_status"] = if paid { "paid" } else { "unpaid" }.into();
        session["payment_intent"] = payment_intent.into();
        session.clone()
    }

    /// A delayed payment settles.
    pub fn settle(&self, id: &str) -> Value {
        let mut state = self.lock();
        let session = state.sessions.get_mut(id).expect("known session");
        session["payment_status"] = "paid".into();
        session.clone()
    }

    /// Stripe expires the session by itself (its `expires_at` passed).
    pub fn lapse(&self, id: &str) -> Value {
        let mut state = self.lock();
        let session = state.sessions.get_mut(id).expect("known session");
        session["status"] = "expired".into();
        session.clone()
    }

    /// The event Stripe would send about `object`.
    pub fn event(&self, kind: &str, object: &Value) -> String {
        let mut state = self.lock();
        state.counter += 1;
        json!({
            "id": format!("evt_test_stub_{}", state.counter),
            "object": "event",
            "api_version": "2024-06-20",
            "created": Timestamp::now().as_unix_seconds(),
            "livemode": false,
            "pending_webhooks": 1,
            "type": kind,
            "data": { "object": object },
        })
        .to_string()
    }

    /// The `Stripe-Signature` header Stripe would send with `event` now.
    pub fn sign(&self, event: &str) -> String {
        let now = Timestamp::now().as_unix_seconds();
        signature::header(&self.webhook_secret, now, event.as_bytes())
    }

    /// Posts `event`, signed as Stripe signs, to `url`; returns the status
    /// and the JSON answer.
    pub async fn deliver(&self, url: &str, event: &str) -> (u16, Value) {
        self.deliver_signed(url, event, &self.sign(event)).await
    }

    /// Posts `event` to `url` with this `Stripe-Signature` header.
    pub async fn deliver_signed(&self, url: &str, event: &str, signature: &str) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(url)
            .header("Stripe-Signature", signature)
            .header("content-type", "application/json")
            .body(event.to_owned())
            .send()
            .await
            .expect("webhook answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Records the request and applies the checks every Stripe endpoint
    /// applies.
    fn admit(&self, path: &str, headers: &HeaderMap, body: &Bytes) -> Admission {
        let params: Params = serde_urlencoded::from_bytes(body).unwrap_or_default();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let authorization = header("authorization");
        let key = header("idempotency-key");
        let mut state = self.lock();
        state.requests.push(Recorded {
            path: path.to_owned(),
            authorization: authorization.clone(),
            idempotency_key: key.clone(),
            params: params.clone(),
        });
        if authorization.as_deref() != Some(&format!("Bearer {}", self.secret_key)) {
            return Admission::Answer(stripe_error(
                401,
                "invalid_request_error",
                None,
                "Invalid API Key provided.",
            ));
        }
        match state.failures.get_mut(path).and_then(VecDeque::pop_front) {
            Some(Failure::Stripe(status, kind)) => {
                let message = match status {
                    429 => {
                        "Request rate limit exceeded. You can learn more about rate limits here https://stripe.com/docs/rate-limits."
                    }
                    _ => "An unknown error occurred",
                };
                let code = (status == 429).then_some("rate_limit");
                return Admission::Answer(stripe_error(status, kind, code, message));
            }
            Some(Failure::Page(status)) => return Admission::Answer(error_page(status)),
            Some(Failure::Refusal(code, message)) => {
                return Admission::Answer(stripe_error(
                    400,
                    "invalid_request_error",
                    Some(code),
                    message,
                ));
            }
            None => {}
        }
        if let Some(key) = &key
            && let Some(saved) = state.saved.get(key)
        {
            if saved.path != path || saved.params != params {
                return Admission::Answer(stripe_error(
                    400,
                    "idempotency_error",
                    None,
                    &format!(
                        "Keys for idempotent requests can only be used with the same parameters they were first used with. \
                         Try using a key other than '{key}' if you meant to execute a different request."
                    ),
                ));
            }
            let status = StatusCode::from_u16(saved.status).unwrap_or(StatusCode::OK);
            let mut response = (status, saved.body.clone()).into_response();
            response
                .headers_mut()
                .insert("idempotent-replayed", "true".parse().expect("header"));
            response
                .headers_mut()
                .insert("content-type", "application/json".parse().expect("header"));
            return Admission::Answer(response);
        }
        Admission::Run { params, key }
    }

    /// Saves the result of a request that ran, under its idempotency key.
    async fn finish(
        &self,
        path: &str,
        params: Params,
        key: Option<String>,
        status: u16,
        body: Value,
    ) -> Response {
        let text = body.to_string();
        let pause = {
            let mut state = self.lock();
            if let Some(key) = key {
                let saved = Saved {
                    path: path.to_owned(),
                    params,
                    status,
                    body: text.clone(),
                };
                state.saved.insert(key, saved);
            }
            if let Some(lost) = state.lose.get_mut(path).filter(|lost| **lost > 0) {
                *lost -= 1;
                return stripe_error(502, "api_error", None, "Bad gateway");
            }
            state.slow.remove(path)
        };
        if let Some(pause) = pause {
            tokio::time::sleep(pause).await;
        }
        let mut response =
            (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), text).into_response();
        response
            .headers_mut()
            .insert("content-type", "application/json".parse().expect("header"));
        response
    }
}

fn stripe_error(status: u16, kind: &str, code: Option<&str>, message: &str) -> Response {
    let body = json!({ "error": { "type": kind, "code": code, "message": message } });
    let mut response = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        body.to_string(),
    )
        .into_response();
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().expect("header"));
    response
}

/// The HTML error page a proxy in front of an API answers with.
fn error_page(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let reason = code.canonical_reason().unwrap_or("Error");
    let body = format!(
        "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    );
    let mut response = (code, body).into_response();
    response
        .headers_mut()
        .insert("content-type", "text/html".parse().expect("header"));
    response
}

/// `metadata[key]=value` parameters as a JSON object.
fn metadata(params: &[(String, String)]) -> serde_json::Map<String, Value> {
    params
        .iter()
        .filter_map(|(name, value)| {
            let field = name.strip_prefix("metadata[")?.strip_suffix(']')?;
            Some((field.to_owned(), Value::from(value.clone())))
        })
        .collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

async fn create_session(
    State(stub): State<StripeStub>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = "/v1/checkout/sessions";
    let (params, key) = match stub.admit(path, &headers, &body) {
        Admission::Run { params, key } => (params, key),
        Admission::Answer(response) => return response,
    };
    for required in ["mode", "success_url", "line_items[0][quantity]"] {
        if param(&params, required).is_none() {
            let message = format!("Missing required param: {required}.");
            let body = json!({ "error": { "type": "invalid_request_error", "param": required, "message": message } });
            return stub.finish(path, params, key, 400, body).await;
        }
    }
    let mut total = 0i64;
    let mut line = 0;
    while let Some(quantity) = param(&params, &format!("line_items[{line}][quantity]")) {
        let unit: i64 = param(
            &params,
            &format!("line_items[{line}][price_data][unit_amount]"),
        )
        .and_then(|amount| amount.parse().ok())
        .unwrap_or(0);
        total += unit * quantity.parse::<i64>().unwrap_or(0);
        line += 1;
    }
    if total > MAX_AMOUNT {
        let body = json!({ "error": {
            "type": "invalid_request_error",
            "code": "amount_too_large",
            "message": "The Checkout Session's total amount due must be no more than €999,999.99.",
        } });
        return stub.finish(path, params, key, 400, body).await;
    }
    let id = {
        let mut state = stub.lock();
        state.counter += 1;
        format!("cs_test_stub_{:04}", state.counter)
    };
    let metadata = metadata(&params);
    let now = Timestamp::now().as_unix_seconds();
    let session = json!({
        "id": id,
        "object": "checkout.session",
        "amount_subtotal": total,
        "amount_total": total,
        "automatic_tax": { "enabled": false, "liability": null, "status": null },
        "cancel_url": param(&params, "cancel_url"),
        "client_reference_id": param(&params, "client_reference_id"),
        "created": now,
        "currency": param(&params, "line_items[0][price_data][currency]"),
        "custom_fields": [],
        "custom_text": { "after_submit": null, "shipping_address": null, "submit": null, "terms_of_service_acceptance": null },
        "customer": null,
        "expires_at": param(&params, "expires_at").and_then(|at| at.parse::<i64>().ok()).unwrap_or(now + 86_400),
        "livemode": false,
        "metadata": metadata,
        "mode": "payment",
        "payment_intent": null,
        "payment_method_types": ["card"],
        "payment_status": "unpaid",
        "shipping_options": [],
        "status": "open",
        "success_url": param(&params, "success_url"),
        "url": format!("https://checkout.stripe.com/c/pay/{id}"),
    });
    stub.lock().sessions.insert(id, session.clone());
    stub.finish(path, params, key, 200, session).await
}

/// `GET /v1/checkout/sessions/{id}`: the session as it is now.
async fn retrieve_session(
    State(stub): State<StripeStub>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/v1/checkout/sessions/{id}");
    let (params, key) = match stub.admit(&path, &headers, &Bytes::new()) {
        Admission::Run { params, key } => (params, key),
        Admission::Answer(response) => return response,
    };
    let session = stub.lock().sessions.get(&id).cloned();
    match session {
        Some(session) => stub.finish(&path, params, key, 200, session).await,
        None => {
            let message = format!("No such checkout.session: '{id}'");
            let body = json!({ "error": { "type": "invalid_request_error", "message": message } });
            stub.finish(&path, params, key, 404, body).await
        }
    }
}

async fn expire_session(
    State(stub): State<StripeStub>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/v1/checkout/sessions/{id}/expire");
    let (params, key) = match stub.admit(&path, &headers, &body) {
        Admission::Run { params, key } => (params, key),
        Admission::Answer(response) => return response,
    };
    let outcome = {
        let mut state = stub.lock();
        match state.sessions.get_mut(&id) {
            None => Err((404, format!("No such checkout.session: '{id}'"))),
            Some(session) if session["status"] != "open" => Err((
                400,
                format!(
                    "Only Checkout Sessions with a status in [\"open\"] can be expired. This Checkout Session has a status of {}.",
                    session["status"]
                ),
            )),
            Some(session) => {
                session["status"] = "expired".into();
                Ok(session.clone())
            }
        }
    };
    match outcome {
        Ok(session) => stub.finish(&path, params, key, 200, session).await,
        Err((status, message)) => {
            let body = json!({ "error": { "type": "invalid_request_error", "message": message } });
            stub.finish(&path, params, key, status, body).await
        }
    }
}

async fn create_refund(
    State(stub): State<StripeStub>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = "/v1/refunds";
    let (params, key) = match stub.admit(path, &headers, &body) {
        Admission::Run { params, key } => (params, key),
        Admission::Answer(response) => return response,
    };
    let intent = param(&params, "payment_intent")
        .unwrap_or_default()
        .to_owned();
    let paid = {
        let state = stub.lock();
        state
            .sessions
            .values()
            .find(|session| {
                session["payment_intent"] == intent.as_str() && session["payment_status"] == "paid"
            })
            .cloned()
    };
    let Some(session) = paid else {
        let body = json!({ "error": { "type": "invalid_request_error", "param": "payment_intent", "message": format!("No such payment_intent: '{intent}'") } });
        return stub.finish(path, params, key, 400, body).await;
    };
    let refund = {
        let mut state = stub.lock();
        state.counter += 1;
        let refund = json!({
            "id": format!("re_test_stub_{}", state.counter),
            "object": "refund",
            "amount": session["amount_total"],
            "created": Timestamp::now().as_unix_seconds(),
            "currency": session["currency"],
            "metadata": metadata(&params),
            "payment_intent": intent,
            "status": "succeeded",
        });
        state.refunds.push(refund.clone());
        refund
    };
    stub.finish(path, params, key, 200, refund).await
}
