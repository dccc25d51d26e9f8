//! The MongoDB provider through [`MongoBackend`]: against the in-memory fake in
//! `support/fake_mongodb.rs`, and against a real MongoDB when `CX_TEST_MONGODB_URI`
//! is set (an admin URI that may create users and databases). The shared scenarios
//! observe the server through [`Server`], so the same assertions hold for both; the
//! checks that need the fake's controls (command log, outages) run on the fake only.

#[path = "support/fake_mongodb.rs"]
mod fake_mongodb;

use std::sync::Arc;

use async_trait::async_trait;
use cx_operator::provider::{
    ProviderError,
    mongodb::{MongoError, MongoProvider, MongoSettings, commands},
};
use fake_mongodb::{ADMIN_PASSWORD, MemoryMongo};
use mongodb::bson::{Document, doc};
use rand::distr::{Alphanumeric, SampleString};

/// The variable that names a real MongoDB for the driver suite.
const REAL_MONGODB_VARIABLE: &str = "CX_TEST_MONGODB_URI";

/// What the scenarios need to observe on a server, besides the provider.
#[async_trait]
trait Server: Send + Sync {
    /// Whether `user` of `db` can log in with `password`.
    async fn logs_in(&self, db: &str, user: &str, password: &str) -> bool;
    /// Whether `user` of `db` can read from its database.
    async fn can_read(&self, db: &str, user: &str, password: &str) -> bool;
    /// Whether `user` of `db` can write to its database.
    async fn can_write(&self, db: &str, user: &str, password: &str) -> bool;
    /// Writes a document as the admin (test setup).
    async fn seed_document(&self, db: &str, collection: &str, document: Document);
    /// How many state-changing commands the server has received, when it records them.
    fn writes(&self) -> Option<usize>;
}

#[async_trait]
impl Server for Arc<MemoryMongo> {
    async fn logs_in(&self, db: &str, user: &str, password: &str) -> bool {
        MemoryMongo::login(self, db, user, password)
    }

    async fn can_read(&self, db: &str, user: &str, password: &str) -> bool {
        self.logs_in(db, user, password).await && self.roles(db, user).unwrap_or_default().iter().any(|(_, role_db)| role_db == db)
    }

    async fn can_write(&self, db: &str, user: &str, password: &str) -> bool {
        let roles = self.roles(db, user).unwrap_or_default();
        MemoryMongo::login(self, db, user, password)
            && roles.iter().any(|(role, role_db)| role_db == db && ["readWrite", "dbOwner"].contains(&role.as_str()))
    }

    async fn seed_document(&self, db: &str, collection: &str, document: Document) {
        MemoryMongo::seed(self, db, collection, document);
    }

    fn writes(&self) -> Option<usize> {
        Some(self.write_commands().len())
    }
}

fn random_suffix() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 8).to_lowercase()
}

fn password() -> String {
    cx_operator::provider::password::generate()
}

/// A tenant id and UID nobody else uses, so scenarios may share a real server.
fn new_tenant() -> (String, String) {
    (format!("cxt-{}", random_suffix()), format!("uid-{}", random_suffix()))
}

