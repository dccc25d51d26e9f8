//! The HTTP side of the Keycloak provider: the TLS setup, the cached admin token and
//! the classification of failures into [`ProviderError`]s.

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use keycloak::{KeycloakAdmin, KeycloakAdminToken, KeycloakError, KeycloakServiceAccountAdminTokenRetriever, KeycloakTokenSupplier};
use serde::Deserialize;
use tokio::{sync::Mutex, time::Instant};

use super::{BACKEND, KeycloakAuth};
use crate::provider::{ProviderError, http::describe_transport};

/// The Admin REST API client with the operator's token cache.
pub(super) type Admin = KeycloakAdmin<SharedTokens>;

/// The client the password grant logs in with; every realm has it.
const PASSWORD_GRANT_CLIENT: &str = "admin-cli";

/// The longest time before expiry at which a cached token is replaced.
const REFRESH_MARGIN: Duration = Duration::from_secs(30);

/// The longest Keycloak response text quoted in an error; longer bodies are HTML
/// pages of a proxy, not Keycloak's own message.
const MAX_QUOTED_TEXT: usize = 200;

/// The HTTP client of the Admin API (TLS, CA bundle and timeouts shared with every
/// HTTP backend).
pub(super) fn http_client(ca_pem: Option<&str>, timeout: Duration) -> Result<reqwest::Client, ProviderError> {
    crate::provider::http::client(BACKEND, "Keycloak", ca_pem, timeout)
}

/// The admin token, fetched on first use and kept until shortly before it expires.
pub(super) struct TokenCache {
    http: reqwest::Client,
    auth: KeycloakAuth,
    cached: Mutex<Option<CachedToken>>,
}

struct CachedToken {
    access_token: String,
    refresh_at: Instant,
}

impl TokenCache {
    pub(super) fn new(http: reqwest::Client, auth: KeycloakAuth) -> Self {
        TokenCache { http, auth, cached: Mutex::new(None) }
    }

    /// Forgets the cached token, so the next call logs in again. Used when Keycloak
    /// answers 401: the token was revoked, or the server restarted with new keys.
    pub(super) async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    async fn token(&self, url: &str) -> Result<String, KeycloakError> {
        // Holding the lock while logging in makes concurrent callers wait for one
        // login instead of each starting its own.
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(token.access_token.clone());
        }
        let fetched = self.login(url).await.map_err(|e| self.login_error(e))?;
        let lifetime = Duration::from_secs(fetched.expires_in() as u64);
        let refresh_at = Instant::now() + lifetime - refresh_margin(lifetime);
        tracing::debug!(realm = self.auth.realm(), lifetime_seconds = lifetime.as_secs(), "obtained a Keycloak admin token");
        let access_token = fetched.access_token().to_string();
        *cached = Some(CachedToken { access_token: access_token.clone(), refresh_at });
        Ok(access_token)
    }

    async fn login(&self, url: &str) -> Result<KeycloakAdminToken, KeycloakError> {
        match &self.auth {
            KeycloakAuth::ClientCredentials { realm, client_id, client_secret } => {
                KeycloakServiceAccountAdminTokenRetriever::create_with_custom_realm(client_id, client_secret, realm, self.http.clone())
                    .acquire(url)
                    .await
            }
            KeycloakAuth::Password { realm, username, password } => {
                KeycloakAdminToken::acquire_custom_realm(url, username, password, realm, PASSWORD_GRANT_CLIENT, "password", &self.http)
                    .await
            }
        }
    }

    /// Says that the failure happened while logging in, keeping the status so the
    /// failure is classified like any other.
    fn login_error(&self, error: KeycloakError) -> KeycloakError {
        match error {
            KeycloakError::HttpFailure { status, text, .. } => {
                let message = format!("admin login to realm {} failed: {}", self.auth.realm(), error_text(&text));
                KeycloakError::HttpFailure { status, body: None, text: serde_json::json!({ "errorMessage": message }).to_string() }
            }
            transport => transport,
        }
    }
}

/// How long before expiry a token of `lifetime` is replaced: a quarter of its
/// lifetime, at most [`REFRESH_MARGIN`], so that a request never starts with a token
/// about to expire, and short-lived tokens are still used more than once.
fn refresh_margin(lifetime: Duration) -> Duration {
    (lifetime / 4).min(REFRESH_MARGIN)
}

/// The token cache as the Admin API client's token supplier, shared with the
/// provider so it can invalidate the token.
#[derive(Clone)]
pub(super) struct SharedTokens(pub(super) Arc<TokenCache>);

