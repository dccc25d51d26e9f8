//! The Keycloak provider against the fake Keycloak in `support::fake_keycloak`, or
//! against a real Keycloak 26 when `CX_TEST_KEYCLOAK_URL` is set, with
//! `CX_TEST_KEYCLOAK_CLIENT_ID` and `CX_TEST_KEYCLOAK_CLIENT_SECRET` (a service
//! account in `master` that may create realms) or `CX_TEST_KEYCLOAK_USERNAME` and
//! `CX_TEST_KEYCLOAK_PASSWORD` (an admin of `master`). Against a real server, the
//! checks that need the fake's controls (outages, delays, request logs, sent
//! e-mails) are skipped, and every test works in realms of its own named `cxt-...`.
//!
//! Test state is arranged and inspected through a second, independent Admin API
//! client (`Inspector`), so the same assertions hold for both servers.

mod support;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use cx_operator::provider::{
    ProviderError,
    keycloak::{
        CONFIGURE_TOTP, KeycloakAuth, KeycloakProvider, KeycloakSettings, PENDING_VERIFICATION_ATTRIBUTE, RealmSpec, RealmTemplate,
        TENANT_UID_ATTRIBUTE, UPDATE_PASSWORD, UserSpec, VERIFY_EMAIL,
    },
};
use keycloak::{
    KeycloakAdmin, KeycloakAdminToken, KeycloakError, KeycloakServiceAccountAdminTokenRetriever, KeycloakTokenSupplier,
    types::{ClientRepresentation, CredentialRepresentation, RealmRepresentation, UserRepresentation},
};
use rand::distr::{Alphanumeric, SampleString};
use support::fake_keycloak::{FakeKeycloak, RecordedRequest};

/// The SMTP password of the test template; it must never show up in an error.
const SMTP_PASSWORD: &str = "smtp-pass-7Qx";

/// A password that satisfies the default policy.
const GOOD_PASSWORD: &str = "Correct-Horse-42";

/// The server under test.
struct Target {
    fake: Option<FakeKeycloak>,
    url: String,
    auth: KeycloakAuth,
    http: reqwest::Client,
}

impl Target {
    async fn new() -> Target {
        // The tests' own HTTP client uses rustls without a built-in crypto provider,
        // like the operator; it takes the process default, set here to ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        match real_server() {
            Some((url, auth)) => Target { fake: None, url, auth, http },
            None => {
                let fake = FakeKeycloak::start().await;
                let auth = KeycloakAuth::ClientCredentials {
                    realm: "master".into(),
                    client_id: fake.admin_client_id().into(),
                    client_secret: fake.admin_client_secret().into(),
                };
                Target { url: fake.url(), auth, fake: Some(fake), http }
            }
        }
    }

    /// The fake, or `None` (and a note) against a real server.
    fn fake(&self, check: &str) -> Option<&FakeKeycloak> {
        if self.fake.is_none() {
            eprintln!("skipped against a real Keycloak: {check}");
        }
        self.fake.as_ref()
    }

    fn settings(&self, template: RealmTemplate) -> KeycloakSettings {
        KeycloakSettings {
            url: self.url.clone(),
            auth: self.auth.clone(),
            ca_pem: None,
            realm_template: template,
            timeout: Duration::from_secs(10),
        }
    }

    async fn provider(&self) -> KeycloakProvider {
        self.provider_with(self.settings(template())).await
    }

    async fn provider_with(&self, settings: KeycloakSettings) -> KeycloakProvider {
        KeycloakProvider::new(settings).await.expect("valid settings")
    }

    fn inspector(&self) -> Inspector {
        let tokens = FreshToken { auth: self.auth.clone(), http: self.http.clone() };
        Inspector { admin: KeycloakAdmin::new(&self.url, tokens, self.http.clone()) }
    }

    /// A password login of a realm user through `admin-cli`, as a person would log in
    /// to an application; the error is Keycloak's status and body.
    async fn login(&self, realm: &str, username: &str, password: &str) -> Result<(), (u16, String)> {
        match KeycloakAdminToken::acquire_custom_realm(&self.url, username, password, realm, "admin-cli", "password", &self.http).await {
            Ok(_) => Ok(()),
            Err(KeycloakError::HttpFailure { status, text, .. }) => Err((status, text)),
            Err(e) => panic!("login to realm {realm} failed without an answer: {e}"),
        }
    }

    /// The provider's Admin API writes since the last [`FakeKeycloak::clear_requests`].
    fn writes(&self) -> Option<Vec<RecordedRequest>> {
        self.fake("request log").map(FakeKeycloak::writes)
    }
}

fn real_server() -> Option<(String, KeycloakAuth)> {
    let url = std::env::var("CX_TEST_KEYCLOAK_URL").ok()?;
    let env = |name: &str| std::env::var(name).ok();
    let auth = match (env("CX_TEST_KEYCLOAK_CLIENT_ID"), env("CX_TEST_KEYCLOAK_CLIENT_SECRET")) {
        (Some(client_id), Some(client_secret)) => KeycloakAuth::ClientCredentials { realm: "master".into(), client_id, client_secret },
        _ => KeycloakAuth::Password {
            realm: "master".into(),
            username: env("CX_TEST_KEYCLOAK_USERNAME").expect("CX_TEST_KEYCLOAK_CLIENT_ID/_SECRET or CX_TEST_KEYCLOAK_USERNAME/_PASSWORD"),
            password: env("CX_TEST_KEYCLOAK_PASSWORD").expect("CX_TEST_KEYCLOAK_PASSWORD"),
        },
    };
    Some((url, auth))
}

