//! The fake's data: realms with their users, roles, clients and login failures, and
//! the admin tokens it issued.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::{Map, Value, json};

/// What Keycloak shows instead of a stored secret.
pub const MASKED_SECRET: &str = "**********";

/// The default access token lifetime (Keycloak's `accessTokenLifespan`).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);

/// Everything the fake keeps.
pub struct State {
    pub realms: BTreeMap<String, Realm>,
    pub tokens: HashMap<String, Token>,
    pub requests: Vec<super::RecordedRequest>,
    pub emails: Vec<super::SentEmail>,
    pub token_lifetime: Duration,
    pub down: bool,
    pub delay: Duration,
    pub write_delay: Duration,
}

/// An access token the fake issued.
pub struct Token {
    pub realm: String,
    pub expires_at: Instant,
}

/// One realm.
pub struct Realm {
    /// The realm representation without `id`, `realm` and the SMTP password.
    pub rep: Map<String, Value>,
    pub id: String,
    pub smtp_password: Option<String>,
    pub user_profile: Value,
    pub roles: Vec<Role>,
    pub clients: Vec<Map<String, Value>>,
    pub users: Vec<User>,
    pub failures: HashMap<String, Failures>,
}

/// A realm role.
pub struct Role {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
}

/// A user: its representation (without credentials), its credentials and its realm
/// role mappings.
pub struct User {
    pub rep: Map<String, Value>,
    pub password: Option<StoredPassword>,
    pub otp: Vec<Credential>,
    pub role_ids: BTreeSet<String>,
}

/// The user's password credential.
pub struct StoredPassword {
    pub id: String,
    pub value: String,
    pub created: i64,
}

/// A non-password credential (OTP).
pub struct Credential {
    pub id: String,
    pub kind: String,
    pub label: Option<String>,
    pub created: i64,
    pub data: String,
}

/// Failed logins of one user, for brute-force protection.
#[derive(Default)]
pub struct Failures {
    pub count: u32,
    pub last_failure: i64,
    pub last_failure_at: Option<Instant>,
    pub temporary_lockouts: u32,
    pub locked_until: Option<Instant>,
    pub permanent: bool,
}

impl Failures {
    /// Whether the user is locked out now.
    pub fn locked(&self) -> bool {
        self.permanent || self.locked_until.is_some_and(|until| Instant::now() < until)
    }
}

