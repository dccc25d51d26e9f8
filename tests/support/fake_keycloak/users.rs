//! The Admin REST API of users: users, passwords, actions e-mails, credentials and
//! realm role mappings.

use std::collections::HashMap;

use axum::{
    http::{Method, StatusCode},
    response::Response,
};
use serde_json::{Map, Value, json};

use super::{
    SentEmail,
    admin::{RealmContext, page, with_json, with_object},
    created, error, error_message, login, no_content, not_found, oauth_error, ok,
    state::{Credential, Realm, StoredPassword, User, new_id, now_millis},
};

/// The required actions Keycloak 26 has; others are ignored on update and refused
/// in actions e-mails.
const REQUIRED_ACTIONS: [&str; 13] = [
    "CONFIGURE_TOTP",
    "UPDATE_PASSWORD",
    "UPDATE_PROFILE",
    "VERIFY_EMAIL",
    "VERIFY_PROFILE",
    "TERMS_AND_CONDITIONS",
    "UPDATE_EMAIL",
    "CONFIGURE_RECOVERY_AUTHN_CODES",
    "delete_account",
    "delete_credential",
    "update_user_locale",
    "webauthn-register",
    "webauthn-register-passwordless",
];

impl Realm {
    /// Routes `/admin/realms/{realm}/users/<rest>`.
    pub fn users_route(
        &mut self,
        context: &mut RealmContext<'_>,
        method: &Method,
        rest: &[&str],
        query: &HashMap<String, String>,
        body: &[u8],
    ) -> Response {
        match (method, rest) {
            (&Method::GET, []) => self.list_users(query),
            (&Method::POST, []) => with_object(body, |rep| self.create_user(context, rep)),
            (_, [id, ..]) if self.user(id).is_none() => not_found("User not found"),
            (&Method::GET, [id]) => {
                let locked = self.locked(id);
                ok(self.user(id).map(|u| u.representation(false, locked)).unwrap_or_default())
            }
            (&Method::PUT, [id]) => with_object(body, |rep| self.update_user(id, rep)),
            (&Method::DELETE, [id]) => {
                self.users.retain(|u| u.id() != *id);
                self.failures.remove(*id);
                no_content()
            }
            (&Method::PUT, [id, "reset-password"]) => with_object(body, |rep| self.reset_password(id, rep)),
            (&Method::PUT, [id, "execute-actions-email"]) => {
                with_json(body, |actions| self.execute_actions_email(context, id, actions, query))
            }
            (&Method::GET, [id, "credentials"]) => {
                ok(Value::Array(self.user(id).map(User::credential_representations).unwrap_or_default()))
            }
            (&Method::DELETE, [id, "credentials", credential]) => self.delete_credential(id, credential),
            (&Method::GET, [id, "role-mappings", "realm"]) => self.role_mappings(id),
            (&Method::POST, [id, "role-mappings", "realm"]) => with_json(body, |roles| self.map_roles(id, roles, true)),
            (&Method::DELETE, [id, "role-mappings", "realm"]) => {
                if body.is_empty() {
                    return self.map_roles(id, &Value::Null, false);
                }
                with_json(body, |roles| self.map_roles(id, roles, false))
            }
            _ => not_found("HTTP 404 Not Found"),
        }
    }

    /// `GET .../users`: `username`, `email` (substrings, or whole with
    /// `exact=true`), `search` (a substring of user name, e-mail or names),
    /// `briefRepresentation`, `first` and `max`.
    fn list_users(&self, query: &HashMap<String, String>) -> Response {
        let exact = query.get("exact").is_some_and(|e| e == "true");
        let brief = query.get("briefRepresentation").is_some_and(|b| b == "true");
        let matches = |value: &str, wanted: Option<&String>| match wanted.map(|w| w.to_lowercase()) {
            None => true,
            Some(wanted) if exact => value.to_lowercase() == wanted,
            Some(wanted) => value.to_lowercase().contains(&wanted),
        };
        let search = query.get("search").map(|s| s.trim_matches('*').to_lowercase());
        let users = self
            .users
            .iter()
            .filter(|u| matches(u.str("username"), query.get("username")) && matches(u.str("email"), query.get("email")))
            .filter(|u| {
                search
                    .as_ref()
                    .is_none_or(|s| ["username", "email", "firstName", "lastName"].iter().any(|k| u.str(k).to_lowercase().contains(s)))
            })
            .map(|u| u.representation(brief, self.locked(u.id())))
            .collect();
        ok(page(users, query))
    }