/// Logs in for every call, so it never holds an expired token.
struct FreshToken {
    auth: KeycloakAuth,
    http: reqwest::Client,
}

#[async_trait]
impl KeycloakTokenSupplier for FreshToken {
    async fn get(&self, url: &str) -> Result<String, KeycloakError> {
        let token = match &self.auth {
            KeycloakAuth::ClientCredentials { realm, client_id, client_secret } => {
                KeycloakServiceAccountAdminTokenRetriever::create_with_custom_realm(client_id, client_secret, realm, self.http.clone())
                    .acquire(url)
                    .await?
            }
            KeycloakAuth::Password { realm, username, password } => {
                KeycloakAdminToken::acquire_custom_realm(url, username, password, realm, "admin-cli", "password", &self.http).await?
            }
        };
        Ok(token.access_token().to_string())
    }
}

/// An independent Admin API client that arranges and inspects what the provider
/// did.
struct Inspector {
    admin: KeycloakAdmin<FreshToken>,
}

impl Inspector {
    async fn realm(&self, realm: &str) -> Option<RealmRepresentation> {
        match self.admin.realm_get(realm).await {
            Ok(rep) => Some(rep),
            Err(KeycloakError::HttpFailure { status: 404, .. }) => None,
            Err(e) => panic!("read realm {realm}: {e}"),
        }
    }

    async fn update_realm(&self, realm: &str, rep: RealmRepresentation) {
        self.admin.realm_put(realm, rep).await.expect("update the realm");
    }

    async fn client(&self, realm: &str, client_id: &str) -> ClientRepresentation {
        let clients =
            self.admin.realm_clients_get(realm, Some(client_id.into()), None, None, None, None, None).await.expect("list clients");
        clients.into_iter().find(|c| c.client_id.as_deref() == Some(client_id)).expect("the client exists")
    }

    async fn user(&self, realm: &str, id: &str) -> UserRepresentation {
        self.admin.realm_users_with_user_id_get(realm, id, None).await.expect("read the user")
    }

    async fn users_named(&self, realm: &str, username: &str) -> Vec<UserRepresentation> {
        let users = self
            .admin
            .realm_users_get(
                realm,
                None,
                None,
                None,
                None,
                None,
                None,
                Some(true),
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                Some(username.into()),
            )
            .await
            .expect("list users");
        users.into_iter().filter(|u| u.username.as_deref() == Some(username)).collect()
    }

    async fn create_user(&self, realm: &str, user: UserRepresentation) -> String {
        let response = self.admin.realm_users_post(realm, user).await.expect("create a user");
        response.to_id().expect("the new user's id").to_string()
    }

    async fn update_user(&self, realm: &str, id: &str, user: UserRepresentation) {
        self.admin.realm_users_with_user_id_put(realm, id, user).await.expect("update the user");
    }

    async fn role_names(&self, realm: &str, id: &str) -> Vec<String> {
        let roles = self.admin.realm_users_with_user_id_role_mappings_realm_get(realm, id).await.expect("read role mappings");
        let mut names: Vec<String> = roles.into_iter().filter_map(|r| r.name).filter(|n| !n.starts_with("default-roles-")).collect();
        names.sort();
        names
    }

    async fn credential_types(&self, realm: &str, id: &str) -> Vec<String> {
        let credentials = self.admin.realm_users_with_user_id_credentials_get(realm, id).await.expect("list credentials");
        credentials.into_iter().filter_map(|c| c.type_).collect()
    }
}

/// The template of the tests: the defaults, with SMTP settings.
fn template() -> RealmTemplate {
    let smtp = [
        ("host", "smtp.example.test"),
        ("port", "587"),
        ("from", "noreply@example.test"),
        ("fromDisplayName", "CX Platform"),
        ("starttls", "true"),
        ("auth", "true"),
        ("user", "mailer"),
        ("password", SMTP_PASSWORD),
    ];
    RealmTemplate { smtp: smtp.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), ..RealmTemplate::default() }
}

fn random(len: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), len).to_lowercase()
}

/// A realm of its own for each test.
fn realm_spec() -> RealmSpec {
    let name = format!("cxt-{}", random(8));
    RealmSpec {
        url: format!("https://{name}.cx.example.test"),
        name,
        display_name: "Acme Support".into(),
        enabled: true,
        default_locale: "de".into(),
        tenant_uid: format!("uid-{}", random(12)),
    }
}

