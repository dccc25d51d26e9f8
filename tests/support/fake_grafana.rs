//! A stateful fake of Grafana's HTTP API: the data source and organisation calls the
//! Grafana provider makes, on `127.0.0.1` at a free port.
//!
//! It answers as Grafana 11 does, with its status codes and `{"message": ...}` bodies:
//! data sources by uid with Grafana's optimistic concurrency (every write sets
//! `version` to the version sent plus one; a version below the stored one is refused
//! with 409 "Datasource has already been updated by someone else. Please reload and
//! try again"), read-only (file-provisioned) data sources refused with 403, and
//! organisations (409 "Organization name taken"). Requests need the service-account
//! token ([`FakeGrafana::token`], Bearer) or the server admin's basic credentials
//! ([`FakeGrafana::admin_username`]); as in Grafana, only the server admin may manage
//! organisations.
//!
//! Controls for tests: [`FakeGrafana::set_down`] (every request gets 503),
//! [`FakeGrafana::set_delay`] (answers are delayed after the change was made),
//! [`FakeGrafana::inject_conflicts`] (someone else changes the data source right
//! before each of the next writes), direct seeding and reading of data sources and
//! organisations, and the request log [`FakeGrafana::requests`]. See
//! docs/fake-grafana.md for what differs from a real Grafana.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Body,
    extract::{Request, State as AxumState},
    http::{HeaderMap, Method, StatusCode, header},
    response::Response,
};
use rand::distr::{Alphanumeric, SampleString};
use serde_json::{Map, Value, json};
use tokio::{sync::oneshot, task::JoinHandle};

/// The organisation every Grafana starts with, where the service account lives.
pub const MAIN_ORG: i64 = 1;

/// The largest request body the fake reads.
const MAX_BODY: usize = 1 << 20;

/// Grafana's answer to a write with a stale `version`.
pub const VERSION_CONFLICT_MESSAGE: &str = "Datasource has already been updated by someone else. Please reload and try again";

/// One request the fake received, with the status it answered. Bodies and headers
/// are not kept: they carry credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, `PUT` or `DELETE`.
    pub method: String,
    /// The path, e.g. `/api/datasources/uid/tenants`.
    pub path: String,
    /// The status code of the answer.
    pub status: u16,
}

/// Who a request authenticated as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    /// The service account (an Admin of [`MAIN_ORG`]).
    ServiceAccount,
    /// The server admin.
    ServerAdmin,
}

#[derive(Default)]
struct State {
    /// Data sources by (organisation, uid); each body holds `id`, `uid`, `orgId`,
    /// `version` and the rest as Grafana returns it.
    data_sources: BTreeMap<(i64, String), Map<String, Value>>,
    /// Organisations by id.
    orgs: BTreeMap<i64, String>,
    next_data_source_id: i64,
    next_org_id: i64,
    down: bool,
    delay: Duration,
    /// Writes of a data source still to be preceded by a change of someone else.
    conflicts_to_inject: usize,
    /// How many foreign changes were injected so far (names their hosts).
    injected: usize,
    requests: Vec<RecordedRequest>,
}

struct Shared {
    state: Mutex<State>,
    token: String,
    admin_username: String,
    admin_password: String,
}

/// A running fake Grafana. Dropping it stops the server.
pub struct FakeGrafana {
    shared: Arc<Shared>,
    url: String,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
}

