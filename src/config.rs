//! Operator configuration: one documented YAML file, validated at start.
//!
//! Every backend section is optional: an unconfigured backend makes its provisioning
//! step report the condition reason `NotConfigured` instead of failing. The reference
//! lives in `docs/configuration.md`; `cx-operator check-config FILE` reports every
//! problem with its path.

use std::{collections::BTreeMap, fmt, path::Path, time::Duration};

use serde::{Deserialize, Deserializer, de::DeserializeOwned};

use crate::api::quota::{Capability, Limits};

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Domain under which tenants get `<name>.<rootDomain>` unless they set an FQDN.
    pub root_domain: String,
    /// Prefix of tenant namespaces (`tenant-` gives `tenant-acme`).
    #[serde(default = "default_namespace_prefix")]
    pub namespace_prefix: String,
    /// Namespace of the platform's shared services, where tenant Ingresses live.
    pub platform_namespace: String,
    /// How tenant Ingresses are built.
    #[serde(default)]
    pub ingress: IngressConfig,
    /// Defaults applied to new tenants.
    #[serde(default)]
    pub defaults: Defaults,
    /// How reconciles are scheduled.
    #[serde(default)]
    pub reconcile: ReconcileConfig,
    /// Leader election between operator replicas.
    #[serde(default)]
    pub leader_election: LeaderElectionConfig,
    /// Which Tenants this operator instance serves (sharding).
    #[serde(default)]
    pub sharding: ShardingConfig,
    /// Identity backend (Keycloak).
    #[serde(default)]
    pub identity: Option<IdentityConfig>,
    /// Database backend (MongoDB).
    #[serde(default)]
    pub database: Option<DatabaseConfig>,
    /// Cache backend (Redis).
    #[serde(default)]
    pub cache: Option<CacheConfig>,
    /// Observability backend (Grafana): the tenant URL in the allowed hosts of the
    /// platform's shared data source, optionally an organisation per tenant.
    #[serde(default)]
    pub grafana: Option<GrafanaConfig>,
    /// Lifecycle notifications: signed CloudEvents POSTed to webhooks when a tenant
    /// becomes ready, is disabled, enabled again or deleted.
    #[serde(default)]
    pub notifications: Option<NotificationsConfig>,
    /// Platform licence: caps on the sum over all tenants.
    #[serde(default)]
    pub licence: Option<Licence>,
    /// How capability usage is measured in the tenants' stores.
    #[serde(default)]
    pub usage: UsageConfig,
    /// Namespace of the operator itself, where backend credential Secrets live;
    /// defaults to `POD_NAMESPACE`, then `cx-operator`.
    #[serde(default)]
    pub operator_namespace: Option<String>,
    /// The validating admission webhook.
    #[serde(default)]
    pub webhook: WebhookConfig,
}

/// The identity backend (Keycloak): one realm per tenant.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentityConfig {
    /// Base URL of Keycloak, e.g. `https://keycloak.example.com`.
    pub url: String,
    /// Secret in the operator namespace with `clientId` and `clientSecret` (client
    /// credentials, preferred) or `username` and `password` (an admin user).
    pub credentials_secret: String,
    /// Realm the admin credentials belong to.
    #[serde(default = "default_admin_realm")]
    pub admin_realm: String,
    /// Secret in the operator namespace with a CA certificate (`ca.crt`) to trust.
    #[serde(default)]
    pub ca_secret: Option<String>,
    /// Longest time one request to Keycloak may take.
    #[serde(default = "default_identity_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// What every tenant realm gets.
    #[serde(default)]
    pub realm: RealmConfig,
}

fn default_admin_realm() -> String {
    "master".into()
}
fn default_identity_timeout() -> Duration {
    Duration::from_secs(10)
}

/// What every tenant realm gets.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RealmConfig {
    /// Keycloak password policy, e.g. `length(12) and digits(1)`.
    #[serde(default)]
    pub password_policy: Option<String>,
    /// Failed logins after which a user is locked out.
    #[serde(default)]
    pub lockout_after_failures: Option<u32>,
    /// Realm roles every realm gets.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    /// Client id of the platform's OIDC client.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Keycloak `smtpServer` settings (`host`, `port`, `from`, `auth`, `user` ...).
    #[serde(default)]
    pub smtp: BTreeMap<String, String>,
    /// Secret in the operator namespace whose `password` key is the SMTP password.
    #[serde(default)]
    pub smtp_password_secret: Option<String>,
}

/// The cache backend (Redis): every node gets the same ACL users.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CacheConfig {
    /// Node URLs (`redis://host:port` or `rediss://host:port`): primaries, replicas and
    /// cluster nodes alike, since ACL users are per node.
    pub nodes: Vec<String>,
    /// Secret in the operator namespace with the admin `password` (and optional
    /// `username`); absent connects without authentication.
    #[serde(default)]
    pub credentials_secret: Option<String>,
    /// Secret in the operator namespace with a CA certificate (`ca.crt`) for `rediss://`.
    #[serde(default)]
    pub ca_secret: Option<String>,
    /// Key prefix of a tenant; `{tenant}` is the tenant id.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// ACL rules of a tenant's user; `{prefix}` is its key prefix.
    #[serde(default = "default_acl_rules")]
    pub acl_rules: Vec<String>,
    /// Whether to run `ACL SAVE` after changes (servers with an ACL file).
    #[serde(default)]
    pub acl_save: bool,
    /// Keys sampled to estimate a tenant's cache memory.
    #[serde(default = "default_usage_sample")]
    pub usage_sample: usize,
    /// Keys removed per batch when a tenant's keys are deleted.
    #[serde(default = "default_purge_batch")]
    pub purge_batch: usize,
}

fn default_key_prefix() -> String {
    "{tenant}:".into()
}
fn default_acl_rules() -> Vec<String> {
    crate::provider::redis::default_acl_rules()
}
fn default_usage_sample() -> usize {
    100
}
fn default_purge_batch() -> usize {
    1000
}

/// The database backend (MongoDB).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Secret in the operator namespace whose `uri` key holds the admin connection
    /// string (it carries credentials, so it never appears in this file).
    pub uri_secret: String,
    /// Database name of a tenant; `{tenant}` is the tenant id, hyphens become `_`.
    #[serde(default = "default_database_name")]
    pub database_name: String,
    /// Roles of the tenant's user on its database.
    #[serde(default = "default_database_roles")]
    pub roles: Vec<String>,
}

