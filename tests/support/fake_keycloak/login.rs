//! The token endpoint: admin logins (client credentials or password), password
//! logins of realm users with brute-force detection, and the password policy.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use axum::{
    http::{HeaderMap, StatusCode, header},
    response::Response,
};
use rand::distr::{Alphanumeric, SampleString};
use serde_json::{Value, json};

use super::{
    ADMIN_REALM, error, json_response, oauth_error, ok,
    state::{Realm, State, Token, now_millis},
};

impl State {
    /// Lets an Admin API request through when it carries an unexpired token of the
    /// `master` realm.
    pub fn authorize(&mut self, headers: &HeaderMap) -> Result<(), Box<Response>> {
        let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        match bearer.and_then(|t| self.tokens.get(t)) {
            Some(token) if token.realm == ADMIN_REALM && Instant::now() < token.expires_at => Ok(()),
            _ => Err(Box::new(json_response(StatusCode::UNAUTHORIZED, json!({ "error": "HTTP 401 Unauthorized" })))),
        }
    }

    /// `POST /realms/{realm}/protocol/openid-connect/token`.
    pub fn token(&mut self, realm_name: &str, form: &HashMap<String, String>) -> Response {
        let lifetime = self.token_lifetime;
        let Some(realm) = self.realms.get_mut(realm_name) else {
            return error(StatusCode::NOT_FOUND, "Realm does not exist");
        };
        if !realm.bool_setting("enabled") {
            return oauth_error(StatusCode::FORBIDDEN, "access_denied", "Realm not enabled");
        }
        let client = match authenticate_client(realm, form) {
            Ok(client) => client,
            Err(response) => return *response,
        };
        let granted = match form.get("grant_type").map(String::as_str) {
            Some("client_credentials") if client.service_accounts => Ok(()),
            Some("client_credentials") => Err(Box::new(oauth_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized_client",
                "Client not enabled to retrieve service account",
            ))),
            Some("password") if client.direct_grants => password_login(realm, form),
            Some("password") => {
                Err(Box::new(oauth_error(StatusCode::BAD_REQUEST, "unauthorized_client", "Client not allowed for direct access grants")))
            }
            _ => Err(Box::new(oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "Unsupported grant_type"))),
        };
        match granted {
            Ok(()) => self.issue_token(realm_name, lifetime),
            Err(response) => *response,
        }
    }

    fn issue_token(&mut self, realm: &str, lifetime: Duration) -> Response {
        let access_token = Alphanumeric.sample_string(&mut rand::rng(), 48);
        self.tokens.insert(access_token.clone(), Token { realm: realm.to_string(), expires_at: Instant::now() + lifetime });
        ok(json!({
            "access_token": access_token,
            "expires_in": lifetime.as_secs(),
            "refresh_expires_in": 0,
            "token_type": "Bearer",
            "not-before-policy": 0,
            "scope": "profile email",
        }))
    }
}

/// What a client may do.
struct ClientGrants {
    service_accounts: bool,
    direct_grants: bool,
}

