//! The Tenant step "Observability": the tenant URL in the `jsonData.allowedHosts` of
//! the platform's shared Grafana data source, and optionally a Grafana organisation
//! per tenant.
//!
//! The data source is shared by every tenant and by people, so it is changed by
//! read-modify-write with Grafana's optimistic concurrency: the data source is read
//! by uid (`GET /api/datasources/uid/{uid}`), the list is changed in memory, and the
//! whole body goes back with the `version` that was read
//! (`PUT /api/datasources/uid/{uid}`). Grafana refuses a stale version with 409; the
//! provider then reads again and retries, a bounded number of times with jittered
//! backoff. Within one operator the writes are serialised, so tenants reconciled at
//! once never conflict with each other; 409s come only from other writers (people,
//! other operator shards). Entries of others are never removed or duplicated.
//!
//! What the tenant got is recorded in `status.grafana` (the host written, the
//! organisation id), so a changed FQDN (or host format) removes exactly the old
//! host, also after an operator restart. `enabled: false` keeps the host and the
//! organisation: dashboards of a disabled tenant's data keep working for the
//! platform, and nothing is lost. Deletion with `deletionPolicy: Delete` removes the
//! host and the organisation the status records.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use kube::ResourceExt;
use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;

use super::{PlannedObject, ProviderError, ProviderKind, Provisioned, Provisioner, TenantRequest, check_tenant_id, http, leave_foreign};
use crate::{
    api::{
        Tenant,
        conditions::{Cond, reasons},
        tenant::GrafanaStatus,
    },
    controller::tenant_desired::DesiredTenant,
};

/// The configuration key of this backend, named in errors.
const BACKEND: &str = "grafana";

/// The placeholder of the tenant's host name in a host format.
pub const FQDN_PLACEHOLDER: &str = "<fqdn>";
/// The placeholder of the tenant's URL (`https://<fqdn>`, or `http://` without TLS).
pub const URL_PLACEHOLDER: &str = "<url>";
/// The placeholder of the tenant id.
pub const TENANT_PLACEHOLDER: &str = "<tenant>";

/// The longest Grafana response text quoted in an error; longer bodies are pages of a
/// proxy, not Grafana's own message.
const MAX_QUOTED_TEXT: usize = 200;

/// First delay after a conflicting write; doubles per attempt, with full jitter.
const CONFLICT_BACKOFF: Duration = Duration::from_millis(50);
/// Longest delay between two attempts of one write.
const MAX_CONFLICT_BACKOFF: Duration = Duration::from_secs(2);

/// How the operator authenticates to Grafana. Never printed.
#[derive(Clone)]
pub enum GrafanaAuth {
    /// A service-account token, sent as `Authorization: Bearer`.
    Token(String),
    /// A user's name and password (HTTP basic): a Grafana server admin, which
    /// organisations need (service accounts cannot be server admins).
    Basic {
        /// The user.
        username: String,
        /// The password.
        password: String,
    },
}

impl std::fmt::Debug for GrafanaAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GrafanaAuth::Token(_) => "Token(<redacted>)",
            GrafanaAuth::Basic { .. } => "Basic(<redacted>)",
        })
    }
}

/// Everything the provider needs, credentials resolved.
#[derive(Clone, Debug)]
pub struct GrafanaSettings {
    /// Base URL of Grafana, e.g. `https://grafana.example.com` (a sub-path is kept).
    pub url: String,
    /// The credentials.
    pub auth: GrafanaAuth,
    /// Where the credentials came from (`Secret ns/name`), named in errors instead of
    /// the credentials themselves.
    pub credentials_source: String,
    /// Uid of the shared data source.
    pub data_source_uid: String,
    /// Organisation the data source lives in (`X-Grafana-Org-Id`); None uses the
    /// credentials' current organisation.
    pub data_source_org_id: Option<i64>,
    /// The `jsonData` key holding the list of allowed hosts.
    pub allowed_hosts_key: String,
    /// The entry of a tenant, with [`FQDN_PLACEHOLDER`], [`URL_PLACEHOLDER`] and
    /// [`TENANT_PLACEHOLDER`].
    pub host_format: String,
    /// Whether every tenant gets a Grafana organisation named after it.
    pub organizations: bool,
    /// PEM CA bundle to trust instead of the platform's trust store.
    pub ca_pem: Option<String>,
    /// Longest time one request may take.
    pub timeout: Duration,
    /// Attempts of one read-modify-write before a conflict is reported as
    /// [`ProviderError::Unavailable`].
    pub write_attempts: u32,
}

