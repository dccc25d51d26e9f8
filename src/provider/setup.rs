//! Builds the configured providers from the operator configuration and the backend
//! credential Secrets in the operator namespace.

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use mongodb::bson::Document;

use super::{
    Providers,
    data::{CacheProvisioner, DatabaseProvisioner},
    grafana::{GrafanaAuth, GrafanaProvisioner, GrafanaSettings},
    keycloak::{KeycloakAuth, KeycloakProvider, KeycloakSettings, RealmTemplate},
    mongodb::{MongoBackend, MongoError, MongoProvider, MongoSettings},
    notifications::{Notifier, SigningKey, WebhookSettings},
    redis::{RedisProvider, RedisSettings},
};
use crate::config::{Config, GrafanaConfig, IdentityConfig, NotificationsConfig, RealmConfig};

/// Why the providers could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A credential Secret could not be read.
    #[error("cannot read Secret {namespace}/{name}: {source}")]
    ReadSecret {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// A credential Secret lacks a key.
    #[error("Secret {namespace}/{name} has no key {key:?}")]
    MissingKey {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The key.
        key: &'static str,
    },
    /// A provider refused its settings.
    #[error("{backend} backend: {source}")]
    Provider {
        /// The configuration key of the backend.
        backend: &'static str,
        /// Why.
        #[source]
        source: super::ProviderError,
    },
}

/// The operator namespace: configuration, then `POD_NAMESPACE`, then `cx-operator`.
pub fn operator_namespace(config: &Config) -> String {
    config.operator_namespace.clone().or_else(|| std::env::var("POD_NAMESPACE").ok()).unwrap_or_else(|| "cx-operator".into())
}

/// Builds every configured provider. Connections open on first use, so a backend
/// that is down at start makes its condition False instead of stopping the operator.
pub async fn from_config(client: &Client, config: &Config) -> Result<Providers, SetupError> {
    let secrets = SecretReader { api: Api::namespaced(client.clone(), &operator_namespace(config)), namespace: operator_namespace(config) };
    let mut providers = Providers::default();
    if let Some(cache) = &config.cache {
        let credentials = match &cache.credentials_secret {
            Some(name) => Some(secrets.data(name).await?),
            None => None,
        };
        let ca_pem = match &cache.ca_secret {
            Some(name) => Some(secrets.key(name, "ca.crt").await?),
            None => None,
        };
        let settings = RedisSettings {
            nodes: cache.nodes.clone(),
            admin_username: credentials.as_ref().and_then(|c| c.get("username").cloned()),
            admin_password: credentials.as_ref().and_then(|c| c.get("password").cloned()),
            key_prefix_template: cache.key_prefix.clone(),
            acl_rules_template: cache.acl_rules.clone(),
            acl_save: cache.acl_save,
            ca_pem,
        };
        let redis = RedisProvider::connect(settings).await.map_err(|source| SetupError::Provider { backend: "cache", source })?;
        providers =
            providers.with(Arc::new(CacheProvisioner::new(Arc::new(redis), cache.nodes.clone(), cache.purge_batch, cache.usage_sample)));
    }
    if let Some(identity) = &config.identity {
        let credentials = secrets.data(&identity.credentials_secret).await?;
        let auth = keycloak_auth(identity, &credentials).ok_or_else(|| SetupError::MissingKey {
            namespace: secrets.namespace.clone(),
            name: identity.credentials_secret.clone(),
            key: "clientId and clientSecret, or username and password",
        })?;
        let ca_pem = match &identity.ca_secret {
            Some(name) => Some(secrets.key(name, "ca.crt").await?),
            None => None,
        };
        let smtp_password = match &identity.realm.smtp_password_secret {
            Some(name) => Some(secrets.key(name, "password").await?),
            None => None,
        };
        let settings = KeycloakSettings {
            url: identity.url.clone(),
            auth,
            ca_pem,
            realm_template: realm_template(&identity.realm, smtp_password),
            timeout: identity.timeout,
        };
        let keycloak = KeycloakProvider::new(settings).await.map_err(|source| SetupError::Provider { backend: "identity", source })?;
        providers = providers.with_keycloak(Arc::new(keycloak));
    }
    if let Some(db) = &config.database {
        let uri = secrets.key(&db.uri_secret, "uri").await?;
        let settings = MongoSettings { uri: uri.clone(), database_template: db.database_name.clone(), roles: db.roles.clone() };
        let mongo = MongoProvider::connect(settings).await.map_err(|source| SetupError::Provider { backend: "database", source })?;
        providers = providers.with(Arc::new(DatabaseProvisioner::new(Arc::new(mongo), &uri)));
    }
    if let Some(grafana) = &config.grafana {
        let credentials = secrets.data(&grafana.credentials_secret).await?;
        let auth = grafana_auth(&credentials).ok_or_else(|| SetupError::MissingKey {
            namespace: secrets.namespace.clone(),
            name: grafana.credentials_secret.clone(),
            key: "token, or username and password",
        })?;
        let ca_pem = match &grafana.ca_secret {
            Some(name) => Some(secrets.key(name, "ca.crt").await?),
            None => None,
        };
        let source = format!("Secret {}/{}", secrets.namespace, grafana.credentials_secret);
        let provisioner = GrafanaProvisioner::new(grafana_settings(grafana, auth, source, ca_pem))
            .map_err(|source| SetupError::Provider { backend: "grafana", source })?;
        providers = providers.with(Arc::new(provisioner));
    }
    if let Some(notifications) = &config.notifications {
        providers = providers.with_notifier(Arc::new(notifier(notifications, &secrets).await?));
    }
    Ok(providers)
}

