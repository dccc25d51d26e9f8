//! Keycloak: one realm per tenant and one user per Agent, through the Admin REST API.
//!
//! A tenant's realm is named after the tenant and carries the tenant's UID in the
//! realm attribute [`TENANT_UID_ATTRIBUTE`], written when the operator creates it. A
//! realm with that name but another UID, or none, was not created for this tenant and
//! is never adopted: every operation on it fails with [`ProviderError::Conflict`].
//!
//! Every `ensure_*` method reads first and writes only what differs, so reconciling
//! an unchanged tenant makes no write. The admin token is fetched on first use (the
//! operator starts while Keycloak is down), shared by all calls, replaced shortly
//! before it expires and once more when Keycloak answers 401.
//!
//! TLS goes through rustls on *ring*: the platform's trust store, or only the
//! configured CA bundle.

mod client;
mod realm;
mod user;

use std::{collections::BTreeMap, fmt, future::Future, sync::Arc, time::Duration};

use keycloak::{
    KeycloakError,
    types::{CredentialRepresentation, RealmRepresentation, RoleRepresentation, UPConfig, UnmanagedAttributePolicy, UserRepresentation},
};

use self::client::{Admin, SharedTokens, TokenCache, classify, http_client, refused, status_of, unavailable};
use super::{PlannedObject, ProviderError, password};

pub use self::realm::{SMTP_PASSWORD_DIGEST_ATTRIBUTE, TENANT_UID_ATTRIBUTE};
pub use self::user::{MANAGED_USER_ATTRIBUTES, PENDING_VERIFICATION_ATTRIBUTE};

/// The backend name used in errors.
const BACKEND: &str = "keycloak";

/// Required action: confirm the e-mail address through a link.
pub const VERIFY_EMAIL: &str = "VERIFY_EMAIL";
/// Required action: choose a new password.
pub const UPDATE_PASSWORD: &str = "UPDATE_PASSWORD";
/// Required action: set up a one-time-password generator.
pub const CONFIGURE_TOTP: &str = "CONFIGURE_TOTP";

/// Credential type of one-time-password generators.
const OTP_CREDENTIAL: &str = "otp";

/// Where the identity realms live and how the operator logs in to Keycloak.
#[derive(Clone)]
pub struct KeycloakSettings {
    /// Base URL of Keycloak, e.g. `https://keycloak.example.com` (with the context
    /// path, if Keycloak is served under one).
    pub url: String,
    /// How the operator obtains its admin token; from a Secret.
    pub auth: KeycloakAuth,
    /// A PEM CA bundle to verify Keycloak's certificate with, instead of the platform's
    /// trust store.
    pub ca_pem: Option<String>,
    /// The settings every tenant realm gets.
    pub realm_template: RealmTemplate,
    /// How long one HTTP request (connection included) may take.
    pub timeout: Duration,
}

impl fmt::Debug for KeycloakSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeycloakSettings")
            .field("url", &self.url)
            .field("auth", &self.auth)
            .field("ca_pem", &self.ca_pem.is_some())
            .field("realm_template", &self.realm_template)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// How the operator logs in to Keycloak.
#[derive(Clone)]
pub enum KeycloakAuth {
    /// The client-credentials grant of a confidential client with a service account
    /// that holds the `create-realm` role and `admin` (or the `realm-management`
    /// roles of the tenant realms). Preferred: no person's password is involved.
    ClientCredentials {
        /// The realm of the client, usually `master`.
        realm: String,
        /// The client id.
        client_id: String,
        /// The client secret.
        client_secret: String,
    },
    /// The password grant of an admin user, through the `admin-cli` client.
    Password {
        /// The realm of the user, usually `master`.
        realm: String,
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
}

impl KeycloakAuth {
    /// The realm the operator logs in to.
    pub fn realm(&self) -> &str {
        match self {
            KeycloakAuth::ClientCredentials { realm, .. } | KeycloakAuth::Password { realm, .. } => realm,
        }
    }
}

impl fmt::Debug for KeycloakAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeycloakAuth::ClientCredentials { realm, client_id, .. } => f
                .debug_struct("ClientCredentials")
                .field("realm", realm)
                .field("client_id", client_id)
                .field("client_secret", &"<redacted>")
                .finish(),
            KeycloakAuth::Password { realm, username, .. } => {
                f.debug_struct("Password").field("realm", realm).field("username", username).field("password", &"<redacted>").finish()
            }
        }
    }
}

