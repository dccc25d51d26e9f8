//! Builds the configured providers from the operator configuration and the backend
//! credential Secrets in the operator namespace.

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use mongodb::bson::Document;

use super::{
    Providers,
    data::{CacheProvisioner, DatabaseProvisioner},
    mongodb::{MongoBackend, MongoError, MongoProvider, MongoSettings},
    redis::{RedisProvider, RedisSettings},
};
use crate::config::Config;

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
    if let Some(db) = &config.database {
        let uri = secrets.key(&db.uri_secret, "uri").await?;
        let settings = MongoSettings { uri: uri.clone(), database_template: db.database_name.clone(), roles: db.roles.clone() };
        let mongo = MongoProvider::connect(settings).await.map_err(|source| SetupError::Provider { backend: "database", source })?;
        providers = providers.with(Arc::new(DatabaseProvisioner::new(Arc::new(mongo), &uri)));
    }
    Ok(providers)
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
    if let Some(db) = &config.database {
        let settings = MongoSettings { uri: String::new(), database_template: db.database_name.clone(), roles: db.roles.clone() };
        let mongo =
            MongoProvider::new(Arc::new(Offline), settings).map_err(|source| SetupError::Provider { backend: "database", source })?;
        providers = providers.with(Arc::new(DatabaseProvisioner::new(Arc::new(mongo), "mongodb://<from the database.uriSecret Secret>")));
    }
    Ok(providers)
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

    async fn key(&self, name: &str, key: &'static str) -> Result<String, SetupError> {
        self.data(name).await?.remove(key).ok_or_else(|| SetupError::MissingKey {
            namespace: self.namespace.clone(),
            name: name.to_string(),
            key,
        })
    }
}
