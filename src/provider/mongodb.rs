//! MongoDB: one database per tenant and one user limited to it.
//!
//! The database is named from a template (`cx_<tenant>` by default) and carries a
//! marker document, `{_id: "tenant", tenantUid, tenant, createdAt}` in the
//! `_cx_operator` collection, written before anything else. A database with another
//! tenant's marker, or with data and no marker, is a conflict and is never adopted
//! or dropped.
//!
//! The user (`cx-<tenant>`) is defined in the tenant's own database, which is
//! therefore its authentication database (`authSource`). Its `customData` holds the
//! tenant UID and the SHA-256 of the password the operator set, so that a password
//! change is detected without reading any password back; a user without the
//! tenant's UID is a conflict too. A disabled tenant's user keeps its password and
//! loses every role; MongoDB applies role changes to open connections as well.
//!
//! All calls go through [`MongoBackend`], implemented over the official driver by
//! [`DriverBackend`], so the provider can be tested against an in-memory fake.

use std::{collections::BTreeSet, fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use mongodb::bson::{Bson, DateTime, Document, doc};
use serde_json::json;

use super::{PlannedObject, ProviderError, password};

/// The backend name used in errors.
const BACKEND: &str = "mongodb";

/// The prefix of every user the operator creates.
pub const USER_PREFIX: &str = "cx-";

/// The default database name template.
pub const DEFAULT_DATABASE_TEMPLATE: &str = "cx_{tenant}";

/// The default roles of a tenant's user on its database.
pub fn default_roles() -> Vec<String> {
    vec!["readWrite".into(), "dbAdmin".into()]
}

/// The role of a read-only tenant's user.
const READ_ONLY_ROLE: &str = "read";

/// How long the driver waits for a reachable server before failing a call.
const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// How long opening one connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The bound on one whole call, including server selection and retries.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(20);

/// The longest database name MongoDB accepts, in bytes.
const MAX_DATABASE_NAME_BYTES: usize = 63;

/// Builders of the command documents the provider sends, in the shapes of the
/// MongoDB command reference (the command name is always the first field, as the
/// server requires).
pub mod commands {
    use super::*;

    /// The collection that holds the marker document.
    pub const MARKER_COLLECTION: &str = "_cx_operator";
    /// The `_id` of the marker document.
    pub const MARKER_ID: &str = "tenant";
    /// The marker field, and the `customData` field of the user, that holds the
    /// tenant's UID.
    pub const TENANT_UID_FIELD: &str = "tenantUid";
    /// The `customData` field that holds the SHA-256 (hex) of the user's password.
    pub const PASSWORD_DIGEST_FIELD: &str = "passwordSha256";

    /// Role documents (`{role, db}`) for roles on `db`. Naming the database makes
    /// the roles independent of the database the command runs in.
    pub fn role_documents(db: &str, roles: &[String]) -> Vec<Bson> {
        roles.iter().map(|role| Bson::Document(doc! { "role": role, "db": db })).collect()
    }

    /// The user's `customData`: the tenant UID and the password's digest.
    pub fn custom_data(password: &str, tenant_uid: &str) -> Document {
        doc! { TENANT_UID_FIELD: tenant_uid, PASSWORD_DIGEST_FIELD: password::sha256_hex(password) }
    }

    /// `createUser`, run in `db`: the user with its password, `customData` and roles.
    pub fn create_user(user: &str, password: &str, db: &str, roles: &[String], tenant_uid: &str) -> Document {
        doc! {
            "createUser": user,
            "pwd": password,
            "customData": custom_data(password, tenant_uid),
            "roles": role_documents(db, roles),
        }
    }

    /// `updateUser`, run in `db`: a new password (with the matching `customData`),
    /// new roles, or both.
    pub fn update_user(user: &str, db: &str, password: Option<&str>, roles: Option<&[String]>, tenant_uid: &str) -> Document {
        let mut command = doc! { "updateUser": user };
        if let Some(password) = password {
            command.insert("pwd", password);
            command.insert("customData", custom_data(password, tenant_uid));
        }
        if let Some(roles) = roles {
            command.insert("roles", role_documents(db, roles));
        }
        command
    }

    /// `dropUser`, run in the user's database.
    pub fn drop_user(user: &str) -> Document {
        doc! { "dropUser": user }
    }

    /// `usersInfo` for one user, with its `customData`.
    pub fn users_info(user: &str, db: &str) -> Document {
        doc! { "usersInfo": { "user": user, "db": db }, "showCustomData": true }
    }

    /// `dbStats` in bytes (`scale: 1`).
    pub fn db_stats() -> Document {
        doc! { "dbStats": 1, "scale": 1 }
    }

    /// `dropDatabase`, run in the database to drop. It leaves the database's users.
    pub fn drop_database() -> Document {
        doc! { "dropDatabase": 1 }
    }

    /// The marker document that says which tenant a database belongs to.
    pub fn marker(tenant: &str, tenant_uid: &str, created_at: DateTime) -> Document {
        doc! { "_id": MARKER_ID, TENANT_UID_FIELD: tenant_uid, "tenant": tenant, "createdAt": created_at }
    }

    /// The filter that finds the marker document.
    pub fn marker_filter() -> Document {
        doc! { "_id": MARKER_ID }
    }
}

/// An error from MongoDB: the server's error code, or one of the codes below for
/// failures the driver detects itself.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} (code {code})")]
pub struct MongoError {
    /// The MongoDB error code.
    pub code: i32,
    /// What happened.
    pub message: String,
}

impl MongoError {
    /// `InternalError`: also used for driver failures that fit no other code.
    pub const INTERNAL_ERROR: i32 = 1;
    /// `BadValue`: an invalid field in a command.
    pub const BAD_VALUE: i32 = 2;
    /// `HostUnreachable`: also used when the driver cannot reach any server.
    pub const HOST_UNREACHABLE: i32 = 6;
    /// `FailedToParse`.
    pub const FAILED_TO_PARSE: i32 = 9;
    /// `UserNotFound`.
    pub const USER_NOT_FOUND: i32 = 11;
    /// `Unauthorized`: the caller lacks a privilege or is not authenticated.
    pub const UNAUTHORIZED: i32 = 13;
    /// `AuthenticationFailed`: the driver's login was rejected.
    pub const AUTHENTICATION_FAILED: i32 = 18;
    /// `RoleNotFound`.
    pub const ROLE_NOT_FOUND: i32 = 31;
    /// `CommandNotFound`.
    pub const COMMAND_NOT_FOUND: i32 = 59;
    /// `InvalidNamespace`.
    pub const INVALID_NAMESPACE: i32 = 73;
    /// `NetworkTimeout`: also used when a call exceeds the provider's time limit.
    pub const NETWORK_TIMEOUT: i32 = 89;
    /// `DuplicateKey`.
    pub const DUPLICATE_KEY: i32 = 11000;
    /// `UserAlreadyExists`.
    pub const USER_ALREADY_EXISTS: i32 = 51003;

    /// An error with a code and message.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        MongoError { code, message: message.into() }
    }
}