/// Lifecycle notifications: CloudEvents 1.0 (structured JSON mode) POSTed to every
/// webhook, signed with HMAC-SHA256, retried with exponential backoff, and given up
/// with a Warning Event after `giveUpAfter` (`deletionGiveUpAfter` while the Tenant is
/// being deleted, so that a webhook that is down never blocks a deletion for long).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotificationsConfig {
    /// The webhooks every event is sent to.
    pub webhooks: Vec<NotificationWebhook>,
    /// The CloudEvents `source` of every event: a URI reference naming this operator
    /// installation, e.g. `https://cx.example.com/cx-operator`.
    #[serde(default = "default_notification_source")]
    pub source: String,
    /// Longest time one delivery (connecting, sending and the answer) may take.
    #[serde(default = "default_notification_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Delay after the first failed attempt; doubles with every further failure.
    #[serde(default = "default_notification_min_backoff", deserialize_with = "duration")]
    pub min_backoff: Duration,
    /// Longest delay between two attempts.
    #[serde(default = "default_notification_max_backoff", deserialize_with = "duration")]
    pub max_backoff: Duration,
    /// How long after an event was recorded its delivery is retried; after that it is
    /// given up with a Warning Event `NotificationAbandoned`.
    #[serde(default = "default_give_up_after", deserialize_with = "long_duration")]
    pub give_up_after: Duration,
    /// While the Tenant is being deleted: how long after the deletion started the
    /// outstanding events (the `deleted` event included) are retried before they are
    /// given up and the deletion completes.
    #[serde(default = "default_deletion_give_up_after", deserialize_with = "duration")]
    pub deletion_give_up_after: Duration,
}

/// A webhook that receives the lifecycle events.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotificationWebhook {
    /// Name of the webhook, as the Tenant's status and Events show it (a DNS label).
    pub name: String,
    /// `https://` (or `http://`) URL the events are POSTed to. It must not carry
    /// credentials: receivers authenticate the operator by the signature.
    pub url: String,
    /// The Secret key (in the operator namespace) holding the HMAC-SHA256 signing key,
    /// at least 32 bytes.
    pub signing_key: SecretKeySelector,
    /// Secret in the operator namespace with a CA certificate (`ca.crt`) to trust
    /// instead of the platform's trust store.
    #[serde(default)]
    pub ca_secret: Option<String>,
}

/// A key of a Secret in the operator namespace.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeySelector {
    /// Name of the Secret.
    pub secret_name: String,
    /// Key in the Secret's data.
    #[serde(default = "default_signing_key")]
    pub key: String,
}

fn default_notification_source() -> String {
    "/cx-operator".into()
}
fn default_notification_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_notification_min_backoff() -> Duration {
    Duration::from_secs(5)
}
fn default_notification_max_backoff() -> Duration {
    Duration::from_secs(300)
}
fn default_give_up_after() -> Duration {
    Duration::from_secs(86_400)
}
fn default_deletion_give_up_after() -> Duration {
    Duration::from_secs(600)
}
fn default_signing_key() -> String {
    "signingKey".into()
}

impl NotificationsConfig {
    /// Semantic checks of the `notifications` section.
    fn check(&self, check: &mut impl FnMut(bool, &str, &str)) {
        check(!self.webhooks.is_empty(), "notifications.webhooks", "must name at least one webhook");
        let mut names = std::collections::BTreeSet::new();
        for (i, w) in self.webhooks.iter().enumerate() {
            let path = format!("notifications.webhooks[{i}]");
            check(is_dns_label(&w.name), &format!("{path}.name"), "must be a DNS label");
            check(names.insert(w.name.as_str()), &format!("{path}.name"), "must be unique among the webhooks");
            check(is_http_url(&w.url), &format!("{path}.url"), "must be an http:// or https:// URL with a host");
            check(!url_has_userinfo(&w.url), &format!("{path}.url"), "must not carry credentials (user:password@)");
            let key = &w.signing_key;
            check(is_dns_name_or_label(&key.secret_name), &format!("{path}.signingKey.secretName"), "must be a Secret name");
            check(is_secret_key(&key.key), &format!("{path}.signingKey.key"), "must be a Secret key (letters, digits, '-', '_', '.')");
            if let Some(ca) = &w.ca_secret {
                check(is_dns_name_or_label(ca), &format!("{path}.caSecret"), "must be a Secret name");
            }
        }
        check(!self.source.trim().is_empty(), "notifications.source", "must not be empty");
        check(self.timeout > Duration::ZERO, "notifications.timeout", "must be longer than zero");
        check(self.min_backoff > Duration::ZERO, "notifications.minBackoff", "must be longer than zero");
        check(self.min_backoff <= self.max_backoff, "notifications.minBackoff", "must not exceed notifications.maxBackoff");
        check(self.give_up_after >= self.min_backoff, "notifications.giveUpAfter", "must not be shorter than notifications.minBackoff");
        check(self.deletion_give_up_after > Duration::ZERO, "notifications.deletionGiveUpAfter", "must be longer than zero");
    }
}

/// Whether `url` is an http(s) URL with a host.
fn is_http_url(url: &str) -> bool {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|r| r.split(['/', '?', '#']).next().is_some_and(|authority| !authority.is_empty()))
}

/// Whether the authority of `url` holds `user[:password]@`.
fn url_has_userinfo(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?', '#']).next().is_some_and(|authority| authority.contains('@'))
}

/// Whether `key` is a legal key of a Secret's data.
fn is_secret_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 253 && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn default_database_name() -> String {
    "cx_{tenant}".into()
}
fn default_database_roles() -> Vec<String> {
    vec!["readWrite".into(), "dbAdmin".into()]
}

fn default_namespace_prefix() -> String {
    "tenant-".into()
}

/// How tenant Ingresses are built.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressConfig {
    /// IngressClass name; absent uses the cluster's default class.
    #[serde(default)]
    pub class_name: Option<String>,
    /// Annotations put on every tenant Ingress.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Paths routed to platform services.
    #[serde(default = "default_paths")]
    pub paths: Vec<IngressPath>,
    /// TLS for tenant hosts.
    #[serde(default)]
    pub tls: TlsConfig,
}

impl Default for IngressConfig {
    fn default() -> Self {
        Self { class_name: None, annotations: BTreeMap::new(), paths: default_paths(), tls: TlsConfig::default() }
    }
}

fn default_paths() -> Vec<IngressPath> {
    vec![IngressPath { path: "/".into(), path_type: PathType::Prefix, service: ServiceRef { name: "web".into(), port: 80 } }]
}

