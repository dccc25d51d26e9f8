//! The Tenant step "Data": the cache user (Redis) and the database with its user
//! (MongoDB) as [`Provisioner`]s.
//!
//! Generated passwords live only in Secrets in the tenant namespace; a missing Secret
//! (or a rotation) produces a new password, written to the Secret before the backend
//! is changed, so a failure in between never leaves a password nobody knows.

use std::{collections::BTreeMap, sync::Arc};

use async_trait::async_trait;
use kube::ResourceExt;

use super::{
    PlannedObject, ProviderError, ProviderKind, Provisioned, Provisioner, TenantRequest, Usage, leave_foreign,
    mongodb::MongoProvider,
    password,
    redis::{CacheUsage, RedisProvider},
};
use crate::{
    api::{
        Tenant,
        conditions::{Cond, reasons},
    },
    config::UsageSource,
    controller::tenant_desired::DesiredTenant,
};

/// Secret (in the tenant namespace) with the tenant's cache credentials.
pub const CACHE_SECRET: &str = "cx-cache-credentials";
/// Secret (in the tenant namespace) with the tenant's database credentials.
pub const DATABASE_SECRET: &str = "cx-database-credentials";
/// Most keys removed in one deletion attempt; the rest is removed on the next try.
const PURGE_ROUNDS: usize = 1000;

/// Returns the stored password, or generates one and stores `secret_data(password)`
/// when the Secret is missing, lacks a password, or a rotation was asked for.
async fn password_for(
    request: &TenantRequest<'_>,
    secret: &str,
    secret_data: impl Fn(&str) -> BTreeMap<String, String>,
    operations: &mut Vec<String>,
) -> Result<String, ProviderError> {
    let existing = request.secrets.read(secret).await?.and_then(|d| d.get("password").cloned());
    if let Some(password) = existing.filter(|_| !request.rotate) {
        return Ok(password);
    }
    let password = password::generate();
    request.secrets.write(secret, secret_data(&password)).await?;
    operations.push(if request.rotate {
        format!("rotated the generated password in Secret {secret}")
    } else {
        format!("generated credentials into Secret {secret}")
    });
    Ok(password)
}

/// The cache step on a set of Redis nodes.
pub struct CacheProvisioner {
    redis: Arc<RedisProvider>,
    nodes: Vec<String>,
    purge_batch: usize,
    usage_sample: usize,
}

impl CacheProvisioner {
    /// A provisioner over a Redis provider whose nodes are `nodes` (the first one is
    /// published to the tenant).
    pub fn new(redis: Arc<RedisProvider>, nodes: Vec<String>, purge_batch: usize, usage_sample: usize) -> Self {
        Self { redis, nodes, purge_batch: purge_batch.max(1), usage_sample }
    }

    fn secret_data(&self, tenant: &str, password: &str) -> BTreeMap<String, String> {
        let user = self.redis.user_name(tenant);
        let endpoint = Endpoint::parse(self.nodes.first().map(String::as_str).unwrap_or_default());
        BTreeMap::from([
            ("host".to_string(), endpoint.host.clone()),
            ("port".to_string(), endpoint.port.clone()),
            ("username".to_string(), user.clone()),
            ("password".to_string(), password.to_string()),
            ("keyPrefix".to_string(), self.redis.key_prefix(tenant)),
            ("url".to_string(), format!("{}://{user}:{password}@{}:{}", endpoint.scheme, endpoint.host, endpoint.port)),
        ])
    }
}

#[async_trait]
impl Provisioner for CacheProvisioner {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Cache
    }

    fn plan(&self, tenant: &Tenant, _desired: &DesiredTenant) -> Vec<PlannedObject> {
        vec![self.redis.plan(&tenant.name_any())]
    }

    async fn ensure(&self, request: &TenantRequest<'_>) -> Result<Provisioned, ProviderError> {
        let tenant = request.tenant.name_any();
        let mut operations = Vec::new();
        let password = password_for(request, CACHE_SECRET, |p| self.secret_data(&tenant, p), &mut operations).await?;
        operations.extend(self.redis.ensure_user(&tenant, &password, request.desired.active, request.read_only).await?);
        let user = self.redis.user_name(&tenant);
        let message = if request.desired.active {
            format!("cache user {user} is limited to keys {}* on {} node(s)", self.redis.key_prefix(&tenant), self.nodes.len())
        } else {
            format!("cache user {user} is switched off; its keys are kept")
        };
        let condition = Cond::ok(ProviderKind::Cache.condition_type(), reasons::PROVISIONED, message);
        Ok(Provisioned { credentials: Some(CACHE_SECRET.into()), ..Provisioned::new(condition, operations) })
    }

    async fn delete(&self, request: &TenantRequest<'_>) -> Result<Vec<String>, ProviderError> {
        let tenant = request.tenant.name_any();
        let mut operations = self.redis.delete_user(&tenant).await?;
        let mut removed = 0u64;
        for _ in 0..PURGE_ROUNDS {
            let progress = self.redis.purge_keys(&tenant, self.purge_batch).await?;
            removed += progress.deleted;
            if progress.done {
                operations.push(format!("removed {removed} cache key(s) under {}", self.redis.key_prefix(&tenant)));
                return Ok(operations);
            }
        }
        Err(ProviderError::Unavailable {
            backend: "redis",
            message: format!("removed {removed} key(s) under {} so far; continuing on the next attempt", self.redis.key_prefix(&tenant)),
        })
    }

    async fn usage(&self, tenant: &Tenant) -> Result<Option<Usage>, ProviderError> {
        let CacheUsage { keys, bytes, .. } = self.redis.usage(&tenant.name_any(), self.usage_sample).await?;
        Ok(Some(Usage { storage_bytes: bytes, items: Some(keys) }))
    }

    async fn count(&self, tenant: &Tenant, source: &UsageSource) -> Result<Option<u64>, ProviderError> {
        let Some(key) = &source.cache_set else { return Ok(None) };
        let key = format!("{}{key}", self.redis.key_prefix(&tenant.name_any()));
        self.redis.set_cardinality(&key).await.map(Some)
    }
}