/// The settings every tenant realm gets. [`RealmTemplate::default`] documents the
/// defaults.
#[derive(Clone, PartialEq, Eq)]
pub struct RealmTemplate {
    /// Brute-force protection of logins.
    pub brute_force: BruteForce,
    /// Keycloak's password policy string, e.g. `length(12) and digits(1)`. Empty: no
    /// policy.
    pub password_policy: String,
    /// The one-time-password policy.
    pub otp_policy: OtpPolicy,
    /// Keycloak's `smtpServer` settings (`host`, `port`, `from`, `fromDisplayName`,
    /// `replyTo`, `ssl`, `starttls`, `auth`, `user`, `password`). The password comes
    /// from a Secret; Keycloak never returns it, so the realm keeps its SHA-256 digest
    /// (salted with the realm name) in [`SMTP_PASSWORD_DIGEST_ATTRIBUTE`] to notice a
    /// change. Empty: no SMTP server, and no e-mail can be sent.
    pub smtp: BTreeMap<String, String>,
    /// Realm roles every realm gets. Roles added by hand are kept.
    pub roles: Vec<String>,
    /// Client id of the platform's OIDC client.
    pub client_id: String,
}

impl Default for RealmTemplate {
    /// Brute-force protection after 5 failures, a 12-character policy with a digit
    /// and an upper-case letter that must differ from the user name, TOTP with
    /// HmacSHA1, 6 digits and 30 seconds, no SMTP server, the roles `admin`,
    /// `supervisor` and `agent`, and the client `cx-platform`.
    fn default() -> Self {
        RealmTemplate {
            brute_force: BruteForce::default(),
            password_policy: "length(12) and digits(1) and upperCase(1) and notUsername".into(),
            otp_policy: OtpPolicy::default(),
            smtp: BTreeMap::new(),
            roles: ["admin", "supervisor", "agent"].map(String::from).to_vec(),
            client_id: "cx-platform".into(),
        }
    }
}

impl fmt::Debug for RealmTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RealmTemplate")
            .field("brute_force", &self.brute_force)
            .field("password_policy", &self.password_policy)
            .field("otp_policy", &self.otp_policy)
            .field("smtp", &realm::smtp_without_password(&self.smtp))
            .field("smtp_password", &self.smtp.contains_key(realm::SMTP_PASSWORD).then_some("<redacted>"))
            .field("roles", &self.roles)
            .field("client_id", &self.client_id)
            .finish()
    }
}

/// Brute-force protection: Keycloak's lockout of a user after failed logins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BruteForce {
    /// Whether failed logins are counted at all (default true).
    pub enabled: bool,
    /// Failures after which the user is locked out (default 5).
    pub failure_factor: u32,
    /// Lock out permanently, until an admin unlocks, instead of temporarily (default
    /// false).
    pub permanent_lockout: bool,
    /// Temporary lockouts after which the lockout becomes permanent, with
    /// `permanent_lockout`; 0 means never (default 0).
    pub max_temporary_lockouts: u32,
    /// How long the first temporary lockout lasts, in seconds (default 60).
    pub wait_increment_seconds: u32,
    /// The longest temporary lockout, in seconds (default 900).
    pub max_failure_wait_seconds: u32,
    /// Lockout after two failures in quick succession, in seconds (default 60).
    pub minimum_quick_login_wait_seconds: u32,
    /// Failures closer together than this count as quick, in milliseconds (default
    /// 1000).
    pub quick_login_check_milli_seconds: u32,
    /// After this long without a failure the count starts again, in seconds (default
    /// 43200, 12 hours).
    pub max_delta_time_seconds: u32,
}

impl Default for BruteForce {
    fn default() -> Self {
        BruteForce {
            enabled: true,
            failure_factor: 5,
            permanent_lockout: false,
            max_temporary_lockouts: 0,
            wait_increment_seconds: 60,
            max_failure_wait_seconds: 900,
            minimum_quick_login_wait_seconds: 60,
            quick_login_check_milli_seconds: 1000,
            max_delta_time_seconds: 43_200,
        }
    }
}

/// The one-time-password policy of a realm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtpPolicy {
    /// `totp` (time-based, default) or `hotp` (counter-based).
    pub otp_type: String,
    /// `HmacSHA1` (default, what most authenticator apps support), `HmacSHA256` or
    /// `HmacSHA512`.
    pub algorithm: String,
    /// Digits of a code (default 6).
    pub digits: u32,
    /// How long a TOTP code is valid, in seconds (default 30).
    pub period_seconds: u32,
    /// How many codes before and after the current one are accepted, to allow for
    /// clock skew (default 1).
    pub look_ahead_window: u32,
}