impl From<mongodb::error::Error> for MongoError {
    fn from(error: mongodb::error::Error) -> Self {
        use mongodb::error::{ErrorKind, WriteFailure};
        let code = match error.kind.as_ref() {
            ErrorKind::Command(e) => e.code,
            ErrorKind::Write(WriteFailure::WriteError(e)) => e.code,
            ErrorKind::Write(WriteFailure::WriteConcernError(e)) => e.code,
            ErrorKind::Authentication { .. } => MongoError::AUTHENTICATION_FAILED,
            ErrorKind::Io(_)
            | ErrorKind::ServerSelection { .. }
            | ErrorKind::ConnectionPoolCleared { .. }
            | ErrorKind::DnsResolve { .. }
            | ErrorKind::Shutdown => MongoError::HOST_UNREACHABLE,
            _ => MongoError::INTERNAL_ERROR,
        };
        let message = match error.kind.as_ref() {
            ErrorKind::Command(e) => format!("{}: {}", e.code_name, e.message),
            _ => error.to_string(),
        };
        MongoError { code, message }
    }
}

/// The MongoDB calls the provider makes.
#[async_trait]
pub trait MongoBackend: Send + Sync {
    /// Runs a command in a database; an `{ok: 0}` reply is an error.
    async fn run_command(&self, db: &str, command: Document) -> Result<Document, MongoError>;
    /// The first document of a collection that matches `filter`.
    async fn find_one(&self, db: &str, collection: &str, filter: Document) -> Result<Option<Document>, MongoError>;
    /// Inserts a document.
    async fn insert_one(&self, db: &str, collection: &str, document: Document) -> Result<(), MongoError>;
}