#[async_trait]
impl KeycloakTokenSupplier for SharedTokens {
    async fn get(&self, url: &str) -> Result<String, KeycloakError> {
        self.0.token(url).await
    }
}

impl fmt::Debug for SharedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedTokens")
    }
}

/// The HTTP status of a failed call, when Keycloak answered.
pub(super) fn status_of(error: &KeycloakError) -> Option<u16> {
    match error {
        KeycloakError::HttpFailure { status, .. } => Some(*status),
        KeycloakError::ReqwestFailure(_) => None,
    }
}

/// Classifies a failed call. `what` says what was being done, e.g. `get realm acme`.
///
/// Server errors, throttling, timeouts and connection failures can pass, so they are
/// [`ProviderError::Unavailable`]; 409 is a [`ProviderError::Conflict`]; any other
/// 4xx is a [`ProviderError::Refused`] with Keycloak's own message.
pub(super) fn classify(error: KeycloakError, what: &str) -> ProviderError {
    match error {
        KeycloakError::ReqwestFailure(e) => unavailable(format!("{what}: {}", describe_transport(&e))),
        KeycloakError::HttpFailure { status, text, .. } => {
            let message = format!("{what}: HTTP {status}: {}", error_text(&text));
            match status {
                408 | 429 | 500..=599 => unavailable(message),
                409 => ProviderError::Conflict { backend: BACKEND, message },
                _ => refused(message),
            }
        }
    }
}

/// The error bodies Keycloak sends: `{"errorMessage": ...}` from the Admin API and
/// `{"error": ..., "error_description": ...}` from the token endpoint and some admin
/// operations (a password refused by the realm's policy).
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "errorMessage")]
    error_message: Option<String>,
    error_description: Option<String>,
    error: Option<String>,
}

/// Keycloak's own words for a failure: `errorMessage`, else `error_description`,
/// else `error`, else the start of the body.
pub(super) fn error_text(text: &str) -> String {
    let from_body = serde_json::from_str::<ErrorBody>(text)
        .ok()
        .and_then(|b| [b.error_message, b.error_description, b.error].into_iter().flatten().find(|s| !s.trim().is_empty()));
    from_body.unwrap_or_else(|| {
        let text = text.trim();
        match text.char_indices().nth(MAX_QUOTED_TEXT) {
            Some((cut, _)) => format!("{}...", &text[..cut]),
            None if text.is_empty() => "no message".into(),
            None => text.to_string(),
        }
    })
}

pub(super) fn unavailable(message: String) -> ProviderError {
    ProviderError::Unavailable { backend: BACKEND, message }
}

pub(super) fn refused(message: String) -> ProviderError {
    ProviderError::Refused { backend: BACKEND, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_tokens_are_refreshed_after_three_quarters_of_their_life() {
        assert_eq!(refresh_margin(Duration::from_secs(4)), Duration::from_secs(1));
        assert_eq!(refresh_margin(Duration::from_secs(300)), REFRESH_MARGIN);
        assert_eq!(refresh_margin(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn error_text_prefers_keycloaks_message() {
        let policy = r#"{"error":"invalidPasswordMinLengthMessage","error_description":"Invalid password: minimum length 12."}"#;
        assert_eq!(error_text(policy), "Invalid password: minimum length 12.");
        assert_eq!(error_text(r#"{"errorMessage":"User exists with same username"}"#), "User exists with same username");
        assert_eq!(error_text(""), "no message");
        assert_eq!(error_text(&"x".repeat(500)).len(), MAX_QUOTED_TEXT + 3);
    }

    #[test]
    fn statuses_are_classified() {
        let failure = |status| KeycloakError::HttpFailure { status, body: None, text: String::new() };
        assert!(classify(failure(503), "x").is_retryable());
        assert!(classify(failure(429), "x").is_retryable());
        assert!(matches!(classify(failure(409), "x"), ProviderError::Conflict { .. }));
        assert!(matches!(classify(failure(400), "x"), ProviderError::Refused { .. }));
        assert!(matches!(classify(failure(403), "x"), ProviderError::Refused { .. }));
    }

    #[test]
    fn a_pem_without_certificates_is_refused() {
        let error = http_client(Some("not a certificate"), Duration::from_secs(1)).unwrap_err();
        assert!(matches!(error, ProviderError::Refused { backend: BACKEND, .. }), "{error}");
    }
}
