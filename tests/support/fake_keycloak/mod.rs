//! A stateful fake of Keycloak 26: the Admin REST API calls the identity provider
//! makes and the token endpoint, on `127.0.0.1` at a free port.
//!
//! It answers as Keycloak does, with Keycloak's status codes and error bodies, for
//! realms, users, realm roles and role mappings, clients, the user profile,
//! passwords and the realm's password policy, actions e-mails, credentials and
//! brute-force detection. Password logins through a realm's token endpoint count
//! failures and lock users out after the realm's failure factor. Admin calls need a
//! token of the `master` realm, obtained with the client-credentials grant
//! ([`FakeKeycloak::admin_client_id`]) or the password grant
//! ([`FakeKeycloak::admin_username`]); tokens expire after a configurable lifetime.
//!
//! Controls for tests: [`FakeKeycloak::set_down`] (every request gets 503),
//! [`FakeKeycloak::set_delay`] (answers are delayed, after the change was made, as
//! when a network is slow), [`FakeKeycloak::set_write_delay`] (the same for writes
//! only), [`FakeKeycloak::revoke_tokens`], the recorded
//! [`FakeKeycloak::requests`] and [`FakeKeycloak::sent_emails`]. See
//! docs/fake-keycloak.md for what differs from the real server.

mod admin;
mod login;
mod state;
mod users;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Body,
    extract::{Query, Request, State as AxumState},
    http::{HeaderMap, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use rand::distr::{Alphanumeric, SampleString};
use serde_json::{Map, Value, json};
use tokio::{sync::oneshot, task::JoinHandle};

use self::state::{Realm, State, StoredPassword, User, new_id, now_millis};

/// The realm of the fake's administrators.
pub const ADMIN_REALM: &str = "master";

/// The largest request body the fake reads.
const MAX_BODY: usize = 1 << 20;

/// One request the fake received. Bodies are not kept: they may hold passwords.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, `PUT` or `DELETE`.
    pub method: String,
    /// The path, e.g. `/admin/realms/acme`.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
}

/// An actions e-mail the fake "sent".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentEmail {
    /// The realm.
    pub realm: String,
    /// The user's id.
    pub user_id: String,
    /// The user's name.
    pub username: String,
    /// The address it went to.
    pub to: String,
    /// The required actions the link performs.
    pub actions: Vec<String>,
    /// The `client_id` query parameter.
    pub client_id: Option<String>,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    base_url: String,
}

/// A running fake Keycloak. Dropping it stops the server.
pub struct FakeKeycloak {
    shared: Arc<Shared>,
    admin_client_id: String,
    admin_client_secret: String,
    admin_username: String,
    admin_password: String,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
}

impl FakeKeycloak {
    /// Starts the fake with a `master` realm holding a confidential client with a
    /// service account and an admin user, both with random secrets.
    pub async fn start() -> FakeKeycloak {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port for the fake Keycloak");
        let addr = listener.local_addr().expect("read the fake Keycloak's address");
        let random = || Alphanumeric.sample_string(&mut rand::rng(), 24);
        let (admin_client_id, admin_client_secret) = ("cx-operator".to_string(), random());
        let (admin_username, admin_password) = ("admin".to_string(), random());
        let mut state = State::new();
        state.realms.insert(ADMIN_REALM.into(), admin_realm(&admin_client_id, &admin_client_secret, &admin_username, &admin_password));
        let shared = Arc::new(Shared { state: Mutex::new(state), base_url: format!("http://{addr}") });
        let app = axum::Router::new().fallback(handle).with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let serving = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = serving.await {
                tracing::warn!(error = %e, "fake Keycloak stopped with an error");
            }
        });
        FakeKeycloak { shared, admin_client_id, admin_client_secret, admin_username, admin_password, stop: Some(stop), server }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The client id of the `master` realm's service-account client.
    pub fn admin_client_id(&self) -> &str {
        &self.admin_client_id
    }

    /// The secret of [`Self::admin_client_id`].
    pub fn admin_client_secret(&self) -> &str {
        &self.admin_client_secret
    }

    /// The `master` realm's admin user.
    pub fn admin_username(&self) -> &str {
        &self.admin_username
    }

    /// The password of [`Self::admin_username`].
    pub fn admin_password(&self) -> &str {
        &self.admin_password
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().expect("the fake Keycloak's state is not poisoned")
    }

    /// While `down`, every request is answered with 503, as by a proxy in front of a
    /// Keycloak that is not running.
    pub fn set_down(&self, down: bool) {
        self.state().down = down;
    }

    /// Delays every answer by `delay`. The request takes effect first, as when the
    /// network is slow, so a client that gives up does not know whether it happened.
    pub fn set_delay(&self, delay: Duration) {
        self.state().delay = delay;
    }

    /// Delays the answers to requests that change something (everything but `GET`)
    /// by `delay`, after the change was made: the answer to a write is lost to a
    /// client with a shorter timeout, while its reads still succeed.
    pub fn set_write_delay(&self, delay: Duration) {
        self.state().write_delay = delay;
    }

    /// The lifetime of tokens issued from now on (default 300 seconds).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.state().token_lifetime = lifetime;
    }

    /// Invalidates every token issued so far, as a Keycloak restart with new keys
    /// does.
    pub fn revoke_tokens(&self) {
        self.state().tokens.clear();
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.state().requests.clear();
    }

    /// The Admin API requests that change something (`POST`, `PUT`, `DELETE`).
    pub fn writes(&self) -> Vec<RecordedRequest> {
        self.requests().into_iter().filter(|r| r.method != "GET" && r.path.starts_with("/admin/")).collect()
    }

    /// How many token requests reached the `master` realm: the admin logins.
    pub fn admin_logins(&self) -> usize {
        let path = format!("/realms/{ADMIN_REALM}/protocol/openid-connect/token");
        self.requests().iter().filter(|r| r.method == "POST" && r.path == path).count()
    }

    /// The actions e-mails sent so far.
    pub fn sent_emails(&self) -> Vec<SentEmail> {
        self.state().emails.clone()
    }

    /// An access token of the admin client, for tests that read the Admin API
    /// directly.
    pub async fn admin_token(&self) -> String {
        let form =
            [("grant_type", "client_credentials"), ("client_id", self.admin_client_id()), ("client_secret", self.admin_client_secret())];
        let token: Value = reqwest::Client::new()
            .post(format!("{}/realms/master/protocol/openid-connect/token", self.url()))
            .form(&form)
            .send()
            .await
            .expect("the fake Keycloak answers")
            .json()
            .await
            .expect("a token response");
        token["access_token"].as_str().expect("an access token").to_string()
    }

    /// Gives a user a TOTP credential, as when the person sets up an authenticator
    /// app at a login (Keycloak's Admin API cannot add one to an existing user).
    pub fn add_otp_credential(&self, realm: &str, user_id: &str) {
        let mut state = self.state();
        let user = state.realms.get_mut(realm).and_then(|r| r.user_mut(user_id)).expect("the user exists");
        user.otp.push(state::Credential {
            id: new_id(),
            kind: "otp".into(),
            label: Some("phone".into()),
            created: now_millis(),
            data: r#"{"subType":"totp","digits":6,"counter":0,"period":30,"algorithm":"HmacSHA1"}"#.into(),
        });
    }
}