impl Default for OtpPolicy {
    fn default() -> Self {
        OtpPolicy { otp_type: "totp".into(), algorithm: "HmacSHA1".into(), digits: 6, period_seconds: 30, look_ahead_window: 1 }
    }
}

/// The realm of one tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealmSpec {
    /// The realm name: the tenant id.
    pub name: String,
    /// Shown on the login page.
    pub display_name: String,
    /// false disables the realm: nobody can log in; nothing is deleted.
    pub enabled: bool,
    /// The default language of the login pages and e-mails (BCP 47, e.g. `en`).
    pub default_locale: String,
    /// The Tenant's `metadata.uid`, which marks the realm as the tenant's.
    pub tenant_uid: String,
    /// The tenant's URL, `https://<fqdn>`: the OIDC client's redirect URIs and web
    /// origins.
    pub url: String,
}

/// A user in a tenant realm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSpec {
    /// The login name; never changed once the user exists.
    pub username: String,
    /// The e-mail address. A change marks it unverified and sends a verification
    /// e-mail.
    pub email: String,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: Option<String>,
    /// false disables the user; nothing is deleted.
    pub enabled: bool,
    /// User attributes (alias, phone, title, bio, queues, skills, mobileApp,
    /// timeFormat). Attributes in [`MANAGED_USER_ATTRIBUTES`] that are missing here are
    /// removed; other attributes of the user are kept.
    pub attributes: BTreeMap<String, Vec<String>>,
    /// Realm roles. Roles mapped directly to the user that are not listed are
    /// removed, except the realm's built-in roles (`default-roles-<realm>`,
    /// `offline_access`, `uma_authorization`).
    pub roles: Vec<String>,
    /// Whether the user must set up a one-time-password generator: adds the
    /// `CONFIGURE_TOTP` required action while the user has none.
    pub require_otp: bool,
}

/// Provisions tenant realms and their users in one Keycloak.
pub struct KeycloakProvider {
    admin: Admin,
    tokens: Arc<TokenCache>,
    template: RealmTemplate,
    url: String,
}

impl fmt::Debug for KeycloakProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeycloakProvider").field("url", &self.url).field("template", &self.template).finish_non_exhaustive()
    }
}

impl KeycloakProvider {
    /// Validates the settings and prepares the HTTP client. Keycloak is not contacted
    /// yet: the first call logs in.
    pub async fn new(settings: KeycloakSettings) -> Result<Self, ProviderError> {
        let url = validate_url(&settings.url)?;
        validate_template(&settings.realm_template)?;
        if settings.timeout.is_zero() {
            return Err(refused("the Keycloak timeout must be longer than zero".into()));
        }
        let http = http_client(settings.ca_pem.as_deref(), settings.timeout)?;
        let tokens = Arc::new(TokenCache::new(http.clone(), settings.auth));
        let admin = Admin::new(&url, SharedTokens(tokens.clone()), http);
        Ok(KeycloakProvider { admin, tokens, template: settings.realm_template, url })
    }

    /// The realm settings in use.
    pub fn template(&self) -> &RealmTemplate {
        &self.template
    }

    /// A generated password for a person of a tenant realm that the realm's password
    /// policy accepts: long enough for its `length(n)` term, with every symbol class.
    pub fn generate_password(&self) -> String {
        let terms = realm::policy_terms(Some(&self.template.password_policy));
        let min_length = terms.get("length").and_then(|n| n.parse().ok()).unwrap_or(0);
        password::generate_for_person(min_length)
    }

    /// The realm, its roles and its OIDC client, as `cx-operator plan` shows them.
    /// The tenant administrator is planned by the caller through [`Self::plan_user`].
    pub fn plan_realm(&self, realm: &RealmSpec) -> Vec<PlannedObject> {
        realm::plan(&self.template, realm)
    }

    /// The user, as `cx-operator plan` shows it.
    pub fn plan_user(&self, user: &UserSpec) -> PlannedObject {
        user::plan(user)
    }

    /// Creates or updates the realm to match: display name, enabled, default locale,
    /// brute-force protection, password and OTP policies, SMTP, the user profile
    /// (attributes editable by administrators only), roles and the OIDC client. Writes
    /// only what differs. A new realm is marked with the tenant UID; an existing realm
    /// with another UID or none is a [`ProviderError::Conflict`]. Returns the
    /// operations done (empty when nothing changed).
    pub async fn ensure_realm(&self, realm: &RealmSpec) -> Result<Vec<String>, ProviderError> {
        let mut operations = Vec::new();
        let actual = match self.get_realm(&realm.name).await? {
            Some(actual) => actual,
            None => {
                operations.extend(self.create_realm(realm).await?);
                self.get_realm(&realm.name)
                    .await?
                    .ok_or_else(|| unavailable(format!("realm {} is gone right after it was created", realm.name)))?
            }
        };
        realm::check_owner(&actual, realm)?;
        operations.extend(self.update_realm(realm, &actual).await?);
        operations.extend(self.ensure_user_profile(&realm.name).await?);
        operations.extend(self.ensure_roles(&realm.name).await?);
        operations.extend(self.ensure_client(realm).await?);
        Ok(operations)
    }