impl FakeGrafana {
    /// Starts the fake with the main organisation, a service-account token and a
    /// server admin, both with random secrets, and no data source.
    pub async fn start() -> FakeGrafana {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port for the fake Grafana");
        let addr = listener.local_addr().expect("read the fake Grafana's address");
        let random = || Alphanumeric.sample_string(&mut rand::rng(), 32);
        let mut state = State { next_data_source_id: 1, next_org_id: MAIN_ORG + 1, ..State::default() };
        state.orgs.insert(MAIN_ORG, "Main Org.".into());
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            token: format!("glsa_{}", random()),
            admin_username: "admin".into(),
            admin_password: random(),
        });
        let app = axum::Router::new().fallback(handle).with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let serving = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = serving.await {
                tracing::warn!(error = %e, "fake Grafana stopped with an error");
            }
        });
        FakeGrafana { shared, url: format!("http://{addr}"), stop: Some(stop), server }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The service-account token (an Admin of the main organisation).
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// The server admin's user name (basic authentication).
    pub fn admin_username(&self) -> &str {
        &self.shared.admin_username
    }

    /// The server admin's password.
    pub fn admin_password(&self) -> &str {
        &self.shared.admin_password
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().expect("the fake Grafana's state is not poisoned")
    }

    /// Creates a data source of the Infinity plugin in the main organisation with the
    /// given allowed hosts, as an administrator would, and a secure field that must
    /// survive every update. `read_only` makes it file-provisioned.
    pub fn add_data_source(&self, uid: &str, hosts: &[&str], read_only: bool) {
        let mut state = self.state();
        let id = state.next_data_source_id;
        state.next_data_source_id += 1;
        let body = json!({
            "id": id, "uid": uid, "orgId": MAIN_ORG, "name": format!("Tenants {uid}"),
            "type": "yesoreyeram-infinity-datasource", "typeLogoUrl": "public/plugins/yesoreyeram-infinity-datasource/img/icon.svg",
            "access": "proxy", "url": "", "user": "", "database": "", "basicAuth": false, "basicAuthUser": "",
            "withCredentials": false, "isDefault": false,
            "jsonData": { "allowedHosts": hosts, "auth_method": "bearerToken", "global_queries": [] },
            "secureJsonFields": { "bearerToken": true },
            "version": 1, "readOnly": read_only,
        });
        if let Value::Object(map) = body {
            state.data_sources.insert((MAIN_ORG, uid.to_string()), map);
        }
    }

    /// Removes a data source, as an administrator would.
    pub fn remove_data_source(&self, uid: &str) {
        self.state().data_sources.remove(&(MAIN_ORG, uid.to_string()));
    }

    /// The stored body of a data source of the main organisation.
    pub fn data_source(&self, uid: &str) -> Option<Map<String, Value>> {
        self.state().data_sources.get(&(MAIN_ORG, uid.to_string())).cloned()
    }

    /// The allowed hosts of a data source of the main organisation.
    pub fn allowed_hosts(&self, uid: &str) -> Vec<String> {
        self.data_source(uid)
            .and_then(|d| d.get("jsonData")?.get("allowedHosts")?.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|h| h.as_str().map(str::to_string))
            .collect()
    }

    /// The `version` of a data source of the main organisation.
    pub fn version(&self, uid: &str) -> Option<i64> {
        self.data_source(uid)?.get("version")?.as_i64()
    }

    /// Someone else adds a host to a data source (a write that bumps the version).
    pub fn add_host_as_someone_else(&self, uid: &str, host: &str) {
        let mut state = self.state();
        if let Some(ds) = state.data_sources.get_mut(&(MAIN_ORG, uid.to_string())) {
            foreign_write(ds, host);
        }
    }

    /// Makes each of the next `count` data source writes lose a race: right before it
    /// is applied, someone else adds a host `https://foreign-<n>.example.com` and the
    /// version moves on, so the write is refused with 409.
    pub fn inject_conflicts(&self, count: usize) {
        self.state().conflicts_to_inject = count;
    }

    /// The hosts the injected foreign writers added so far.
    pub fn injected_hosts(&self) -> Vec<String> {
        (1..=self.state().injected).map(foreign_host).collect()
    }

    /// Creates an organisation directly, as someone else would; returns its id.
    pub fn add_org(&self, name: &str) -> i64 {
        let mut state = self.state();
        create_org(&mut state, name).expect("the organisation name is free")
    }

    /// The id of the organisation named `name`.
    pub fn org_id(&self, name: &str) -> Option<i64> {
        self.state().orgs.iter().find(|(_, n)| *n == name).map(|(id, _)| *id)
    }

    /// Renames an organisation, as someone else would.
    pub fn rename_org(&self, id: i64, name: &str) {
        if let Some(n) = self.state().orgs.get_mut(&id) {
            *n = name.to_string();
        }
    }

    /// While `down`, every request is answered with 503, as by a proxy in front of a
    /// Grafana that is not running.
    pub fn set_down(&self, down: bool) {
        self.state().down = down;
    }

    /// Delays every answer by `delay`, after the request took effect, as on a slow
    /// network: a client that gives up does not know whether its write happened.
    pub fn set_delay(&self, delay: Duration) {
        self.state().delay = delay;
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.state().requests.clear();
    }

    /// The requests that change something (`POST`, `PUT`, `DELETE`).
    pub fn writes(&self) -> Vec<RecordedRequest> {
        self.requests().into_iter().filter(|r| r.method != "GET").collect()
    }
}

impl Drop for FakeGrafana {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.server.abort();
    }
}

fn foreign_host(n: usize) -> String {
    format!("https://foreign-{n}.example.com")
}