/// Create, idempotence, rotation, disable / enable, read-only, usage and delete.
async fn lifecycle(provider: &MongoProvider, server: &dyn Server) {
    let (tenant, uid) = new_tenant();
    let db = provider.database_name(&tenant);
    let user = provider.user_name(&tenant);
    assert_eq!(db, format!("cx_{}", tenant.replace('-', "_")));
    let first = password();

    let created = provider.ensure(&tenant, &uid, &first, true, false).await.expect("create");
    assert_eq!(
        created,
        [format!("created database {db}"), format!("created MongoDB user {user} of database {db} (roles: readWrite, dbAdmin)")]
    );
    assert!(server.logs_in(&db, &user, &first).await);
    assert!(server.can_write(&db, &user, &first).await);

    let writes = server.writes();
    assert_eq!(provider.ensure(&tenant, &uid, &first, true, false).await.expect("again"), Vec::<String>::new());
    assert_eq!(server.writes(), writes, "an unchanged tenant causes no write command");

    let second = password();
    let rotated = provider.ensure(&tenant, &uid, &second, true, false).await.expect("rotate");
    assert_eq!(rotated, [format!("updated MongoDB user {user} of database {db} (password)")]);
    assert!(rotated.iter().all(|op| !op.contains(&first) && !op.contains(&second)));
    assert!(!server.logs_in(&db, &user, &first).await, "the old password no longer works");
    assert!(server.logs_in(&db, &user, &second).await, "the new password works");

    let disabled = provider.ensure(&tenant, &uid, &second, false, false).await.expect("disable");
    assert_eq!(disabled, [format!("updated MongoDB user {user} of database {db} (roles: none, disabled)")]);
    assert!(!server.can_read(&db, &user, &second).await, "a disabled user has no access");
    let enabled = provider.ensure(&tenant, &uid, &second, true, false).await.expect("enable");
    assert_eq!(enabled, [format!("updated MongoDB user {user} of database {db} (roles: readWrite, dbAdmin)")]);
    assert!(server.can_write(&db, &user, &second).await);

    let read_only = provider.ensure(&tenant, &uid, &second, true, true).await.expect("read-only");
    assert_eq!(read_only, [format!("updated MongoDB user {user} of database {db} (roles: read)")]);
    assert!(server.can_read(&db, &user, &second).await);
    assert!(!server.can_write(&db, &user, &second).await);
    let third = password();
    let both = provider.ensure(&tenant, &uid, &third, true, false).await.expect("rotate and read-write");
    assert_eq!(both, [format!("updated MongoDB user {user} of database {db} (password; roles: readWrite, dbAdmin)")]);

    assert!(provider.usage(&tenant).await.expect("usage") > 0, "the marker takes space");

    let deleted = provider.delete(&tenant, &uid).await.expect("delete");
    assert_eq!(deleted, [format!("dropped MongoDB user {user} of database {db}"), format!("dropped database {db}")]);
    assert!(!server.logs_in(&db, &user, &third).await);
    assert_eq!(provider.delete(&tenant, &uid).await.expect("already gone"), Vec::<String>::new());
    assert_eq!(provider.usage(&tenant).await.expect("usage of nothing"), 0);
}

/// Databases that belong to something else are neither adopted nor dropped.
async fn conflicts(provider: &MongoProvider, server: &dyn Server) {
    let (tenant, uid) = new_tenant();
    let db = provider.database_name(&tenant);
    server.seed_document(&db, commands::MARKER_COLLECTION, doc! { "_id": "tenant", "tenantUid": "someone-else", "tenant": &tenant }).await;
    let writes = server.writes();
    let error = provider.ensure(&tenant, &uid, &password(), true, false).await.expect_err("foreign marker");
    assert!(matches!(error, ProviderError::Conflict { .. }), "{error}");
    assert!(error.to_string().contains("someone-else"), "{error}");
    let error = provider.delete(&tenant, &uid).await.expect_err("foreign marker");
    assert!(matches!(error, ProviderError::Conflict { .. }), "{error}");
    assert_eq!(server.writes(), writes, "nothing was written");

    let (tenant, uid) = new_tenant();
    let db = provider.database_name(&tenant);
    server.seed_document(&db, "orders", doc! { "total": 42 }).await;
    let error = provider.ensure(&tenant, &uid, &password(), true, false).await.expect_err("unmarked data");
    assert!(matches!(error, ProviderError::Conflict { .. }), "{error}");
    assert!(error.to_string().contains("not created by the operator"), "{error}");
    let error = provider.delete(&tenant, &uid).await.expect_err("unmarked data");
    assert!(matches!(error, ProviderError::Conflict { .. }), "{error}");
    assert_eq!(server.writes(), writes, "nothing was written");
}

fn fake_provider(fake: &Arc<MemoryMongo>) -> MongoProvider {
    let settings = MongoSettings { uri: fake.uri(), ..MongoSettings::default() };
    MongoProvider::new(fake.client(&fake.uri()), settings).expect("valid settings")
}

#[tokio::test]
async fn the_lifecycle_against_the_fake() {
    let fake = MemoryMongo::new();
    lifecycle(&fake_provider(&fake), &fake).await;
}

#[tokio::test]
async fn conflicts_against_the_fake() {
    let fake = MemoryMongo::new();
    conflicts(&fake_provider(&fake), &fake).await;
}

