//! The Grafana provider against the fake Grafana in `support::fake_grafana`, or against
//! a real Grafana when `CX_TEST_GRAFANA_URL`, `CX_TEST_GRAFANA_TOKEN` (a service-account
//! token that may write data sources) and `CX_TEST_GRAFANA_DATASOURCE_UID` (a data
//! source whose `jsonData.allowedHosts` the tests may change) are set; the
//! organisation checks also need `CX_TEST_GRAFANA_USERNAME` and
//! `CX_TEST_GRAFANA_PASSWORD` (a server admin). Against a real server, the checks that
//! need the fake's controls (outages, delays, injected conflicts, request logs) are
//! skipped with a note, every tenant is named `cxt-<run>-...`, and the tests remove
//! the hosts and organisations they created.
//!
//! The data source is read through the HTTP API, so the same assertions hold for both.

mod support;

use std::{collections::BTreeMap, time::Duration};

use async_trait::async_trait;
use cx_operator::{
    api::{
        Tenant, TenantStatus,
        conditions::{reasons, types},
    },
    config::Config,
    controller::tenant_desired::{self, DesiredTenant},
    provider::{
        ProviderError, Provisioned, Provisioner, SecretStore, TenantRequest,
        grafana::{GrafanaAuth, GrafanaProvisioner},
        setup,
    },
};
use futures::future::join_all;
use jiff::Timestamp;
use rand::distr::{Alphanumeric, SampleString};
use serde_json::{Value, json};
use support::fake_grafana::{FakeGrafana, VERSION_CONFLICT_MESSAGE};

/// The data source the fake starts with.
const FAKE_UID: &str = "cx-tenants";

/// Hosts that people put into the data source before the operator came.
const FOREIGN_HOSTS: [&str; 2] = ["https://status.example.com", "https://grafana-internal.example.com"];

/// The server under test.
struct Target {
    fake: Option<FakeGrafana>,
    url: String,
    token: String,
    uid: String,
    /// A server admin (basic authentication), for organisations.
    admin: Option<(String, String)>,
    http: reqwest::Client,
    /// Unique prefix of this test's tenants.
    run: String,
}

impl Target {
    async fn new() -> Target {
        // The tests' own HTTP client uses rustls without a built-in crypto provider,
        // like the operator; it takes the process default, set here to ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        let run = format!("cxt-{}", Alphanumeric.sample_string(&mut rand::rng(), 6).to_lowercase());
        let variables = ["CX_TEST_GRAFANA_URL", "CX_TEST_GRAFANA_TOKEN", "CX_TEST_GRAFANA_DATASOURCE_UID"].map(|v| std::env::var(v).ok());
        let target = match variables {
            [Some(url), Some(token), Some(uid)] => {
                eprintln!("running against the real Grafana at {url}, data source {uid}");
                let admin = std::env::var("CX_TEST_GRAFANA_USERNAME").ok().zip(std::env::var("CX_TEST_GRAFANA_PASSWORD").ok());
                Target { fake: None, url, token, uid, admin, http, run }
            }
            _ => {
                let fake = FakeGrafana::start().await;
                fake.add_data_source(FAKE_UID, &[], false);
                let admin = Some((fake.admin_username().to_string(), fake.admin_password().to_string()));
                Target { url: fake.url(), token: fake.token().to_string(), uid: FAKE_UID.into(), admin, http, run, fake: Some(fake) }
            }
        };
        for host in FOREIGN_HOSTS {
            target.add_host_as_a_person(host).await;
        }
        target
    }

    /// The fake, or `None` (and a note) against a real server.
    fn fake(&self, check: &str) -> Option<&FakeGrafana> {
        if self.fake.is_none() {
            eprintln!("skipped against a real Grafana (needs the fake's controls): {check}");
        }
        self.fake.as_ref()
    }

    /// The operator configuration with a `grafana` section for this server.
    fn config(&self, extra: &str) -> Config {
        let text = format!(
            "rootDomain: cx.test\nplatformNamespace: p\ngrafana: {{url: '{}', credentialsSecret: grafana, dataSourceUid: '{}'{extra}}}\n",
            self.url, self.uid
        );
        Config::parse(&text).unwrap_or_else(|e| panic!("test configuration is valid: {e}"))
    }

    /// A provisioner built the way `setup::from_config` builds it, with the token.
    fn provisioner(&self, config: &Config) -> GrafanaProvisioner {
        self.provisioner_with(config, GrafanaAuth::Token(self.token.clone()))
    }