/// [`MongoBackend`] over the official driver.
#[derive(Clone, Debug)]
pub struct DriverBackend {
    client: mongodb::Client,
}

impl DriverBackend {
    /// A client for a connection URI, with the provider's timeouts. No connection is
    /// opened until the first call.
    pub async fn connect(uri: &str) -> Result<Self, MongoError> {
        let mut options = mongodb::options::ClientOptions::parse(uri)
            .await
            .map_err(|e| MongoError::new(MongoError::BAD_VALUE, format!("the connection URI is not valid: {}", kind_only(&e))))?;
        options.app_name.get_or_insert_with(|| "cx-operator".into());
        options.connect_timeout = Some(CONNECT_TIMEOUT);
        options.server_selection_timeout = Some(SERVER_SELECTION_TIMEOUT);
        let client = mongodb::Client::with_options(options).map_err(MongoError::from)?;
        Ok(DriverBackend { client })
    }
}

/// The kind of a driver error without its details, for errors that may quote the
/// connection string.
fn kind_only(error: &mongodb::error::Error) -> &'static str {
    match error.kind.as_ref() {
        mongodb::error::ErrorKind::InvalidArgument { .. } => "invalid argument",
        mongodb::error::ErrorKind::DnsResolve { .. } => "DNS resolution failed",
        mongodb::error::ErrorKind::InvalidTlsConfig { .. } => "invalid TLS configuration",
        _ => "unexpected error",
    }
}

/// Bounds a driver call by [`OPERATION_TIMEOUT`].
async fn bounded<T>(call: impl Future<Output = mongodb::error::Result<T>>) -> Result<T, MongoError> {
    match tokio::time::timeout(OPERATION_TIMEOUT, call).await {
        Ok(result) => result.map_err(MongoError::from),
        Err(_) => Err(MongoError::new(MongoError::NETWORK_TIMEOUT, format!("no answer within {} s", OPERATION_TIMEOUT.as_secs()))),
    }
}

#[async_trait]
impl MongoBackend for DriverBackend {
    async fn run_command(&self, db: &str, command: Document) -> Result<Document, MongoError> {
        bounded(async { self.client.database(db).run_command(command).await }).await
    }

    async fn find_one(&self, db: &str, collection: &str, filter: Document) -> Result<Option<Document>, MongoError> {
        bounded(async { self.client.database(db).collection::<Document>(collection).find_one(filter).await }).await
    }

    async fn insert_one(&self, db: &str, collection: &str, document: Document) -> Result<(), MongoError> {
        bounded(async { self.client.database(db).collection::<Document>(collection).insert_one(document).await }).await.map(|_| ())
    }
}

/// Where and how the tenants' databases are provisioned.
#[derive(Clone)]
pub struct MongoSettings {
    /// The admin connection URI, from a Secret; never logged.
    pub uri: String,
    /// The database name; `{tenant}` is replaced by the tenant id and every `-` of
    /// the result by `_`.
    pub database_template: String,
    /// The roles of an active, read-write tenant's user on its database.
    pub roles: Vec<String>,
}

impl Default for MongoSettings {
    fn default() -> Self {
        MongoSettings { uri: String::new(), database_template: DEFAULT_DATABASE_TEMPLATE.into(), roles: default_roles() }
    }
}