    /// Deletes the realm with everything in it, whoever created it; a missing realm is
    /// success. Prefer [`Self::delete_owned_realm`], which leaves other tenants' and
    /// foreign realms alone.
    pub async fn delete_realm(&self, name: &str) -> Result<Vec<String>, ProviderError> {
        match self.send(|| self.admin.realm_delete(name)).await {
            Ok(_) => Ok(vec![format!("deleted realm {name}")]),
            Err(e) if status_of(&e) == Some(404) => Ok(Vec::new()),
            Err(e) => Err(classify(e, &format!("delete realm {name}"))),
        }
    }

    /// Deletes the realm only when it carries `tenant_uid`; a missing realm is
    /// success, a realm of someone else is a [`ProviderError::Conflict`] and stays.
    pub async fn delete_owned_realm(&self, name: &str, tenant_uid: &str) -> Result<Vec<String>, ProviderError> {
        let Some(actual) = self.get_realm(name).await? else {
            return Ok(Vec::new());
        };
        realm::check_owner_uid(&actual, name, tenant_uid)?;
        self.delete_realm(name).await
    }

    /// Creates or updates a user: e-mail (a change marks it unverified and sends a
    /// verification e-mail), names, attributes, enabled, the `CONFIGURE_TOTP` required
    /// action when `require_otp`, and realm role mappings by difference. The user name
    /// is never changed. A user locked out by brute-force protection is not enabled
    /// here (that would lift the lockout); see [`Self::unlock`]. Returns the user id
    /// and the operations done.
    pub async fn ensure_user(&self, realm: &str, user: &UserSpec) -> Result<(String, Vec<String>), ProviderError> {
        let (current, mut operations) = match self.find_user(realm, &user.username).await? {
            Some(actual) => self.update_user(realm, user, actual).await?,
            None => self.create_user(realm, user).await?,
        };
        let id = current.id.clone().ok_or_else(|| unavailable(format!("user {} in realm {realm} has no id", user.username)))?;
        operations.extend(self.ensure_user_roles(realm, &id, user).await?);
        operations.extend(self.send_pending_verification(realm, &id, &current).await?);
        Ok((id, operations))
    }

    /// The id of a user, when it exists.
    pub async fn user_id(&self, realm: &str, username: &str) -> Result<Option<String>, ProviderError> {
        Ok(self.find_user(realm, username).await?.and_then(|u| u.id))
    }

    /// Deletes a user; a missing user (or realm) is success.
    pub async fn delete_user(&self, realm: &str, username: &str) -> Result<Vec<String>, ProviderError> {
        let found = match self.search_user(realm, username).await {
            Err(e) if status_of(&e) == Some(404) => return Ok(Vec::new()),
            other => other.map_err(|e| classify(e, &format!("find user {username} in realm {realm}")))?,
        };
        let Some(id) = found.and_then(|u| u.id) else {
            return Ok(Vec::new());
        };
        match self.send(|| self.admin.realm_users_with_user_id_delete(realm, &id)).await {
            Ok(_) => Ok(vec![format!("deleted user {username} from realm {realm}")]),
            Err(e) if status_of(&e) == Some(404) => Ok(Vec::new()),
            Err(e) => Err(classify(e, &format!("delete user {username} in realm {realm}"))),
        }
    }

    /// Sets a user's password; `temporary` makes the user choose a new one at the
    /// next login. A password the realm's policy refuses is a
    /// [`ProviderError::Refused`] with Keycloak's explanation (never the password).
    pub async fn set_password(&self, realm: &str, user_id: &str, password: &str, temporary: bool) -> Result<(), ProviderError> {
        let credential = || CredentialRepresentation {
            type_: Some("password".into()),
            value: Some(password.into()),
            temporary: Some(temporary),
            ..Default::default()
        };
        self.call(&format!("set the password of user {user_id} in realm {realm}"), || {
            self.admin.realm_users_with_user_id_reset_password_put(realm, user_id, credential())
        })
        .await
        .map(drop)
    }