    fn provisioner_with(&self, config: &Config, auth: GrafanaAuth) -> GrafanaProvisioner {
        let settings =
            setup::grafana_settings(config.grafana.as_ref().expect("grafana is configured"), auth, "Secret test/grafana".into(), None);
        GrafanaProvisioner::new(settings).expect("the settings are valid")
    }

    /// A provisioner with the server admin's credentials and organisations on, or
    /// None (and a note) when the real server has no admin credentials.
    fn org_provisioner(&self, config: &Config) -> Option<GrafanaProvisioner> {
        let Some((username, password)) = self.admin.clone() else {
            eprintln!("skipped: organisation checks need CX_TEST_GRAFANA_USERNAME and CX_TEST_GRAFANA_PASSWORD");
            return None;
        };
        Some(self.provisioner_with(config, GrafanaAuth::Basic { username, password }))
    }

    /// A Tenant of this test, optionally with its own FQDN.
    fn tenant(&self, name: &str, fqdn: Option<&str>) -> Tenant {
        let mut spec = json!({
            "displayName": "Acme", "company": {"name": "Acme GmbH"},
            "admin": {"username": "alice", "email": "alice@acme.test", "firstName": "Alice"},
        });
        if let Some(fqdn) = fqdn {
            spec["domain"] = json!({ "fqdn": fqdn });
        }
        let mut tenant: Tenant = serde_json::from_value(json!({
            "apiVersion": "cx-operator.io/v1alpha1", "kind": "Tenant",
            "metadata": {"name": format!("{}-{name}", self.run), "uid": format!("uid-{name}")},
            "spec": spec,
        }))
        .expect("test tenant is well formed");
        tenant.metadata.namespace = None;
        tenant
    }

    async fn data_source(&self) -> serde_json::Map<String, Value> {
        let response =
            self.http.get(format!("{}/api/datasources/uid/{}", self.url, self.uid)).bearer_auth(&self.token).send().await.unwrap();
        assert_eq!(response.status(), 200, "the data source can be read");
        match response.json().await.unwrap() {
            Value::Object(map) => map,
            other => panic!("a data source is an object: {other}"),
        }
    }

    /// The allowed hosts, read through the HTTP API.
    async fn hosts(&self) -> Vec<String> {
        let ds = self.data_source().await;
        let list = ds.get("jsonData").and_then(|j| j.get("allowedHosts")).and_then(Value::as_array).cloned().unwrap_or_default();
        list.iter().filter_map(|h| h.as_str().map(str::to_string)).collect()
    }

    async fn version(&self) -> i64 {
        self.data_source().await["version"].as_i64().expect("a data source has a version")
    }

    /// Adds a host as a person would in the UI: read, change, write with the version.
    async fn add_host_as_a_person(&self, host: &str) {
        let mut ds = self.data_source().await;
        let mut hosts: Vec<Value> = ds["jsonData"].get("allowedHosts").and_then(Value::as_array).cloned().unwrap_or_default();
        if hosts.iter().any(|h| h == host) {
            return;
        }
        hosts.push(json!(host));
        ds["jsonData"]["allowedHosts"] = Value::Array(hosts);
        let url = format!("{}/api/datasources/uid/{}", self.url, self.uid);
        let response = self.http.put(url).bearer_auth(&self.token).json(&ds).send().await.unwrap();
        assert_eq!(response.status(), 200, "a person can add a host: {}", response.text().await.unwrap_or_default());
    }

    /// Removes hosts of this run left behind (real servers only keep state).
    async fn cleanup(&self, provisioner: &GrafanaProvisioner, tenants: &[Tenant]) {
        let config = self.config("");
        for tenant in tenants {
            let desired = desired(tenant, &config);
            let _ = provisioner.delete(&request(tenant, &desired)).await;
        }
    }
}

/// The provider never uses Secrets; a request needs a store anyway.
struct NoSecrets;

#[async_trait]
impl SecretStore for NoSecrets {
    async fn read(&self, _name: &str) -> Result<Option<BTreeMap<String, String>>, ProviderError> {
        Ok(None)
    }
    async fn write(&self, _name: &str, _data: BTreeMap<String, String>) -> Result<(), ProviderError> {
        Ok(())
    }
}

fn desired(tenant: &Tenant, config: &Config) -> DesiredTenant {
    tenant_desired::build(tenant, config, Timestamp::now()).expect("the test tenant is valid")
}