#[tokio::test]
async fn the_marker_is_written_before_the_user_and_the_user_dropped_before_the_database() {
    let fake = MemoryMongo::new();
    let provider = fake_provider(&fake);
    provider.ensure("acme", "uid-1", &password(), true, false).await.expect("create");
    assert_eq!(fake.write_commands(), ["insert", "createUser"]);
    let marker = fake.commands().into_iter().find(|c| c.name == "insert").expect("the marker insert");
    assert_eq!(marker.db, "cx_acme");
    let documents = marker.command.get_array("documents").expect("documents");
    let marker = documents[0].as_document().expect("a document");
    assert_eq!(marker.get_str("_id"), Ok("tenant"));
    assert_eq!(marker.get_str("tenantUid"), Ok("uid-1"));
    assert_eq!(marker.get_str("tenant"), Ok("acme"));
    assert!(marker.get_datetime("createdAt").is_ok());

    fake.clear_log();
    provider.delete("acme", "uid-1").await.expect("delete");
    assert_eq!(fake.write_commands(), ["dropUser", "dropDatabase"]);
    assert!(!fake.database_exists("cx_acme"));
    assert_eq!(fake.roles("cx_acme", "cx-acme"), None);
}

#[tokio::test]
async fn the_password_is_stored_only_as_a_digest_in_custom_data() {
    let fake = MemoryMongo::new();
    let provider = fake_provider(&fake);
    let secret = password();
    provider.ensure("acme", "uid-1", &secret, true, false).await.expect("create");
    let backend = fake.client(&fake.uri());
    let info = backend.run_command("cx_acme", commands::users_info("cx-acme", "cx_acme")).await.expect("usersInfo");
    assert_eq!(info.get_f64("ok"), Ok(1.0));
    let users = info.get_array("users").expect("users");
    assert_eq!(users.len(), 1);
    let user = users[0].as_document().expect("a user");
    let custom_data = user.get_document("customData").expect("customData");
    assert_eq!(custom_data.get_str("tenantUid"), Ok("uid-1"));
    assert_eq!(custom_data.get_str("passwordSha256"), Ok(cx_operator::provider::password::sha256_hex(&secret).as_str()));
    assert!(!format!("{info:?}").contains(&secret));
}

#[tokio::test]
async fn a_user_the_operator_did_not_create_is_a_conflict() {
    let fake = MemoryMongo::new();
    let provider = fake_provider(&fake);
    fake.seed_user("cx_acme", "cx-acme", "theirs", None);
    let error = provider.ensure("acme", "uid-1", &password(), true, false).await.expect_err("foreign user");
    assert!(matches!(error, ProviderError::Conflict { .. }), "{error}");
    assert!(fake.login("cx_acme", "cx-acme", "theirs"), "the user is untouched");
    let error = provider.delete("acme", "uid-1").await.expect_err("foreign user");
    assert!(matches!(error, ProviderError::Conflict { .. }), "{error}");
    assert!(!fake.write_commands().iter().any(|c| c == "dropUser" || c == "updateUser"));

    fake.seed_user("cx_beta", "cx-beta", "old", Some(doc! { "tenantUid": "uid-other" }));
    let error = provider.ensure("beta", "uid-2", &password(), true, false).await.expect_err("another tenant's user");
    assert!(error.to_string().contains("uid-other"), "{error}");
}

#[tokio::test]
async fn a_user_that_is_already_gone_is_not_an_error() {
    let fake = MemoryMongo::new();
    let provider = fake_provider(&fake);
    provider.ensure("acme", "uid-1", &password(), true, false).await.expect("create");
    let backend = fake.client(&fake.uri());
    backend.run_command("cx_acme", commands::drop_user("cx-acme")).await.expect("dropUser");
    let again = backend.run_command("cx_acme", commands::drop_user("cx-acme")).await.expect_err("already dropped");
    assert_eq!(again.code, MongoError::USER_NOT_FOUND);
    assert_eq!(provider.delete("acme", "uid-1").await.expect("delete"), ["dropped database cx_acme"]);
}