impl fmt::Debug for MongoSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoSettings")
            .field("uri", &"<redacted>")
            .field("database_template", &self.database_template)
            .field("roles", &self.roles)
            .finish()
    }
}

/// Provisions tenants' databases and users.
pub struct MongoProvider {
    backend: Arc<dyn MongoBackend>,
    settings: MongoSettings,
    /// Credentials of the admin URI, removed from every message.
    secrets: Vec<String>,
}

impl fmt::Debug for MongoProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoProvider").field("settings", &self.settings).finish()
    }
}

impl MongoProvider {
    /// A provider over the official driver, connecting to `settings.uri` on first use.
    pub async fn connect(settings: MongoSettings) -> Result<Self, ProviderError> {
        let backend = DriverBackend::connect(&settings.uri)
            .await
            .map_err(|e| ProviderError::Refused { backend: BACKEND, message: redact(&e.message, &uri_secrets(&settings.uri)) })?;
        Self::new(Arc::new(backend), settings)
    }

    /// A provider over any backend; validates the settings.
    pub fn new(backend: Arc<dyn MongoBackend>, settings: MongoSettings) -> Result<Self, ProviderError> {
        validate_database_template(&settings.database_template).map_err(|message| ProviderError::Refused { backend: BACKEND, message })?;
        if settings.roles.iter().any(|r| r.is_empty()) {
            return Err(ProviderError::Refused { backend: BACKEND, message: "a configured role name is empty".into() });
        }
        let secrets = uri_secrets(&settings.uri);
        Ok(MongoProvider { backend, settings, secrets })
    }

    /// The tenant's database: the template with `{tenant}` filled in and `-` made `_`.
    pub fn database_name(&self, tenant: &str) -> String {
        self.settings.database_template.replace("{tenant}", tenant).replace('-', "_")
    }

    /// The tenant's user, `cx-<tenant>`, defined in the tenant's database.
    pub fn user_name(&self, tenant: &str) -> String {
        format!("{USER_PREFIX}{tenant}")
    }

    /// The database and the user the tenant gets, as `cx-operator plan` shows them.
    pub fn plan(&self, tenant: &str) -> Vec<PlannedObject> {
        let db = self.database_name(tenant);
        vec![
            PlannedObject {
                kind: "database".into(),
                name: db.clone(),
                settings: json!({ "markerCollection": commands::MARKER_COLLECTION }),
            },
            PlannedObject {
                kind: "databaseUser".into(),
                name: self.user_name(tenant),
                settings: json!({ "database": db, "authenticationDatabase": db, "roles": self.settings.roles }),
            },
        ]
    }

    /// Makes the tenant's database and user match: marks the database (refusing one
    /// that belongs to something else), creates the user, or updates its password
    /// and roles where they differ. `active = false` leaves the user without roles;
    /// `read_only = true` gives it only `read`. Returns the operations done (empty
    /// when nothing changed), without the password.
    pub async fn ensure(
        &self,
        tenant: &str,
        tenant_uid: &str,
        password: &str,
        active: bool,
        read_only: bool,
    ) -> Result<Vec<String>, ProviderError> {
        let db = self.checked_database_name(tenant)?;
        let mut operations = Vec::new();
        if !self.marker_matches(&db, tenant_uid, password).await? {
            self.mark_database(&db, tenant, tenant_uid, password).await?;
            operations.push(format!("created database {db}"));
        }
        let roles = self.desired_roles(active, read_only);
        operations.extend(self.ensure_user(&db, &self.user_name(tenant), tenant_uid, password, &roles).await?);
        for operation in &operations {
            tracing::info!(database = %db, "{operation}");
        }
        Ok(operations)
    }