fn request<'a>(tenant: &'a Tenant, desired: &'a DesiredTenant) -> TenantRequest<'a> {
    TenantRequest { tenant, desired, secrets: &NoSecrets, rotate: false, read_only: false }
}

async fn ensure(provisioner: &GrafanaProvisioner, tenant: &Tenant, config: &Config) -> Result<Provisioned, ProviderError> {
    let desired = desired(tenant, config);
    provisioner.ensure(&request(tenant, &desired)).await
}

async fn delete(provisioner: &GrafanaProvisioner, tenant: &Tenant, config: &Config) -> Result<Vec<String>, ProviderError> {
    let desired = desired(tenant, config);
    provisioner.delete(&request(tenant, &desired)).await
}

/// Records what the controller records after a reconcile: FQDN, URL and `status.grafana`.
fn record(tenant: &mut Tenant, done: &Provisioned, config: &Config) {
    let names = desired(tenant, config).names;
    let status = tenant.status.get_or_insert_with(TenantStatus::default);
    status.fqdn = Some(names.fqdn);
    status.url = Some(names.url);
    if done.grafana.is_some() {
        status.grafana = done.grafana.clone();
    }
}

fn count(hosts: &[String], host: &str) -> usize {
    hosts.iter().filter(|h| *h == host).count()
}

/// Ensures a tenant, retrying what is retryable as the controller's backoff would
/// (a bounded number of times).
async fn ensure_eventually(provisioner: &GrafanaProvisioner, tenant: &Tenant, config: &Config) -> Provisioned {
    let mut last = None;
    for _ in 0..10 {
        match ensure(provisioner, tenant, config).await {
            Ok(done) => return done,
            Err(e) if e.is_retryable() => last = Some(e),
            Err(e) => panic!("ensure of {} failed permanently: {e}", tenant.metadata.name.as_deref().unwrap_or_default()),
        }
    }
    panic!("ensure did not succeed in 10 attempts: {last:?}");
}

#[tokio::test]
async fn a_host_is_added_once_kept_unchanged_and_removed_leaving_others() {
    let target = Target::new().await;
    let config = target.config("");
    let grafana = target.provisioner(&config);
    let mut tenant = target.tenant("acme", None);
    let host = format!("https://{}.cx.test", tenant.metadata.name.as_deref().unwrap());
    let before = target.hosts().await;

    let done = ensure(&grafana, &tenant, &config).await.expect("the host is added");
    assert_eq!(done.condition.type_, types::GRAFANA_READY);
    assert!(done.condition.is_true(), "{:?}", done.condition);
    assert_eq!(done.operations, [format!("allowed {host} in Grafana data source {}", target.uid)]);
    assert_eq!(done.grafana.as_ref().and_then(|g| g.allowed_host.as_deref()), Some(host.as_str()));
    let hosts = target.hosts().await;
    assert_eq!(count(&hosts, &host), 1, "{hosts:?}");
    assert!(before.iter().all(|h| hosts.contains(h)), "hosts of others are kept: {before:?} -> {hosts:?}");
    assert_eq!(hosts.len(), before.len() + 1, "nothing else was added: {hosts:?}");
    if let Some(fake) = target.fake("the secure fields survive the write") {
        assert_eq!(fake.data_source(FAKE_UID).unwrap()["secureJsonFields"], json!({"bearerToken": true}));
    }
    record(&mut tenant, &done, &config);

    // An unchanged tenant reads and writes nothing else.
    let version = target.version().await;
    if let Some(fake) = target.fake("the request log shows no write") {
        fake.clear_requests();
    }
    let again = ensure(&grafana, &tenant, &config).await.expect("an unchanged tenant is fine");
    assert!(again.operations.is_empty(), "{:?}", again.operations);
    assert_eq!(target.version().await, version, "no PUT for an unchanged tenant");
    if let Some(fake) = target.fake("the request log shows no write") {
        assert!(fake.writes().is_empty(), "{:?}", fake.writes());
    }

    // A disabled tenant keeps its host.
    let mut disabled = tenant.clone();
    disabled.spec.enabled = false;
    let kept = ensure(&grafana, &disabled, &config).await.expect("a disabled tenant is fine");
    assert!(kept.condition.message.contains("kept while the tenant is disabled"), "{}", kept.condition.message);
    assert_eq!(count(&target.hosts().await, &host), 1);

    let ops = delete(&grafana, &tenant, &config).await.expect("the host is removed");
    assert_eq!(ops, [format!("removed {host} from Grafana data source {}", target.uid)]);
    let hosts = target.hosts().await;
    assert_eq!(count(&hosts, &host), 0);
    assert!(before.iter().all(|h| hosts.contains(h)), "hosts of others are kept on deletion: {hosts:?}");
    assert!(delete(&grafana, &tenant, &config).await.expect("already gone is done").is_empty());
}