/// The entry of a tenant in the allowed hosts: `format` with its placeholders filled.
pub fn format_host(format: &str, fqdn: &str, url: &str, tenant: &str) -> String {
    format.replace(FQDN_PLACEHOLDER, fqdn).replace(URL_PLACEHOLDER, url).replace(TENANT_PLACEHOLDER, tenant)
}

/// Whether a host format gives every tenant its own entry.
pub fn host_format_is_per_tenant(format: &str) -> bool {
    format.contains(FQDN_PLACEHOLDER) || format.contains(URL_PLACEHOLDER)
}

/// The allowed-hosts list after adding `add` and removing `remove`, or None when it
/// is already so (no write needed). Entries of others (anything not named here,
/// strings or not) keep their place and count; `add` ends up exactly once, appended
/// when missing; every `remove` entry (other than `add`) is gone.
pub fn merge_hosts(current: &[Value], add: Option<&str>, remove: &[String]) -> Option<Vec<Value>> {
    let removed = |v: &Value| v.as_str().is_some_and(|s| remove.iter().any(|r| r == s) && Some(s) != add);
    let mut seen_add = false;
    let mut next = Vec::with_capacity(current.len() + 1);
    for value in current {
        if removed(value) {
            continue;
        }
        if add.is_some() && value.as_str() == add {
            if seen_add {
                continue;
            }
            seen_add = true;
        }
        next.push(value.clone());
    }
    if let Some(host) = add.filter(|_| !seen_add) {
        next.push(Value::String(host.to_string()));
    }
    (next != current).then_some(next)
}

/// The allowed-hosts list of a data source body (empty when absent or not a list).
fn allowed_hosts(data_source: &Map<String, Value>, key: &str) -> Vec<Value> {
    data_source.get("jsonData").and_then(|j| j.get(key)).and_then(Value::as_array).cloned().unwrap_or_default()
}

/// The data source body with a new allowed-hosts list, `jsonData` created if needed.
fn with_allowed_hosts(mut data_source: Map<String, Value>, key: &str, hosts: Vec<Value>) -> Map<String, Value> {
    let json_data = data_source.entry("jsonData").or_insert_with(|| json!({}));
    if !json_data.is_object() {
        *json_data = json!({});
    }
    if let Some(object) = json_data.as_object_mut() {
        object.insert(key.to_string(), Value::Array(hosts));
    }
    data_source
}

/// Grafana's own words for a failure: its `{"message": ...}`, else the start of the
/// body.
fn error_text(body: &str) -> String {
    let from_json = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
        .filter(|m| !m.trim().is_empty());
    from_json.unwrap_or_else(|| {
        let text = body.trim();
        match text.char_indices().nth(MAX_QUOTED_TEXT) {
            Some((cut, _)) => format!("{}...", &text[..cut]),
            None if text.is_empty() => "no message".into(),
            None => text.to_string(),
        }
    })
}

/// Whether a failed data source update lost a race: Grafana answers 409 since 8.x,
/// and 500 with "Reload new version" before.
fn is_version_conflict(status: StatusCode, body: &str) -> bool {
    status == StatusCode::CONFLICT || (status == StatusCode::INTERNAL_SERVER_ERROR && body.contains("Reload new version"))
}

/// A delay with full jitter for attempt `attempt` (1-based): uniform in
/// `[0, min(max, base * 2^(attempt-1))]`, so writers that collided spread out.
fn jittered_backoff(attempt: u32) -> Duration {
    let cap = CONFLICT_BACKOFF.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(MAX_CONFLICT_BACKOFF);
    cap.mul_f64(rand::rng().random_range(0.0..=1.0))
}

fn unavailable(message: String) -> ProviderError {
    ProviderError::Unavailable { backend: BACKEND, message }
}

fn refused(message: String) -> ProviderError {
    ProviderError::Refused { backend: BACKEND, message }
}

fn conflict(message: String) -> ProviderError {
    ProviderError::Conflict { backend: BACKEND, message }
}

/// An answer of Grafana: its status and body text.
struct Answer {
    status: StatusCode,
    body: String,
}

impl Answer {
    fn json(&self, what: &str) -> Result<Value, ProviderError> {
        serde_json::from_str(&self.body).map_err(|e| unavailable(format!("{what}: unexpected response body ({e})")))
    }
}