/// One path of the tenant Ingress.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressPath {
    /// URL path, starting with `/`.
    pub path: String,
    /// `Prefix` (default), `Exact` or `ImplementationSpecific`.
    #[serde(default)]
    pub path_type: PathType,
    /// The platform Service (in the platform namespace) that serves the path.
    pub service: ServiceRef,
}

/// Ingress path types.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum PathType {
    /// Matches by path prefix, element-wise.
    #[default]
    Prefix,
    /// Matches the exact path.
    Exact,
    /// Up to the IngressClass.
    ImplementationSpecific,
}

impl PathType {
    /// The Ingress API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PathType::Prefix => "Prefix",
            PathType::Exact => "Exact",
            PathType::ImplementationSpecific => "ImplementationSpecific",
        }
    }
}

/// A Service port in the platform namespace.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceRef {
    /// Service name.
    pub name: String,
    /// Service port number.
    pub port: i32,
}

/// TLS for tenant hosts.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsConfig {
    /// Whether tenant Ingresses serve TLS at all.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Name of the TLS Secret in the platform namespace; `{tenant}` is replaced by the
    /// tenant name. A tenant's `spec.domain.tls.secretName` wins.
    #[serde(default = "default_tls_secret")]
    pub secret_name: String,
    /// A cert-manager issuer for tenants that name none.
    #[serde(default)]
    pub issuer: Option<IssuerConfig>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self { enabled: true, secret_name: default_tls_secret(), issuer: None }
    }
}

fn default_tls_secret() -> String {
    "{tenant}-tls".into()
}

fn default_true() -> bool {
    true
}

/// A cert-manager issuer.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IssuerConfig {
    /// `ClusterIssuer` or `Issuer`.
    #[serde(default = "default_issuer_kind")]
    pub kind: String,
    /// Issuer name.
    pub name: String,
}

fn default_issuer_kind() -> String {
    "ClusterIssuer".into()
}

/// Defaults applied to new tenants.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Defaults {
    /// Limits of the `default` CapabilityQuota created in a tenant namespace that has none.
    #[serde(default)]
    pub quota: Limits,
}

/// How reconciles are scheduled.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReconcileConfig {
    /// How often a settled object is checked again for drift.
    #[serde(default = "default_resync", deserialize_with = "duration")]
    pub resync_interval: Duration,
    /// Fraction (0 to 1) of the resync interval added at random, so that resyncs of
    /// many objects never arrive at once.
    #[serde(default = "default_jitter")]
    pub jitter: f64,
    /// Reconciles that may run at once per controller.
    #[serde(default = "default_concurrency")]
    pub concurrency: u16,
    /// First retry delay after a transient error; doubles up to `maxBackoff`.
    #[serde(default = "default_min_backoff", deserialize_with = "duration")]
    pub min_backoff: Duration,
    /// Longest retry delay.
    #[serde(default = "default_max_backoff", deserialize_with = "duration")]
    pub max_backoff: Duration,
    /// On shutdown (SIGTERM, a lost lease), how long reconciles already running may
    /// take to finish before they are cancelled; the Lease is released after. Keep it
    /// below the pod's `terminationGracePeriodSeconds`.
    #[serde(default = "default_shutdown_timeout", deserialize_with = "duration")]
    pub shutdown_timeout: Duration,
    /// A controller whose queued objects have waited this long without it taking any
    /// is reported as stalled: `/healthz` answers 503 and names it.
    #[serde(default = "default_stall_timeout", deserialize_with = "duration")]
    pub stall_timeout: Duration,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            resync_interval: default_resync(),
            jitter: default_jitter(),
            concurrency: default_concurrency(),
            min_backoff: default_min_backoff(),
            max_backoff: default_max_backoff(),
            shutdown_timeout: default_shutdown_timeout(),
            stall_timeout: default_stall_timeout(),
        }
    }
}

fn default_resync() -> Duration {
    Duration::from_secs(600)
}
fn default_jitter() -> f64 {
    0.2
}
fn default_concurrency() -> u16 {
    8
}
fn default_min_backoff() -> Duration {
    Duration::from_secs(2)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(300)
}
fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(20)
}
fn default_stall_timeout() -> Duration {
    Duration::from_secs(300)
}

/// Leader election between operator replicas.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaderElectionConfig {
    /// Whether to elect a leader; only the leader reconciles.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Name of the Lease.
    #[serde(default = "default_lease_name")]
    pub lease_name: String,
    /// Namespace of the Lease; defaults to the operator's own namespace
    /// (`POD_NAMESPACE`), then `default`.
    #[serde(default)]
    pub lease_namespace: Option<String>,
    /// How long a lease is valid without renewal.
    #[serde(default = "default_lease_duration", deserialize_with = "duration")]
    pub lease_duration: Duration,
    /// How long before expiry the holder renews.
    #[serde(default = "default_renew_grace", deserialize_with = "duration")]
    pub renew_grace: Duration,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            lease_name: default_lease_name(),
            lease_namespace: None,
            lease_duration: default_lease_duration(),
            renew_grace: default_renew_grace(),
        }
    }
}

fn default_lease_name() -> String {
    "cx-operator-leader".into()
}
fn default_lease_duration() -> Duration {
    Duration::from_secs(15)
}
fn default_renew_grace() -> Duration {
    Duration::from_secs(5)
}

/// Which Tenants this operator instance serves.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShardingConfig {
    /// A Kubernetes label selector on Tenants; absent serves every Tenant. Instances
    /// with disjoint selectors split the tenants between them.
    #[serde(default)]
    pub tenant_selector: Option<String>,
}

/// The observability backend (Grafana): every tenant's URL is an entry of the
/// allowed hosts of one shared data source, which the platform's dashboards query
/// tenants through.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrafanaConfig {
    /// Base URL of Grafana, e.g. `https://grafana.example.com` (with its sub-path when
    /// Grafana is served under one).
    pub url: String,
    /// Secret in the operator namespace with `token` (a service-account token, sent as
    /// Bearer; preferred) or `username` and `password` (a Grafana server admin, which
    /// `organizations` needs: service accounts cannot manage organisations).
    pub credentials_secret: String,
    /// Uid of the shared data source whose allowed hosts list the tenants.
    pub data_source_uid: String,
    /// Id of the organisation the data source belongs to, sent as `X-Grafana-Org-Id`;
    /// absent uses the credentials' own organisation.
    #[serde(default)]
    pub data_source_org_id: Option<i64>,
    /// Key in the data source's `jsonData` holding the list of allowed hosts.
    #[serde(default = "default_allowed_hosts_key")]
    pub allowed_hosts_key: String,
    /// A tenant's entry: `<fqdn>` is its host name, `<url>` its URL (`https://<fqdn>`,
    /// or `http://` when the Ingress has no TLS), `<tenant>` its id. Must contain
    /// `<fqdn>` or `<url>`.
    #[serde(default = "default_host_format")]
    pub host_format: String,
    /// Whether every tenant gets a Grafana organisation named after its id.
    #[serde(default)]
    pub organizations: bool,
    /// Secret in the operator namespace with a CA certificate (`ca.crt`) to trust.
    #[serde(default)]
    pub ca_secret: Option<String>,
    /// Longest time one request to Grafana may take.
    #[serde(default = "default_grafana_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Attempts of one change of the data source when others change it at the same
    /// time (Grafana answers 409); after them the step is retried with the reconcile
    /// backoff.
    #[serde(default = "default_write_attempts")]
    pub write_attempts: u32,
}