impl Drop for FakeKeycloak {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.server.abort();
    }
}

fn admin_realm(client_id: &str, client_secret: &str, username: &str, password: &str) -> Realm {
    let mut realm = Realm::new(ADMIN_REALM, &object(json!({ "enabled": true, "displayName": "Keycloak" })));
    realm.clients.push(object(json!({
        "id": new_id(),
        "clientId": client_id,
        "secret": client_secret,
        "enabled": true,
        "protocol": "openid-connect",
        "publicClient": false,
        "serviceAccountsEnabled": true,
        "standardFlowEnabled": false,
        "directAccessGrantsEnabled": false,
        "attributes": {},
    })));
    realm.users.push(User {
        rep: object(
            json!({ "id": new_id(), "username": username, "enabled": true, "emailVerified": false, "createdTimestamp": now_millis() }),
        ),
        password: Some(StoredPassword { id: new_id(), value: password.into(), created: now_millis() }),
        otp: Vec::new(),
        role_ids: Default::default(),
    });
    realm
}

/// Every request: recorded, refused while down, routed, and delayed after it took
/// effect.
async fn handle(AxumState(shared): AxumState<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY).await.unwrap_or_default();
    let (response, delay) = {
        let mut state = shared.state.lock().expect("the fake Keycloak's state is not poisoned");
        state.requests.push(RecordedRequest {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(String::from),
        });
        let response = if state.down {
            (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response()
        } else {
            route(&mut state, &shared.base_url, &parts.method, &parts.uri, &parts.headers, &body)
        };
        let delay = if parts.method == Method::GET { state.delay } else { state.delay.max(state.write_delay) };
        (response, delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    response
}

fn route(state: &mut State, base: &str, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Response {
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let query = query(uri);
    match (method, segments.as_slice()) {
        (&Method::POST, ["realms", realm, "protocol", "openid-connect", "token"]) => state.token(realm, &form(body)),
        (_, ["admin", rest @ ..]) => match state.authorize(headers) {
            Ok(()) => admin::route(state, base, method, rest, &query, body),
            Err(response) => *response,
        },
        _ => not_found("HTTP 404 Not Found"),
    }
}

fn query(uri: &Uri) -> HashMap<String, String> {
    Query::<HashMap<String, String>>::try_from_uri(uri).map(|q| q.0).unwrap_or_default()
}

/// A form body, decoded as the query string it has the syntax of.
fn form(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    format!("http://form/?{text}").parse::<Uri>().map(|uri| query(&uri)).unwrap_or_default()
}

/// A JSON object from a `json!` literal.
pub(crate) fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

pub(crate) fn json_response(status: StatusCode, body: Value) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("a well-formed response")
}

pub(crate) fn ok(body: Value) -> Response {
    json_response(StatusCode::OK, body)
}

pub(crate) fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

pub(crate) fn created(location: String) -> Response {
    Response::builder().status(StatusCode::CREATED).header(header::LOCATION, location).body(Body::empty()).expect("a well-formed response")
}

/// Keycloak's `ErrorRepresentation`: `{"errorMessage": ...}`.
pub(crate) fn error_message(status: StatusCode, message: &str) -> Response {
    json_response(status, json!({ "errorMessage": message }))
}

/// Keycloak's answer to an exception such as "not found": `{"error": ...}`.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    json_response(status, json!({ "error": message, "error_description": "For more on this error consult the server log." }))
}

pub(crate) fn not_found(message: &str) -> Response {
    error(StatusCode::NOT_FOUND, message)
}

/// An OAuth 2 error: `{"error": ..., "error_description": ...}`.
pub(crate) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_response(status, json!({ "error": error, "error_description": description }))
}
