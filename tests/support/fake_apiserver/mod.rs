//! An in-process fake of kube-apiserver v1.33 for integration tests.
//!
//! It listens on a loopback port and speaks the real HTTP API, so tests reach it through
//! an ordinary kubeconfig and an ordinary `kube::Client`, exactly as they would reach a
//! real cluster. See `docs/fake-apiserver.md` for what it implements and where it
//! deviates from a real API server.
//!
//! ```ignore
//! let server = FakeApiServer::start().await;
//! let client = server.client().await;
//! // ... exercise the operator with `client` ...
//! assert_eq!(server.mutating_requests(), 0);
//! server.shutdown().await;
//! ```

// Each integration test crate includes this module and uses a different part of it.
#![allow(dead_code)]
// Errors here are complete Kubernetes Status answers, built only on the error path of a
// test server; boxing them would add noise without a measurable gain.
#![allow(clippy::result_large_err)]

mod builtin_schemas;
mod controllers;
mod crd;
mod defaults;
mod deletion;
mod discovery;
mod errors;
pub(crate) mod fieldset;
mod kinds;
pub(crate) mod managed;
mod meta;
mod patch;
mod present;
mod reads;
mod request;
mod router;
mod selectors;
mod store;
pub(crate) mod typeinfo;
mod watch;
mod writes;

use super::schema;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, watch as signal};
use tokio::task::JoinHandle;

/// One request as the server saw it, named the way Kubernetes authorization names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete` or
    /// `deletecollection`; for paths that name no resource (discovery), the lowercase
    /// HTTP method.
    pub verb: String,
    /// API group; empty for the core group and for non-resource paths.
    pub group: String,
    /// API version; empty for non-resource paths.
    pub version: String,
    /// Resource (plural); empty for non-resource paths.
    pub resource: String,
    /// Subresource such as `status`; empty for the main resource.
    pub subresource: String,
    /// Namespace from the path; empty for cluster-scoped and all-namespace requests.
    pub namespace: String,
    /// Object name from the path; empty for collections.
    pub name: String,
    /// The user the request authenticated as: the name given to
    /// [`FakeApiServer::kubeconfig_as`] for a request carrying that user's bearer token;
    /// empty for a request without credentials (the default kubeconfig the tests use).
    pub user: String,
    /// The `User-Agent` header; empty when absent.
    pub user_agent: String,
    /// HTTP status code of the answer.
    pub status: u16,
    /// Whether the request created an object: a `create`, or a `patch` (server-side apply)
    /// of an object that did not exist.
    pub created: bool,
    /// The request path, without the query.
    pub path: String,
}

impl RequestRecord {
    /// Whether the request addressed a resource (not discovery, `/version` or a health path).
    pub fn is_resource_request(&self) -> bool {
        !self.resource.is_empty()
    }

    /// The verbs a real API server authorizes for this request: its verb, plus `create`
    /// for a `patch` or `update` that created the object (kube-apiserver checks `create`
    /// on top, so server-side apply of a new object needs both).
    pub fn authorized_verbs(&self) -> Vec<&str> {
        let mut verbs = vec![self.verb.as_str()];
        if self.created && matches!(self.verb.as_str(), "patch" | "update") {
            verbs.push("create");
        }
        verbs
    }

    /// The resource as RBAC rules name it: `tenants`, or `tenants/status` for a subresource.
    pub fn rbac_resource(&self) -> String {
        if self.subresource.is_empty() { self.resource.clone() } else { format!("{}/{}", self.resource, self.subresource) }
    }
}

/// State shared by the HTTP handlers, the watch streams and the controllers.
pub(crate) struct Shared {
    state: Mutex<store::State>,
    records: Mutex<Vec<RequestRecord>>,
    /// Bearer tokens handed out by [`FakeApiServer::kubeconfig_as`], to their user names.
    tokens: Mutex<HashMap<String, String>>,
    mutations: AtomicU64,
    /// Wakes the controllers after a request.
    pub(crate) wake: Notify,
    /// Turns true when the server shuts down.
    pub(crate) shutdown: signal::Receiver<bool>,
    pub(crate) addr: SocketAddr,
}

impl Shared {
    /// The store. A panic while holding the lock cannot leave it half-written in a way
    /// later tests care about, so poisoning is ignored.
    pub(crate) fn lock(&self) -> MutexGuard<'_, store::State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, record: RequestRecord) {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).push(record);
    }

    /// The user a bearer token belongs to; `None` for a token this server never issued.
    fn user_of_token(&self, token: &str) -> Option<String> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner()).get(token).cloned()
    }

    fn count_mutation(&self) {
        self.mutations.fetch_add(1, Ordering::SeqCst);
    }
}

/// A running fake API server. Dropping it stops the server.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    stop: signal::Sender<bool>,
    server: Option<JoinHandle<()>>,
    controllers: Option<JoinHandle<()>>,
}