fn default_allowed_hosts_key() -> String {
    "allowedHosts".into()
}
fn default_host_format() -> String {
    "https://<fqdn>".into()
}
fn default_grafana_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_write_attempts() -> u32 {
    5
}

impl GrafanaConfig {
    /// Semantic checks of the `grafana` section.
    fn check(&self, check: &mut impl FnMut(bool, &str, &str)) {
        check(is_http_url(&self.url), "grafana.url", "must be an http:// or https:// URL with a host");
        check(!url_has_userinfo(&self.url), "grafana.url", "must not carry credentials (user:password@); use grafana.credentialsSecret");
        check(is_dns_name_or_label(&self.credentials_secret), "grafana.credentialsSecret", "must be a Secret name");
        let uid_ok = !self.data_source_uid.is_empty()
            && self.data_source_uid.len() <= 40
            && self.data_source_uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        check(uid_ok, "grafana.dataSourceUid", "must be a Grafana uid: 1 to 40 letters, digits, '-' and '_'");
        check(self.data_source_org_id.is_none_or(|o| o > 0), "grafana.dataSourceOrgId", "must be a positive organisation id");
        check(!self.allowed_hosts_key.trim().is_empty(), "grafana.allowedHostsKey", "must not be empty");
        check(
            crate::provider::grafana::host_format_is_per_tenant(&self.host_format),
            "grafana.hostFormat",
            "must contain <fqdn> or <url>, or every tenant would get the same entry",
        );
        if let Some(ca) = &self.ca_secret {
            check(is_dns_name_or_label(ca), "grafana.caSecret", "must be a Secret name");
        }
        check(self.timeout > Duration::ZERO, "grafana.timeout", "must be longer than zero");
        check((1..=20).contains(&self.write_attempts), "grafana.writeAttempts", "must be between 1 and 20");
    }
}

/// How capability usage is measured. Agents are counted from the cluster on every
/// change; storage and the sources below are measured in the tenant's stores at
/// most once per `interval` per tenant.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UsageConfig {
    /// How often a tenant's stores are measured.
    #[serde(default = "default_usage_interval", deserialize_with = "duration")]
    pub interval: Duration,
    /// Fraction (0 to 1) of the interval added at random, so that measurements of
    /// many tenants spread out.
    #[serde(default = "default_jitter")]
    pub jitter: f64,
    /// Where a capability other than `agents` and `storage` is counted, by capability
    /// name (`widgets`, `channelAccounts`, `concurrentAudioVideo` ...). A capability
    /// without a source is not measured.
    #[serde(default)]
    pub sources: BTreeMap<String, UsageSource>,
}

impl Default for UsageConfig {
    fn default() -> Self {
        Self { interval: default_usage_interval(), jitter: default_jitter(), sources: BTreeMap::new() }
    }
}

fn default_usage_interval() -> Duration {
    Duration::from_secs(300)
}

/// Where one capability is counted: documents of a collection in the tenant's
/// database, or members of a set in the tenant's cache.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UsageSource {
    /// Collection in the tenant's database whose documents matching `filter` are
    /// counted.
    #[serde(default)]
    pub collection: Option<String>,
    /// MongoDB query document selecting the counted documents (all when empty).
    #[serde(default)]
    pub filter: serde_json::Map<String, serde_json::Value>,
    /// Key of a set in the tenant's cache, after the tenant's key prefix, whose
    /// members are counted (`SCARD`).
    #[serde(default)]
    pub cache_set: Option<String>,
}

/// Platform licence: caps on the sum over all tenants.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Licence {
    /// Agents over all tenants.
    #[serde(default)]
    pub agents: Option<i64>,
    /// AI agents over all tenants.
    #[serde(default)]
    pub ai_agents: Option<i64>,
    /// Workflow triggers over all tenants.
    #[serde(default)]
    pub workflow_triggers: Option<i64>,
}

/// The validating admission webhook: where it listens and where its serving
/// certificate comes from.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookConfig {
    /// Whether every replica serves the admission webhook.
    #[serde(default)]
    pub enabled: bool,
    /// Address the HTTPS server binds to.
    #[serde(default = "default_webhook_bind_address")]
    pub bind_address: std::net::IpAddr,
    /// Port of the HTTPS server; 0 picks a free port.
    #[serde(default = "default_webhook_port")]
    pub port: u16,
    /// The Service (in the operator namespace) the API server calls the webhook through;
    /// the serving certificate names `<serviceName>.<namespace>.svc`.
    #[serde(default = "default_webhook_service")]
    pub service_name: String,
    /// The ValidatingWebhookConfiguration whose `caBundle` fields the operator fills in
    /// `SelfSigned` mode.
    #[serde(default = "default_webhook_configuration")]
    pub configuration_name: String,
    /// Where the serving certificate comes from.
    #[serde(default)]
    pub certificate: WebhookCertificateConfig,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            bind_address: default_webhook_bind_address(),
            port: default_webhook_port(),
            service_name: default_webhook_service(),
            configuration_name: default_webhook_configuration(),
            certificate: WebhookCertificateConfig::default(),
        }
    }
}

fn default_webhook_bind_address() -> std::net::IpAddr {
    std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
}
fn default_webhook_port() -> u16 {
    8443
}
fn default_webhook_service() -> String {
    "cx-operator-webhook".into()
}
fn default_webhook_configuration() -> String {
    "cx-operator".into()
}