    /// Sends the user an e-mail with a link to perform `actions` (`VERIFY_EMAIL`,
    /// `UPDATE_PASSWORD`, `CONFIGURE_TOTP`); the link leads back to the platform's
    /// client. Needs the realm's SMTP settings; Keycloak answers 500 when sending
    /// fails, which is reported as [`ProviderError::Unavailable`].
    pub async fn send_actions_email(&self, realm: &str, user_id: &str, actions: &[&str]) -> Result<(), ProviderError> {
        if actions.is_empty() {
            return Ok(());
        }
        let actions: Vec<String> = actions.iter().map(|a| a.to_string()).collect();
        let client_id = &self.template.client_id;
        self.call(&format!("send an actions e-mail to user {user_id} in realm {realm}"), || {
            self.admin.realm_users_with_user_id_execute_actions_email_put(
                realm,
                user_id,
                Some(client_id.clone()),
                None,
                None,
                actions.clone(),
            )
        })
        .await
        .map(drop)
    }

    /// Whether brute-force protection currently locks the user out.
    pub async fn locked(&self, realm: &str, user_id: &str) -> Result<bool, ProviderError> {
        let status = self
            .call(&format!("read the brute-force status of user {user_id} in realm {realm}"), || {
                self.admin.realm_attack_detection_brute_force_users_with_user_id_get(realm, user_id)
            })
            .await?;
        Ok(status.get("disabled").and_then(|v| v.as_bool()).unwrap_or(false))
    }

    /// Clears the user's login failures, which lifts a temporary or permanent lockout.
    pub async fn unlock(&self, realm: &str, user_id: &str) -> Result<(), ProviderError> {
        self.call(&format!("unlock user {user_id} in realm {realm}"), || {
            self.admin.realm_attack_detection_brute_force_users_with_user_id_delete(realm, user_id)
        })
        .await
        .map(drop)
    }

    /// Removes the user's one-time-password credentials; returns how many were
    /// removed.
    pub async fn remove_otp(&self, realm: &str, user_id: &str) -> Result<usize, ProviderError> {
        let credentials = self
            .call(&format!("list the credentials of user {user_id} in realm {realm}"), || {
                self.admin.realm_users_with_user_id_credentials_get(realm, user_id)
            })
            .await?;
        let mut removed = 0;
        for id in credentials.iter().filter(|c| c.type_.as_deref() == Some(OTP_CREDENTIAL)).filter_map(|c| c.id.as_deref()) {
            match self.send(|| self.admin.realm_users_with_user_id_credentials_with_credential_id_delete(realm, user_id, id)).await {
                Ok(_) => removed += 1,
                // Removed concurrently, e.g. by the user: the goal is reached.
                Err(e) if status_of(&e) == Some(404) => {}
                Err(e) => return Err(classify(e, &format!("remove an OTP credential of user {user_id} in realm {realm}"))),
            }
        }
        Ok(removed)
    }

    /// Whether the realms have an SMTP server, so that Keycloak can send e-mail.
    fn can_send_email(&self) -> bool {
        self.template.smtp.get("host").is_some_and(|host| !host.trim().is_empty())
    }

    /// Runs one Admin API call; after a 401 it logs in again and retries once.
    async fn send<T, F, Fut>(&self, op: F) -> Result<T, KeycloakError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, KeycloakError>>,
    {
        match op().await {
            Err(e) if status_of(&e) == Some(401) => {
                self.tokens.invalidate().await;
                op().await
            }
            result => result,
        }
    }

    /// [`Self::send`], with failures classified; `what` names the call in errors.
    async fn call<T, F, Fut>(&self, what: &str, op: F) -> Result<T, ProviderError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, KeycloakError>>,
    {
        self.send(op).await.map_err(|e| classify(e, what))
    }

    async fn get_realm(&self, name: &str) -> Result<Option<RealmRepresentation>, ProviderError> {
        match self.send(|| self.admin.realm_get(name)).await {
            Ok(realm) => Ok(Some(realm)),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(classify(e, &format!("read realm {name}"))),
        }
    }

    /// Creates the realm; another creator winning the race (409) is not an error here,
    /// the owner check that follows decides.
    async fn create_realm(&self, spec: &RealmSpec) -> Result<Option<String>, ProviderError> {
        match self.send(|| self.admin.post(realm::new_realm(&self.template, spec))).await {
            Ok(_) => Ok(Some(format!("created realm {}", spec.name))),
            Err(e) if status_of(&e) == Some(409) => Ok(None),
            Err(e) => Err(classify(e, &format!("create realm {}", spec.name))),
        }
    }