    /// Drops the tenant's user, then its database (`dropDatabase` alone would leave
    /// the user). Anything already gone is success; a database or user that is not
    /// the tenant's is a conflict and is left in place.
    pub async fn delete(&self, tenant: &str, tenant_uid: &str) -> Result<Vec<String>, ProviderError> {
        let db = self.checked_database_name(tenant)?;
        let user = self.user_name(tenant);
        let marked = self.marker_matches(&db, tenant_uid, "").await?;
        let mut operations = Vec::new();
        if let Some(existing) = self.find_user(&db, &user, "").await? {
            self.check_user_owner(&db, &user, &existing, tenant_uid)?;
            match self.backend.run_command(&db, commands::drop_user(&user)).await {
                Ok(_) => operations.push(format!("dropped MongoDB user {user} of database {db}")),
                Err(e) if e.code == MongoError::USER_NOT_FOUND => {}
                Err(e) => return Err(self.failure("dropUser", &db, e, "")),
            }
        }
        if marked {
            self.backend.run_command(&db, commands::drop_database()).await.map_err(|e| self.failure("dropDatabase", &db, e, ""))?;
            operations.push(format!("dropped database {db}"));
        }
        for operation in &operations {
            tracing::info!(database = %db, "{operation}");
        }
        Ok(operations)
    }

