//! The Admin REST API: routing, realms, roles, clients, the user profile and
//! brute-force detection. Users are in `users.rs`.

use std::collections::HashMap;

use axum::{
    http::{Method, StatusCode},
    response::Response,
};
use serde_json::{Map, Value, json};

use super::{
    SentEmail, created, error, error_message, no_content, not_found, ok,
    state::{Realm, Role, State, new_id},
};

/// Routes `/admin/<rest>`.
pub fn route(state: &mut State, base: &str, method: &Method, rest: &[&str], query: &HashMap<String, String>, body: &[u8]) -> Response {
    match (method, rest) {
        (&Method::GET, ["realms"]) => ok(Value::Array(state.realms.iter().map(|(name, realm)| realm.representation(name)).collect())),
        (&Method::POST, ["realms"]) => with_object(body, |rep| create_realm(state, base, rep)),
        (_, ["realms", name, rest @ ..]) => {
            let name = name.to_string();
            if *method == Method::DELETE && rest.is_empty() {
                return match state.realms.remove(&name) {
                    Some(_) => no_content(),
                    None => not_found("Realm not found."),
                };
            }
            let State { realms, emails, .. } = state;
            match realms.get_mut(&name) {
                Some(realm) => realm_route(realm, &mut RealmContext { base, name: &name, emails }, method, rest, query, body),
                None => not_found("Realm not found."),
            }
        }
        _ => not_found("HTTP 404 Not Found"),
    }
}

/// What realm operations need besides the realm.
pub struct RealmContext<'a> {
    pub base: &'a str,
    pub name: &'a str,
    pub emails: &'a mut Vec<SentEmail>,
}

impl RealmContext<'_> {
    /// The URL of a new object under the realm, for the `Location` header.
    pub fn location(&self, path: &str) -> String {
        format!("{}/admin/realms/{}/{path}", self.base, self.name)
    }
}

fn realm_route(
    realm: &mut Realm,
    context: &mut RealmContext<'_>,
    method: &Method,
    rest: &[&str],
    query: &HashMap<String, String>,
    body: &[u8],
) -> Response {
    match (method, rest) {
        (&Method::GET, []) => ok(realm.representation(context.name)),
        (&Method::PUT, []) => with_object(body, |rep| {
            realm.apply(rep);
            no_content()
        }),
        (&Method::GET, ["users", "profile"]) => ok(realm.user_profile.clone()),
        (&Method::PUT, ["users", "profile"]) => with_json(body, |config| {
            realm.user_profile = config.clone();
            ok(config.clone())
        }),
        (_, ["users", ..]) => realm.users_route(context, method, &rest[1..], query, body),
        (&Method::GET, ["roles"]) => list_roles(realm, query),
        (&Method::POST, ["roles"]) => with_object(body, |rep| create_role(realm, context, rep)),
        (&Method::GET, ["roles", name]) => match realm.role_by_name(name) {
            Some(role) => ok(realm.role_representation(role)),
            None => not_found("Could not find role"),
        },
        (&Method::GET, ["clients"]) => list_clients(realm, query),
        (&Method::POST, ["clients"]) => with_object(body, |rep| create_client(realm, context, rep)),
        (&Method::GET, ["clients", id]) => match realm.client(id) {
            Some(client) => ok(Value::Object(client.clone())),
            None => not_found("Could not find client"),
        },
        (&Method::PUT, ["clients", id]) => with_object(body, |rep| update_client(realm, id, rep)),
        (&Method::GET, ["attack-detection", "brute-force", "users", id]) => brute_force_status(realm, id),
        (&Method::DELETE, ["attack-detection", "brute-force", "users", id]) => {
            realm.failures.remove(*id);
            no_content()
        }
        _ => not_found("HTTP 404 Not Found"),
    }
}

/// Runs `f` on a JSON body, or answers 400 as Keycloak does for unreadable JSON.
pub fn with_json(body: &[u8], f: impl FnOnce(&Value) -> Response) -> Response {
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => f(&value),
        Err(_) => error(StatusCode::BAD_REQUEST, "unable to read contents from stream"),
    }
}

/// Runs `f` on a JSON object body.
pub fn with_object(body: &[u8], f: impl FnOnce(&Map<String, Value>) -> Response) -> Response {
    with_json(body, |value| match value {
        Value::Object(map) => f(map),
        _ => error(StatusCode::BAD_REQUEST, "unable to read contents from stream"),
    })
}

fn create_realm(state: &mut State, base: &str, rep: &Map<String, Value>) -> Response {
    let Some(name) = rep.get("realm").and_then(Value::as_str).filter(|n| !n.is_empty()) else {
        return error_message(StatusCode::BAD_REQUEST, "Realm name cannot be empty");
    };
    if state.realms.contains_key(name) {
        return error_message(StatusCode::CONFLICT, "Conflict detected. See logs for details");
    }
    state.realms.insert(name.to_string(), Realm::new(name, rep));
    created(format!("{base}/admin/realms/{name}"))
}

