//! In-process peers for the gateway: an identity provider serving discovery and JWKS, and echo upstreams.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

#[derive(Default)]
pub struct IdpState {
    pub url: Mutex<String>,
    pub keys: Mutex<Vec<Value>>,
    pub jwks_fetches: AtomicUsize,
    pub discovery_fetches: AtomicUsize,
    pub other_fetches: AtomicUsize,
    pub fail: AtomicBool,
    pub cache_control: Mutex<Option<String>>,
}

/// An identity provider on loopback that counts its fetches and can rotate keys or fail.
#[derive(Clone)]
pub struct Idp {
    pub url: String,
    pub state: Arc<IdpState>,
}

impl Idp {
    pub async fn start(keys: Vec<Value>) -> Idp {
        let state = Arc::new(IdpState::default());
        *state.keys.lock().unwrap() = keys;
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/attacker-jwks", get(attacker))
            .route("/huge-jwks", get(huge))
            .route(
                "/common/v2.0/.well-known/openid-configuration",
                get(multi_tenant),
            )
            .route("/redirect-same", get(redirect_same))
            .route("/slow-jwks", get(slow_jwks))
            .route("/redirect-away", get(redirect_away))
            .with_state(state.clone());
        let addr = serve(app).await;
        let url = format!("http://{addr}");
        *state.url.lock().unwrap() = url.clone();
        Idp { url, state }
    }

    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.url)
    }

    pub fn set_keys(&self, keys: Vec<Value>) {
        *self.state.keys.lock().unwrap() = keys;
    }

    pub fn fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    pub fn set_fail(&self, fail: bool) {
        self.state.fail.store(fail, Ordering::SeqCst);
    }
}

async fn discovery(State(s): State<Arc<IdpState>>) -> Response {
    s.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    let url = s.url.lock().unwrap().clone();
    axum::Json(json!({"issuer": url, "jwks_uri": format!("{url}/jwks")})).into_response()
}

async fn jwks(State(s): State<Arc<IdpState>>) -> Response {
    s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    if s.fail.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "down").into_response();
    }
    let keys = s.keys.lock().unwrap().clone();
    let mut resp = axum::Json(json!({ "keys": keys })).into_response();
    if let Some(cc) = s.cache_control.lock().unwrap().clone() {
        resp.headers_mut()
            .insert("cache-control", cc.parse().unwrap());
    }
    resp
}

/// A provider that never answers in time.
async fn slow_jwks() -> Response {
    tokio::time::sleep(std::time::Duration::from_secs(30)).await;
    axum::Json(json!({"keys": []})).into_response()
}

async fn redirect_same() -> Response {
    (StatusCode::FOUND, [("location", "/jwks")]).into_response()
}

/// Same server under another host name: a JWKS redirect to another host must not be followed.
async fn redirect_away(State(s): State<Arc<IdpState>>) -> Response {
    let url = s.url.lock().unwrap().replace("127.0.0.1", "localhost");
    (StatusCode::FOUND, [("location", format!("{url}/jwks"))]).into_response()
}

/// Microsoft Entra's multi-tenant discovery: the issuer is a template with `{tenantid}`.
async fn multi_tenant(State(s): State<Arc<IdpState>>) -> Response {
    s.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    let url = s.url.lock().unwrap().clone();
    axum::Json(
        json!({"issuer": format!("{url}/{{tenantid}}/v2.0"), "jwks_uri": format!("{url}/jwks")}),
    )
    .into_response()
}

/// Five megabytes of key set: a client's jwks_uri that must never be read whole.
async fn huge(State(s): State<Arc<IdpState>>) -> Response {
    s.other_fetches.fetch_add(1, Ordering::SeqCst);
    let pad = "x".repeat(5 * 1024 * 1024);
    axum::Json(json!({"keys": [], "pad": pad})).into_response()
}

async fn attacker(State(s): State<Arc<IdpState>>) -> Response {
    s.other_fetches.fetch_add(1, Ordering::SeqCst);
    axum::Json(json!({"keys": []})).into_response()
}

#[derive(Default)]
pub struct EchoState {
    pub name: String,
    pub hits: AtomicUsize,
    pub healthy: AtomicBool,
}

/// An upstream that answers with the request it received as JSON, and its own name.
#[derive(Clone)]
pub struct Echo {
    pub addr: SocketAddr,
    pub state: Arc<EchoState>,
}

impl Echo {
    pub async fn start(name: &str) -> Echo {
        let state = Arc::new(EchoState {
            name: name.into(),
            hits: AtomicUsize::new(0),
            healthy: AtomicBool::new(true),
        });
        let app = Router::new()
            .route("/healthz", get(health))
            .route("/slow", get(slow))
            .route("/mcp-echo", any(echo_body))
            .fallback(any(echo))
            .with_state(state.clone());
        let addr = serve(app).await;
        Echo { addr, state }
    }

    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }
}

async fn slow() -> &'static str {
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    "late"
}

async fn health(State(s): State<Arc<EchoState>>) -> StatusCode {
    if s.healthy.load(Ordering::SeqCst) {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

/// The body it was sent, with the headers that name an MCP call: what an MCP server would read.
async fn echo_body(State(s): State<Arc<EchoState>>, req: Request<Body>) -> Response {
    s.hits.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let header = |n: &str| {
        parts
            .headers
            .get(n)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).to_string())
    };
    let (method, name) = (header("mcp-method"), header("mcp-name"));
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&body).to_string();
    // an MCP server streaming behind nginx says so; the gateway must pass it on
    let mut r = axum::Json(
        json!({"upstream": s.name, "body": body, "mcp_method": method, "mcp_name": name}),
    )
    .into_response();
    r.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    r
}

async fn echo(State(s): State<Arc<EchoState>>, req: Request<Body>) -> Response {
    s.hits.fetch_add(1, Ordering::SeqCst);
    let headers: &HeaderMap = req.headers();
    let mut h = serde_json::Map::new();
    for (k, v) in headers {
        let v = String::from_utf8_lossy(v.as_bytes()).to_string();
        let entry = h
            .entry(k.as_str().to_string())
            .or_insert(Value::Array(vec![]));
        if let Value::Array(a) = entry {
            a.push(Value::String(v));
        }
    }
    let uri = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    axum::Json(
        json!({"upstream": s.name, "method": req.method().as_str(), "uri": uri, "headers": h}),
    )
    .into_response()
}