    /// The documents of a collection in the tenant's database that match `filter`
    /// (the `count` command; a missing collection counts 0).
    pub async fn count(
        &self,
        tenant: &str,
        collection: &str,
        filter: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<u64, ProviderError> {
        let db = self.checked_database_name(tenant)?;
        let query = mongodb::bson::to_document(filter).map_err(|e| ProviderError::Refused {
            backend: BACKEND,
            message: format!("the filter of collection {collection} is not a document: {e}"),
        })?;
        let reply = self
            .backend
            .run_command(&db, doc! { "count": collection, "query": query })
            .await
            .map_err(|e| self.failure("count", &db, e, ""))?;
        Ok(number(&reply, "n").unwrap_or(0))
    }

    /// The bytes the tenant's database takes on disk: `totalSize` of `dbStats` (data
    /// and indexes), or `storageSize + indexSize` on servers that do not report it.
    pub async fn usage(&self, tenant: &str) -> Result<u64, ProviderError> {
        let db = self.checked_database_name(tenant)?;
        let stats = self.db_stats(&db, "").await?;
        let total = number(&stats, "totalSize")
            .unwrap_or_else(|| number(&stats, "storageSize").unwrap_or(0) + number(&stats, "indexSize").unwrap_or(0));
        Ok(total)
    }

    fn desired_roles(&self, active: bool, read_only: bool) -> Vec<String> {
        match (active, read_only) {
            (false, _) => Vec::new(),
            (true, true) => vec![READ_ONLY_ROLE.to_string()],
            (true, false) => self.settings.roles.clone(),
        }
    }

    fn checked_database_name(&self, tenant: &str) -> Result<String, ProviderError> {
        crate::provider::check_tenant_id(BACKEND, tenant)?;
        let db = self.database_name(tenant);
        if db.len() > MAX_DATABASE_NAME_BYTES {
            let message = format!("database name {db} is longer than {MAX_DATABASE_NAME_BYTES} bytes; shorten the database template");
            return Err(ProviderError::Refused { backend: BACKEND, message });
        }
        Ok(db)
    }

    /// Whether the database carries this tenant's marker: `false` when it has none
    /// and is empty; a conflict when it belongs to another tenant or holds data
    /// without a marker.
    async fn marker_matches(&self, db: &str, tenant_uid: &str, password: &str) -> Result<bool, ProviderError> {
        let marker = self
            .backend
            .find_one(db, commands::MARKER_COLLECTION, commands::marker_filter())
            .await
            .map_err(|e| self.failure("reading the marker", db, e, password))?;
        if let Some(marker) = marker {
            let owner = marker.get_str(commands::TENANT_UID_FIELD).unwrap_or("(none)");
            if owner != tenant_uid {
                let message = format!("database {db} belongs to the tenant with UID {owner}, not {tenant_uid}; it is left as it is");
                return Err(ProviderError::Conflict { backend: BACKEND, message });
            }
            return Ok(true);
        }
        let collections = number(&self.db_stats(db, password).await?, "collections").unwrap_or(0);
        if collections > 0 {
            let message =
                format!("database {db} exists with {collections} collection(s) and was not created by the operator; it is left as it is");
            return Err(ProviderError::Conflict { backend: BACKEND, message });
        }
        Ok(false)
    }

    /// Writes the marker; it creates the database.
    async fn mark_database(&self, db: &str, tenant: &str, tenant_uid: &str, password: &str) -> Result<(), ProviderError> {
        let marker = commands::marker(tenant, tenant_uid, DateTime::now());
        self.backend
            .insert_one(db, commands::MARKER_COLLECTION, marker)
            .await
            .map_err(|e| self.failure("writing the marker", db, e, password))
    }

    async fn ensure_user(
        &self,
        db: &str,
        user: &str,
        tenant_uid: &str,
        password: &str,
        roles: &[String],
    ) -> Result<Vec<String>, ProviderError> {
        let Some(existing) = self.find_user(db, user, password).await? else {
            let command = commands::create_user(user, password, db, roles, tenant_uid);
            self.backend.run_command(db, command).await.map_err(|e| self.failure("createUser", db, e, password))?;
            return Ok(vec![format!("created MongoDB user {user} of database {db} (roles: {})", describe_roles(roles))]);
        };
        self.check_user_owner(db, user, &existing, tenant_uid)?;
        let password_differs = existing.get_document("customData").ok().and_then(|c| c.get_str(commands::PASSWORD_DIGEST_FIELD).ok())
            != Some(password::sha256_hex(password).as_str());
        let roles_differ = user_roles(&existing) != roles.iter().map(|r| (r.clone(), db.to_string())).collect();
        if !password_differs && !roles_differ {
            return Ok(Vec::new());
        }
        let command = commands::update_user(user, db, password_differs.then_some(password), roles_differ.then_some(roles), tenant_uid);
        self.backend.run_command(db, command).await.map_err(|e| self.failure("updateUser", db, e, password))?;
        let mut changes = Vec::new();
        if password_differs {
            changes.push("password".to_string());
        }
        if roles_differ {
            changes.push(format!("roles: {}", describe_roles(roles)));
        }
        Ok(vec![format!("updated MongoDB user {user} of database {db} ({})", changes.join("; "))])
    }

    /// The user as `usersInfo` reports it, if it exists.
    async fn find_user(&self, db: &str, user: &str, password: &str) -> Result<Option<Document>, ProviderError> {
        let reply =
            self.backend.run_command(db, commands::users_info(user, db)).await.map_err(|e| self.failure("usersInfo", db, e, password))?;
        let users = reply.get_array("users").map_err(|_| ProviderError::Unavailable {
            backend: BACKEND,
            message: format!("usersInfo in database {db} answered without a users array"),
        })?;
        Ok(users.iter().find_map(|u| u.as_document()).cloned())
    }

    /// A user that exists without this tenant's UID in its `customData` was not
    /// created for this tenant.
    fn check_user_owner(&self, db: &str, user: &str, existing: &Document, tenant_uid: &str) -> Result<(), ProviderError> {
        let owner = existing.get_document("customData").ok().and_then(|c| c.get_str(commands::TENANT_UID_FIELD).ok());
        if owner == Some(tenant_uid) {
            return Ok(());
        }
        let message = match owner {
            Some(owner) => format!("user {user} of database {db} belongs to the tenant with UID {owner}, not {tenant_uid}"),
            None => format!("user {user} of database {db} exists and was not created by the operator"),
        };
        Err(ProviderError::Conflict { backend: BACKEND, message })
    }

    async fn db_stats(&self, db: &str, password: &str) -> Result<Document, ProviderError> {
        self.backend.run_command(db, commands::db_stats()).await.map_err(|e| self.failure("dbStats", db, e, password))
    }

    /// Classifies a backend error: a missing privilege, a rejected login or an
    /// invalid command cannot be fixed by retrying; anything else can.
    fn failure(&self, action: &str, db: &str, error: MongoError, password: &str) -> ProviderError {
        let mut secrets = self.secrets.clone();
        if !password.is_empty() {
            secrets.push(password.to_string());
        }
        let detail = redact(&error.to_string(), &secrets);
        match error.code {
            MongoError::UNAUTHORIZED | MongoError::AUTHENTICATION_FAILED => ProviderError::Refused {
                backend: BACKEND,
                message: format!("{action} in database {db}: the admin user is not authorized ({detail})"),
            },
            MongoError::BAD_VALUE
            | MongoError::FAILED_TO_PARSE
            | MongoError::ROLE_NOT_FOUND
            | MongoError::COMMAND_NOT_FOUND
            | MongoError::INVALID_NAMESPACE => {
                ProviderError::Refused { backend: BACKEND, message: format!("{action} in database {db} was rejected: {detail}") }
            }
            _ => ProviderError::Unavailable { backend: BACKEND, message: format!("{action} in database {db} failed: {detail}") },
        }
    }
}

/// The roles of a `usersInfo` user, as `(role, db)` pairs.
fn user_roles(user: &Document) -> BTreeSet<(String, String)> {
    let Ok(roles) = user.get_array("roles") else { return BTreeSet::new() };
    roles
        .iter()
        .filter_map(|r| r.as_document())
        .filter_map(|r| Some((r.get_str("role").ok()?.to_string(), r.get_str("db").ok()?.to_string())))
        .collect()
}

fn describe_roles(roles: &[String]) -> String {
    if roles.is_empty() { "none, disabled".to_string() } else { roles.join(", ") }
}

/// A non-negative numeric field, whichever BSON number type the server chose.
fn number(document: &Document, field: &str) -> Option<u64> {
    match document.get(field)? {
        Bson::Int32(n) => u64::try_from(*n).ok(),
        Bson::Int64(n) => u64::try_from(*n).ok(),
        // Sizes can be reported as doubles; they hold whole numbers of bytes.
        Bson::Double(n) if n.is_finite() && *n >= 0.0 => Some(n.round() as u64),
        _ => None,
    }
}

/// The password of a connection URI, as written and percent-decoded.
fn uri_secrets(uri: &str) -> Vec<String> {
    let Some((_, rest)) = uri.split_once("://") else { return Vec::new() };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let Some((userinfo, _)) = authority.rsplit_once('@') else { return Vec::new() };
    let Some((_, password)) = userinfo.split_once(':') else { return Vec::new() };
    if password.is_empty() {
        return Vec::new();
    }
    let decoded = percent_decode(password);
    let mut secrets = vec![password.to_string()];
    if decoded != password {
        secrets.push(decoded);
    }
    secrets
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%').then(|| text.get(i + 1..i + 3)).flatten().and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

fn redact(text: &str, secrets: &[String]) -> String {
    secrets.iter().filter(|s| !s.is_empty()).fold(text.to_string(), |text, secret| text.replace(secret.as_str(), "<redacted>"))
}

/// The template must name the tenant (or every tenant would share one database) and
/// yield names MongoDB accepts.
fn validate_database_template(template: &str) -> Result<(), String> {
    if !template.contains("{tenant}") {
        return Err(format!("database template {template:?} must contain {{tenant}}"));
    }
    let sample = template.replace("{tenant}", "t");
    if let Some(c) = sample.chars().find(|c| matches!(c, '/' | '\\' | '.' | ' ' | '"' | '$' | '*' | '<' | '>' | ':' | '|' | '?' | '\0')) {
        return Err(format!("database template {template:?} contains {c:?}, which MongoDB does not allow in database names"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{commands::*, *};

    fn keys(document: &Document) -> Vec<&str> {
        document.keys().map(String::as_str).collect()
    }

    fn roles(names: &[&str]) -> Vec<String> {
        names.iter().map(|r| r.to_string()).collect()
    }

    #[test]
    fn create_user_has_the_reference_shape() {
        let command = create_user("cx-acme", "pw", "cx_acme", &roles(&["readWrite", "dbAdmin"]), "uid-1");
        assert_eq!(keys(&command), ["createUser", "pwd", "customData", "roles"]);
        assert_eq!(
            command,
            doc! {
                "createUser": "cx-acme",
                "pwd": "pw",
                "customData": { "tenantUid": "uid-1", "passwordSha256": password::sha256_hex("pw") },
                "roles": [ { "role": "readWrite", "db": "cx_acme" }, { "role": "dbAdmin", "db": "cx_acme" } ],
            }
        );
    }

    #[test]
    fn update_user_sends_only_what_changes() {
        let both = update_user("cx-acme", "cx_acme", Some("pw"), Some(&roles(&["read"])), "uid-1");
        assert_eq!(keys(&both), ["updateUser", "pwd", "customData", "roles"]);
        let password_only = update_user("cx-acme", "cx_acme", Some("pw"), None, "uid-1");
        assert_eq!(keys(&password_only), ["updateUser", "pwd", "customData"]);
        let roles_only = update_user("cx-acme", "cx_acme", None, Some(&[]), "uid-1");
        assert_eq!(roles_only, doc! { "updateUser": "cx-acme", "roles": [] });
    }

    #[test]
    fn the_other_commands_have_the_reference_shapes() {
        assert_eq!(drop_user("cx-acme"), doc! { "dropUser": "cx-acme" });
        let info = users_info("cx-acme", "cx_acme");
        assert_eq!(keys(&info), ["usersInfo", "showCustomData"]);
        assert_eq!(info, doc! { "usersInfo": { "user": "cx-acme", "db": "cx_acme" }, "showCustomData": true });
        assert_eq!(keys(&db_stats()), ["dbStats", "scale"]);
        assert_eq!(db_stats(), doc! { "dbStats": 1, "scale": 1 });
        assert_eq!(drop_database(), doc! { "dropDatabase": 1 });
    }

    #[test]
    fn the_marker_names_the_tenant() {
        let now = DateTime::from_millis(1_700_000_000_000);
        let marker = marker("acme", "uid-1", now);
        assert_eq!(keys(&marker), ["_id", "tenantUid", "tenant", "createdAt"]);
        assert_eq!(marker, doc! { "_id": "tenant", "tenantUid": "uid-1", "tenant": "acme", "createdAt": now });
        assert_eq!(marker_filter(), doc! { "_id": "tenant" });
    }

    #[test]
    fn numbers_are_read_from_any_bson_number_type() {
        let stats = doc! { "a": 3_i32, "b": 4_i64, "c": 5.0, "d": -1_i32, "e": "x" };
        assert_eq!([number(&stats, "a"), number(&stats, "b"), number(&stats, "c")], [Some(3), Some(4), Some(5)]);
        assert_eq!([number(&stats, "d"), number(&stats, "e"), number(&stats, "f")], [None, None, None]);
    }

    #[test]
    fn uri_passwords_are_found_for_redaction() {
        assert_eq!(uri_secrets("mongodb://root:p%40ss@db:27017/?authSource=admin"), ["p%40ss", "p@ss"]);
        assert_eq!(uri_secrets("mongodb+srv://root:secret@cluster.example.com/admin"), ["secret"]);
        assert!(uri_secrets("mongodb://db:27017").is_empty());
        assert_eq!(redact("failed for p@ss", &uri_secrets("mongodb://u:p%40ss@h")), "failed for <redacted>");
    }

    #[test]
    fn database_templates_are_validated() {
        assert!(validate_database_template("cx_{tenant}").is_ok());
        assert!(validate_database_template("tenant-{tenant}").is_ok());
        assert!(validate_database_template("shared").is_err());
        assert!(validate_database_template("cx.{tenant}").is_err());
        assert!(validate_database_template("cx/{tenant}").is_err());
    }

    #[test]
    fn settings_debug_hides_the_uri() {
        let settings = MongoSettings { uri: "mongodb://root:hunter2@db".into(), ..MongoSettings::default() };
        assert!(!format!("{settings:?}").contains("hunter2"));
    }

    #[test]
    fn driver_errors_keep_the_server_code() {
        let error = mongodb::error::Error::custom("boom");
        assert_eq!(MongoError::from(error).code, MongoError::INTERNAL_ERROR);
    }
}