/// A new random id in Keycloak's UUID form.
pub fn new_id() -> String {
    let bits: u128 = rand::random();
    let hex = format!("{bits:032x}");
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// Milliseconds since the epoch, as Keycloak stamps creation times.
pub fn now_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

impl State {
    pub fn new() -> State {
        State {
            realms: BTreeMap::new(),
            tokens: HashMap::new(),
            requests: Vec::new(),
            emails: Vec::new(),
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
            down: false,
            delay: Duration::ZERO,
            write_delay: Duration::ZERO,
        }
    }
}

impl Realm {
    /// A realm as Keycloak creates it: its defaults, the built-in roles and the
    /// `admin-cli` and `account` clients, overlaid with `rep` (null fields ignored).
    pub fn new(name: &str, rep: &Map<String, Value>) -> Realm {
        let id = new_id();
        let roles = ["offline_access", "uma_authorization", &format!("default-roles-{name}")]
            .into_iter()
            .map(|role| Role { id: new_id(), name: role.to_string(), description: None })
            .collect();
        let mut realm = Realm {
            rep: default_realm(),
            id,
            smtp_password: None,
            user_profile: default_user_profile(),
            roles,
            clients: vec![builtin_client("admin-cli", true), builtin_client("account", false)],
            users: Vec::new(),
            failures: HashMap::new(),
        };
        realm.apply(rep);
        realm
    }

    /// Keycloak's partial update of a realm: fields that are absent or null stay,
    /// attributes are merged one by one, the SMTP settings are replaced (a masked
    /// password keeps the stored one).
    pub fn apply(&mut self, update: &Map<String, Value>) {
        for (key, value) in update {
            match (key.as_str(), value) {
                (_, Value::Null) | ("id" | "realm" | "users" | "roles" | "clients" | "groups", _) => {}
                ("attributes", Value::Object(attributes)) => {
                    let target = self.rep.entry("attributes").or_insert_with(|| json!({}));
                    if let Value::Object(target) = target {
                        for (name, value) in attributes {
                            match value {
                                Value::Null => target.remove(name),
                                value => target.insert(name.clone(), value.clone()),
                            };
                        }
                    }
                }
                ("smtpServer", Value::Object(smtp)) => {
                    let mut smtp = smtp.clone();
                    match smtp.remove("password") {
                        Some(Value::String(masked)) if masked == MASKED_SECRET => {}
                        Some(Value::String(password)) => self.smtp_password = Some(password),
                        _ => self.smtp_password = None,
                    }
                    self.rep.insert(key.clone(), Value::Object(smtp));
                }
                ("passwordPolicy", Value::String(policy)) => {
                    self.rep.insert(key.clone(), Value::String(normalize_policy(policy)));
                }
                _ => {
                    self.rep.insert(key.clone(), value.clone());
                }
            }
        }
    }

    /// The realm as `GET /admin/realms/{realm}` returns it.
    pub fn representation(&self, name: &str) -> Value {
        let mut rep = self.rep.clone();
        rep.insert("id".into(), json!(self.id));
        rep.insert("realm".into(), json!(name));
        if self.smtp_password.is_some()
            && let Some(Value::Object(smtp)) = rep.get_mut("smtpServer")
        {
            smtp.insert("password".into(), json!(MASKED_SECRET));
        }
        Value::Object(rep)
    }

    pub fn bool_setting(&self, key: &str) -> bool {
        self.rep.get(key).and_then(Value::as_bool).unwrap_or(false)
    }

    pub fn int_setting(&self, key: &str) -> i64 {
        self.rep.get(key).and_then(Value::as_i64).unwrap_or_default()
    }

    pub fn password_policy(&self) -> String {
        self.rep.get("passwordPolicy").and_then(Value::as_str).unwrap_or_default().to_string()
    }

    /// Whether the user profile lets administrators write attributes it does not
    /// declare.
    pub fn accepts_unmanaged_attributes(&self) -> bool {
        matches!(self.user_profile.get("unmanagedAttributePolicy").and_then(Value::as_str), Some("ENABLED" | "ADMIN_EDIT"))
    }

    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.iter().find(|u| u.id() == id)
    }

    pub fn user_mut(&mut self, id: &str) -> Option<&mut User> {
        self.users.iter_mut().find(|u| u.id() == id)
    }

    pub fn user_by_username(&self, username: &str) -> Option<&User> {
        let username = username.to_lowercase();
        self.users.iter().find(|u| u.str("username") == username)
    }

    pub fn role_by_name(&self, name: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.name == name)
    }

    pub fn client(&self, id: &str) -> Option<&Map<String, Value>> {
        self.clients.iter().find(|c| c.get("id").and_then(Value::as_str) == Some(id))
    }

    pub fn client_by_client_id(&self, client_id: &str) -> Option<&Map<String, Value>> {
        self.clients.iter().find(|c| c.get("clientId").and_then(Value::as_str) == Some(client_id))
    }

    /// Whether brute-force protection locks the user out now.
    pub fn locked(&self, user_id: &str) -> bool {
        self.bool_setting("bruteForceProtected") && self.failures.get(user_id).is_some_and(Failures::locked)
    }

    pub fn role_representation(&self, role: &Role) -> Value {
        json!({
            "id": role.id,
            "name": role.name,
            "description": role.description,
            "composite": role.name.starts_with("default-roles-"),
            "clientRole": false,
            "containerId": self.id,
        })
    }
}

impl User {
    pub fn id(&self) -> &str {
        self.str("id")
    }

    pub fn str(&self, key: &str) -> &str {
        self.rep.get(key).and_then(Value::as_str).unwrap_or_default()
    }

    pub fn enabled(&self) -> bool {
        self.rep.get("enabled").and_then(Value::as_bool).unwrap_or(false)
    }