    fn email_taken(&self, email: &str, except: Option<&str>) -> bool {
        !self.bool_setting("duplicateEmailsAllowed") && self.users.iter().any(|u| Some(u.id()) != except && u.str("email") == email)
    }

    /// `POST .../users`.
    fn create_user(&mut self, context: &RealmContext<'_>, rep: &Map<String, Value>) -> Response {
        let Some(username) = rep.get("username").and_then(Value::as_str).map(str::to_lowercase).filter(|u| !u.is_empty()) else {
            return error_message(StatusCode::BAD_REQUEST, "User name is missing");
        };
        if self.user_by_username(&username).is_some() {
            return error_message(StatusCode::CONFLICT, "User exists with same username");
        }
        let email = rep.get("email").and_then(Value::as_str).map(str::to_lowercase).filter(|e| !e.is_empty());
        if email.as_deref().is_some_and(|e| self.email_taken(e, None)) {
            return error_message(StatusCode::CONFLICT, "User exists with same email");
        }
        let mut user = User {
            rep: super::object(json!({
                "id": new_id(),
                "username": username,
                "enabled": rep.get("enabled").and_then(Value::as_bool).unwrap_or(false),
                "emailVerified": rep.get("emailVerified").and_then(Value::as_bool).unwrap_or(false),
                "createdTimestamp": now_millis(),
                "notBefore": 0,
                "requiredActions": [],
            })),
            password: None,
            otp: Vec::new(),
            role_ids: self.role_by_name(&format!("default-roles-{}", context.name)).map(|r| r.id.clone()).into_iter().collect(),
        };
        set_profile_fields(&mut user, rep, email);
        self.set_attributes(&mut user, rep);
        set_required_actions(&mut user, rep);
        if let Err(response) = self.import_credentials(&mut user, rep) {
            return *response;
        }
        let id = user.id().to_string();
        self.users.push(user);
        created(context.location(&format!("users/{id}")))
    }

    /// Attributes are kept only when the user profile accepts attributes it does not
    /// declare; otherwise Keycloak drops them.
    fn set_attributes(&self, user: &mut User, rep: &Map<String, Value>) {
        let Some(Value::Object(attributes)) = rep.get("attributes") else {
            return;
        };
        let kept: Map<String, Value> = if self.accepts_unmanaged_attributes() {
            attributes.iter().filter(|(_, v)| v.as_array().is_some_and(|a| !a.is_empty())).map(|(k, v)| (k.clone(), v.clone())).collect()
        } else {
            Map::new()
        };
        user.rep.insert("attributes".into(), Value::Object(kept));
    }

    /// Credentials in a new user: a password (checked against the policy) and OTP
    /// credentials as Keycloak imports them.
    fn import_credentials(&self, user: &mut User, rep: &Map<String, Value>) -> Result<(), Box<Response>> {
        for credential in rep.get("credentials").and_then(Value::as_array).into_iter().flatten() {
            let kind = credential.get("type").and_then(Value::as_str).unwrap_or("password");
            if kind == "password" {
                let value = credential.get("value").and_then(Value::as_str).unwrap_or_default();
                if login::check_password(&self.password_policy(), value, user.str("username"), user.str("email")).is_err() {
                    return Err(Box::new(error_message(StatusCode::BAD_REQUEST, "Password policy not met")));
                }
                user.password = Some(StoredPassword { id: new_id(), value: value.to_string(), created: now_millis() });
                if credential.get("temporary").and_then(Value::as_bool) == Some(true) {
                    user.set_required_action("UPDATE_PASSWORD", true);
                }
            } else {
                user.otp.push(Credential {
                    id: new_id(),
                    kind: kind.to_string(),
                    label: credential.get("userLabel").and_then(Value::as_str).map(String::from),
                    created: now_millis(),
                    data: credential.get("credentialData").and_then(Value::as_str).unwrap_or("{}").to_string(),
                });
            }
        }
        Ok(())
    }