#[tokio::test]
async fn a_changed_fqdn_moves_the_host_also_after_a_restart() {
    let target = Target::new().await;
    let config = target.config("");
    let mut tenant = target.tenant("moving", Some(&format!("{}-old.cx.test", target.run)));
    let first = target.provisioner(&config);
    let done = ensure(&first, &tenant, &config).await.unwrap();
    record(&mut tenant, &done, &config);
    let old = format!("https://{}-old.cx.test", target.run);
    let new = format!("https://{}-new.cx.test", target.run);
    assert_eq!(count(&target.hosts().await, &old), 1);

    // A new operator process (the host is known from the status only) after an edit.
    tenant.spec.domain.fqdn = Some(format!("{}-new.cx.test", target.run));
    let restarted = target.provisioner(&config);
    let done = ensure(&restarted, &tenant, &config).await.expect("the host moves");
    let hosts = target.hosts().await;
    assert_eq!((count(&hosts, &old), count(&hosts, &new)), (0, 1), "{hosts:?}");
    assert!(FOREIGN_HOSTS.iter().all(|h| hosts.contains(&h.to_string())), "{hosts:?}");
    assert!(done.operations.contains(&format!("removed {old} from Grafana data source {}", target.uid)), "{:?}", done.operations);
    record(&mut tenant, &done, &config);

    // Without status.grafana (a status from before it existed), the FQDN of the last
    // reconcile names the old host.
    tenant.status.as_mut().unwrap().grafana = None;
    tenant.spec.domain.fqdn = Some(format!("{}-third.cx.test", target.run));
    ensure(&restarted, &tenant, &config).await.expect("the host moves again");
    let hosts = target.hosts().await;
    assert_eq!(count(&hosts, &new), 0, "{hosts:?}");
    assert_eq!(count(&hosts, &format!("https://{}-third.cx.test", target.run)), 1, "{hosts:?}");
    target.cleanup(&restarted, &[tenant]).await;
}

#[tokio::test]
async fn fifty_tenants_at_once_are_each_listed_exactly_once() {
    let target = Target::new().await;
    let config = target.config("");
    // Five operator instances (shards) write at the same time: within one instance the
    // writes queue up, between instances they race and are retried on 409.
    let instances: Vec<GrafanaProvisioner> = (0..5).map(|_| target.provisioner(&config)).collect();
    let tenants: Vec<Tenant> = (0..50).map(|i| target.tenant(&format!("t{i}"), None)).collect();
    if let Some(fake) = target.fake("counting the conflicts") {
        fake.clear_requests();
    }
    let runs = tenants.iter().enumerate().map(|(i, t)| ensure_eventually(&instances[i % instances.len()], t, &config));
    let results = join_all(runs).await;
    assert!(results.iter().all(|d| d.condition.is_true()));
    let hosts = target.hosts().await;
    for tenant in &tenants {
        let host = format!("https://{}.cx.test", tenant.metadata.name.as_deref().unwrap());
        assert_eq!(count(&hosts, &host), 1, "{host} in {hosts:?}");
    }
    for foreign in FOREIGN_HOSTS {
        assert_eq!(count(&hosts, foreign), 1, "{foreign} in {hosts:?}");
    }
    if let Some(fake) = target.fake("counting the conflicts") {
        let conflicts = fake.requests().iter().filter(|r| r.method == "PUT" && r.status == 409).count();
        let writes = fake.requests().iter().filter(|r| r.method == "PUT" && r.status == 200).count();
        assert_eq!(writes, 50, "one successful write per tenant");
        assert_eq!(hosts.len(), 52, "{hosts:?}");
        eprintln!("50 tenants through 5 instances: {conflicts} write(s) lost a race and were retried");
    }
    target.cleanup(&instances[0], &tenants).await;
}