    async fn update_realm(&self, spec: &RealmSpec, actual: &RealmRepresentation) -> Result<Option<String>, ProviderError> {
        let changed = realm::drift(&self.template, spec, actual);
        if changed.is_empty() {
            return Ok(None);
        }
        let update = realm::update(&self.template, spec, actual);
        self.call(&format!("update realm {}", spec.name), || self.admin.realm_put(&spec.name, update.clone())).await?;
        Ok(Some(format!("updated realm {} ({})", spec.name, changed.join(", "))))
    }

    /// Lets administrators (and so the operator) keep any user attribute, while users
    /// can neither see nor change them. Without this, Keycloak's declarative user
    /// profile drops every attribute it does not declare.
    async fn ensure_user_profile(&self, realm: &str) -> Result<Option<String>, ProviderError> {
        let mut profile: UPConfig =
            self.call(&format!("read the user profile of realm {realm}"), || self.admin.realm_users_profile_get(realm)).await?;
        if profile.unmanaged_attribute_policy == Some(UnmanagedAttributePolicy::AdminEdit) {
            return Ok(None);
        }
        profile.unmanaged_attribute_policy = Some(UnmanagedAttributePolicy::AdminEdit);
        self.call(&format!("update the user profile of realm {realm}"), || self.admin.realm_users_profile_put(realm, profile.clone()))
            .await?;
        Ok(Some(format!("let administrators edit user attributes in realm {realm}")))
    }

    async fn ensure_roles(&self, realm: &str) -> Result<Vec<String>, ProviderError> {
        let existing = self.realm_roles(realm).await?;
        let mut operations = Vec::new();
        for name in self.template.roles.iter().filter(|r| !existing.iter().any(|e| e.name.as_deref() == Some(r.as_str()))) {
            let role =
                RoleRepresentation { name: Some(name.clone()), description: Some(realm::ROLE_DESCRIPTION.into()), ..Default::default() };
            match self.send(|| self.admin.realm_roles_post(realm, role.clone())).await {
                Ok(_) => operations.push(format!("created role {name} in realm {realm}")),
                Err(e) if status_of(&e) == Some(409) => {}
                Err(e) => return Err(classify(e, &format!("create role {name} in realm {realm}"))),
            }
        }
        Ok(operations)
    }

    async fn realm_roles(&self, realm: &str) -> Result<Vec<RoleRepresentation>, ProviderError> {
        self.call(&format!("list the roles of realm {realm}"), || self.admin.realm_roles_get(realm, Some(true), None, None, None)).await
    }

    async fn ensure_client(&self, spec: &RealmSpec) -> Result<Option<String>, ProviderError> {
        let realm = spec.name.as_str();
        let client_id = self.template.client_id.as_str();
        let desired = realm::desired_client(&self.template, spec);
        let found = self
            .call(&format!("read client {client_id} of realm {realm}"), || {
                self.admin.realm_clients_get(realm, Some(client_id.to_string()), None, None, None, Some(false), None)
            })
            .await?;
        let Some(actual) = found.into_iter().find(|c| c.client_id.as_deref() == Some(client_id)) else {
            return match self.send(|| self.admin.realm_clients_post(realm, desired.clone())).await {
                Ok(_) => Ok(Some(format!("created client {client_id} in realm {realm}"))),
                // Created concurrently: the next reconcile compares its settings.
                Err(e) if status_of(&e) == Some(409) => Ok(None),
                Err(e) => Err(classify(e, &format!("create client {client_id} in realm {realm}"))),
            };
        };
        let changed = realm::client_drift(&desired, &actual);
        if changed.is_empty() {
            return Ok(None);
        }
        let id = actual.id.clone().ok_or_else(|| unavailable(format!("client {client_id} of realm {realm} has no id")))?;
        let update = realm::merge_client(desired, actual);
        self.call(&format!("update client {client_id} of realm {realm}"), || {
            self.admin.realm_clients_with_client_uuid_put(realm, &id, update.clone())
        })
        .await?;
        Ok(Some(format!("updated client {client_id} in realm {realm} ({})", changed.join(", "))))
    }

    /// Finds a user by name. A missing realm is [`ProviderError::Unavailable`]: the
    /// Tenant controller creates it, so the user's turn comes later.
    async fn find_user(&self, realm: &str, username: &str) -> Result<Option<UserRepresentation>, ProviderError> {
        match self.search_user(realm, username).await {
            Err(e) if status_of(&e) == Some(404) => {
                Err(unavailable(format!("realm {realm} does not exist yet, so user {username} waits for it")))
            }
            other => other.map_err(|e| classify(e, &format!("find user {username} in realm {realm}"))),
        }
    }