fn user_spec(username: &str) -> UserSpec {
    let attribute = |k: &str, v: &[&str]| (k.to_string(), v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    UserSpec {
        username: username.into(),
        email: format!("{username}@example.test"),
        first_name: "Ana".into(),
        last_name: Some("Lima".into()),
        enabled: true,
        attributes: BTreeMap::from([
            attribute("alias", &["Ana L."]),
            attribute("phone", &["+4930123456"]),
            attribute("queues", &["sales", "support"]),
            attribute("skills", &["es"]),
            attribute("mobileApp", &["true"]),
            attribute("timeFormat", &["24h"]),
        ]),
        roles: vec!["agent".into()],
        require_otp: false,
    }
}

/// A provider with a realm made and a user in it with [`GOOD_PASSWORD`].
async fn realm_with_user(target: &Target, username: &str) -> (KeycloakProvider, RealmSpec, String) {
    let provider = target.provider().await;
    let realm = realm_spec();
    provider.ensure_realm(&realm).await.expect("the realm is made");
    let (id, _) = provider.ensure_user(&realm.name, &user_spec(username)).await.expect("the user is made");
    provider.set_password(&realm.name, &id, GOOD_PASSWORD, false).await.expect("the password is set");
    (provider, realm, id)
}

async fn cleanup(provider: &KeycloakProvider, realm: &RealmSpec) {
    provider.delete_realm(&realm.name).await.expect("the test realm is deleted");
}

#[track_caller]
fn assert_refused(result: Result<impl std::fmt::Debug, ProviderError>, contains: &str) -> String {
    match result {
        Err(ProviderError::Refused { message, .. }) if message.contains(contains) => message,
        other => panic!("expected Refused containing {contains:?}, got {other:?}"),
    }
}

#[track_caller]
fn assert_unavailable(result: Result<impl std::fmt::Debug, ProviderError>) -> String {
    match result {
        Err(e @ ProviderError::Unavailable { .. }) => {
            assert!(e.is_retryable());
            e.to_string()
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[track_caller]
fn assert_conflict(result: Result<impl std::fmt::Debug, ProviderError>, contains: &str) {
    match result {
        Err(ProviderError::Conflict { message, .. }) if message.contains(contains) => {}
        other => panic!("expected Conflict containing {contains:?}, got {other:?}"),
    }
}

/// Waits for a condition Keycloak may reach a moment later (it records login
/// failures in the background).
async fn eventually<F: AsyncFn() -> bool>(what: &str, condition: F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_admin_token_is_cached_and_refreshed_after_expiry() {
    let target = Target::new().await;
    let Some(fake) = target.fake("counting token requests") else { return };
    fake.set_token_lifetime(Duration::from_secs(2));
    let provider = target.provider().await;
    let realm = realm_spec();
    provider.ensure_realm(&realm).await.expect("the realm is made");
    provider.ensure_realm(&realm).await.expect("the realm is checked");
    provider.ensure_user(&realm.name, &user_spec("ana")).await.expect("the user is made");
    assert_eq!(fake.admin_logins(), 1, "one token serves many calls");

    tokio::time::sleep(Duration::from_millis(2100)).await;
    provider.ensure_realm(&realm).await.expect("the realm is checked with a new token");
    assert_eq!(fake.admin_logins(), 2, "an expired token is replaced");
}

#[tokio::test]
async fn a_revoked_token_is_replaced_once_and_the_call_repeated() {
    let target = Target::new().await;
    let Some(fake) = target.fake("revoking tokens") else { return };
    let provider = target.provider().await;
    let realm = realm_spec();
    provider.ensure_realm(&realm).await.expect("the realm is made");
    fake.revoke_tokens();
    assert_eq!(provider.ensure_realm(&realm).await.expect("the call is repeated with a new token"), Vec::<String>::new());
    assert_eq!(fake.admin_logins(), 2);
}

#[tokio::test]
async fn the_password_grant_works_too() {
    let target = Target::new().await;
    let Some(fake) = target.fake("the fake's admin user") else { return };
    let auth =
        KeycloakAuth::Password { realm: "master".into(), username: fake.admin_username().into(), password: fake.admin_password().into() };
    let provider = target.provider_with(KeycloakSettings { auth, ..target.settings(template()) }).await;
    let ops = provider.ensure_realm(&realm_spec()).await.expect("the realm is made with a password-grant token");
    assert!(ops.iter().any(|o| o.starts_with("created realm")), "{ops:?}");
    assert_eq!(fake.admin_logins(), 1);
}

#[tokio::test]
async fn wrong_admin_credentials_are_refused_without_showing_them() {
    let target = Target::new().await;
    let secret = "wrong-secret-Zk81";
    let auth = KeycloakAuth::ClientCredentials { realm: "master".into(), client_id: "cx-operator".into(), client_secret: secret.into() };
    let provider = target.provider_with(KeycloakSettings { auth, ..target.settings(template()) }).await;
    let message = assert_refused(provider.ensure_realm(&realm_spec()).await, "admin login to realm master failed");
    assert!(!message.contains(secret), "{message}");
    assert!(!format!("{provider:?}").contains(secret));
}

#[tokio::test]
async fn a_new_realm_gets_every_template_setting() {
    let target = Target::new().await;
    let provider = target.provider().await;
    let realm = realm_spec();
    let ops = provider.ensure_realm(&realm).await.expect("the realm is made");
    for expected in [
        "created realm",
        "let administrators edit user attributes",
        "created role admin",
        "created role agent",
        "created client cx-platform",
    ] {
        assert!(ops.iter().any(|o| o.starts_with(expected)), "{expected:?} missing in {ops:?}");
    }

    let inspector = target.inspector();
    let rep = inspector.realm(&realm.name).await.expect("the realm exists");
    assert_eq!(rep.display_name.as_deref(), Some("Acme Support"));
    assert_eq!(rep.enabled, Some(true));
    assert_eq!(rep.default_locale.as_deref(), Some("de"));
    assert_eq!(rep.internationalization_enabled, Some(true));
    assert!(rep.supported_locales.unwrap_or_default().contains(&"de".to_string()));
    assert_eq!(rep.attributes.unwrap_or_default().get(TENANT_UID_ATTRIBUTE), Some(&realm.tenant_uid));
    assert_eq!((rep.brute_force_protected, rep.failure_factor, rep.permanent_lockout), (Some(true), Some(5), Some(false)));
    assert_eq!((rep.wait_increment_seconds, rep.max_failure_wait_seconds, rep.max_delta_time_seconds), (Some(60), Some(900), Some(43_200)));
    let policy = rep.password_policy.unwrap_or_default();
    for term in ["length(12)", "digits(1)", "upperCase(1)", "notUsername"] {
        assert!(policy.contains(term), "{term} missing in {policy}");
    }
    assert_eq!(rep.otp_policy_type.as_deref(), Some("totp"));
    assert_eq!(rep.otp_policy_algorithm.as_deref(), Some("HmacSHA1"));
    assert_eq!((rep.otp_policy_digits, rep.otp_policy_period), (Some(6), Some(30)));
    let smtp = rep.smtp_server.unwrap_or_default();
    assert_eq!(smtp.get("host").map(String::as_str), Some("smtp.example.test"));
    assert_eq!(smtp.get("from").map(String::as_str), Some("noreply@example.test"));
    assert_ne!(smtp.get("password").map(String::as_str), Some(SMTP_PASSWORD), "Keycloak masks the SMTP password");

    let roles = inspector.admin.realm_roles_get(&realm.name, None, None, None, None).await.expect("list roles");
    for role in ["admin", "supervisor", "agent"] {
        assert!(roles.iter().any(|r| r.name.as_deref() == Some(role)), "role {role} missing");
    }
    let client = inspector.client(&realm.name, "cx-platform").await;
    let url = &realm.url;
    assert_eq!(client.redirect_uris, Some(vec![format!("{url}/*")]));
    assert_eq!(client.web_origins, Some(vec![url.clone()]));
    assert_eq!(
        (client.public_client, client.standard_flow_enabled, client.direct_access_grants_enabled),
        (Some(true), Some(true), Some(false))
    );
    assert_eq!(client.attributes.unwrap_or_default().get("pkce.code.challenge.method").map(String::as_str), Some("S256"));
    let profile = inspector.admin.realm_users_profile_get(&realm.name).await.expect("read the user profile");
    assert_eq!(profile.unmanaged_attribute_policy, Some(keycloak::types::UnmanagedAttributePolicy::AdminEdit));
    cleanup(&provider, &realm).await;
}

#[tokio::test]
async fn an_unchanged_realm_gets_no_write() {
    let target = Target::new().await;
    let provider = target.provider().await;
    let realm = realm_spec();
    provider.ensure_realm(&realm).await.expect("the realm is made");
    if let Some(fake) = &target.fake {
        fake.clear_requests();
    }
    assert_eq!(provider.ensure_realm(&realm).await.expect("the realm is checked"), Vec::<String>::new());
    if let Some(writes) = target.writes() {
        assert_eq!(writes, [], "an unchanged realm gets no PUT, POST or DELETE");
    }
    cleanup(&provider, &realm).await;
}

#[tokio::test]
async fn drift_is_repaired() {
    let target = Target::new().await;
    let provider = target.provider().await;
    let realm = realm_spec();
    provider.ensure_realm(&realm).await.expect("the realm is made");
    let inspector = target.inspector();
    inspector
        .update_realm(
            &realm.name,
            RealmRepresentation { display_name: Some("Changed by hand".into()), failure_factor: Some(30), ..Default::default() },
        )
        .await;
    let mut client = inspector.client(&realm.name, "cx-platform").await;
    client.redirect_uris = Some(vec!["https://elsewhere.example.test/*".into()]);
    let client_uuid = client.id.clone().expect("a client id");
    inspector.admin.realm_clients_with_client_uuid_put(&realm.name, &client_uuid, client).await.expect("change the client");

    let ops = provider.ensure_realm(&realm).await.expect("the realm is repaired");
    assert_eq!(ops.len(), 2, "{ops:?}");
    assert!(ops[0].contains("displayName") && ops[0].contains("failureFactor"), "{ops:?}");
    assert!(ops[1].contains("redirectUris"), "{ops:?}");
    let rep = inspector.realm(&realm.name).await.expect("the realm exists");
    assert_eq!((rep.display_name.as_deref(), rep.failure_factor), (Some("Acme Support"), Some(5)));
    assert_eq!(inspector.client(&realm.name, "cx-platform").await.redirect_uris, Some(vec![format!("{}/*", realm.url)]));
    assert_eq!(provider.ensure_realm(&realm).await.expect("the realm is checked"), Vec::<String>::new());
    cleanup(&provider, &realm).await;
}

#[tokio::test]
async fn a_changed_smtp_password_is_written() {
    let target = Target::new().await;
    let provider = target.provider().await;
    let realm = realm_spec();
    provider.ensure_realm(&realm).await.expect("the realm is made");
    let mut rotated = template();
    rotated.smtp.insert("password".into(), "rotated-smtp-pass".into());
    let provider = target.provider_with(target.settings(rotated)).await;
    let ops = provider.ensure_realm(&realm).await.expect("the realm is updated");
    assert_eq!(ops, [format!("updated realm {} (smtpServer.password)", realm.name)]);
    assert_eq!(provider.ensure_realm(&realm).await.expect("the realm is checked"), Vec::<String>::new());
    cleanup(&provider, &realm).await;
}

#[tokio::test]
async fn a_disabled_realm_refuses_logins_until_enabled_again() {
    let target = Target::new().await;
    let (provider, mut realm, _) = realm_with_user(&target, "ana").await;
    target.login(&realm.name, "ana", GOOD_PASSWORD).await.expect("the user logs in");

    realm.enabled = false;
    let ops = provider.ensure_realm(&realm).await.expect("the realm is disabled");
    assert!(ops.iter().any(|o| o.contains("enabled")), "{ops:?}");
    let (status, body) = target.login(&realm.name, "ana", GOOD_PASSWORD).await.expect_err("a disabled realm refuses logins");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("Realm not enabled"), "{body}");

    realm.enabled = true;
    provider.ensure_realm(&realm).await.expect("the realm is enabled");
    target.login(&realm.name, "ana", GOOD_PASSWORD).await.expect("the user logs in again");
    cleanup(&provider, &realm).await;
}

#[tokio::test]
async fn a_realm_of_someone_else_is_never_adopted() {
    let target = Target::new().await;
    let provider = target.provider().await;
    let inspector = target.inspector();
    let realm = realm_spec();

    let foreign = RealmRepresentation {
        realm: Some(realm.name.clone()),
        enabled: Some(true),
        display_name: Some("Hand-made".into()),
        ..Default::default()
    };
    inspector.admin.post(foreign).await.expect("a realm made by hand");
    assert_conflict(provider.ensure_realm(&realm).await, "was not created by cx-operator");
    let untouched = inspector.realm(&realm.name).await.expect("the realm is still there");
    assert_eq!(untouched.display_name.as_deref(), Some("Hand-made"), "nothing was written");

    let attributes = [(TENANT_UID_ATTRIBUTE.to_string(), "uid-of-another-tenant".to_string())].into_iter().collect();
    inspector.update_realm(&realm.name, RealmRepresentation { attributes: Some(attributes), ..Default::default() }).await;
    assert_conflict(provider.ensure_realm(&realm).await, "belongs to another tenant");
    assert_conflict(provider.delete_owned_realm(&realm.name, &realm.tenant_uid).await, "belongs to another tenant");
    assert!(inspector.realm(&realm.name).await.is_some(), "a realm of another tenant is not deleted");
    cleanup(&provider, &realm).await;
}

#[tokio::test]
async fn deleting_a_realm_twice_succeeds() {
    let target = Target::new().await;
    let provider = target.provider().await;
    let realm = realm_spec();
    provider.ensure_realm(&realm).await.expect("the realm is made");
    assert_eq!(
        provider.delete_owned_realm(&realm.name, &realm.tenant_uid).await.expect("deleted"),
        [format!("deleted realm {}", realm.name)]
    );
    assert!(target.inspector().realm(&realm.name).await.is_none());
    assert_eq!(provider.delete_realm(&realm.name).await.expect("a missing realm is success"), Vec::<String>::new());
    assert_eq!(
        provider.delete_owned_realm(&realm.name, &realm.tenant_uid).await.expect("a missing realm is success"),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn a_user_is_created_with_attributes_and_roles() {
    let target = Target::new().await;
    let provider = target.provider().await;
    let realm = realm_spec();
    provider.ensure_realm(&realm).await.expect("the realm is made");
    let spec = user_spec("ana");
    let (id, ops) = provider.ensure_user(&realm.name, &spec).await.expect("the user is made");
    assert_eq!(ops, [format!("created user ana in realm {}", realm.name), format!("granted agent to user ana in realm {}", realm.name)]);

    let inspector = target.inspector();
    let user = inspector.user(&realm.name, &id).await;
    assert_eq!(user.username.as_deref(), Some("ana"));
    assert_eq!(user.email.as_deref(), Some("ana@example.test"));
    assert_eq!((user.first_name.as_deref(), user.last_name.as_deref()), (Some("Ana"), Some("Lima")));
    assert_eq!((user.enabled, user.email_verified), (Some(true), Some(false)));
    let attributes = user.attributes.unwrap_or_default();
    for (key, values) in &spec.attributes {
        assert_eq!(attributes.get(key), Some(values), "attribute {key}");
    }
    assert_eq!(inspector.role_names(&realm.name, &id).await, ["agent"]);
    assert_eq!(provider.user_id(&realm.name, "ana").await.expect("found"), Some(id.clone()));

    if let Some(fake) = &target.fake {
        fake.clear_requests();
    }
    let (same, ops) = provider.ensure_user(&realm.name, &spec).await.expect("the user is checked");
    assert_eq!((same, ops), (id, Vec::<String>::new()));
    if let Some(writes) = target.writes() {
        assert_eq!(writes, [], "an unchanged user gets no write");
    }
    cleanup(&provider, &realm).await;
}

#[tokio::test]
async fn attribute_and_name_changes_are_written() {
    let target = Target::new().await;
    let provider = target.provider().await;
    let realm = realm_spec();
    provider.ensure_realm(&realm).await.expect("the realm is made");
    let mut spec = user_spec("ana");
    let (id, _) = provider.ensure_user(&realm.name, &spec).await.expect("the user is made");
    spec.attributes.remove("phone");
    spec.attributes.insert("title".into(), vec!["Team lead".into()]);
    spec.last_name = None;
    let (_, ops) = provider.ensure_user(&realm.name, &spec).await.expect("the user is updated");
    assert_eq!(ops, [format!("updated user ana in realm {} (lastName, attributes)", realm.name)]);
    let user = target.inspector().user(&realm.name, &id).await;
    let attributes = user.attributes.unwrap_or_default();
    assert!(!attributes.contains_key("phone"));
    assert_eq!(attributes.get("title"), Some(&vec!["Team lead".to_string()]));
    assert_eq!(user.last_name.filter(|n| !n.is_empty()), None);
    cleanup(&provider, &realm).await;
}

#[tokio::test]
async fn roles_change_by_difference() {
    let target = Target::new().await;
    let provider = target.provider().await;
    let realm = realm_spec();
    provider.ensure_realm(&realm).await.expect("the realm is made");
    let mut spec = user_spec("ana");
    spec.roles = vec!["agent".into(), "supervisor".into()];
    let (id, _) = provider.ensure_user(&realm.name, &spec).await.expect("the user is made");

    if let Some(fake) = &target.fake {
        fake.clear_requests();
    }
    spec.roles = vec!["supervisor".into(), "admin".into()];
    let (_, ops) = provider.ensure_user(&realm.name, &spec).await.expect("the roles are changed");
    assert_eq!(
        ops,
        [format!("granted admin to user ana in realm {}", realm.name), format!("revoked agent from user ana in realm {}", realm.name)]
    );
    assert_eq!(target.inspector().role_names(&realm.name, &id).await, ["admin", "supervisor"]);
    if let Some(writes) = target.writes() {
        let methods: Vec<(&str, bool)> = writes.iter().map(|w| (w.method.as_str(), w.path.ends_with("/role-mappings/realm"))).collect();
        assert_eq!(methods, [("POST", true), ("DELETE", true)], "one grant and one revoke, nothing else: {writes:?}");
    }

    spec.roles = vec!["no-such-role".into()];
    assert_refused(provider.ensure_user(&realm.name, &spec).await, "role no-such-role does not exist");
    cleanup(&provider, &realm).await;
}

#[tokio::test]
async fn an_email_change_unverifies_and_sends_a_verification() {
    let target = Target::new().await;
    let Some(fake) = target.fake("sending e-mails needs a reachable SMTP server") else { return };
    let provider = target.provider().await;
    let realm = realm_spec();
    provider.ensure_realm(&realm).await.expect("the realm is made");
    let mut spec = user_spec("ana");
    let (id, _) = provider.ensure_user(&realm.name, &spec).await.expect("the user is made");
    let inspector = target.inspector();
    inspector.update_user(&realm.name, &id, UserRepresentation { email_verified: Some(true), ..Default::default() }).await;

    spec.email = "ana.lima@example.test".into();
    let (_, ops) = provider.ensure_user(&realm.name, &spec).await.expect("the e-mail is changed");
    assert_eq!(ops.len(), 2, "{ops:?}");
    assert!(ops[0].contains("(email, requiredActions)"), "{ops:?}");
    assert!(ops[1].starts_with("sent a verification e-mail to ana.lima@example.test"), "{ops:?}");

    let user = inspector.user(&realm.name, &id).await;
    assert_eq!(user.email.as_deref(), Some("ana.lima@example.test"));
    assert_eq!(user.email_verified, Some(false));
    assert!(user.required_actions.unwrap_or_default().contains(&VERIFY_EMAIL.to_string()));
    assert!(!user.attributes.unwrap_or_default().contains_key(PENDING_VERIFICATION_ATTRIBUTE));
    let sent = fake.sent_emails();
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].to.as_str(), sent[0].actions.as_slice()), ("ana.lima@example.test", [VERIFY_EMAIL.to_string()].as_slice()));
    assert_eq!(sent[0].client_id.as_deref(), Some("cx-platform"));

    assert_eq!(provider.ensure_user(&realm.name, &spec).await.expect("checked").1, Vec::<String>::new());
    assert_eq!(fake.sent_emails().len(), 1, "the verification is sent once");
}

#[tokio::test]
async fn a_verification_that_could_not_be_sent_is_sent_later() {
    let target = Target::new().await;
    let Some(fake) = target.fake("sending e-mails needs a reachable SMTP server") else { return };
    let provider = target.provider().await;
    let realm = realm_spec();
    provider.ensure_realm(&realm).await.expect("the realm is made");
    let mut spec = user_spec("ana");
    provider.ensure_user(&realm.name, &spec).await.expect("the user is made");
    let no_smtp = RealmRepresentation { smtp_server: Some(Default::default()), ..Default::default() };
    target.inspector().update_realm(&realm.name, no_smtp).await;

    spec.email = "ana.lima@example.test".into();
    assert_unavailable(provider.ensure_user(&realm.name, &spec).await);
    assert!(fake.sent_emails().is_empty());

    provider.ensure_realm(&realm).await.expect("the SMTP settings are repaired");
    let (_, ops) = provider.ensure_user(&realm.name, &spec).await.expect("the e-mail goes out now");
    assert_eq!(ops, [format!("sent a verification e-mail to ana.lima@example.test for user ana in realm {}", realm.name)]);
    assert_eq!(fake.sent_emails().len(), 1);
}

#[tokio::test]
async fn actions_emails_are_sent_to_the_user() {
    let target = Target::new().await;
    let Some(fake) = target.fake("sending e-mails needs a reachable SMTP server") else { return };
    let provider = target.provider().await;
    let realm = realm_spec();
    provider.ensure_realm(&realm).await.expect("the realm is made");
    let (id, _) = provider.ensure_user(&realm.name, &user_spec("ana")).await.expect("the user is made");
    provider.send_actions_email(&realm.name, &id, &[UPDATE_PASSWORD, VERIFY_EMAIL]).await.expect("sent");
    let sent = fake.sent_emails();
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].username.as_str(), sent[0].to.as_str()), ("ana", "ana@example.test"));
    assert_eq!(sent[0].actions, [UPDATE_PASSWORD, VERIFY_EMAIL]);
    assert_refused(provider.send_actions_email(&realm.name, &id, &["NOT_AN_ACTION"]).await, "Provided invalid required actions");
}