    /// `PUT .../users/{id}`: fields that are absent stay; `enabled: true` clears the
    /// user's login failures, as in Keycloak.
    fn update_user(&mut self, id: &str, rep: &Map<String, Value>) -> Response {
        let email = rep.get("email").and_then(Value::as_str).map(str::to_lowercase);
        if email.as_deref().is_some_and(|e| !e.is_empty() && self.email_taken(e, Some(id))) {
            return error_message(StatusCode::CONFLICT, "User exists with same username or email");
        }
        let enabled = rep.get("enabled").and_then(Value::as_bool);
        if enabled == Some(true) {
            self.failures.remove(id);
        }
        let mut user = match self.users.iter().position(|u| u.id() == id) {
            Some(index) => self.users.remove(index),
            None => return not_found("User not found"),
        };
        if let Some(enabled) = enabled {
            user.rep.insert("enabled".into(), json!(enabled));
        }
        if let Some(verified) = rep.get("emailVerified").and_then(Value::as_bool) {
            user.rep.insert("emailVerified".into(), json!(verified));
        }
        set_profile_fields(&mut user, rep, email);
        self.set_attributes(&mut user, rep);
        set_required_actions(&mut user, rep);
        self.users.push(user);
        no_content()
    }

    /// `PUT .../reset-password`: refused with Keycloak's policy message, or stored;
    /// a temporary password adds `UPDATE_PASSWORD`, a permanent one removes it.
    fn reset_password(&mut self, id: &str, rep: &Map<String, Value>) -> Response {
        let Some(value) = rep.get("value").and_then(Value::as_str) else {
            return error(StatusCode::BAD_REQUEST, "No password provided");
        };
        if value.trim().is_empty() {
            return error(StatusCode::BAD_REQUEST, "Empty password");
        }
        let policy = self.password_policy();
        let Some(user) = self.user_mut(id) else {
            return not_found("User not found");
        };
        if let Err((key, message)) = login::check_password(&policy, value, user.str("username"), user.str("email")) {
            return oauth_error(StatusCode::BAD_REQUEST, &key, &message);
        }
        user.password = Some(StoredPassword { id: new_id(), value: value.to_string(), created: now_millis() });
        let temporary = rep.get("temporary").and_then(Value::as_bool).unwrap_or(false);
        user.set_required_action("UPDATE_PASSWORD", temporary);
        no_content()
    }