#[tokio::test]
async fn drop_database_alone_leaves_the_user() {
    let fake = MemoryMongo::new();
    let provider = fake_provider(&fake);
    let secret = password();
    provider.ensure("acme", "uid-1", &secret, true, false).await.expect("create");
    let backend = fake.client(&fake.uri());
    backend.run_command("cx_acme", commands::drop_database()).await.expect("dropDatabase");
    assert!(!fake.database_exists("cx_acme"));
    assert!(fake.login("cx_acme", "cx-acme", &secret), "the user survives dropDatabase");
    let created = backend.run_command("cx_acme", commands::create_user("cx-acme", "x", "cx_acme", &[], "uid-1")).await;
    assert_eq!(created.expect_err("exists").code, MongoError::USER_ALREADY_EXISTS);
}

#[tokio::test]
async fn wrong_admin_credentials_are_refused_without_showing_them() {
    let fake = MemoryMongo::new();
    let uri = "mongodb://root:not-the-password@fake-mongodb:27017/?authSource=admin";
    let settings = MongoSettings { uri: uri.into(), ..MongoSettings::default() };
    let provider = MongoProvider::new(fake.client(uri), settings).expect("valid settings");
    let error = provider.ensure("acme", "uid-1", &password(), true, false).await.expect_err("unauthorized");
    assert!(matches!(error, ProviderError::Refused { .. }), "{error}");
    assert!(error.to_string().contains("not authorized"), "{error}");
    assert!(!error.to_string().contains("not-the-password") && !error.to_string().contains(ADMIN_PASSWORD), "{error}");
    assert!(matches!(provider.usage("acme").await, Err(ProviderError::Refused { .. })));
    assert!(matches!(provider.delete("acme", "uid-1").await, Err(ProviderError::Refused { .. })));
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    let fake = MemoryMongo::new();
    let provider = fake_provider(&fake);
    fake.set_down(true);
    let error = provider.ensure("acme", "uid-1", &password(), true, false).await.expect_err("down");
    assert!(matches!(error, ProviderError::Unavailable { .. }), "{error}");
    assert!(error.is_retryable());
    fake.set_down(false);
    assert_eq!(provider.ensure("acme", "uid-1", &password(), true, false).await.expect("back").len(), 2);
}

#[tokio::test]
async fn an_unknown_role_is_refused() {
    let fake = MemoryMongo::new();
    let settings = MongoSettings { uri: fake.uri(), roles: vec!["readWrite".into(), "superuser".into()], ..MongoSettings::default() };
    let provider = MongoProvider::new(fake.client(&fake.uri()), settings).expect("valid settings");
    let error = provider.ensure("acme", "uid-1", &password(), true, false).await.expect_err("no such role");
    assert!(matches!(error, ProviderError::Refused { .. }), "{error}");
    assert!(error.to_string().contains("superuser"), "{error}");
}

#[tokio::test]
async fn usage_is_the_storage_of_the_database() {
    let fake = MemoryMongo::new();
    let provider = fake_provider(&fake);
    provider.ensure("acme", "uid-1", &password(), true, false).await.expect("create");
    fake.seed("cx_acme", "orders", doc! { "items": "x".repeat(10_000) });
    let stats = fake.client(&fake.uri()).run_command("cx_acme", commands::db_stats()).await.expect("dbStats");
    for field in ["db", "collections", "objects", "dataSize", "storageSize", "indexSize", "totalSize", "ok"] {
        assert!(stats.contains_key(field), "dbStats has {field}");
    }
    // Two collections: a page for the marker, three for the order, an index page each.
    assert_eq!(provider.usage("acme").await.expect("usage"), (1 + 3 + 2) * 4096);
}

#[test]
fn plans_name_the_database_and_the_user_without_a_password() {
    let fake = MemoryMongo::new();
    let settings = MongoSettings { uri: fake.uri(), database_template: "tenant-{tenant}".into(), ..MongoSettings::default() };
    let provider = MongoProvider::new(fake.client(&fake.uri()), settings).expect("valid settings");
    assert_eq!(provider.database_name("acme-eu"), "tenant_acme_eu");
    let plan = serde_json::to_value(provider.plan("acme-eu")).expect("JSON");
    assert_eq!(
        plan,
        serde_json::json!([
            { "kind": "database", "name": "tenant_acme_eu", "settings": { "markerCollection": "_cx_operator" } },
            {
                "kind": "databaseUser",
                "name": "cx-acme-eu",
                "settings": { "database": "tenant_acme_eu", "authenticationDatabase": "tenant_acme_eu", "roles": ["readWrite", "dbAdmin"] },
            },
        ])
    );
    assert!(!plan.to_string().contains(ADMIN_PASSWORD));
}