/// The HTTP side: base URL, credentials and the classification of failures.
struct Client {
    http: reqwest::Client,
    base: String,
    auth: GrafanaAuth,
    credentials_source: String,
}

impl Client {
    async fn send(
        &self,
        method: Method,
        path: &str,
        org_id: Option<i64>,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Answer, ProviderError> {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).header(reqwest::header::ACCEPT, "application/json");
        request = match &self.auth {
            GrafanaAuth::Token(token) => request.bearer_auth(token),
            GrafanaAuth::Basic { username, password } => request.basic_auth(username, Some(password)),
        };
        if let Some(org) = org_id {
            request = request.header("X-Grafana-Org-Id", org.to_string());
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| unavailable(format!("{what}: {}", http::describe_transport(&e))))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| unavailable(format!("{what}: {}", http::describe_transport(&e))))?;
        Ok(Answer { status, body })
    }

    /// The error for an answer the caller did not expect. 401 and 403 name where the
    /// credentials come from, never the credentials.
    fn failure(&self, answer: &Answer, what: &str) -> ProviderError {
        let status = answer.status.as_u16();
        let text = error_text(&answer.body);
        match status {
            401 => refused(format!(
                "{what}: HTTP 401: Grafana did not accept the credentials from {} ({text}); replace them and restart the operator",
                self.credentials_source
            )),
            403 => refused(format!("{what}: HTTP 403: the credentials from {} may not do this: {text}", self.credentials_source)),
            408 | 429 | 500..=599 => unavailable(format!("{what}: HTTP {status}: {text}")),
            _ => refused(format!("{what}: HTTP {status}: {text}")),
        }
    }
}

/// Keeps one tenant's URL in the Grafana data source's allowed hosts (and its
/// organisation).
pub struct GrafanaProvisioner {
    client: Client,
    settings: GrafanaSettings,
    /// Serialises this operator's writes to the shared data source, so that tenants
    /// reconciled at once queue up instead of failing on each other's versions.
    write_lock: Arc<Mutex<()>>,
}

impl std::fmt::Debug for GrafanaProvisioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrafanaProvisioner")
            .field("url", &self.settings.url)
            .field("data_source_uid", &self.settings.data_source_uid)
            .finish_non_exhaustive()
    }
}