    /// `PUT .../execute-actions-email`: checked as Keycloak checks it, then recorded.
    /// Sending fails (500) when the realm has no SMTP host.
    fn execute_actions_email(
        &mut self,
        context: &mut RealmContext<'_>,
        id: &str,
        actions: &Value,
        query: &HashMap<String, String>,
    ) -> Response {
        let Some(user) = self.user(id) else {
            return not_found("User not found");
        };
        let to = user.str("email").to_string();
        if to.is_empty() {
            return error_message(StatusCode::BAD_REQUEST, "User email missing");
        }
        if !user.enabled() {
            return error_message(StatusCode::BAD_REQUEST, "User is disabled");
        }
        let client_id = query.get("client_id").cloned();
        if query.contains_key("redirect_uri") && client_id.is_none() {
            return error_message(StatusCode::BAD_REQUEST, "Client id missing");
        }
        match self.client_by_client_id(client_id.as_deref().unwrap_or("account")) {
            None => return error_message(StatusCode::BAD_REQUEST, "Client doesn't exist"),
            Some(client) if client.get("enabled").and_then(Value::as_bool) == Some(false) => {
                return error_message(StatusCode::BAD_REQUEST, "Client is not enabled");
            }
            Some(_) => {}
        }
        let actions: Vec<String> = actions.as_array().into_iter().flatten().filter_map(|a| a.as_str().map(String::from)).collect();
        if actions.iter().any(|a| !REQUIRED_ACTIONS.contains(&a.as_str())) {
            return error_message(StatusCode::BAD_REQUEST, "Provided invalid required actions");
        }
        if self.rep.get("smtpServer").and_then(|s| s.get("host")).and_then(Value::as_str).is_none_or(str::is_empty) {
            return error_message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Failed to send execute actions email: Please provide a valid address",
            );
        }
        let username = user.str("username").to_string();
        context.emails.push(SentEmail { realm: context.name.to_string(), user_id: id.to_string(), username, to, actions, client_id });
        no_content()
    }

    fn delete_credential(&mut self, id: &str, credential: &str) -> Response {
        let Some(user) = self.user_mut(id) else {
            return not_found("User not found");
        };
        if user.password.as_ref().is_some_and(|p| p.id == credential) {
            user.password = None;
        } else if user.otp.iter().any(|c| c.id == credential) {
            user.otp.retain(|c| c.id != credential);
        } else {
            return not_found("Credential not found");
        }
        no_content()
    }

    fn role_mappings(&self, id: &str) -> Response {
        let Some(user) = self.user(id) else {
            return not_found("User not found");
        };
        ok(Value::Array(self.roles.iter().filter(|r| user.role_ids.contains(&r.id)).map(|r| self.role_representation(r)).collect()))
    }

    /// `POST`/`DELETE .../role-mappings/realm`: every role must exist with the given
    /// name and id. Deleting without a body removes every mapping.
    fn map_roles(&mut self, id: &str, roles: &Value, grant: bool) -> Response {
        let mut ids = Vec::new();
        for role in roles.as_array().into_iter().flatten() {
            let name = role.get("name").and_then(Value::as_str).unwrap_or_default();
            match self.role_by_name(name) {
                Some(found) if role.get("id").and_then(Value::as_str).is_none_or(|i| i == found.id) => ids.push(found.id.clone()),
                _ => return not_found("Role not found"),
            }
        }
        let Some(user) = self.user_mut(id) else {
            return not_found("User not found");
        };
        match (grant, roles.is_null()) {
            (true, _) => user.role_ids.extend(ids),
            (false, true) => user.role_ids.clear(),
            (false, false) => user.role_ids.retain(|r| !ids.contains(r)),
        }
        no_content()
    }
}

/// E-mail and names: a present empty value removes the field, an absent one keeps it.
fn set_profile_fields(user: &mut User, rep: &Map<String, Value>, email: Option<String>) {
    let mut set = |key: &str, value: Option<String>| match value {
        Some(value) if value.is_empty() => {
            user.rep.remove(key);
        }
        Some(value) => {
            user.rep.insert(key.to_string(), json!(value));
        }
        None => {}
    };
    set("email", email);
    set("firstName", rep.get("firstName").and_then(Value::as_str).map(String::from));
    set("lastName", rep.get("lastName").and_then(Value::as_str).map(String::from));
}

/// Required actions, when given, replace the user's; unknown ones are ignored.
fn set_required_actions(user: &mut User, rep: &Map<String, Value>) {
    if let Some(actions) = rep.get("requiredActions").and_then(Value::as_array) {
        let known: Vec<&str> = actions.iter().filter_map(Value::as_str).filter(|a| REQUIRED_ACTIONS.contains(a)).collect();
        user.rep.insert("requiredActions".into(), json!(known));
    }
}