/// The notifier of lifecycle events, with each webhook's signing key and CA from
/// Secrets in the operator namespace. Keys are read once, at start (like every
/// backend credential): a rotated key takes effect when the operator restarts.
async fn notifier(config: &NotificationsConfig, secrets: &SecretReader) -> Result<Notifier, SetupError> {
    let mut webhooks = Vec::new();
    for webhook in &config.webhooks {
        let selector = &webhook.signing_key;
        let key = secrets.bytes(&selector.secret_name, &selector.key).await?.ok_or_else(|| {
            let message = format!("Secret {}/{} has no key {:?}", secrets.namespace, selector.secret_name, selector.key);
            SetupError::Provider { backend: "notifications", source: super::ProviderError::Refused { backend: "notifications", message } }
        })?;
        let ca_pem = match &webhook.ca_secret {
            Some(name) => Some(secrets.key(name, "ca.crt").await?),
            None => None,
        };
        webhooks.push(WebhookSettings { name: webhook.name.clone(), url: webhook.url.clone(), signing_key: SigningKey::new(key), ca_pem });
    }
    Notifier::new(config, webhooks).map_err(|source| SetupError::Provider { backend: "notifications", source })
}

/// The providers as `cx-operator plan` needs them: built from the configuration alone,
/// with no credentials and no connection (planning never talks to a backend).
pub async fn for_plan(config: &Config) -> Result<Providers, SetupError> {
    let mut providers = Providers::default();
    if let Some(cache) = &config.cache {
        let settings = RedisSettings {
            nodes: cache.nodes.clone(),
            key_prefix_template: cache.key_prefix.clone(),
            acl_rules_template: cache.acl_rules.clone(),
            acl_save: cache.acl_save,
            ..RedisSettings::default()
        };
        let redis = RedisProvider::connect(settings).await.map_err(|source| SetupError::Provider { backend: "cache", source })?;
        providers =
            providers.with(Arc::new(CacheProvisioner::new(Arc::new(redis), cache.nodes.clone(), cache.purge_batch, cache.usage_sample)));
    }
    if let Some(identity) = &config.identity {
        let settings = KeycloakSettings {
            url: identity.url.clone(),
            auth: KeycloakAuth::ClientCredentials {
                realm: identity.admin_realm.clone(),
                client_id: String::new(),
                client_secret: String::new(),
            },
            ca_pem: None,
            realm_template: realm_template(&identity.realm, None),
            timeout: identity.timeout,
        };
        let keycloak = KeycloakProvider::new(settings).await.map_err(|source| SetupError::Provider { backend: "identity", source })?;
        providers = providers.with_keycloak(Arc::new(keycloak));
    }
    if let Some(db) = &config.database {
        let settings = MongoSettings { uri: String::new(), database_template: db.database_name.clone(), roles: db.roles.clone() };
        let mongo =
            MongoProvider::new(Arc::new(Offline), settings).map_err(|source| SetupError::Provider { backend: "database", source })?;
        providers = providers.with(Arc::new(DatabaseProvisioner::new(Arc::new(mongo), "mongodb://<from the database.uriSecret Secret>")));
    }
    if let Some(grafana) = &config.grafana {
        let settings = grafana_settings(grafana, GrafanaAuth::Token(String::new()), "planning".into(), None);
        let provisioner = GrafanaProvisioner::new(settings).map_err(|source| SetupError::Provider { backend: "grafana", source })?;
        providers = providers.with(Arc::new(provisioner));
    }
    Ok(providers)
}