impl GrafanaProvisioner {
    /// Validates the settings and prepares the HTTP client; Grafana is contacted on
    /// first use only.
    pub fn new(settings: GrafanaSettings) -> Result<Self, ProviderError> {
        let base = settings.url.trim_end_matches('/').to_string();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(refused(format!("url {:?} must be an http:// or https:// URL", settings.url)));
        }
        if settings.data_source_uid.is_empty() || settings.allowed_hosts_key.is_empty() {
            return Err(refused("the data source uid and the allowed-hosts key must not be empty".into()));
        }
        if !host_format_is_per_tenant(&settings.host_format) {
            return Err(refused(format!("hostFormat {:?} must contain {FQDN_PLACEHOLDER} or {URL_PLACEHOLDER}", settings.host_format)));
        }
        if settings.timeout.is_zero() || settings.write_attempts == 0 {
            return Err(refused("the timeout and the write attempts must be above zero".into()));
        }
        let http = http::client(BACKEND, "Grafana", settings.ca_pem.as_deref(), settings.timeout)?;
        let client = Client { http, base, auth: settings.auth.clone(), credentials_source: settings.credentials_source.clone() };
        Ok(GrafanaProvisioner { client, settings, write_lock: Arc::new(Mutex::new(())) })
    }

    /// The entry the tenant gets in the allowed hosts.
    pub fn host(&self, desired: &DesiredTenant) -> String {
        format_host(&self.settings.host_format, &desired.names.fqdn, &desired.names.url, &desired.names.tenant)
    }

    /// The entry the tenant had before: what `status.grafana` records, else what the
    /// host format gives for the FQDN and URL of the last reconcile.
    fn previous_host(&self, tenant: &Tenant) -> Option<String> {
        let status = tenant.status.as_ref()?;
        if let Some(host) = status.grafana.as_ref().and_then(|g| g.allowed_host.clone()) {
            return Some(host);
        }
        let fqdn = status.fqdn.as_deref()?;
        let url = status.url.clone().unwrap_or_else(|| format!("https://{fqdn}"));
        Some(format_host(&self.settings.host_format, fqdn, &url, &tenant.name_any()))
    }

    fn data_source_path(&self) -> String {
        format!("/api/datasources/uid/{}", self.settings.data_source_uid)
    }

    /// The data source body, or None when Grafana has no data source with the uid.
    async fn read_data_source(&self) -> Result<Option<Map<String, Value>>, ProviderError> {
        let what = format!("read data source {}", self.settings.data_source_uid);
        let answer = self.client.send(Method::GET, &self.data_source_path(), self.settings.data_source_org_id, None, &what).await?;
        match answer.status {
            StatusCode::OK => match answer.json(&what)? {
                Value::Object(map) => Ok(Some(map)),
                _ => Err(unavailable(format!("{what}: the answer is not a JSON object"))),
            },
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.client.failure(&answer, &what)),
        }
    }

    fn missing_data_source(&self) -> ProviderError {
        refused(format!(
            "Grafana has no data source with uid {:?}{}: check grafana.dataSourceUid (and grafana.dataSourceOrgId)",
            self.settings.data_source_uid,
            self.settings.data_source_org_id.map(|o| format!(" in organisation {o}")).unwrap_or_default()
        ))
    }

    /// Puts `add` into the allowed hosts and takes `remove` out, by read-modify-write
    /// with the data source's version. Returns what was written: None when nothing had
    /// to change, or the data source does not exist and `missing_ok`.
    async fn update_hosts(&self, add: Option<&str>, remove: &[String], missing_ok: bool) -> Result<Option<HostChange>, ProviderError> {
        let _serialised = self.write_lock.lock().await;
        let uid = &self.settings.data_source_uid;
        let key = &self.settings.allowed_hosts_key;
        for attempt in 1..=self.settings.write_attempts {
            let Some(data_source) = self.read_data_source().await? else {
                return if missing_ok { Ok(None) } else { Err(self.missing_data_source()) };
            };
            let Some(version) = data_source.get("version").and_then(Value::as_i64) else {
                return Err(refused(format!("data source {uid} has no version: this Grafana cannot update it safely")));
            };
            let current = allowed_hosts(&data_source, key);
            let Some(hosts) = merge_hosts(&current, add, remove) else {
                return Ok(None);
            };
            let change = HostChange::between(&current, &hosts);
            let mut body = with_allowed_hosts(data_source, key, hosts);
            body.insert("version".into(), json!(version));
            let what = format!("update data source {uid}");
            let answer = self
                .client
                .send(Method::PUT, &self.data_source_path(), self.settings.data_source_org_id, Some(&Value::Object(body)), &what)
                .await?;
            match answer.status {
                StatusCode::OK => return Ok(Some(change)),
                status if is_version_conflict(status, &answer.body) => {
                    tracing::debug!(data_source = %uid, attempt, "the Grafana data source changed meanwhile; reading it again");
                    if attempt < self.settings.write_attempts {
                        tokio::time::sleep(jittered_backoff(attempt)).await;
                    }
                }
                StatusCode::NOT_FOUND if missing_ok => return Ok(None),
                StatusCode::NOT_FOUND => return Err(self.missing_data_source()),
                _ => return Err(self.client.failure(&answer, &what)),
            }
        }
        Err(unavailable(format!(
            "data source {uid} was changed by someone else during each of {} attempts; retrying later",
            self.settings.write_attempts
        )))
    }

    /// The organisation of the tenant: the one `status.grafana.orgId` records, or a new
    /// one. An organisation with the tenant's name that the status does not record is
    /// never adopted.
    async fn ensure_org(&self, tenant: &Tenant, name: &str, operations: &mut Vec<String>) -> Result<i64, ProviderError> {
        if let Some(id) = recorded_org(tenant) {
            match self.org_name(id).await? {
                Some(found) if found == name => return Ok(id),
                Some(found) => {
                    return Err(conflict(format!(
                        "organisation {id} recorded in status.grafana.orgId is now named {found:?}, not {name:?}; \
                         rename it back, or clear status.grafana.orgId to create a new one"
                    )));
                }
                None => operations.push(format!("organisation {id} recorded for the tenant is gone; creating it again")),
            }
        }
        if let Some(existing) = self.org_id_by_name(name).await? {
            return Err(conflict(format!("Grafana organisation {name:?} (id {existing}) exists and was not created for this tenant")));
        }
        let what = format!("create organisation {name}");
        let answer = self.client.send(Method::POST, "/api/orgs", None, Some(&json!({ "name": name })), &what).await?;
        match answer.status {
            StatusCode::OK => {
                let id = org_id_of(&answer.json(&what)?).ok_or_else(|| unavailable(format!("{what}: the answer holds no orgId")))?;
                operations.push(format!("created Grafana organisation {name} (id {id})"));
                Ok(id)
            }
            StatusCode::CONFLICT => Err(conflict(format!("Grafana organisation {name:?} was created by someone else meanwhile"))),
            _ => Err(self.client.failure(&answer, &what)),
        }
    }

    /// The name of organisation `id`, or None when there is none.
    async fn org_name(&self, id: i64) -> Result<Option<String>, ProviderError> {
        let what = format!("read organisation {id}");
        let answer = self.client.send(Method::GET, &format!("/api/orgs/{id}"), None, None, &what).await?;
        match answer.status {
            StatusCode::OK => Ok(answer.json(&what)?.get("name").and_then(Value::as_str).map(str::to_string)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.client.failure(&answer, &what)),
        }
    }

    /// The id of the organisation named `name`, or None when there is none.
    async fn org_id_by_name(&self, name: &str) -> Result<Option<i64>, ProviderError> {
        let what = format!("look up organisation {name}");
        let answer = self.client.send(Method::GET, &format!("/api/orgs/name/{name}"), None, None, &what).await?;
        match answer.status {
            StatusCode::OK => Ok(answer.json(&what)?.get("id").and_then(Value::as_i64)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.client.failure(&answer, &what)),
        }
    }

    /// Deletes the organisation the status records, when it still has the tenant's
    /// name; one renamed by someone is left in place.
    async fn delete_org(&self, tenant: &Tenant, name: &str) -> Result<Vec<String>, ProviderError> {
        let Some(id) = recorded_org(tenant) else {
            return Ok(vec![]);
        };
        match self.org_name(id).await? {
            None => return Ok(vec![]),
            Some(found) if found != name => {
                return Err(conflict(format!("organisation {id} recorded for the tenant is now named {found:?}")));
            }
            Some(_) => {}
        }
        let what = format!("delete organisation {name} (id {id})");
        let answer = self.client.send(Method::DELETE, &format!("/api/orgs/{id}"), None, None, &what).await?;
        match answer.status {
            StatusCode::OK | StatusCode::NOT_FOUND => Ok(vec![format!("deleted Grafana organisation {name} (id {id})")]),
            _ => Err(self.client.failure(&answer, &what)),
        }
    }
}