/// Where the webhook's serving certificate comes from.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookCertificateConfig {
    /// `SelfSigned` (the operator issues and renews it), `CertManager` or `Secret`
    /// (read from `secretName`, kept current by someone else).
    #[serde(default)]
    pub mode: CertificateMode,
    /// Secret in the operator namespace with `tls.crt`, `tls.key` and `ca.crt`.
    #[serde(default = "default_webhook_secret")]
    pub secret_name: String,
    /// `SelfSigned`: renew the serving certificate this long before it expires.
    #[serde(default = "default_renew_before", deserialize_with = "long_duration")]
    pub renew_before: Duration,
    /// `SelfSigned`: how long a serving certificate is valid.
    #[serde(default = "default_validity", deserialize_with = "long_duration")]
    pub validity: Duration,
    /// `SelfSigned`: how long the operator's own CA is valid; it is renewed `renewBefore`
    /// ahead of its expiry like the serving certificate.
    #[serde(default = "default_ca_validity", deserialize_with = "long_duration")]
    pub ca_validity: Duration,
}

impl Default for WebhookCertificateConfig {
    fn default() -> Self {
        Self {
            mode: CertificateMode::default(),
            secret_name: default_webhook_secret(),
            renew_before: default_renew_before(),
            validity: default_validity(),
            ca_validity: default_ca_validity(),
        }
    }
}

/// Where the webhook's serving certificate comes from.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum CertificateMode {
    /// The operator creates a CA and a serving certificate, renews them and injects the
    /// CA into the ValidatingWebhookConfiguration.
    #[default]
    SelfSigned,
    /// cert-manager issues the certificate into the Secret and injects the CA.
    CertManager,
    /// Someone else keeps the Secret and the `caBundle` current.
    Secret,
}

fn default_webhook_secret() -> String {
    "cx-operator-webhook-tls".into()
}
fn default_renew_before() -> Duration {
    Duration::from_secs(30 * 86_400)
}
fn default_validity() -> Duration {
    Duration::from_secs(365 * 86_400)
}
fn default_ca_validity() -> Duration {
    Duration::from_secs(10 * 365 * 86_400)
}

/// One problem in a configuration file, with the path of the field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the field, e.g. `ingress.paths[0].service.port`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", if self.path.is_empty() { "<root>" } else { &self.path }, self.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file has problems; all of them are listed.
    #[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Config::parse(&text)
    }

    /// Parses and validates configuration text, reporting every problem found.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)
            .map_err(|e| ConfigError::Invalid(vec![Problem { path: String::new(), message: format!("not valid YAML: {e}") }]))?;
        let mut problems = section_problems(&value);
        if !problems.is_empty() {
            return Err(ConfigError::Invalid(problems));
        }
        let config: Config = deserialize_at(value, "").map_err(|p| ConfigError::Invalid(vec![p]))?;
        problems.extend(config.validate());
        if problems.is_empty() { Ok(config) } else { Err(ConfigError::Invalid(problems)) }
    }

    /// Semantic checks beyond the shape of the file.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, path: &str, message: &str| {
            if !ok {
                problems.push(Problem { path: path.into(), message: message.into() });
            }
        };
        check(is_dns_name(&self.root_domain), "rootDomain", "must be a DNS name such as cx.example.com");
        check(is_dns_label(&self.platform_namespace), "platformNamespace", "must be a DNS label (a namespace name)");
        check(
            self.namespace_prefix.len() <= 22 && is_dns_label(&format!("{}x", self.namespace_prefix)),
            "namespacePrefix",
            "must be at most 22 characters of lowercase letters, digits and '-', starting with a letter, so that prefix + tenant id (40) stays a legal namespace name",
        );
        for (i, p) in self.ingress.paths.iter().enumerate() {
            check(p.path.starts_with('/'), &format!("ingress.paths[{i}].path"), "must start with '/'");
            check(is_dns_label(&p.service.name), &format!("ingress.paths[{i}].service.name"), "must be a Service name (DNS label)");
            check((1..=65535).contains(&p.service.port), &format!("ingress.paths[{i}].service.port"), "must be between 1 and 65535");
        }
        check(!self.ingress.paths.is_empty(), "ingress.paths", "must name at least one path");
        check(!self.ingress.tls.secret_name.is_empty(), "ingress.tls.secretName", "must not be empty");
        if let Some(issuer) = &self.ingress.tls.issuer {
            check(issuer.kind == "ClusterIssuer" || issuer.kind == "Issuer", "ingress.tls.issuer.kind", "must be ClusterIssuer or Issuer");
        }
        let r = &self.reconcile;
        check((0.0..=1.0).contains(&r.jitter), "reconcile.jitter", "must be between 0 and 1");
        check(r.concurrency > 0, "reconcile.concurrency", "must be at least 1");
        check(r.resync_interval >= Duration::from_secs(10), "reconcile.resyncInterval", "must be at least 10s");
        check(r.min_backoff <= r.max_backoff, "reconcile.minBackoff", "must not exceed reconcile.maxBackoff");
        check(!r.shutdown_timeout.is_zero(), "reconcile.shutdownTimeout", "must be longer than 0s");
        check(r.stall_timeout >= Duration::from_secs(10), "reconcile.stallTimeout", "must be at least 10s");
        let le = &self.leader_election;
        check(le.renew_grace < le.lease_duration, "leaderElection.renewGrace", "must be shorter than leaderElection.leaseDuration");
        check(is_dns_label(&le.lease_name), "leaderElection.leaseName", "must be a DNS label");
        if let Some(selector) = &self.sharding.tenant_selector {
            check(!selector.trim().is_empty(), "sharding.tenantSelector", "must not be empty when set");
        }
        if let Some(cache) = &self.cache {
            check(!cache.nodes.is_empty(), "cache.nodes", "must name at least one node");
            for (i, node) in cache.nodes.iter().enumerate() {
                let ok = node.starts_with("redis://") || node.starts_with("rediss://");
                check(ok, &format!("cache.nodes[{i}]"), "must be a redis:// or rediss:// URL");
            }
            check(cache.key_prefix.contains("{tenant}"), "cache.keyPrefix", "must contain {tenant}, or tenants would share keys");
            check(cache.acl_rules.iter().any(|r| r.contains("{prefix}")), "cache.aclRules", "must limit keys to {prefix}");
            check(cache.purge_batch > 0, "cache.purgeBatch", "must be at least 1");
        }
        if let Some(identity) = &self.identity {
            let ok = identity.url.starts_with("https://") || identity.url.starts_with("http://");
            check(ok, "identity.url", "must be an http:// or https:// URL");
            check(identity.timeout > Duration::ZERO, "identity.timeout", "must be longer than zero");
            check(
                !identity.realm.smtp.contains_key("password"),
                "identity.realm.smtp.password",
                "must come from identity.realm.smtpPasswordSecret, never from this file",
            );
            check(identity.realm.lockout_after_failures != Some(0), "identity.realm.lockoutAfterFailures", "must be at least 1");
            check(
                identity.realm.roles.as_ref().is_none_or(|roles| roles.iter().any(|r| r == "admin")),
                "identity.realm.roles",
                "must include admin, the role of every tenant administrator",
            );
        }
        self.check_usage(&mut check);
        if let Some(notifications) = &self.notifications {
            notifications.check(&mut check);
        }
        if let Some(db) = &self.database {
            check(
                db.database_name.contains("{tenant}"),
                "database.databaseName",
                "must contain {tenant}, or tenants would share a database",
            );
            check(!db.roles.is_empty(), "database.roles", "must name at least one role");
        }
        if let Some(grafana) = &self.grafana {
            grafana.check(&mut check);
        }
        if let Some(l) = &self.licence {
            let defaults = &self.defaults.quota;
            for (name, v, default, field) in [
                ("agents", l.agents, defaults.agents, "agents"),
                ("aiAgents", l.ai_agents, defaults.ai_agents, "aiAgents"),
                ("workflowTriggers", l.workflow_triggers, defaults.extra_workflow_triggers, "extraWorkflowTriggers"),
            ] {
                check(v.is_none_or(|n| n >= 0), &format!("licence.{name}"), "must not be negative");
                // A tenant without a limit counts as unlimited against the licence, so the
                // admission webhook would refuse a default quota that sets none.
                check(
                    v.is_none() || default.is_some(),
                    &format!("defaults.quota.{field}"),
                    &format!("must be set while licence.{name} is set: every tenant needs a limit for a licensed capability"),
                );
            }
        }
        problems.extend(self.webhook.problems());
        problems
    }

    /// The usage section: a known capability per source, one place to count it, and
    /// the backend that place lives in.
    fn check_usage(&self, check: &mut impl FnMut(bool, &str, &str)) {
        let usage = &self.usage;
        check(usage.interval >= Duration::from_secs(10), "usage.interval", "must be at least 10s");
        check((0.0..=1.0).contains(&usage.jitter), "usage.jitter", "must be between 0 and 1");
        for (name, source) in &usage.sources {
            let path = format!("usage.sources.{name}");
            let counted = Capability::ALL.iter().any(|c| c.name() == name && !matches!(c, Capability::Agents | Capability::Storage));
            check(counted, &path, "must be a capability other than agents and storage (those are always measured)");
            match (&source.collection, &source.cache_set) {
                (Some(collection), None) => {
                    check(!collection.is_empty() && !collection.contains('$'), &format!("{path}.collection"), "must be a collection name");
                    check(self.database.is_some(), &format!("{path}.collection"), "needs the database backend to be configured");
                }
                (None, Some(key)) => {
                    check(!key.is_empty(), &format!("{path}.cacheSet"), "must not be empty");
                    check(source.filter.is_empty(), &format!("{path}.filter"), "applies to collections only");
                    check(self.cache.is_some(), &format!("{path}.cacheSet"), "needs the cache backend to be configured");
                }
                _ => check(false, &path, "must set exactly one of collection and cacheSet"),
            }
        }
    }

    /// A configuration for offline use (`cx-operator plan` without `--config`).
    pub fn example() -> Config {
        Config::parse("rootDomain: cx.example.com\nplatformNamespace: cx-platform\n").expect("the built-in example configuration is valid")
    }
}