/// A service-account token when the Secret has one, else a user's password.
fn grafana_auth(data: &BTreeMap<String, String>) -> Option<GrafanaAuth> {
    if let Some(token) = data.get("token").filter(|t| !t.is_empty()) {
        return Some(GrafanaAuth::Token(token.clone()));
    }
    let (username, password) = (data.get("username")?, data.get("password")?);
    Some(GrafanaAuth::Basic { username: username.clone(), password: password.clone() })
}

/// The Grafana provider's settings from its configuration section.
pub fn grafana_settings(config: &GrafanaConfig, auth: GrafanaAuth, credentials_source: String, ca_pem: Option<String>) -> GrafanaSettings {
    GrafanaSettings {
        url: config.url.clone(),
        auth,
        credentials_source,
        data_source_uid: config.data_source_uid.clone(),
        data_source_org_id: config.data_source_org_id,
        allowed_hosts_key: config.allowed_hosts_key.clone(),
        host_format: config.host_format.clone(),
        organizations: config.organizations,
        ca_pem,
        timeout: config.timeout,
        write_attempts: config.write_attempts,
    }
}

/// Client credentials when the Secret has them, else an admin user's password.
fn keycloak_auth(identity: &IdentityConfig, data: &BTreeMap<String, String>) -> Option<KeycloakAuth> {
    let realm = identity.admin_realm.clone();
    if let (Some(client_id), Some(client_secret)) = (data.get("clientId"), data.get("clientSecret")) {
        return Some(KeycloakAuth::ClientCredentials { realm, client_id: client_id.clone(), client_secret: client_secret.clone() });
    }
    let (username, password) = (data.get("username")?, data.get("password")?);
    Some(KeycloakAuth::Password { realm, username: username.clone(), password: password.clone() })
}

/// The realm template: the documented defaults, overridden by the configuration.
pub fn realm_template(realm: &RealmConfig, smtp_password: Option<String>) -> RealmTemplate {
    let mut template = RealmTemplate::default();
    if let Some(policy) = &realm.password_policy {
        template.password_policy = policy.clone();
    }
    if let Some(failures) = realm.lockout_after_failures {
        template.brute_force.failure_factor = failures;
    }
    if let Some(roles) = &realm.roles {
        template.roles = roles.clone();
    }
    if let Some(client_id) = &realm.client_id {
        template.client_id = client_id.clone();
    }
    template.smtp = realm.smtp.clone();
    if let Some(password) = smtp_password {
        template.smtp.insert("password".into(), password);
    }
    template
}

/// A MongoDB backend for offline planning: every call fails.
struct Offline;

#[async_trait::async_trait]
impl MongoBackend for Offline {
    async fn run_command(&self, _db: &str, _command: Document) -> Result<Document, MongoError> {
        Err(MongoError::new(0, "offline: planning does not connect"))
    }
    async fn find_one(&self, _db: &str, _collection: &str, _filter: Document) -> Result<Option<Document>, MongoError> {
        Err(MongoError::new(0, "offline: planning does not connect"))
    }
    async fn insert_one(&self, _db: &str, _collection: &str, _document: Document) -> Result<(), MongoError> {
        Err(MongoError::new(0, "offline: planning does not connect"))
    }
}

struct SecretReader {
    api: Api<Secret>,
    namespace: String,
}

impl SecretReader {
    async fn data(&self, name: &str) -> Result<BTreeMap<String, String>, SetupError> {
        let secret = self.api.get(name).await.map_err(|source| SetupError::ReadSecret {
            namespace: self.namespace.clone(),
            name: name.to_string(),
            source,
        })?;
        Ok(secret.data.unwrap_or_default().into_iter().filter_map(|(k, v)| String::from_utf8(v.0).ok().map(|v| (k, v))).collect())
    }

    /// The bytes of one key of a Secret, or None when the Secret lacks the key.
    async fn bytes(&self, name: &str, key: &str) -> Result<Option<Vec<u8>>, SetupError> {
        let secret = self.api.get(name).await.map_err(|source| SetupError::ReadSecret {
            namespace: self.namespace.clone(),
            name: name.to_string(),
            source,
        })?;
        Ok(secret.data.unwrap_or_default().remove(key).map(|v| v.0))
    }

    async fn key(&self, name: &str, key: &'static str) -> Result<String, SetupError> {
        self.data(name).await?.remove(key).ok_or_else(|| SetupError::MissingKey {
            namespace: self.namespace.clone(),
            name: name.to_string(),
            key,
        })
    }
}