impl FakeApiServer {
    /// Starts a server on `127.0.0.1` at a free port, as a task of the current runtime,
    /// with the namespaces `default`, `kube-system`, `kube-public` and `kube-node-lease`.
    pub async fn start() -> FakeApiServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port for the fake API server");
        let addr = listener.local_addr().expect("read the fake API server's address");
        let (stop, stopped) = signal::channel(false);
        let shared = Arc::new(Shared {
            state: Mutex::new(store::State::new()),
            records: Mutex::new(Vec::new()),
            tokens: Mutex::new(HashMap::new()),
            mutations: AtomicU64::new(0),
            wake: Notify::new(),
            shutdown: stopped.clone(),
            addr,
        });
        let app = axum::Router::new().fallback(router::handle).with_state(shared.clone());
        let mut until = stopped.clone();
        let server = tokio::spawn(async move {
            let serving = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = until.wait_for(|stop| *stop).await;
            });
            if let Err(e) = serving.await {
                tracing::warn!(error = %e, "fake API server stopped with an error");
            }
        });
        let controllers = tokio::spawn(controllers::run(shared.clone(), stopped));
        FakeApiServer { shared, stop, server: Some(server), controllers: Some(controllers) }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// A kubeconfig with one context pointing at this server over plain HTTP, without
    /// credentials, with default namespace `default`.
    pub fn kubeconfig(&self) -> kube::config::Kubeconfig {
        let value = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url()}}],
            "users": [{"name": "fake", "user": {}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": "default"}}],
            "current-context": "fake",
        });
        serde_json::from_value(value).expect("a well-formed kubeconfig")
    }

    /// A kubeconfig like [`FakeApiServer::kubeconfig`] whose user carries a bearer token
    /// that this server maps to `user` (one token per user name, issued on first use).
    /// Every request made with it is recorded with [`RequestRecord::user`] = `user`, which
    /// tells a program's requests apart from the test's own. Nothing is authorized: the
    /// name only labels the records.
    pub fn kubeconfig_as(&self, user: &str) -> kube::config::Kubeconfig {
        let token = {
            let mut tokens = self.shared.tokens.lock().unwrap_or_else(|e| e.into_inner());
            match tokens.iter().find(|(_, u)| u.as_str() == user) {
                Some((token, _)) => token.clone(),
                None => {
                    let token = format!("fake-{}-{:016x}", tokens.len() + 1, rand::random::<u64>());
                    tokens.insert(token.clone(), user.to_string());
                    token
                }
            }
        };
        let mut config = self.kubeconfig();
        for named in &mut config.auth_infos {
            let auth = named.auth_info.get_or_insert_with(Default::default);
            auth.token = Some(token.clone().into());
        }
        config
    }

    /// A client built from [`FakeApiServer::kubeconfig_as`]: its requests are recorded as
    /// made by `user`.
    pub async fn client_as(&self, user: &str) -> kube::Client {
        let config = kube::Config::from_custom_kubeconfig(self.kubeconfig_as(user), &kube::config::KubeConfigOptions::default())
            .await
            .expect("a client configuration from the fake kubeconfig");
        kube::Client::try_from(config).expect("a client for the fake API server")
    }

    /// Writes [`FakeApiServer::kubeconfig`] as YAML to `path`.
    pub fn write_kubeconfig(&self, path: &std::path::Path) -> std::io::Result<()> {
        let text = serde_yaml_ng::to_string(&self.kubeconfig()).map_err(std::io::Error::other)?;
        std::fs::write(path, text)
    }

    /// A client built from [`FakeApiServer::kubeconfig`], the way a program builds one from
    /// a kubeconfig file.
    pub async fn client(&self) -> kube::Client {
        let config = kube::Config::from_custom_kubeconfig(self.kubeconfig(), &kube::config::KubeConfigOptions::default())
            .await
            .expect("a client configuration from the fake kubeconfig");
        kube::Client::try_from(config).expect("a client for the fake API server")
    }

    /// How many create, update, patch, delete and deletecollection requests arrived,
    /// whatever their outcome (dry runs included).
    pub fn mutating_requests(&self) -> u64 {
        self.shared.mutations.load(Ordering::SeqCst)
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.records.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The audit log of one user: every request made with [`FakeApiServer::kubeconfig_as`]
    /// `(user)`, oldest first, whatever its outcome. Each record names the request the way
    /// Kubernetes authorization does (verb, API group, resource and subresource,
    /// namespace, name), so it can be checked against RBAC rules.
    pub fn audit(&self, user: &str) -> Vec<RequestRecord> {
        self.requests().into_iter().filter(|r| r.user == user).collect()
    }

    /// Sets how many past events of each resource type a watch can resume from; a watch
    /// from an older resourceVersion gets a 410 Expired error event.
    pub fn set_watch_history(&self, n: usize) {
        self.shared.lock().set_history_limit(n);
    }

    /// Stops the server: ends open watches and waits (briefly) for connections to close.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(mut server) = self.server.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut server).await.is_err()
        {
            tracing::warn!("fake API server did not stop within 5 seconds");
            server.abort();
        }
        if let Some(controllers) = self.controllers.take() {
            controllers.abort();
        }
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(server) = self.server.take() {
            server.abort();
        }
        if let Some(controllers) = self.controllers.take() {
            controllers.abort();
        }
    }
}