#[test]
fn invalid_settings_and_tenants_are_refused() {
    let fake = MemoryMongo::new();
    for template in ["shared", "cx.{tenant}"] {
        let settings = MongoSettings { uri: fake.uri(), database_template: template.into(), ..MongoSettings::default() };
        assert!(matches!(MongoProvider::new(fake.client(&fake.uri()), settings), Err(ProviderError::Refused { .. })), "{template}");
    }
    let provider = fake_provider(&fake);
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    for tenant in ["Acme", "a.b", "-a", &"a".repeat(64)] {
        let result = runtime.block_on(provider.ensure(tenant, "uid", "p", true, false));
        assert!(matches!(result, Err(ProviderError::Refused { .. })), "{tenant}");
    }
    assert!(fake.commands().is_empty(), "nothing was sent");
}

/// The same scenarios through the official driver, when a real server is named.
mod real {
    use mongodb::{
        Client,
        options::{ClientOptions, Credential},
    };

    use super::*;

    /// A real server, inspected with the driver: as the tenant's user for access
    /// checks, as the admin for setup.
    struct RealServer {
        uri: String,
        admin: Client,
        /// Databases seeded by the test, dropped at the end.
        seeded: std::sync::Mutex<Vec<String>>,
    }

    impl RealServer {
        async fn as_user(&self, db: &str, user: &str, password: &str) -> Client {
            let mut options = ClientOptions::parse(&self.uri).await.expect("URI");
            options.credential =
                Some(Credential::builder().username(user.to_string()).password(password.to_string()).source(db.to_string()).build());
            options.server_selection_timeout = Some(std::time::Duration::from_secs(5));
            Client::with_options(options).expect("client")
        }
    }

    #[async_trait]
    impl Server for RealServer {
        async fn logs_in(&self, db: &str, user: &str, password: &str) -> bool {
            self.as_user(db, user, password).await.database(db).run_command(doc! { "ping": 1 }).await.is_ok()
        }

        async fn can_read(&self, db: &str, user: &str, password: &str) -> bool {
            let client = self.as_user(db, user, password).await;
            client.database(db).collection::<Document>(commands::MARKER_COLLECTION).find_one(doc! {}).await.is_ok()
        }

        async fn can_write(&self, db: &str, user: &str, password: &str) -> bool {
            let client = self.as_user(db, user, password).await;
            client.database(db).collection::<Document>("access_check").insert_one(doc! { "written": true }).await.is_ok()
        }

        async fn seed_document(&self, db: &str, collection: &str, document: Document) {
            self.admin.database(db).collection::<Document>(collection).insert_one(document).await.expect("seed");
            self.seeded.lock().expect("lock").push(db.to_string());
        }

        fn writes(&self) -> Option<usize> {
            None
        }
    }

    async fn real_server() -> Option<(MongoProvider, RealServer)> {
        let Ok(uri) = std::env::var(REAL_MONGODB_VARIABLE) else {
            eprintln!("{REAL_MONGODB_VARIABLE} is not set; the real MongoDB scenario is skipped (only the in-memory fake ran)");
            return None;
        };
        eprintln!("running the MongoDB scenario against the server named by {REAL_MONGODB_VARIABLE}");
        let provider = MongoProvider::connect(MongoSettings { uri: uri.clone(), ..MongoSettings::default() }).await.expect("provider");
        let admin = Client::with_uri_str(&uri).await.expect("admin client");
        Some((provider, RealServer { uri, admin, seeded: std::sync::Mutex::new(Vec::new()) }))
    }

    #[tokio::test]
    async fn the_lifecycle_against_a_real_mongodb() {
        let Some((provider, server)) = real_server().await else { return };
        lifecycle(&provider, &server).await;
    }

    #[tokio::test]
    async fn conflicts_against_a_real_mongodb() {
        let Some((provider, server)) = real_server().await else { return };
        conflicts(&provider, &server).await;
        let seeded = server.seeded.lock().expect("lock").clone();
        for db in seeded {
            server.admin.database(&db).drop().await.expect("clean up");
        }
    }
}