    async fn search_user(&self, realm: &str, username: &str) -> Result<Option<UserRepresentation>, KeycloakError> {
        let users = self
            .send(|| {
                let exact = Some(true);
                let brief = Some(false);
                self.admin.realm_users_get(
                    realm,
                    brief,
                    None,
                    None,
                    None,
                    None,
                    None,
                    exact,
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
            })
            .await?;
        // Keycloak keeps user names in lower case and matches them so.
        Ok(users.into_iter().find(|u| u.username.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(username))))
    }

    /// Creates the user. When Keycloak reports a conflict, the user may have been
    /// created by an earlier attempt whose answer was lost: it is read back and
    /// updated. A conflict with another user (the same e-mail) stays a conflict.
    async fn create_user(&self, realm: &str, spec: &UserSpec) -> Result<(UserRepresentation, Vec<String>), ProviderError> {
        let what = format!("create user {} in realm {realm}", spec.username);
        match self.send(|| self.admin.realm_users_post(realm, user::new_user(spec))).await {
            Ok(response) => {
                let id = response.to_id().map(String::from).ok_or_else(|| unavailable(format!("{what}: no user id in the answer")))?;
                let created = UserRepresentation { id: Some(id), ..user::new_user(spec) };
                Ok((created, vec![format!("created user {} in realm {realm}", spec.username)]))
            }
            Err(e) if status_of(&e) == Some(409) => match self.find_user(realm, &spec.username).await? {
                Some(actual) => self.update_user(realm, spec, actual).await,
                None => Err(classify(e, &what)),
            },
            Err(e) => Err(classify(e, &what)),
        }
    }

    async fn update_user(
        &self,
        realm: &str,
        spec: &UserSpec,
        actual: UserRepresentation,
    ) -> Result<(UserRepresentation, Vec<String>), ProviderError> {
        let id = actual.id.clone().ok_or_else(|| unavailable(format!("user {} in realm {realm} has no id", spec.username)))?;
        // Enabling a user clears its login failures in Keycloak, and Keycloak may show
        // a locked-out user as disabled; so a disabled user is enabled only when it is
        // not locked out.
        let enabling = spec.enabled && actual.enabled == Some(false);
        let may_enable = !enabling || !self.locked(realm, &id).await?;
        let Some(mut update) = user::update(spec, &actual, may_enable) else {
            return Ok((actual, Vec::new()));
        };
        if !self.can_send_email() {
            user::forget_pending_verification(&mut update.body);
        }
        let body = update.body.clone();
        self.call(&format!("update user {} in realm {realm}", spec.username), || {
            self.admin.realm_users_with_user_id_put(realm, &id, body.clone())
        })
        .await?;
        let operation = format!("updated user {} in realm {realm} ({})", spec.username, update.changes.join(", "));
        Ok((update.body, vec![operation]))
    }

    /// Maps the spec's realm roles to the user and unmaps the others, leaving the
    /// realm's built-in roles alone.
    async fn ensure_user_roles(&self, realm: &str, user_id: &str, spec: &UserSpec) -> Result<Vec<String>, ProviderError> {
        let mapped = self
            .call(&format!("read the roles of user {} in realm {realm}", spec.username), || {
                self.admin.realm_users_with_user_id_role_mappings_realm_get(realm, user_id)
            })
            .await?;
        let (to_add, to_remove) = user::role_changes(realm, &spec.roles, &mapped);
        let mut operations = Vec::new();
        if !to_add.is_empty() {
            let roles = self.role_representations(realm, &to_add).await?;
            self.call(&format!("grant roles to user {} in realm {realm}", spec.username), || {
                self.admin.realm_users_with_user_id_role_mappings_realm_post(realm, user_id, roles.clone())
            })
            .await?;
            operations.push(format!("granted {} to user {} in realm {realm}", to_add.join(", "), spec.username));
        }
        if !to_remove.is_empty() {
            let names: Vec<String> = to_remove.iter().filter_map(|r| r.name.clone()).collect();
            self.call(&format!("revoke roles of user {} in realm {realm}", spec.username), || {
                self.admin.realm_users_with_user_id_role_mappings_realm_delete(realm, user_id, to_remove.clone())
            })
            .await?;
            operations.push(format!("revoked {} from user {} in realm {realm}", names.join(", "), spec.username));
        }
        Ok(operations)
    }

    async fn role_representations(&self, realm: &str, names: &[String]) -> Result<Vec<RoleRepresentation>, ProviderError> {
        let existing = self.realm_roles(realm).await?;
        names
            .iter()
            .map(|name| {
                existing
                    .iter()
                    .find(|r| r.name.as_deref() == Some(name.as_str()))
                    .map(|r| RoleRepresentation { id: r.id.clone(), name: r.name.clone(), ..Default::default() })
                    .ok_or_else(|| refused(format!("role {name} does not exist in realm {realm}")))
            })
            .collect()
    }