#[tokio::test]
async fn writes_that_lose_a_race_are_retried_and_bounded() {
    let target = Target::new().await;
    let Some(fake) = target.fake("injected conflicts") else { return };
    let config = target.config(", writeAttempts: 4");
    let grafana = target.provisioner(&config);
    let tenant = target.tenant("racer", None);
    let host = format!("https://{}.cx.test", tenant.metadata.name.as_deref().unwrap());

    fake.inject_conflicts(3);
    fake.clear_requests();
    ensure(&grafana, &tenant, &config).await.expect("three lost races, then the write lands");
    let puts: Vec<u16> = fake.requests().iter().filter(|r| r.method == "PUT").map(|r| r.status).collect();
    assert_eq!(puts, [409, 409, 409, 200]);
    let gets = fake.requests().iter().filter(|r| r.method == "GET").count();
    assert_eq!(gets, 4, "every attempt reads the data source again");
    let hosts = fake.allowed_hosts(FAKE_UID);
    assert_eq!(count(&hosts, &host), 1);
    for foreign in fake.injected_hosts() {
        assert_eq!(count(&hosts, &foreign), 1, "a host written by someone else meanwhile is kept: {hosts:?}");
    }

    // Losing every attempt is retryable, with a message that says why.
    fake.inject_conflicts(4);
    let error = delete(&grafana, &tenant, &config).await.expect_err("four lost races");
    assert!(error.is_retryable(), "{error}");
    assert_eq!(error.reason(), reasons::BACKEND_UNAVAILABLE);
    assert!(error.to_string().contains("changed by someone else during each of 4 attempts"), "{error}");
    assert_eq!(count(&fake.allowed_hosts(FAKE_UID), &host), 1, "nothing was lost meanwhile");
    delete(&grafana, &tenant, &config).await.expect("the next attempt succeeds");
    assert_eq!(count(&fake.allowed_hosts(FAKE_UID), &host), 0);
    assert!(VERSION_CONFLICT_MESSAGE.contains("already been updated"));
}

#[tokio::test]
async fn outages_and_slow_answers_are_unavailable_and_recovered() {
    let target = Target::new().await;
    let Some(fake) = target.fake("outages and slow answers") else { return };
    let config = target.config(", timeout: 300ms");
    let grafana = target.provisioner(&config);
    let tenant = target.tenant("outage", None);

    fake.set_down(true);
    let error = ensure(&grafana, &tenant, &config).await.expect_err("Grafana is down");
    assert!(error.is_retryable(), "{error}");
    assert_eq!(error.reason(), reasons::BACKEND_UNAVAILABLE);
    assert!(error.to_string().contains("HTTP 503"), "{error}");
    assert!(delete(&grafana, &tenant, &config).await.expect_err("down for deletion too").is_retryable());
    fake.set_down(false);

    fake.set_delay(Duration::from_secs(2));
    let error = ensure(&grafana, &tenant, &config).await.expect_err("Grafana is slow");
    assert!(error.is_retryable() && error.to_string().contains("no answer in time"), "{error}");
    fake.set_delay(Duration::ZERO);

    ensure(&grafana, &tenant, &config).await.expect("recovered");
    assert_eq!(count(&fake.allowed_hosts(FAKE_UID), &format!("https://{}.cx.test", tenant.metadata.name.as_deref().unwrap())), 1);
}

#[tokio::test]
async fn misconfiguration_is_refused_clearly_and_never_shows_the_token() {
    let target = Target::new().await;
    let tenant = target.tenant("wrong", None);

    let config = target.config("");
    let missing = {
        let text = format!(
            "rootDomain: cx.test\nplatformNamespace: p\ngrafana: {{url: '{}', credentialsSecret: g, dataSourceUid: no-such-uid}}\n",
            target.url
        );
        Config::parse(&text).unwrap()
    };
    let error = ensure(&target.provisioner(&missing), &tenant, &missing).await.expect_err("no such data source");
    assert!(!error.is_retryable(), "{error}");
    assert_eq!(error.reason(), reasons::INVALID_SPEC);
    assert!(
        error.to_string().contains("no data source with uid \"no-such-uid\"") && error.to_string().contains("dataSourceUid"),
        "{error}"
    );
    assert!(delete(&target.provisioner(&missing), &tenant, &missing).await.expect("a missing data source holds nothing").is_empty());

    let bad_token = "glsa_not-the-right-token";
    let wrong = target.provisioner_with(&config, GrafanaAuth::Token(bad_token.into()));
    let error = ensure(&wrong, &tenant, &config).await.expect_err("a wrong token");
    let text = error.to_string();
    assert!(!error.is_retryable() && text.contains("HTTP 401") && text.contains("Secret test/grafana"), "{text}");
    assert!(!text.contains(bad_token) && !text.contains(&target.token), "the token never shows: {text}");

    if let Some(fake) = target.fake("a file-provisioned data source") {
        fake.add_data_source("provisioned", &[], true);
        let text = format!(
            "rootDomain: cx.test\nplatformNamespace: p\ngrafana: {{url: '{}', credentialsSecret: g, dataSourceUid: provisioned}}\n",
            target.url
        );
        let read_only = Config::parse(&text).unwrap();
        let error = ensure(&target.provisioner(&read_only), &tenant, &read_only).await.expect_err("read-only");
        assert!(!error.is_retryable() && error.to_string().contains("Cannot update read-only data source"), "{error}");
    }
}