fn list_roles(realm: &Realm, query: &HashMap<String, String>) -> Response {
    let search = query.get("search").map(|s| s.to_lowercase());
    let roles = realm
        .roles
        .iter()
        .filter(|r| search.as_ref().is_none_or(|s| r.name.to_lowercase().contains(s)))
        .map(|r| realm.role_representation(r))
        .collect();
    ok(page(roles, query))
}

fn create_role(realm: &mut Realm, context: &RealmContext<'_>, rep: &Map<String, Value>) -> Response {
    let Some(name) = rep.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) else {
        return error_message(StatusCode::BAD_REQUEST, "Role name is missing");
    };
    if realm.role_by_name(name).is_some() {
        return error_message(StatusCode::CONFLICT, &format!("Role with name {name} already exists"));
    }
    let description = rep.get("description").and_then(Value::as_str).map(String::from);
    realm.roles.push(Role { id: new_id(), name: name.to_string(), description });
    created(context.location(&format!("roles/{name}")))
}

fn list_clients(realm: &Realm, query: &HashMap<String, String>) -> Response {
    let wanted = query.get("clientId");
    let search = query.get("search").is_some_and(|s| s == "true");
    let clients = realm
        .clients
        .iter()
        .filter(|c| {
            let client_id = c.get("clientId").and_then(Value::as_str).unwrap_or_default();
            match wanted {
                None => true,
                Some(wanted) if search => client_id.to_lowercase().contains(&wanted.to_lowercase()),
                Some(wanted) => client_id == wanted,
            }
        })
        .map(|c| Value::Object(c.clone()))
        .collect();
    ok(page(clients, query))
}

fn create_client(realm: &mut Realm, context: &RealmContext<'_>, rep: &Map<String, Value>) -> Response {
    let Some(client_id) = rep.get("clientId").and_then(Value::as_str).filter(|n| !n.is_empty()) else {
        return error_message(StatusCode::BAD_REQUEST, "Client id is missing");
    };
    if realm.client_by_client_id(client_id).is_some() {
        return error_message(StatusCode::CONFLICT, &format!("Client {client_id} already exists"));
    }
    let id = new_id();
    let mut client = super::object(json!({
        "id": id,
        "enabled": true,
        "protocol": "openid-connect",
        "publicClient": false,
        "standardFlowEnabled": true,
        "implicitFlowEnabled": false,
        "directAccessGrantsEnabled": false,
        "serviceAccountsEnabled": false,
        "redirectUris": [],
        "webOrigins": [],
        "attributes": {},
    }));
    merge_client(&mut client, rep);
    client.insert("id".into(), json!(id));
    realm.clients.push(client);
    created(context.location(&format!("clients/{id}")))
}

fn update_client(realm: &mut Realm, id: &str, rep: &Map<String, Value>) -> Response {
    let new_client_id = rep.get("clientId").and_then(Value::as_str);
    if let Some(other) = new_client_id.and_then(|c| realm.client_by_client_id(c))
        && other.get("id").and_then(Value::as_str) != Some(id)
    {
        return error_message(StatusCode::CONFLICT, &format!("Client {} already exists", new_client_id.unwrap_or_default()));
    }
    let Some(client) = realm.clients.iter_mut().find(|c| c.get("id").and_then(Value::as_str) == Some(id)) else {
        return not_found("Could not find client");
    };
    merge_client(client, rep);
    no_content()
}

/// Keycloak's client update: fields that are absent or null stay, attributes are set
/// one by one.
fn merge_client(client: &mut Map<String, Value>, rep: &Map<String, Value>) {
    for (key, value) in rep {
        match (key.as_str(), value) {
            (_, Value::Null) | ("id", _) => {}
            ("attributes", Value::Object(attributes)) => {
                let target = client.entry("attributes").or_insert_with(|| json!({}));
                if let Value::Object(target) = target {
                    for (name, value) in attributes {
                        target.insert(name.clone(), value.clone());
                    }
                }
            }
            _ => {
                client.insert(key.clone(), value.clone());
            }
        }
    }
}

/// `GET .../attack-detection/brute-force/users/{id}`: zeros when brute-force
/// protection is off or the user never failed.
fn brute_force_status(realm: &Realm, user_id: &str) -> Response {
    let mut status = json!({
        "disabled": false,
        "numFailures": 0,
        "numTemporaryLockouts": 0,
        "lastFailure": 0,
        "lastIPFailure": "n/a",
        "failedLoginNotBefore": 0,
    });
    if let Some(failures) = realm.failures.get(user_id).filter(|_| realm.bool_setting("bruteForceProtected")) {
        status["disabled"] = json!(failures.locked());
        status["numFailures"] = json!(failures.count);
        status["numTemporaryLockouts"] = json!(failures.temporary_lockouts);
        status["lastFailure"] = json!(failures.last_failure);
        status["lastIPFailure"] = json!("127.0.0.1");
    }
    ok(status)
}

/// The `first` and `max` query parameters; `max` defaults to 100.
pub fn page(items: Vec<Value>, query: &HashMap<String, String>) -> Value {
    let first = query.get("first").and_then(|f| f.parse().ok()).unwrap_or(0usize);
    let max = query.get("max").and_then(|m| m.parse().ok()).unwrap_or(100usize);
    Value::Array(items.into_iter().skip(first).take(max).collect())
}
