//! A CloudEvents webhook receiver on a loopback port, as a platform service would run
//! one: it checks the `X-CX-Signature` HMAC-SHA256 of the body with its own key
//! (computed here independently of the operator's code), answers 401 when it does not
//! match, and records every request and every event it accepted. It can be told to
//! answer the next N requests with 503, or to be down (connections are closed without
//! an answer).

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Instant,
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The path events are POSTed to.
const PATH: &str = "/events";

/// A path that answers with a permanent redirect to [`PATH`].
const MOVED_PATH: &str = "/moved";

/// One request the receiver saw.
#[derive(Clone, Debug)]
pub struct Request {
    /// When it arrived.
    pub at: Instant,
    /// The status answered; 0 when the receiver was down and closed the connection.
    pub status: u16,
    /// The CloudEvents `id` of the body, when it was JSON with an id.
    pub id: Option<String>,
}

/// The receiver's state, shared with its connections.
struct Inner {
    /// The signing key it checks signatures with.
    key: Vec<u8>,
    /// The events accepted, in order.
    accepted: Mutex<Vec<serde_json::Value>>,
    /// Every request, in order.
    requests: Mutex<Vec<Request>>,
    /// Correctly signed requests still to answer with 503.
    fail_next: AtomicU32,
    /// Whether connections are closed without an answer.
    down: AtomicBool,
    /// The open connections, closed when the receiver goes down.
    connections: Mutex<Vec<tokio::task::AbortHandle>>,
}

/// A running receiver; stops when dropped.
pub struct WebhookReceiver {
    /// The loopback address it listens on.
    addr: SocketAddr,
    /// Its state.
    inner: Arc<Inner>,
    /// The accept loop.
    task: tokio::task::JoinHandle<()>,
}

impl WebhookReceiver {
    /// Starts a receiver that accepts events signed with `key`.
    pub async fn start(key: &[u8]) -> WebhookReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port for the webhook receiver");
        let addr = listener.local_addr().expect("the listener has an address");
        let inner = Arc::new(Inner {
            key: key.to_vec(),
            accepted: Mutex::default(),
            requests: Mutex::default(),
            fail_next: AtomicU32::new(0),
            down: AtomicBool::new(false),
            connections: Mutex::default(),
        });
        let router = Router::new()
            .route(PATH, post(receive))
            .route(MOVED_PATH, post(|| async { axum::response::Redirect::permanent(PATH) }))
            .with_state(inner.clone());
        let task = tokio::spawn(serve(listener, router, inner.clone()));
        WebhookReceiver { addr, inner, task }
    }

    /// The URL to configure as the webhook.
    pub fn url(&self) -> String {
        format!("http://{}{PATH}", self.addr)
    }

    /// A URL that redirects to the receiver's.
    pub fn moved_url(&self) -> String {
        format!("http://{}{MOVED_PATH}", self.addr)
    }

    /// The events accepted so far, in order (a resent event appears again).
    pub fn accepted(&self) -> Vec<serde_json::Value> {
        self.inner.accepted.lock().unwrap().clone()
    }

    /// The `type` of every accepted event, without the `io.cx-operator.tenant.` prefix.
    pub fn accepted_types(&self) -> Vec<String> {
        self.accepted()
            .iter()
            .map(|e| e["type"].as_str().unwrap_or_default().trim_start_matches("io.cx-operator.tenant.").to_string())
            .collect()
    }

    /// Every request so far, accepted or not.
    pub fn requests(&self) -> Vec<Request> {
        self.inner.requests.lock().unwrap().clone()
    }

    /// Answers the next `n` correctly signed requests with 503.
    pub fn fail_next(&self, n: u32) {
        self.inner.fail_next.store(n, Ordering::SeqCst);
    }

    /// While down, connections are closed without an answer; going down closes the
    /// open (kept-alive) ones too.
    pub fn set_down(&self, down: bool) {
        self.inner.down.store(down, Ordering::SeqCst);
        if down {
            for connection in self.inner.connections.lock().unwrap().drain(..) {
                connection.abort();
            }
        }
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts connections and serves each with HTTP/1, unless the receiver is down.
async fn serve(listener: tokio::net::TcpListener, router: Router, inner: Arc<Inner>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        if inner.down.load(Ordering::SeqCst) {
            inner.requests.lock().unwrap().push(Request { at: Instant::now(), status: 0, id: None });
            drop(stream);
            continue;
        }
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let connection = tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
        });
        let mut connections = inner.connections.lock().unwrap();
        connections.retain(|c| !c.is_finished());
        connections.push(connection.abort_handle());
    }
}

async fn receive(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let event: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    let id = event.as_ref().and_then(|e| e["id"].as_str()).map(str::to_string);
    let status = answer(&inner, &headers, &body, event);
    inner.requests.lock().unwrap().push(Request { at: Instant::now(), status: status.as_u16(), id });
    status
}

fn answer(inner: &Inner, headers: &HeaderMap, body: &[u8], event: Option<serde_json::Value>) -> StatusCode {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
    if content_type != Some("application/cloudevents+json") {
        return StatusCode::UNSUPPORTED_MEDIA_TYPE;
    }
    let signature = headers.get("x-cx-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !signed_with(&inner.key, body, signature) {
        return StatusCode::UNAUTHORIZED;
    }
    if inner.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let Some(event) = event else { return StatusCode::BAD_REQUEST };
    inner.accepted.lock().unwrap().push(event);
    StatusCode::OK
}

/// The receiver's own check: `sha256=` and the hex HMAC-SHA256 of the exact body.
pub fn signed_with(key: &[u8], body: &[u8], header: &str) -> bool {
    let Some(Ok(given)) = header.strip_prefix("sha256=").map(hex::decode) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}