/// A confidential client must present its secret; a public client only its id.
fn authenticate_client(realm: &Realm, form: &HashMap<String, String>) -> Result<ClientGrants, Box<Response>> {
    let invalid = || Box::new(oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Invalid client or Invalid client credentials"));
    let client = form.get("client_id").and_then(|id| realm.client_by_client_id(id)).ok_or_else(invalid)?;
    let flag = |key: &str| client.get(key).and_then(Value::as_bool).unwrap_or(false);
    if !flag("enabled") {
        return Err(invalid());
    }
    if !flag("publicClient") {
        let secret = client.get("secret").and_then(Value::as_str);
        if secret.is_none() || form.get("client_secret").map(String::as_str) != secret {
            return Err(invalid());
        }
    }
    Ok(ClientGrants {
        service_accounts: flag("serviceAccountsEnabled") && !flag("publicClient"),
        direct_grants: flag("directAccessGrantsEnabled"),
    })
}

/// The password grant of a realm user, in the order Keycloak's direct-grant flow
/// checks: the user exists, is not locked out, is enabled, the password matches,
/// and no required action is pending.
fn password_login(realm: &mut Realm, form: &HashMap<String, String>) -> Result<(), Box<Response>> {
    let invalid_credentials = |status| Box::new(oauth_error(status, "invalid_grant", "Invalid user credentials"));
    let username = form.get("username").map(String::as_str).unwrap_or_default();
    let Some(user) = realm.user_by_username(username) else {
        return Err(invalid_credentials(StatusCode::UNAUTHORIZED));
    };
    let id = user.id().to_string();
    if realm.locked(&id) {
        return Err(invalid_credentials(StatusCode::BAD_REQUEST));
    }
    if !user.enabled() {
        return Err(Box::new(oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Account disabled")));
    }
    let password_matches = user.password.as_ref().is_some_and(|p| Some(&p.value) == form.get("password"));
    let actions_pending = !user.required_actions().is_empty();
    if !password_matches {
        record_failure(realm, &id);
        return Err(invalid_credentials(StatusCode::UNAUTHORIZED));
    }
    realm.failures.remove(&id);
    if actions_pending {
        return Err(Box::new(oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Account is not fully set up")));
    }
    Ok(())
}

/// Counts a failed login. Every `failureFactor` failures lock the user out: for
/// `waitIncrementSeconds` times the number of lockouts so far (at most
/// `maxFailureWaitSeconds`), or for good with `permanentLockout` (after
/// `maxTemporaryLockouts` temporary ones, when that is set). A failure more than
/// `maxDeltaTimeSeconds` after the previous one starts the count again.
fn record_failure(realm: &mut Realm, user_id: &str) {
    if !realm.bool_setting("bruteForceProtected") {
        return;
    }
    let seconds = |key: &str| Duration::from_secs(realm.int_setting(key).max(0) as u64);
    let (reset_after, increment, longest) =
        (seconds("maxDeltaTimeSeconds"), seconds("waitIncrementSeconds"), seconds("maxFailureWaitSeconds"));
    let factor = realm.int_setting("failureFactor").max(1) as u32;
    let permanent = realm.bool_setting("permanentLockout");
    let max_temporary = realm.int_setting("maxTemporaryLockouts").max(0) as u32;
    let now = Instant::now();
    let failures = realm.failures.entry(user_id.to_string()).or_default();
    if failures.last_failure_at.is_some_and(|at| now.duration_since(at) > reset_after) {
        failures.count = 0;
    }
    failures.count += 1;
    failures.last_failure = now_millis();
    failures.last_failure_at = Some(now);
    if !failures.count.is_multiple_of(factor) {
        return;
    }
    if permanent && failures.temporary_lockouts >= max_temporary {
        failures.permanent = true;
    } else {
        failures.temporary_lockouts += 1;
        failures.locked_until = Some(now + (increment * (failures.count / factor)).min(longest));
    }
}

/// Checks a password against a Keycloak password policy string; the error is
/// Keycloak's message key and English message. Terms the fake does not know pass.
pub fn check_password(policy: &str, password: &str, username: &str, email: &str) -> Result<(), (String, String)> {
    let count = |f: fn(&char) -> bool| password.chars().filter(f).count();
    for term in policy.split(" and ").map(str::trim).filter(|t| !t.is_empty()) {
        let (name, argument) = match term.split_once('(') {
            Some((name, rest)) => (name.trim(), rest.trim_end_matches(')').trim()),
            None => (term, ""),
        };
        let number = |default: usize| argument.parse::<usize>().unwrap_or(default);
        let refusal = match name {
            "length" if password.chars().count() < number(8) => {
                Some(("invalidPasswordMinLengthMessage", format!("Invalid password: minimum length {}.", number(8))))
            }
            "maxLength" if password.chars().count() > number(64) => {
                Some(("invalidPasswordMaxLengthMessage", format!("Invalid password: maximum length {}.", number(64))))
            }
            "digits" if count(char::is_ascii_digit) < number(1) => Some((
                "invalidPasswordMinDigitsMessage",
                format!("Invalid password: must contain at least {} numerical digits.", number(1)),
            )),
            "upperCase" if count(char::is_ascii_uppercase) < number(1) => Some((
                "invalidPasswordMinUpperCaseCharsMessage",
                format!("Invalid password: must contain at least {} upper case characters.", number(1)),
            )),
            "lowerCase" if count(char::is_ascii_lowercase) < number(1) => Some((
                "invalidPasswordMinLowerCaseCharsMessage",
                format!("Invalid password: must contain at least {} lower case characters.", number(1)),
            )),
            "specialChars" if count(|c| !c.is_alphanumeric()) < number(1) => Some((
                "invalidPasswordMinSpecialCharsMessage",
                format!("Invalid password: must contain at least {} special characters.", number(1)),
            )),
            "notUsername" if password.eq_ignore_ascii_case(username) => {
                Some(("invalidPasswordNotUsernameMessage", "Invalid password: must not be equal to the username.".to_string()))
            }
            "notEmail" if !email.is_empty() && password.eq_ignore_ascii_case(email) => {
                Some(("invalidPasswordNotEmailMessage", "Invalid password: must not be equal to the email.".to_string()))
            }
            _ => None,
        };
        if let Some((key, message)) = refusal {
            return Err((key.to_string(), message));
        }
    }
    Ok(())
}