    /// Sends the verification e-mail an e-mail change asked for, then clears the
    /// request. The request is kept on the user until the e-mail is sent, so a
    /// failure to send is retried by the next reconcile instead of being lost.
    async fn send_pending_verification(
        &self,
        realm: &str,
        user_id: &str,
        current: &UserRepresentation,
    ) -> Result<Option<String>, ProviderError> {
        if !user::verification_pending(current) {
            return Ok(None);
        }
        self.send_actions_email(realm, user_id, &[VERIFY_EMAIL]).await?;
        let fresh = self
            .call(&format!("read user {user_id} in realm {realm}"), || self.admin.realm_users_with_user_id_get(realm, user_id, None))
            .await?;
        let cleared = user::without_pending_verification(fresh);
        self.call(&format!("update user {user_id} in realm {realm}"), || {
            self.admin.realm_users_with_user_id_put(realm, user_id, cleared.clone())
        })
        .await?;
        let address = current.email.as_deref().unwrap_or_default();
        Ok(Some(format!(
            "sent a verification e-mail to {address} for user {} in realm {realm}",
            current.username.as_deref().unwrap_or(user_id)
        )))
    }
}

fn validate_url(url: &str) -> Result<String, ProviderError> {
    let trimmed = url.trim_end_matches('/');
    let parsed = reqwest::Url::parse(trimmed).map_err(|e| refused(format!("the Keycloak URL is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(refused("the Keycloak URL must be an http:// or https:// URL with a host".into()));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(refused("the Keycloak URL must not contain credentials; use the auth settings".into()));
    }
    Ok(trimmed.to_string())
}

fn validate_template(template: &RealmTemplate) -> Result<(), ProviderError> {
    if template.client_id.trim().is_empty() {
        return Err(refused("the realm template needs a client id".into()));
    }
    if template.roles.iter().any(|r| r.trim().is_empty()) {
        return Err(refused("the realm template has an empty role name".into()));
    }
    if template.brute_force.enabled && template.brute_force.failure_factor == 0 {
        return Err(refused("brute-force protection needs a failure factor of at least 1".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> KeycloakSettings {
        KeycloakSettings {
            url: "http://127.0.0.1:1/".into(),
            auth: KeycloakAuth::ClientCredentials { realm: "master".into(), client_id: "op".into(), client_secret: "s3cret-value".into() },
            ca_pem: None,
            realm_template: RealmTemplate {
                smtp: BTreeMap::from([("host".into(), "mail".into()), ("password".into(), "smtp-s3cret".into())]),
                ..RealmTemplate::default()
            },
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn debug_output_holds_no_secret() {
        let mut settings = settings();
        let text = format!("{settings:?}");
        assert!(!text.contains("s3cret"), "{text}");
        settings.auth = KeycloakAuth::Password { realm: "master".into(), username: "admin".into(), password: "pw-s3cret".into() };
        let text = format!("{settings:?}");
        assert!(!text.contains("s3cret") && text.contains("admin"), "{text}");
    }

    #[tokio::test]
    async fn provider_debug_holds_no_secret_and_calls_are_send() {
        let provider = KeycloakProvider::new(settings()).await.expect("valid settings");
        assert!(!format!("{provider:?}").contains("s3cret"));
        fn assert_send<T: Send>(_: &T) {}
        let spec = RealmSpec {
            name: "acme".into(),
            display_name: "Acme".into(),
            enabled: true,
            default_locale: "en".into(),
            tenant_uid: "uid".into(),
            url: "https://acme.example.com".into(),
        };
        assert_send(&provider.ensure_realm(&spec));
        assert_send(&provider.remove_otp("acme", "id"));
        let user = UserSpec {
            username: "ana".into(),
            email: "ana@example.com".into(),
            first_name: "Ana".into(),
            last_name: None,
            enabled: true,
            attributes: BTreeMap::new(),
            roles: vec![],
            require_otp: false,
        };
        assert_send(&provider.ensure_user("acme", &user));
    }

    #[test]
    fn urls_are_checked() {
        assert_eq!(validate_url("https://kc.example.com/auth/").unwrap(), "https://kc.example.com/auth");
        assert!(validate_url("ftp://kc").is_err());
        assert!(validate_url("https://user:pw@kc.example.com").is_err());
        assert!(validate_url("not a url").is_err());
    }
}