/// Deserializes each top-level section on its own, so one run reports a problem in
/// every broken section rather than only the first.
fn section_problems(value: &serde_yaml_ng::Value) -> Vec<Problem> {
    let Some(map) = value.as_mapping() else {
        return vec![Problem { path: String::new(), message: "must be a YAML mapping".into() }];
    };
    let mut problems = Vec::new();
    for required in ["rootDomain", "platformNamespace"] {
        if !map.contains_key(required) {
            problems.push(Problem { path: required.into(), message: "is required".into() });
        }
    }
    for (key, section) in map {
        let Some(key) = key.as_str() else {
            problems.push(Problem { path: format!("{key:?}"), message: "keys must be strings".into() });
            continue;
        };
        let result = match key {
            "rootDomain" | "namespacePrefix" | "platformNamespace" => check::<String>(section, key),
            "ingress" => check::<IngressConfig>(section, key),
            "defaults" => check::<Defaults>(section, key),
            "reconcile" => check::<ReconcileConfig>(section, key),
            "leaderElection" => check::<LeaderElectionConfig>(section, key),
            "sharding" => check::<ShardingConfig>(section, key),
            "grafana" => check::<Option<GrafanaConfig>>(section, key),
            "notifications" => check::<Option<NotificationsConfig>>(section, key),
            "identity" => check::<Option<IdentityConfig>>(section, key),
            "cache" => check::<Option<CacheConfig>>(section, key),
            "database" => check::<Option<DatabaseConfig>>(section, key),
            "operatorNamespace" => check::<Option<String>>(section, key),
            "licence" => check::<Option<Licence>>(section, key),
            "usage" => check::<UsageConfig>(section, key),
            "webhook" => check::<WebhookConfig>(section, key),
            other => Err(Problem { path: other.into(), message: "unknown field".into() }),
        };
        problems.extend(result.err());
    }
    problems
}

fn check<T: DeserializeOwned>(value: &serde_yaml_ng::Value, path: &str) -> Result<(), Problem> {
    deserialize_at::<T>(value.clone(), path).map(drop)
}

fn deserialize_at<T: DeserializeOwned>(value: serde_yaml_ng::Value, prefix: &str) -> Result<T, Problem> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let path = match (prefix.is_empty(), inner == ".") {
            (true, _) => inner,
            (false, true) => prefix.to_string(),
            (false, false) => format!("{prefix}.{inner}"),
        };
        Problem { path, message: e.into_inner().to_string() }
    })
}

/// Parses durations such as `30s`, `10m`, `1h30m` or `250ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d: jiff::SignedDuration = text.trim().parse().map_err(|e| format!("invalid duration {text:?}: {e}"))?;
    Duration::try_from(d).map_err(|_| format!("duration {text:?} must not be negative"))
}

/// Parses durations that may be counted in days as well: `30d`, or any form
/// [`parse_duration`] accepts.
pub fn parse_long_duration(text: &str) -> Result<Duration, String> {
    match text.trim().strip_suffix('d').map(str::parse::<u64>) {
        Some(Ok(days)) => Ok(Duration::from_secs(days.saturating_mul(86_400))),
        _ => parse_duration(text),
    }
}