/// The tenant's entries a write added and removed.
#[derive(Debug, Default, PartialEq, Eq)]
struct HostChange {
    /// Entries that were missing and are now in the list.
    added: Vec<String>,
    /// Entries that were in the list and are now gone.
    removed: Vec<String>,
}

impl HostChange {
    fn between(before: &[Value], after: &[Value]) -> Self {
        let strings = |list: &[Value]| list.iter().filter_map(Value::as_str).map(str::to_string).collect::<Vec<_>>();
        let (before, after) = (strings(before), strings(after));
        HostChange {
            added: after.iter().filter(|h| !before.contains(h)).cloned().collect(),
            removed: before.iter().filter(|h| !after.contains(h)).cloned().collect(),
        }
    }

    /// The operations to report, one per entry.
    fn operations(&self, uid: &str) -> Vec<String> {
        let added = self.added.iter().map(|h| format!("allowed {h} in Grafana data source {uid}"));
        added.chain(self.removed.iter().map(|h| format!("removed {h} from Grafana data source {uid}"))).collect()
    }
}

/// The organisation id `status.grafana.orgId` records.
fn recorded_org(tenant: &Tenant) -> Option<i64> {
    tenant.status.as_ref()?.grafana.as_ref()?.org_id
}

/// The `orgId` of `POST /api/orgs`: a number (a string in old versions).
fn org_id_of(answer: &Value) -> Option<i64> {
    let id = answer.get("orgId")?;
    id.as_i64().or_else(|| id.as_str().and_then(|s| s.parse().ok()))
}