/// A write by someone else: one more host, one more version.
fn foreign_write(ds: &mut Map<String, Value>, host: &str) {
    if let Some(Value::Array(hosts)) = ds.get_mut("jsonData").and_then(|j| j.get_mut("allowedHosts")) {
        hosts.push(json!(host));
    }
    let version = ds.get("version").and_then(Value::as_i64).unwrap_or(0);
    ds.insert("version".into(), json!(version + 1));
}

fn create_org(state: &mut State, name: &str) -> Option<i64> {
    if state.orgs.values().any(|n| n == name) {
        return None;
    }
    let id = state.next_org_id;
    state.next_org_id += 1;
    state.orgs.insert(id, name.to_string());
    Some(id)
}

/// Every request: authenticated, refused while down, routed, recorded with its
/// status, and delayed after it took effect.
async fn handle(AxumState(shared): AxumState<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY).await.unwrap_or_default();
    let (response, delay) = {
        let mut state = shared.state.lock().expect("the fake Grafana's state is not poisoned");
        let response = if state.down {
            text(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
        } else {
            match authenticate(&shared, &parts.headers) {
                Ok(caller) => route(&mut state, caller, &parts.method, parts.uri.path(), &parts.headers, &body),
                Err(response) => *response,
            }
        };
        state.requests.push(RecordedRequest {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            status: response.status().as_u16(),
        });
        (response, state.delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    response
}

/// The caller of a request, or Grafana's 401.
fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<Caller, Box<Response>> {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return Err(Box::new(unauthorized("Unauthorized", "auth.unauthorized")));
    };
    if let Some(token) = value.strip_prefix("Bearer ") {
        return if token == shared.token {
            Ok(Caller::ServiceAccount)
        } else {
            Err(Box::new(unauthorized("Invalid API key", "api-key.invalid")))
        };
    }
    if let Some(encoded) = value.strip_prefix("Basic ") {
        return if encoded == basic_credentials(&shared.admin_username, &shared.admin_password) {
            Ok(Caller::ServerAdmin)
        } else {
            Err(Box::new(unauthorized("Invalid username or password", "password-auth.failed")))
        };
    }
    Err(Box::new(unauthorized("Unauthorized", "auth.unauthorized")))
}

/// `base64(user:password)`, through the base64 of Kubernetes' `ByteString`.
fn basic_credentials(username: &str, password: &str) -> String {
    let bytes = k8s_openapi::ByteString(format!("{username}:{password}").into_bytes());
    serde_json::to_value(bytes).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn route(state: &mut State, caller: Caller, method: &Method, path: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let org = match headers.get("X-Grafana-Org-Id").map(|v| v.to_str().ok().and_then(|s| s.parse::<i64>().ok())) {
        None => MAIN_ORG,
        Some(Some(org)) if state.orgs.contains_key(&org) && (org == MAIN_ORG || caller == Caller::ServerAdmin) => org,
        Some(_) => return unauthorized("Unauthorized", "auth.unauthorized"),
    };
    match (method, segments.as_slice()) {
        (&Method::GET, ["api", "datasources", "uid", uid]) => match state.data_sources.get(&(org, uid.to_string())) {
            Some(ds) => json_response(StatusCode::OK, Value::Object(ds.clone())),
            None => message(StatusCode::NOT_FOUND, "Data source not found"),
        },
        (&Method::PUT, ["api", "datasources", "uid", uid]) => update_data_source(state, org, uid, body),
        (_, ["api", "orgs", ..]) if caller != Caller::ServerAdmin => access_denied(method),
        (&Method::POST, ["api", "orgs"]) => {
            let name = serde_json::from_slice::<Value>(body).ok().and_then(|v| v.get("name")?.as_str().map(str::to_string));
            match name.filter(|n| !n.is_empty()) {
                None => message(StatusCode::BAD_REQUEST, "bad request data"),
                Some(name) => match create_org(state, &name) {
                    Some(id) => json_response(StatusCode::OK, json!({ "orgId": id, "message": "Organization created" })),
                    None => message(StatusCode::CONFLICT, "Organization name taken"),
                },
            }
        }
        (&Method::GET, ["api", "orgs", "name", name]) => match state.orgs.iter().find(|(_, n)| n == name) {
            Some((id, name)) => json_response(StatusCode::OK, org_body(*id, name)),
            None => message(StatusCode::NOT_FOUND, "Organization not found"),
        },
        (&Method::GET, ["api", "orgs", id]) => match id.parse::<i64>().ok().and_then(|id| state.orgs.get(&id).map(|n| (id, n))) {
            Some((id, name)) => json_response(StatusCode::OK, org_body(id, name)),
            None => message(StatusCode::NOT_FOUND, "Organization not found"),
        },
        (&Method::DELETE, ["api", "orgs", id]) => match id.parse::<i64>() {
            Ok(MAIN_ORG) => message(StatusCode::BAD_REQUEST, "Can not delete org for current user"),
            Ok(id) if state.orgs.remove(&id).is_some() => {
                state.data_sources.retain(|(org, _), _| *org != id);
                message(StatusCode::OK, "Organization deleted")
            }
            _ => message(StatusCode::NOT_FOUND, "Failed to delete organization. ID not found"),
        },
        _ => message(StatusCode::NOT_FOUND, "Not found"),
    }
}

/// `PUT /api/datasources/uid/{uid}`: Grafana's `UpdateDataSourceCommand`. `name`,
/// `type` and `access` are required; a version below the stored one (other than 0,
/// which skips the check) is a lost race; the new version is the one sent plus one.
/// Secure fields not sent are kept.
fn update_data_source(state: &mut State, org: i64, uid: &str, body: &[u8]) -> Response {
    let key = (org, uid.to_string());
    let Ok(Value::Object(command)) = serde_json::from_slice::<Value>(body) else {
        return message(StatusCode::BAD_REQUEST, "bad request data");
    };
    let required = ["name", "type", "access"].iter().all(|f| command.get(*f).and_then(Value::as_str).is_some_and(|s| !s.is_empty()));
    if !required {
        return message(StatusCode::BAD_REQUEST, "bad request data");
    }
    if state.conflicts_to_inject > 0 && state.data_sources.contains_key(&key) {
        state.conflicts_to_inject -= 1;
        state.injected += 1;
        let host = foreign_host(state.injected);
        if let Some(ds) = state.data_sources.get_mut(&key) {
            foreign_write(ds, &host);
        }
    }
    let Some(stored) = state.data_sources.get_mut(&key) else {
        return message(StatusCode::NOT_FOUND, "Data source not found");
    };
    if stored.get("readOnly").and_then(Value::as_bool) == Some(true) {
        return message(StatusCode::FORBIDDEN, "Cannot update read-only data source");
    }
    let sent = command.get("version").and_then(Value::as_i64).unwrap_or(0);
    let current = stored.get("version").and_then(Value::as_i64).unwrap_or(0);
    if sent != 0 && current > sent {
        return message(StatusCode::CONFLICT, VERSION_CONFLICT_MESSAGE);
    }
    for field in
        ["name", "type", "access", "url", "user", "database", "basicAuth", "basicAuthUser", "withCredentials", "isDefault", "jsonData"]
    {
        if let Some(value) = command.get(field) {
            stored.insert(field.into(), value.clone());
        }
    }
    if let Some(Value::Object(secure)) = command.get("secureJsonData") {
        let fields = stored.entry("secureJsonFields").or_insert_with(|| json!({}));
        for name in secure.keys() {
            fields[name.as_str()] = json!(true);
        }
    }
    stored.insert("version".into(), json!(sent + 1));
    let name = stored.get("name").cloned().unwrap_or(Value::Null);
    let id = stored.get("id").cloned().unwrap_or(Value::Null);
    json_response(
        StatusCode::OK,
        json!({ "datasource": Value::Object(stored.clone()), "id": id, "message": "Datasource updated", "name": name }),
    )
}

fn org_body(id: i64, name: &str) -> Value {
    json!({
        "id": id, "name": name,
        "address": { "address1": "", "address2": "", "city": "", "zipCode": "", "state": "", "country": "" },
    })
}

/// Grafana's RBAC refusal of an organisation call by a service account.
fn access_denied(method: &Method) -> Response {
    let action = if method == Method::GET { "orgs:read" } else { "orgs:write" };
    json_response(
        StatusCode::FORBIDDEN,
        json!({
            "accessErrorId": "ACE0000000001",
            "message": format!("You'll need additional permissions to perform this action. Permissions needed: {action}"),
            "title": "Access denied",
        }),
    )
}

fn unauthorized(text: &str, message_id: &str) -> Response {
    json_response(
        StatusCode::UNAUTHORIZED,
        json!({ "extra": null, "message": text, "messageId": message_id, "statusCode": 401, "traceID": "" }),
    )
}

/// Grafana's error and status body: `{"message": ...}`.
fn message(status: StatusCode, text: &str) -> Response {
    json_response(status, json!({ "message": text }))
}

fn json_response(status: StatusCode, body: Value) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("a well-formed response")
}

fn text(status: StatusCode, body: &str) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(body.to_string()))
        .expect("a well-formed response")
}