    pub fn required_actions(&self) -> Vec<String> {
        self.rep
            .get("requiredActions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(String::from))
            .collect()
    }

    pub fn set_required_action(&mut self, action: &str, present: bool) {
        let mut actions = self.required_actions();
        actions.retain(|a| a != action);
        if present {
            actions.push(action.to_string());
        }
        self.rep.insert("requiredActions".into(), json!(actions));
    }

    /// The user as `GET .../users/{id}` returns it. `locked` shows a user locked out
    /// by brute-force protection as disabled, as Keycloak has long done.
    pub fn representation(&self, brief: bool, locked: bool) -> Value {
        let mut rep = self.rep.clone();
        rep.insert("totp".into(), json!(!self.otp.is_empty()));
        if locked {
            rep.insert("enabled".into(), json!(false));
        }
        if brief {
            rep.remove("attributes");
        } else {
            rep.entry("attributes").or_insert_with(|| json!({}));
            rep.insert(
                "access".into(),
                json!({ "manage": true, "impersonate": false, "view": true, "mapRoles": true, "manageGroupMembership": true }),
            );
        }
        Value::Object(rep)
    }

    pub fn credential_representations(&self) -> Vec<Value> {
        let password = self.password.iter().map(|p| {
            json!({ "id": p.id, "type": "password", "createdDate": p.created, "credentialData": "{\"hashIterations\":5,\"algorithm\":\"argon2\"}" })
        });
        let others = self
            .otp
            .iter()
            .map(|c| json!({ "id": c.id, "type": c.kind, "userLabel": c.label, "createdDate": c.created, "credentialData": c.data }));
        password.chain(others).collect()
    }
}

/// Keycloak writes a policy term without argument with its argument spelled out:
/// `notUsername` is read back as `notUsername(undefined)`.
fn normalize_policy(policy: &str) -> String {
    policy
        .split(" and ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|term| if term.contains('(') { term.to_string() } else { format!("{term}(undefined)") })
        .collect::<Vec<_>>()
        .join(" and ")
}

fn default_realm() -> Map<String, Value> {
    let defaults = json!({
        "enabled": false,
        "sslRequired": "external",
        "accessTokenLifespan": 300,
        "registrationAllowed": false,
        "loginWithEmailAllowed": true,
        "duplicateEmailsAllowed": false,
        "resetPasswordAllowed": false,
        "editUsernameAllowed": false,
        "verifyEmail": false,
        "bruteForceProtected": false,
        "permanentLockout": false,
        "maxTemporaryLockouts": 0,
        "bruteForceStrategy": "MULTIPLE",
        "maxFailureWaitSeconds": 900,
        "minimumQuickLoginWaitSeconds": 60,
        "waitIncrementSeconds": 60,
        "quickLoginCheckMilliSeconds": 1000,
        "maxDeltaTimeSeconds": 43200,
        "failureFactor": 30,
        "otpPolicyType": "totp",
        "otpPolicyAlgorithm": "HmacSHA1",
        "otpPolicyInitialCounter": 0,
        "otpPolicyDigits": 6,
        "otpPolicyLookAheadWindow": 1,
        "otpPolicyPeriod": 30,
        "otpPolicyCodeReusable": false,
        "otpSupportedApplications": ["totpAppFreeOTPName", "totpAppGoogleName", "totpAppMicrosoftAuthenticatorName"],
        "internationalizationEnabled": false,
        "supportedLocales": [],
        "smtpServer": {},
        "attributes": {},
    });
    match defaults {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The user profile of a new realm: the four built-in attributes; attributes it does
/// not declare are dropped.
fn default_user_profile() -> Value {
    let attribute = |name: &str| json!({ "name": name, "displayName": format!("${{{name}}}"), "permissions": { "view": ["admin", "user"], "edit": ["admin", "user"] }, "multivalued": false });
    json!({
        "attributes": [attribute("username"), attribute("email"), attribute("firstName"), attribute("lastName")],
        "groups": [{ "name": "user-metadata", "displayHeader": "User metadata", "displayDescription": "Attributes, which refer to user metadata" }],
    })
}

/// The clients Keycloak puts into every realm; `admin-cli` allows the password grant.
fn builtin_client(client_id: &str, direct_grants: bool) -> Map<String, Value> {
    let client = json!({
        "id": new_id(),
        "clientId": client_id,
        "enabled": true,
        "protocol": "openid-connect",
        "publicClient": true,
        "standardFlowEnabled": !direct_grants,
        "directAccessGrantsEnabled": direct_grants,
        "implicitFlowEnabled": false,
        "serviceAccountsEnabled": false,
        "redirectUris": [],
        "webOrigins": [],
        "attributes": {},
    });
    match client {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