fn long_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_long_duration(&text).map_err(serde::de::Error::custom)
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

impl WebhookConfig {
    /// Semantic checks of the `webhook` section.
    fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, path: &str, message: &str| {
            if !ok {
                problems.push(Problem { path: format!("webhook.{path}"), message: message.into() });
            }
        };
        check(is_dns_label(&self.service_name), "serviceName", "must be a Service name (DNS label)");
        check(is_dns_name_or_label(&self.configuration_name), "configurationName", "must be a Kubernetes object name");
        let c = &self.certificate;
        check(is_dns_name_or_label(&c.secret_name), "certificate.secretName", "must be a Secret name");
        if c.mode == CertificateMode::SelfSigned {
            check(c.validity >= Duration::from_secs(2), "certificate.validity", "must be at least 2s");
            check(c.renew_before < c.validity, "certificate.renewBefore", "must be shorter than webhook.certificate.validity");
            check(c.validity <= c.ca_validity, "certificate.caValidity", "must not be shorter than webhook.certificate.validity");
        }
        problems
    }
}

fn is_dns_name_or_label(s: &str) -> bool {
    is_dns_label(s) || is_dns_name(s)
}

/// Whether `s` is an RFC 1123 DNS label.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` is a DNS name of at least two labels.
pub fn is_dns_name(s: &str) -> bool {
    s.len() <= 253 && s.contains('.') && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        match Config::parse(text) {
            Ok(_) => vec![],
            Err(ConfigError::Invalid(p)) => p.iter().map(ToString::to_string).collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = Config::parse("rootDomain: cx.example.com\nplatformNamespace: cx-platform\n").unwrap();
        assert_eq!(c.namespace_prefix, "tenant-");
        assert_eq!(c.reconcile.resync_interval, Duration::from_secs(600));
        assert_eq!(c.ingress.paths[0].service.name, "web");
        assert!(c.identity.is_none() && c.database.is_none());
    }

    #[test]
    fn usage_sources_are_checked_with_their_paths() {
        let p = problems(
            "rootDomain: cx.example.com\nplatformNamespace: p\nusage:\n  interval: 1s\n  sources:\n    \
             agents: {collection: agents}\n    widgets: {collection: widgets}\n    workflows: {}\n    \
             concurrentAudioVideo: {cacheSet: 'av:active', filter: {a: 1}}\n",
        );
        for path in [
            "usage.interval:",
            "usage.sources.agents:",
            "usage.sources.widgets.collection:",
            "usage.sources.workflows:",
            "usage.sources.concurrentAudioVideo.filter:",
            "usage.sources.concurrentAudioVideo.cacheSet:",
        ] {
            assert!(p.iter().any(|m| m.starts_with(path)), "{path} missing in {p:?}");
        }
        let ok = Config::parse(
            "rootDomain: cx.example.com\nplatformNamespace: p\ndatabase: {uriSecret: m}\n\
             usage: {sources: {widgets: {collection: widgets, filter: {deleted: {$ne: true}}}}}\n",
        )
        .unwrap();
        assert_eq!(ok.usage.sources["widgets"].collection.as_deref(), Some("widgets"));
        assert_eq!(ok.usage.interval, Duration::from_secs(300));
    }

    #[test]
    fn every_broken_section_is_reported_with_its_path() {
        let p = problems(
            "rootDomain: cx.example.com\nplatformNamespace: p\ningress:\n  paths:\n  - path: /\n    service: {name: web, port: x}\nreconcile:\n  resyncInterval: soon\nbogus: 1\n",
        );
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p.iter().any(|m| m.starts_with("ingress.paths[0].service.port:")), "{p:?}");
        assert!(p.iter().any(|m| m.starts_with("reconcile.resyncInterval:") && m.contains("invalid duration")), "{p:?}");
        assert!(p.iter().any(|m| m == "bogus: unknown field"), "{p:?}");
    }

    #[test]
    fn semantic_problems_are_all_reported() {
        let p = problems(
            "rootDomain: localhost\nplatformNamespace: Platform\nnamespacePrefix: '-x'\nreconcile: {jitter: 2, concurrency: 0}\nidentity: {url: keycloak:8080, credentialsSecret: k, realm: {roles: [agent]}}\n",
        );
        for path in [
            "rootDomain:",
            "platformNamespace:",
            "namespacePrefix:",
            "reconcile.jitter:",
            "reconcile.concurrency:",
            "identity.url:",
            "identity.realm.roles:",
        ] {
            assert!(p.iter().any(|m| m.starts_with(path)), "missing {path} in {p:?}");
        }
    }

    #[test]
    fn grafana_gets_documented_defaults() {
        let c = Config::parse(
            "rootDomain: cx.example.com\nplatformNamespace: p\ngrafana: {url: 'https://grafana:3000', credentialsSecret: g, dataSourceUid: tenants}\n",
        )
        .unwrap();
        let g = c.grafana.unwrap();
        assert_eq!((g.host_format.as_str(), g.allowed_hosts_key.as_str()), ("https://<fqdn>", "allowedHosts"));
        assert_eq!((g.timeout, g.write_attempts, g.organizations), (Duration::from_secs(10), 5, false));
        assert!(g.ca_secret.is_none() && g.data_source_org_id.is_none());
    }

    #[test]
    fn grafana_is_checked_with_its_paths() {
        let p = problems(
            "rootDomain: cx.example.com\nplatformNamespace: p\ngrafana: {url: 'grafana:3000', credentialsSecret: G_, dataSourceUid: 'a b', \
             dataSourceOrgId: 0, allowedHostsKey: ' ', hostFormat: 'https://<tenant>.x', caSecret: CA, timeout: 0s, writeAttempts: 0}\n",
        );
        for path in [
            "grafana.url:",
            "grafana.credentialsSecret:",
            "grafana.dataSourceUid:",
            "grafana.dataSourceOrgId:",
            "grafana.allowedHostsKey:",
            "grafana.hostFormat:",
            "grafana.caSecret:",
            "grafana.timeout:",
            "grafana.writeAttempts:",
        ] {
            assert!(p.iter().any(|m| m.starts_with(path)), "missing {path} in {p:?}");
        }
        let p = problems(
            "rootDomain: cx.example.com\nplatformNamespace: p\ngrafana: {url: 'https://admin:s3cret@g', credentialsSecret: g, dataSourceUid: d}\n",
        );
        assert_eq!(p, ["grafana.url: must not carry credentials (user:password@); use grafana.credentialsSecret"]);
        let p = problems("rootDomain: cx.example.com\nplatformNamespace: p\ngrafana: {url: 'https://g', credentialsSecret: g}\n");
        assert!(p.iter().any(|m| m.starts_with("grafana") && m.contains("dataSourceUid")), "{p:?}");
        let p = problems(
            "rootDomain: cx.example.com\nplatformNamespace: p\ngrafana: {url: 'https://g', credentialsSecret: g, dataSourceUid: d, token: x}\n",
        );
        assert!(p.iter().any(|m| m.starts_with("grafana") && m.contains("unknown field")), "a token never goes into the file: {p:?}");
    }

    #[test]
    fn data_backends_are_checked() {
        let p = problems(
            "rootDomain: cx.example.com\nplatformNamespace: p\ncache: {nodes: ['http://r'], keyPrefix: 'shared:'}\ndatabase: {uriSecret: m, databaseName: cx}\n",
        );
        for path in ["cache.nodes[0]:", "cache.keyPrefix:", "database.databaseName:"] {
            assert!(p.iter().any(|m| m.starts_with(path)), "missing {path} in {p:?}");
        }
        let c = Config::parse(
            "rootDomain: cx.example.com\nplatformNamespace: p\ncache: {nodes: ['redis://r:6379']}\ndatabase: {uriSecret: m}\n",
        )
        .unwrap();
        assert_eq!(c.cache.unwrap().acl_rules[0], "~{prefix}*");
        assert_eq!(c.database.unwrap().roles, ["readWrite", "dbAdmin"]);
    }

    #[test]
    fn missing_required_fields_are_named() {
        let p = problems("namespacePrefix: t-\n");
        assert!(p.contains(&"rootDomain: is required".to_string()), "{p:?}");
        assert!(p.contains(&"platformNamespace: is required".to_string()), "{p:?}");
    }

    #[test]
    fn webhook_section_has_defaults_and_is_checked() {
        let c = Config::parse("rootDomain: cx.example.com\nplatformNamespace: p\n").unwrap();
        assert!(!c.webhook.enabled);
        assert_eq!(c.webhook.port, 8443);
        assert_eq!(c.webhook.certificate.mode, CertificateMode::SelfSigned);
        assert_eq!(c.webhook.certificate.renew_before, Duration::from_secs(30 * 86_400));
        let p = problems(
            "rootDomain: cx.example.com\nplatformNamespace: p\nwebhook: {serviceName: Web_hook, certificate: {renewBefore: 400d, validity: 365d}}\n",
        );
        for path in ["webhook.serviceName:", "webhook.certificate.renewBefore:"] {
            assert!(p.iter().any(|m| m.starts_with(path)), "missing {path} in {p:?}");
        }
        let p = problems("rootDomain: cx.example.com\nplatformNamespace: p\nwebhook: {certificate: {mode: Vault}}\n");
        assert!(p.iter().any(|m| m.starts_with("webhook.certificate.mode:")), "{p:?}");
    }

    #[test]
    fn a_licence_cap_needs_a_default_limit() {
        let p = problems("rootDomain: cx.example.com\nplatformNamespace: p\nlicence: {agents: 10, workflowTriggers: 5000}\n");
        assert_eq!(
            p,
            [
                "defaults.quota.agents: must be set while licence.agents is set: every tenant needs a limit for a licensed capability",
                "defaults.quota.extraWorkflowTriggers: must be set while licence.workflowTriggers is set: every tenant needs a limit for a licensed capability",
            ]
        );
        assert!(
            problems("rootDomain: cx.example.com\nplatformNamespace: p\nlicence: {agents: 10}\ndefaults: {quota: {agents: 2}}\n")
                .is_empty()
        );
    }

    #[test]
    fn notifications_get_documented_defaults() {
        let c = Config::parse(
            "rootDomain: cx.example.com\nplatformNamespace: p\nnotifications:\n  webhooks:\n  \
             - {name: billing, url: 'https://billing.example.com/hooks', signingKey: {secretName: webhook-keys}}\n",
        )
        .unwrap();
        let n = c.notifications.unwrap();
        assert_eq!(n.source, "/cx-operator");
        assert_eq!((n.timeout, n.min_backoff, n.max_backoff), (Duration::from_secs(10), Duration::from_secs(5), Duration::from_secs(300)));
        assert_eq!((n.give_up_after, n.deletion_give_up_after), (Duration::from_secs(86_400), Duration::from_secs(600)));
        assert_eq!(n.webhooks[0].signing_key.key, "signingKey");
        assert!(n.webhooks[0].ca_secret.is_none());
    }

    #[test]
    fn notifications_are_checked_with_their_paths() {
        let p = problems(
            "rootDomain: cx.example.com\nplatformNamespace: p\nnotifications:\n  source: ''\n  minBackoff: 1m\n  maxBackoff: 10s\n  \
             deletionGiveUpAfter: 0s\n  webhooks:\n  \
             - {name: Billing, url: 'ftp://billing', signingKey: {secretName: k, key: 'a/b'}}\n  \
             - {name: crm, url: 'https://user:secret@crm.example.com/', signingKey: {secretName: k}, caSecret: CA}\n  \
             - {name: crm, url: 'https://crm2.example.com/', signingKey: {secretName: k}}\n",
        );
        for path in [
            "notifications.webhooks[0].name:",
            "notifications.webhooks[0].url:",
            "notifications.webhooks[0].signingKey.key:",
            "notifications.webhooks[1].url: must not carry credentials",
            "notifications.webhooks[1].caSecret:",
            "notifications.webhooks[2].name: must be unique",
            "notifications.source:",
            "notifications.minBackoff:",
            "notifications.deletionGiveUpAfter:",
        ] {
            assert!(p.iter().any(|m| m.starts_with(path)), "missing {path} in {p:?}");
        }
        assert!(p.iter().all(|m| !m.contains("secret@")), "a URL with credentials is never repeated: {p:?}");
        let p = problems("rootDomain: cx.example.com\nplatformNamespace: p\nnotifications: {webhooks: []}\n");
        assert_eq!(p, ["notifications.webhooks: must name at least one webhook"]);
        let p = problems("rootDomain: cx.example.com\nplatformNamespace: p\nnotifications: {webhooks: [{name: a, url: 'https://a'}]}\n");
        assert!(p.iter().any(|m| m.starts_with("notifications.webhooks[0]") && m.contains("signingKey")), "{p:?}");
    }

    #[test]
    fn durations_parse_in_friendly_units() {
        assert_eq!(parse_long_duration("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(parse_long_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("-5s").is_err());
    }
}