#[async_trait]
impl Provisioner for GrafanaProvisioner {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Grafana
    }

    fn plan(&self, tenant: &Tenant, desired: &DesiredTenant) -> Vec<PlannedObject> {
        let mut planned = vec![PlannedObject {
            kind: "allowedHost".into(),
            name: self.host(desired),
            settings: json!({
                "dataSourceUid": self.settings.data_source_uid,
                "jsonDataKey": self.settings.allowed_hosts_key,
            }),
        }];
        if self.settings.organizations {
            planned.push(PlannedObject { kind: "organization".into(), name: tenant.name_any(), settings: json!({}) });
        }
        planned
    }

    async fn ensure(&self, request: &TenantRequest<'_>) -> Result<Provisioned, ProviderError> {
        let tenant = request.tenant.name_any();
        check_tenant_id(BACKEND, &tenant)?;
        let host = self.host(request.desired);
        let old: Vec<String> = self.previous_host(request.tenant).into_iter().filter(|h| *h != host).collect();
        let mut operations = Vec::new();
        if let Some(change) = self.update_hosts(Some(&host), &old, false).await? {
            operations.extend(change.operations(&self.settings.data_source_uid));
        }
        // Without organisations, a recorded organisation (from when they were on) stays
        // recorded, so that it is never forgotten.
        let org_id = match self.settings.organizations {
            true => Some(self.ensure_org(request.tenant, &tenant, &mut operations).await?),
            false => recorded_org(request.tenant),
        };
        let kept = if request.desired.active { "" } else { " (kept while the tenant is disabled)" };
        let org = match (self.settings.organizations, org_id) {
            (true, Some(id)) => format!(" and organisation {tenant} (id {id}) exists"),
            _ => String::new(),
        };
        let message = format!("Grafana data source {} allows {host}{org}{kept}", self.settings.data_source_uid);
        let mut done = Provisioned::new(Cond::ok(ProviderKind::Grafana.condition_type(), reasons::PROVISIONED, message), operations);
        done.grafana = Some(GrafanaStatus { allowed_host: Some(host), org_id });
        Ok(done)
    }

    async fn delete(&self, request: &TenantRequest<'_>) -> Result<Vec<String>, ProviderError> {
        let tenant = request.tenant.name_any();
        let host = self.host(request.desired);
        let mut hosts = vec![host];
        hosts.extend(self.previous_host(request.tenant).filter(|h| !hosts.contains(h)));
        let mut operations = Vec::new();
        if let Some(change) = self.update_hosts(None, &hosts, true).await? {
            operations.extend(change.operations(&self.settings.data_source_uid));
        }
        if self.settings.organizations {
            operations.extend(leave_foreign(self.delete_org(request.tenant, &tenant).await)?);
        }
        Ok(operations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(list: &[&str]) -> Vec<Value> {
        list.iter().map(|h| json!(h)).collect()
    }

    #[test]
    fn hosts_are_formatted_from_the_placeholders() {
        assert_eq!(format_host("https://<fqdn>", "acme.cx.test", "http://acme.cx.test", "acme"), "https://acme.cx.test");
        assert_eq!(format_host("<url>/api/<tenant>", "acme.cx.test", "http://acme.cx.test", "acme"), "http://acme.cx.test/api/acme");
        assert!(host_format_is_per_tenant("https://<fqdn>:8443"));
        assert!(!host_format_is_per_tenant("https://<tenant>.example.com"), "a tenant id alone is not the tenant's host");
    }

    #[test]
    fn a_missing_host_is_appended_and_others_are_kept() {
        let current = hosts(&["https://grafana.internal", "https://b.cx.test"]);
        let next = merge_hosts(&current, Some("https://a.cx.test"), &[]).unwrap();
        assert_eq!(next, hosts(&["https://grafana.internal", "https://b.cx.test", "https://a.cx.test"]));
    }

    #[test]
    fn a_present_host_needs_no_write() {
        let current = hosts(&["https://a.cx.test", "https://b.cx.test"]);
        assert_eq!(merge_hosts(&current, Some("https://a.cx.test"), &["https://gone.cx.test".into()]), None);
        assert_eq!(merge_hosts(&[], None, &["https://a.cx.test".into()]), None);
    }

    #[test]
    fn the_old_host_goes_and_the_new_one_comes_once() {
        let current = hosts(&["https://old.cx.test", "https://b.cx.test", "https://new.cx.test", "https://new.cx.test"]);
        let next = merge_hosts(&current, Some("https://new.cx.test"), &["https://old.cx.test".into()]).unwrap();
        assert_eq!(next, hosts(&["https://b.cx.test", "https://new.cx.test"]));
    }

    #[test]
    fn removing_never_touches_entries_of_others() {
        let mut current = hosts(&["https://a.cx.test", "https://b.cx.test", "https://b.cx.test"]);
        current.push(json!({"not": "a string"}));
        let next = merge_hosts(&current, None, &["https://a.cx.test".into()]).unwrap();
        assert_eq!(next, vec![json!("https://b.cx.test"), json!("https://b.cx.test"), json!({"not": "a string"})]);
    }

    #[test]
    fn the_list_is_put_into_json_data_even_when_missing() {
        let body = Map::from_iter([("jsonData".to_string(), Value::Null)]);
        let body = with_allowed_hosts(body, "allowedHosts", hosts(&["https://a.cx.test"]));
        assert_eq!(Value::Object(body), json!({"jsonData": {"allowedHosts": ["https://a.cx.test"]}}));
        let body = Map::from_iter([("jsonData".to_string(), json!({"keep": 1, "allowedHosts": ["x"]}))]);
        assert_eq!(allowed_hosts(&body, "allowedHosts"), hosts(&["x"]));
        assert_eq!(Value::Object(with_allowed_hosts(body, "allowedHosts", vec![]))["jsonData"], json!({"keep": 1, "allowedHosts": []}));
    }

    #[test]
    fn conflicts_are_recognised_in_old_and_new_grafana() {
        assert!(is_version_conflict(StatusCode::CONFLICT, ""));
        assert!(is_version_conflict(
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"message":"Failed to update datasource. Reload new version and try again"}"#
        ));
        assert!(!is_version_conflict(StatusCode::INTERNAL_SERVER_ERROR, r#"{"message":"Failed to update datasource"}"#));
    }

    #[test]
    fn grafana_messages_are_quoted_briefly() {
        assert_eq!(error_text(r#"{"message":"Data source not found"}"#), "Data source not found");
        assert_eq!(error_text(""), "no message");
        assert_eq!(error_text(&"x".repeat(500)).len(), MAX_QUOTED_TEXT + 3);
    }

    #[test]
    fn backoff_is_bounded_and_grows() {
        for attempt in 1..40 {
            assert!(jittered_backoff(attempt) <= MAX_CONFLICT_BACKOFF);
        }
        assert!(jittered_backoff(1) <= CONFLICT_BACKOFF);
    }

    #[test]
    fn org_ids_are_read_as_numbers_or_strings() {
        assert_eq!(org_id_of(&json!({"orgId": 7, "message": "Organization created"})), Some(7));
        assert_eq!(org_id_of(&json!({"orgId": "8"})), Some(8));
        assert_eq!(org_id_of(&json!({"message": "x"})), None);
    }

    fn settings() -> GrafanaSettings {
        GrafanaSettings {
            url: "https://grafana.example.com/".into(),
            auth: GrafanaAuth::Token("glsa_x".into()),
            credentials_source: "Secret ops/grafana".into(),
            data_source_uid: "tenants".into(),
            data_source_org_id: None,
            allowed_hosts_key: "allowedHosts".into(),
            host_format: "https://<fqdn>".into(),
            organizations: false,
            ca_pem: None,
            timeout: Duration::from_secs(5),
            write_attempts: 5,
        }
    }

    #[test]
    fn settings_are_checked_before_any_request() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ok = GrafanaProvisioner::new(settings()).expect("valid settings");
        assert_eq!(ok.client.base, "https://grafana.example.com", "a trailing slash never doubles in paths");
        for (broken, field) in [
            (GrafanaSettings { url: "grafana:3000".into(), ..settings() }, "url"),
            (GrafanaSettings { data_source_uid: String::new(), ..settings() }, "uid"),
            (GrafanaSettings { host_format: "https://grafana".into(), ..settings() }, "hostFormat"),
            (GrafanaSettings { write_attempts: 0, ..settings() }, "attempts"),
            (GrafanaSettings { ca_pem: Some("no pem".into()), ..settings() }, "CA bundle"),
        ] {
            let error = GrafanaProvisioner::new(broken).expect_err(field);
            assert!(matches!(error, ProviderError::Refused { backend: BACKEND, .. }) && error.to_string().contains(field), "{error}");
        }
    }

    #[test]
    fn credentials_are_never_printed() {
        let auth = GrafanaAuth::Token("glsa_secret".into());
        assert!(!format!("{auth:?}").contains("glsa_secret"));
        let basic = GrafanaAuth::Basic { username: "admin".into(), password: "pw-secret".into() };
        assert!(!format!("{basic:?}").contains("pw-secret"));
    }
}