#[tokio::test]
async fn a_password_against_the_policy_is_refused_with_keycloaks_message() {
    let target = Target::new().await;
    let (provider, realm, id) = realm_with_user(&target, "ana").await;
    let short = "Sh0rt";
    let message = assert_refused(provider.set_password(&realm.name, &id, short, false).await, "Invalid password: minimum length 12.");
    assert!(!message.contains(short), "{message}");
    assert_refused(provider.set_password(&realm.name, &id, "NoDigitsAtAllHere", false).await, "numerical digits");
    target.login(&realm.name, "ana", GOOD_PASSWORD).await.expect("the old password still works");
    cleanup(&provider, &realm).await;
}

#[tokio::test]
async fn a_temporary_password_must_be_changed_at_the_next_login() {
    let target = Target::new().await;
    let (provider, realm, id) = realm_with_user(&target, "ana").await;
    provider.set_password(&realm.name, &id, "Temporary-Pass-1", true).await.expect("a temporary password");
    let (status, body) = target.login(&realm.name, "ana", "Temporary-Pass-1").await.expect_err("the password must be changed first");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Account is not fully set up"), "{body}");
    let user = target.inspector().user(&realm.name, &id).await;
    assert!(user.required_actions.unwrap_or_default().contains(&UPDATE_PASSWORD.to_string()));

    provider.set_password(&realm.name, &id, GOOD_PASSWORD, false).await.expect("a permanent password");
    target.login(&realm.name, "ana", GOOD_PASSWORD).await.expect("the user logs in");
    cleanup(&provider, &realm).await;
}