/// The database step on MongoDB.
pub struct DatabaseProvisioner {
    mongo: Arc<MongoProvider>,
    scheme: String,
    hosts: String,
}

impl DatabaseProvisioner {
    /// A provisioner over a MongoDB provider; `admin_uri` gives the hosts and options
    /// published to the tenant (its credentials are dropped).
    pub fn new(mongo: Arc<MongoProvider>, admin_uri: &str) -> Self {
        let scheme = admin_uri.split_once("://").map_or("mongodb", |(s, _)| s).to_string();
        Self { mongo, scheme, hosts: Endpoint::mongo_hosts(admin_uri) }
    }

    fn secret_data(&self, tenant: &str, password: &str) -> BTreeMap<String, String> {
        let user = self.mongo.user_name(tenant);
        let database = self.mongo.database_name(tenant);
        let uri = format!("{}://{user}:{password}@{}/{database}?authSource={database}", self.scheme, self.hosts);
        BTreeMap::from([
            ("username".to_string(), user),
            ("password".to_string(), password.to_string()),
            ("database".to_string(), database.clone()),
            ("authDatabase".to_string(), database),
            ("uri".to_string(), uri),
        ])
    }
}

#[async_trait]
impl Provisioner for DatabaseProvisioner {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Database
    }

    fn plan(&self, tenant: &Tenant, _desired: &DesiredTenant) -> Vec<PlannedObject> {
        self.mongo.plan(&tenant.name_any())
    }

    async fn ensure(&self, request: &TenantRequest<'_>) -> Result<Provisioned, ProviderError> {
        let tenant = request.tenant.name_any();
        let uid = request.tenant.uid().unwrap_or_default();
        let mut operations = Vec::new();
        let password = password_for(request, DATABASE_SECRET, |p| self.secret_data(&tenant, p), &mut operations).await?;
        operations.extend(self.mongo.ensure(&tenant, &uid, &password, request.desired.active, request.read_only).await?);
        let database = self.mongo.database_name(&tenant);
        let message = if request.desired.active {
            format!("database {database} and its user are in place")
        } else {
            format!("the user of database {database} has no roles while the tenant is disabled; data is kept")
        };
        let condition = Cond::ok(ProviderKind::Database.condition_type(), reasons::PROVISIONED, message);
        Ok(Provisioned { credentials: Some(DATABASE_SECRET.into()), ..Provisioned::new(condition, operations) })
    }

    async fn delete(&self, request: &TenantRequest<'_>) -> Result<Vec<String>, ProviderError> {
        let uid = request.tenant.uid().unwrap_or_default();
        leave_foreign(self.mongo.delete(&request.tenant.name_any(), &uid).await)
    }

    async fn usage(&self, tenant: &Tenant) -> Result<Option<Usage>, ProviderError> {
        let bytes = self.mongo.usage(&tenant.name_any()).await?;
        Ok(Some(Usage { storage_bytes: bytes, items: None }))
    }

    async fn count(&self, tenant: &Tenant, source: &UsageSource) -> Result<Option<u64>, ProviderError> {
        let Some(collection) = &source.collection else { return Ok(None) };
        self.mongo.count(&tenant.name_any(), collection, &source.filter).await.map(Some)
    }
}

/// The parts of a node URL published to tenants.
struct Endpoint {
    scheme: String,
    host: String,
    port: String,
}

impl Endpoint {
    /// Splits `redis://[user:pass@]host[:port][/db]`.
    fn parse(url: &str) -> Endpoint {
        let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
        let authority = rest.split('/').next().unwrap_or_default();
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (h.to_string(), p.to_string()),
            _ => (authority.to_string(), "6379".to_string()),
        };
        Endpoint { scheme: scheme.to_string(), host, port }
    }

    /// The host list of a MongoDB URI, without credentials, database or options.
    fn mongo_hosts(uri: &str) -> String {
        let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        authority.rsplit_once('@').map_or(authority, |(_, a)| a).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_drop_credentials() {
        let e = Endpoint::parse("rediss://admin:secret@redis-0.cache:6380/0");
        assert_eq!((e.scheme.as_str(), e.host.as_str(), e.port.as_str()), ("rediss", "redis-0.cache", "6380"));
        let e = Endpoint::parse("redis://cache");
        assert_eq!((e.host.as_str(), e.port.as_str()), ("cache", "6379"));
        assert_eq!(Endpoint::mongo_hosts("mongodb://root:pw@m-0:27017,m-1:27017/admin?replicaSet=rs0"), "m-0:27017,m-1:27017");
        assert_eq!(Endpoint::mongo_hosts("mongodb+srv://u:p@cluster.example"), "cluster.example");
    }
}