#[tokio::test]
async fn organisations_are_created_never_adopted_and_deleted() {
    let target = Target::new().await;
    let config = target.config(", organizations: true");
    let Some(grafana) = target.org_provisioner(&config) else { return };
    let mut tenant = target.tenant("org", None);
    let name = tenant.metadata.name.clone().unwrap();

    let done = ensure(&grafana, &tenant, &config).await.expect("the organisation is created");
    let org_id = done.grafana.as_ref().and_then(|g| g.org_id).expect("the org id is reported");
    assert!(done.operations.contains(&format!("created Grafana organisation {name} (id {org_id})")), "{:?}", done.operations);
    assert!(done.condition.message.contains(&format!("organisation {name} (id {org_id})")), "{}", done.condition.message);
    record(&mut tenant, &done, &config);
    let again = ensure(&grafana, &tenant, &config).await.expect("the recorded organisation is the tenant's");
    assert!(again.operations.is_empty(), "{:?}", again.operations);
    assert_eq!(again.grafana.and_then(|g| g.org_id), Some(org_id));

    // An organisation with a tenant's name that its status does not record is never
    // adopted, nor deleted with it.
    let foreign = target.tenant("taken", None);
    let foreign_name = foreign.metadata.name.clone().unwrap();
    let response = target
        .http
        .post(format!("{}/api/orgs", target.url))
        .basic_auth(&target.admin.as_ref().unwrap().0, Some(&target.admin.as_ref().unwrap().1))
        .json(&json!({ "name": foreign_name }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "someone else creates an organisation");
    let error = ensure(&grafana, &foreign, &config).await.expect_err("the name is taken");
    assert_eq!(error.reason(), reasons::CONFLICT, "{error}");
    assert!(error.to_string().contains("was not created for this tenant"), "{error}");
    assert!(delete(&grafana, &foreign, &config).await.is_ok());
    assert!(org_exists(&target, &foreign_name).await, "a foreign organisation is never deleted");

    let ops = delete(&grafana, &tenant, &config).await.expect("the organisation is deleted");
    assert!(ops.contains(&format!("deleted Grafana organisation {name} (id {org_id})")), "{ops:?}");
    assert!(!org_exists(&target, &name).await);
    assert!(delete(&grafana, &tenant, &config).await.expect("already gone").is_empty());

    if let Some(fake) = target.fake("a service-account token cannot manage organisations") {
        let with_token = target.provisioner(&config);
        let error = ensure(&with_token, &target.tenant("token", None), &config).await.expect_err("403");
        assert!(!error.is_retryable() && error.to_string().contains("HTTP 403"), "{error}");
        fake.rename_org(fake.org_id(&foreign_name).unwrap(), "renamed");
    } else {
        let id = org_id_by_name(&target, &foreign_name).await.expect("the foreign organisation exists");
        let (user, password) = target.admin.clone().unwrap();
        let _ = target.http.delete(format!("{}/api/orgs/{id}", target.url)).basic_auth(user, Some(password)).send().await;
    }
}

async fn org_id_by_name(target: &Target, name: &str) -> Option<i64> {
    let (user, password) = target.admin.clone()?;
    let response = target.http.get(format!("{}/api/orgs/name/{name}", target.url)).basic_auth(user, Some(password)).send().await.ok()?;
    if response.status() != 200 {
        return None;
    }
    response.json::<Value>().await.ok()?.get("id")?.as_i64()
}

async fn org_exists(target: &Target, name: &str) -> bool {
    org_id_by_name(target, name).await.is_some()
}