#[tokio::test]
async fn a_disabled_user_cannot_log_in() {
    let target = Target::new().await;
    let (provider, realm, _) = realm_with_user(&target, "ana").await;
    let spec = UserSpec { enabled: false, ..user_spec("ana") };
    let (_, ops) = provider.ensure_user(&realm.name, &spec).await.expect("the user is disabled");
    assert_eq!(ops, [format!("updated user ana in realm {} (enabled)", realm.name)]);
    let (status, body) = target.login(&realm.name, "ana", GOOD_PASSWORD).await.expect_err("a disabled user cannot log in");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Account disabled"), "{body}");
    provider.ensure_user(&realm.name, &user_spec("ana")).await.expect("the user is enabled");
    target.login(&realm.name, "ana", GOOD_PASSWORD).await.expect("the user logs in");
    cleanup(&provider, &realm).await;
}

#[tokio::test]
async fn a_user_locked_out_after_five_failures_is_unlocked() {
    let target = Target::new().await;
    let (provider, realm, id) = realm_with_user(&target, "ana").await;
    assert!(!provider.locked(&realm.name, &id).await.expect("status"));
    for _ in 0..5 {
        target.login(&realm.name, "ana", "Wrong-Password-9").await.expect_err("a wrong password fails");
    }
    eventually("the user is locked", async || provider.locked(&realm.name, &id).await.expect("status")).await;
    target.login(&realm.name, "ana", GOOD_PASSWORD).await.expect_err("a locked user cannot log in, even with the right password");

    provider.ensure_user(&realm.name, &user_spec("ana")).await.expect("the user is checked");
    assert!(provider.locked(&realm.name, &id).await.expect("status"), "reconciling the user does not lift the lockout");

    provider.unlock(&realm.name, &id).await.expect("unlocked");
    assert!(!provider.locked(&realm.name, &id).await.expect("status"));
    target.login(&realm.name, "ana", GOOD_PASSWORD).await.expect("the user logs in again");
    cleanup(&provider, &realm).await;
}

#[tokio::test]
async fn otp_credentials_are_removed_and_setup_required_again() {
    let target = Target::new().await;
    let provider = target.provider().await;
    let realm = realm_spec();
    provider.ensure_realm(&realm).await.expect("the realm is made");
    let inspector = target.inspector();
    let otp = CredentialRepresentation {
        type_: Some("otp".into()),
        user_label: Some("Phone".into()),
        secret_data: Some(r#"{"value":"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"}"#.into()),
        credential_data: Some(r#"{"subType":"totp","digits":6,"counter":0,"period":30,"algorithm":"HmacSHA1"}"#.into()),
        ..Default::default()
    };
    let user = UserRepresentation {
        username: Some("ana".into()),
        email: Some("ana@example.test".into()),
        first_name: Some("Ana".into()),
        last_name: Some("Lima".into()),
        enabled: Some(true),
        credentials: Some(vec![otp]),
        ..Default::default()
    };
    let id = inspector.create_user(&realm.name, user).await;
    assert_eq!(inspector.credential_types(&realm.name, &id).await, ["otp"]);

    let spec = UserSpec { require_otp: true, ..user_spec("ana") };
    provider.ensure_user(&realm.name, &spec).await.expect("the user is adopted");
    let actions = inspector.user(&realm.name, &id).await.required_actions.unwrap_or_default();
    assert!(!actions.contains(&CONFIGURE_TOTP.to_string()), "a user with an OTP is not asked to set one up again");

    assert_eq!(provider.remove_otp(&realm.name, &id).await.expect("removed"), 1);
    assert_eq!(inspector.credential_types(&realm.name, &id).await, Vec::<String>::new());
    assert_eq!(provider.remove_otp(&realm.name, &id).await.expect("nothing left"), 0);
    let (_, ops) = provider.ensure_user(&realm.name, &spec).await.expect("setup is required again");
    assert_eq!(ops, [format!("updated user ana in realm {} (requiredActions)", realm.name)]);
    let actions = inspector.user(&realm.name, &id).await.required_actions.unwrap_or_default();
    assert!(actions.contains(&CONFIGURE_TOTP.to_string()), "{actions:?}");
    cleanup(&provider, &realm).await;
}

#[tokio::test]
async fn a_conflicting_email_is_a_conflict() {
    let target = Target::new().await;
    let provider = target.provider().await;
    let realm = realm_spec();
    provider.ensure_realm(&realm).await.expect("the realm is made");
    provider.ensure_user(&realm.name, &user_spec("bob")).await.expect("bob is made");
    let spec = UserSpec { email: "bob@example.test".into(), ..user_spec("ana") };
    assert_conflict(provider.ensure_user(&realm.name, &spec).await, "User exists with same email");
    cleanup(&provider, &realm).await;
}

#[tokio::test]
async fn a_user_waits_for_its_realm() {
    let target = Target::new().await;
    let provider = target.provider().await;
    let message = assert_unavailable(provider.ensure_user("cxt-no-such-realm", &user_spec("ana")).await);
    assert!(message.contains("does not exist yet"), "{message}");
}

#[tokio::test]
async fn without_smtp_an_email_change_only_requires_verification() {
    let target = Target::new().await;
    let provider = target.provider_with(target.settings(RealmTemplate::default())).await;
    let realm = realm_spec();
    provider.ensure_realm(&realm).await.expect("the realm is made");
    let mut spec = user_spec("ana");
    let (id, _) = provider.ensure_user(&realm.name, &spec).await.expect("the user is made");
    spec.email = "ana.lima@example.test".into();
    let (_, ops) = provider.ensure_user(&realm.name, &spec).await.expect("the e-mail is changed");
    assert_eq!(ops, [format!("updated user ana in realm {} (email, requiredActions)", realm.name)]);
    let user = target.inspector().user(&realm.name, &id).await;
    assert!(user.required_actions.unwrap_or_default().contains(&VERIFY_EMAIL.to_string()));
    assert!(!user.attributes.unwrap_or_default().contains_key(PENDING_VERIFICATION_ATTRIBUTE));
    assert_eq!(provider.ensure_user(&realm.name, &spec).await.expect("checked").1, Vec::<String>::new());
    cleanup(&provider, &realm).await;
}

#[tokio::test]
async fn deleting_a_user_twice_succeeds() {
    let target = Target::new().await;
    let (provider, realm, _) = realm_with_user(&target, "ana").await;
    assert_eq!(provider.delete_user(&realm.name, "ana").await.expect("deleted"), [format!("deleted user ana from realm {}", realm.name)]);
    assert_eq!(provider.delete_user(&realm.name, "ana").await.expect("a missing user is success"), Vec::<String>::new());
    assert_eq!(provider.user_id(&realm.name, "ana").await.expect("looked up"), None);
    cleanup(&provider, &realm).await;
    assert_eq!(provider.delete_user(&realm.name, "ana").await.expect("a missing realm is success"), Vec::<String>::new());
}

#[tokio::test]
async fn a_keycloak_answering_503_is_unavailable() {
    let target = Target::new().await;
    let Some(fake) = target.fake("simulating an outage") else { return };
    let provider = target.provider().await;
    fake.set_down(true);
    let message = assert_unavailable(provider.ensure_realm(&realm_spec()).await);
    assert!(message.contains("503"), "{message}");
    assert!(!message.contains(fake.admin_client_secret()), "{message}");
}

#[tokio::test]
async fn an_unreachable_keycloak_is_unavailable() {
    let target = Target::new().await;
    let settings = KeycloakSettings { url: "http://127.0.0.1:9".into(), ..target.settings(template()) };
    let provider = target.provider_with(settings).await;
    assert_unavailable(provider.ensure_realm(&realm_spec()).await);
}

#[tokio::test]
async fn a_slow_keycloak_times_out_as_unavailable() {
    let target = Target::new().await;
    let Some(fake) = target.fake("slowing the server down") else { return };
    let provider = target.provider_with(KeycloakSettings { timeout: Duration::from_millis(300), ..target.settings(template()) }).await;
    fake.set_delay(Duration::from_secs(1));
    let started = Instant::now();
    let message = assert_unavailable(provider.ensure_realm(&realm_spec()).await);
    assert!(message.contains("no answer in time"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(1), "the call gives up after the timeout");
}

#[tokio::test]
async fn recovery_after_an_outage_makes_no_duplicate_user() {
    let target = Target::new().await;
    let Some(fake) = target.fake("outages and lost answers") else { return };
    let provider = target.provider_with(KeycloakSettings { timeout: Duration::from_millis(500), ..target.settings(template()) }).await;
    let realm = realm_spec();
    provider.ensure_realm(&realm).await.expect("the realm is made");
    let spec = user_spec("ana");

    fake.set_down(true);
    assert_unavailable(provider.ensure_user(&realm.name, &spec).await);
    fake.set_down(false);

    // The user is created, but the answer comes too late: the provider cannot know.
    fake.set_write_delay(Duration::from_secs(1));
    assert_unavailable(provider.ensure_user(&realm.name, &spec).await);
    fake.set_write_delay(Duration::ZERO);
    let inspector = target.inspector();
    assert_eq!(inspector.users_named(&realm.name, "ana").await.len(), 1, "the lost request did create the user");

    let (id, _) = provider.ensure_user(&realm.name, &spec).await.expect("the user is found, not made again");
    let (same, ops) = provider.ensure_user(&realm.name, &spec).await.expect("the user is checked");
    assert_eq!((same, ops), (id, Vec::<String>::new()));
    assert_eq!(inspector.users_named(&realm.name, "ana").await.len(), 1);
}

#[tokio::test]
async fn the_plan_shows_the_realm_without_credentials() {
    let target = Target::new().await;
    let provider = target.provider().await;
    let realm = realm_spec();
    let plan = provider.plan_realm(&realm);
    assert_eq!(plan.iter().map(|p| p.kind.as_str()).collect::<Vec<_>>(), ["realm", "realmRole", "realmRole", "realmRole", "oidcClient"]);
    assert_eq!(plan[0].settings["bruteForce"]["failureFactor"], 5);
    assert_eq!(plan[4].settings["redirectUris"][0], format!("{}/*", realm.url));
    let user = provider.plan_user(&user_spec("ana"));
    assert_eq!((user.kind.as_str(), user.name.as_str()), ("user", "ana"));
    let text = serde_json::to_string(&plan.iter().map(|p| &p.settings).collect::<Vec<_>>()).expect("json");
    assert!(!text.contains(SMTP_PASSWORD), "{text}");
}
