//! Least privilege, proven: the operator runs one representative scenario against the
//! fake API server with every backend the tests can provide (a real redis-server, the
//! fake Keycloak, the in-memory MongoDB, the fake Grafana, a receiver of the lifecycle
//! notifications) and its admission webhook, as the ServiceAccount of `config/rbac/`.
//! Every request it made (the fake's audit log) must be allowed by
//! `config/rbac/role.yaml` and `leader_election_role.yaml`, and every verb those grant
//! must have been used.
//!
//! The audit log is the fake's: this test always runs against the fake API server, also
//! when `CX_TEST_KUBECONFIG` names a real cluster.

#[allow(dead_code)]
#[path = "support/fake_mongodb.rs"]
mod fake_mongodb;
mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

use cx_operator::{
    api::{
        self, Agent, CapabilityQuota, Tenant, TenantPhase,
        agent::{RESET_PASSWORD_ANNOTATION, TENANT_ADMIN_LABEL},
        conditions::{self, reasons, types},
        tenant::ROTATE_CREDENTIALS_ANNOTATION,
    },
    config::Config,
    operator::Operator,
    provider::{
        data::{CACHE_SECRET, DATABASE_SECRET, DatabaseProvisioner},
        mongodb::{MongoProvider, MongoSettings},
        setup,
    },
    webhook::{
        Webhook,
        certificate::{CA_CRT, TLS_CRT, issue_ca, issue_serving},
    },
};
use fake_mongodb::MemoryMongo;
use k8s_openapi::{
    ByteString,
    api::{
        admissionregistration::v1::ValidatingWebhookConfiguration,
        coordination::v1::Lease,
        core::v1::{ConfigMap, Namespace, Secret, ServiceAccount},
        events::v1::Event,
        rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams, WatchParams},
};
use rustls::pki_types::{CertificateDer, pem::PemObject};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use support::{
    cluster::{wait_for, wait_gone, wait_until},
    fake_apiserver::{FakeApiServer, RequestRecord},
    fake_grafana::FakeGrafana,
    fake_keycloak::FakeKeycloak,
    redis_server::RedisServer,
    tenant_status::{condition, phase},
    webhook_receiver::WebhookReceiver,
};

/// Longest wait for any one step of the scenario.
const LIMIT: Duration = Duration::from_secs(30);
/// The kustomize base this test holds to.
const RBAC_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/rbac");
/// Namespaces of the scenario: the operator's own (as in `config/rbac/`) and the
/// platform namespace with the tenant Ingresses and TLS Secrets.
const OPERATOR_NS: &str = "cx-operator";
const PLATFORM_NS: &str = "cx-platform";
/// `namespacePrefix` at its default.
const TENANT_PREFIX: &str = "tenant-";
/// `webhook.serviceName` at its default.
const SERVICE: &str = "cx-operator-webhook";
/// `webhook.configurationName` at its default, the name `role.yaml` allows.
const CONFIGURATION: &str = "cx-operator";
/// The Grafana data source whose allowed hosts follow the tenants.
const DATA_SOURCE: &str = "cx-tenants";
/// The signing key of the lifecycle notifications.
const SIGNING_KEY: &str = "rbac-test-signing-key-of-at-least-32-bytes";

// ---------------------------------------------------------------------------------
// The RBAC of config/rbac and Kubernetes' matching of requests against it.
// ---------------------------------------------------------------------------------

/// Where a rule applies.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Scope {
    /// A ClusterRole bound by a ClusterRoleBinding: every namespace and the cluster scope.
    Cluster,
    /// A Role bound in its namespace: requests to objects in that namespace only.
    Namespace(String),
}

/// One rule with where it applies and the file it comes from.
#[derive(Clone, Debug)]
struct Grant {
    /// The file of the rule, for messages.
    file: &'static str,
    /// Where the rule applies.
    scope: Scope,
    /// The rule.
    rule: PolicyRule,
}

/// The operator's permissions as `config/rbac/` grants them.
struct Rbac {
    /// Every rule of the ClusterRole and the Role.
    grants: Vec<Grant>,
    /// The user name the ServiceAccount authenticates as.
    user: String,
}

fn read_yaml<T: DeserializeOwned>(file: &str) -> T {
    let path = format!("{RBAC_DIR}/{file}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path} does not parse as the expected kind: {e}"))
}

fn rules_of(file: &'static str, scope: Scope, rules: Option<Vec<PolicyRule>>) -> Vec<Grant> {
    rules.unwrap_or_default().into_iter().map(|rule| Grant { file, scope: scope.clone(), rule }).collect()
}

impl Rbac {
    /// Reads `config/rbac/` and checks that its objects fit together: the kustomization
    /// lists every file, and both bindings give their role to the ServiceAccount.
    fn load() -> Rbac {
        let kustomization: Value = read_yaml("kustomization.yaml");
        let listed: BTreeSet<&str> = kustomization["resources"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let files =
            ["service_account.yaml", "role.yaml", "role_binding.yaml", "leader_election_role.yaml", "leader_election_role_binding.yaml"];
        assert_eq!(listed, files.into_iter().collect(), "kustomization.yaml lists the RBAC files");

        let account: ServiceAccount = read_yaml("service_account.yaml");
        let (sa_name, sa_namespace) = (account.name_any(), account.namespace().expect("the ServiceAccount names its namespace"));
        let is_the_account = |subjects: &Option<Vec<k8s_openapi::api::rbac::v1::Subject>>| {
            subjects
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|s| s.kind == "ServiceAccount" && s.name == sa_name && s.namespace.as_deref() == Some(sa_namespace.as_str()))
        };

        let cluster_role: ClusterRole = read_yaml("role.yaml");
        assert_eq!(cluster_role.name_any(), "cx-operator-manager");
        let binding: ClusterRoleBinding = read_yaml("role_binding.yaml");
        assert_eq!((binding.role_ref.kind.as_str(), binding.role_ref.name.as_str()), ("ClusterRole", "cx-operator-manager"));
        assert!(is_the_account(&binding.subjects), "role_binding.yaml binds the ServiceAccount: {binding:?}");

        let role: Role = read_yaml("leader_election_role.yaml");
        let role_namespace = role.namespace().expect("the Role names its namespace");
        assert_eq!(role_namespace, sa_namespace, "the leader-election Role lives in the operator's namespace");
        let role_binding: RoleBinding = read_yaml("leader_election_role_binding.yaml");
        assert_eq!(role_binding.namespace().as_deref(), Some(role_namespace.as_str()));
        assert_eq!((role_binding.role_ref.kind.as_str(), role_binding.role_ref.name.as_str()), ("Role", role.name_any().as_str()));
        assert!(is_the_account(&role_binding.subjects), "leader_election_role_binding.yaml binds the ServiceAccount");

        let mut grants = rules_of("role.yaml", Scope::Cluster, cluster_role.rules);
        grants.extend(rules_of("leader_election_role.yaml", Scope::Namespace(role_namespace), role.rules));
        Rbac { grants, user: format!("system:serviceaccount:{sa_namespace}:{sa_name}") }
    }

    /// The first grant that allows the request.
    fn allowing(&self, r: &RequestRecord) -> Option<&Grant> {
        self.grants.iter().find(|g| grant_allows(g, r))
    }

    /// Every (file, API group, resource, verb) granted that no request used.
    fn unused(&self, requests: &[RequestRecord]) -> Vec<String> {
        let mut unused = Vec::new();
        for grant in &self.grants {
            let rule = &grant.rule;
            for group in rule.api_groups.as_deref().unwrap_or_default() {
                for resource in rule.resources.as_deref().unwrap_or_default() {
                    for verb in &rule.verbs {
                        let narrowed = Grant {
                            rule: PolicyRule {
                                api_groups: Some(vec![group.clone()]),
                                resources: Some(vec![resource.clone()]),
                                verbs: vec![verb.clone()],
                                resource_names: rule.resource_names.clone(),
                                non_resource_urls: None,
                            },
                            ..grant.clone()
                        };
                        if !requests.iter().any(|r| grant_allows(&narrowed, r)) {
                            unused.push(format!("{}: {verb} {resource} in group {group:?}", grant.file));
                        }
                    }
                }
            }
            for url in rule.non_resource_urls.as_deref().unwrap_or_default() {
                for verb in &rule.verbs {
                    let used = requests.iter().any(|r| !r.is_resource_request() && r.verb == *verb && url_matches(url, &r.path));
                    if !used {
                        unused.push(format!("{}: {verb} {url}", grant.file));
                    }
                }
            }
        }
        unused
    }
}

/// Whether a listed value matches, `*` matching everything (`RBAC` verbs and groups).
fn listed(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == "*" || v == value)
}

/// Kubernetes' `ResourceMatches`: `*`, the exact `resource[/subresource]`, or
/// `*/subresource` for a subresource.
fn resource_listed(list: &[String], r: &RequestRecord) -> bool {
    let combined = r.rbac_resource();
    list.iter().any(|v| v == "*" || *v == combined || (!r.subresource.is_empty() && *v == format!("*/{}", r.subresource)))
}

/// A `nonResourceURLs` entry: the exact path, or a prefix ending in `*`.
fn url_matches(url: &str, path: &str) -> bool {
    match url.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => url == path,
    }
}

/// Whether a rule, where it applies, allows a request (RBAC rule evaluation for the
/// fields apiGroups, resources with subresources, verbs, resourceNames and
/// nonResourceURLs; a Role only in its namespace).
fn grant_allows(grant: &Grant, r: &RequestRecord) -> bool {
    let rule = &grant.rule;
    if !r.is_resource_request() {
        // Non-resource URLs are granted by ClusterRoles only.
        return grant.scope == Scope::Cluster
            && listed(&rule.verbs, &r.verb)
            && rule.non_resource_urls.as_deref().unwrap_or_default().iter().any(|u| url_matches(u, &r.path));
    }
    if let Scope::Namespace(ns) = &grant.scope
        && r.namespace != *ns
    {
        return false;
    }
    let names = rule.resource_names.as_deref().unwrap_or_default();
    listed(rule.api_groups.as_deref().unwrap_or_default(), &r.group)
        && resource_listed(rule.resources.as_deref().unwrap_or_default(), r)
        && listed(&rule.verbs, &r.verb)
        && (names.is_empty() || names.contains(&r.name))
}

/// What a real API server authorizes for the requests: one check per verb of
/// [`RequestRecord::authorized_verbs`] (server-side apply that creates an object is
/// checked for `patch` and for `create`).
fn authorization_checks(requests: &[RequestRecord]) -> Vec<RequestRecord> {
    requests
        .iter()
        .flat_map(|r| {
            r.authorized_verbs().into_iter().map(|verb| RequestRecord { verb: verb.to_string(), ..r.clone() }).collect::<Vec<_>>()
        })
        .collect()
}

/// One line per request: `verb group/resource[/sub] ns/name`.
fn describe(r: &RequestRecord) -> String {
    if !r.is_resource_request() {
        return format!("{} {} (non-resource)", r.verb, r.path);
    }
    let group = if r.group.is_empty() { "core".to_string() } else { r.group.clone() };
    let scope = if r.namespace.is_empty() { "(cluster-wide)".to_string() } else { format!("in {}", r.namespace) };
    let name = if r.name.is_empty() { String::new() } else { format!(" {}", r.name) };
    format!("{} {group}/{}{name} {scope}", r.verb, r.rbac_resource())
}

/// Where each (group, resource, verb) was used, with tenant namespaces folded into one.
fn usage_report(requests: &[RequestRecord]) -> String {
    let mut used: BTreeMap<(String, String, String), BTreeSet<String>> = BTreeMap::new();
    for r in requests.iter().filter(|r| r.is_resource_request()) {
        let ns = match r.namespace.as_str() {
            "" => "cluster-wide".to_string(),
            ns if ns.starts_with(TENANT_PREFIX) => format!("{TENANT_PREFIX}*"),
            ns => ns.to_string(),
        };
        used.entry((r.group.clone(), r.rbac_resource(), r.verb.clone())).or_default().insert(ns);
    }
    used.into_iter()
        .map(|((g, res, verb), ns)| {
            format!(
                "  {:<28} {:<34} {:<7} {}",
                if g.is_empty() { "\"\"" } else { &g },
                res,
                verb,
                ns.into_iter().collect::<Vec<_>>().join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------
// The scenario's world: the fake API server, the backends, the webhook client.
// ---------------------------------------------------------------------------------

/// Tells the reader, past the test harness's output capture, that this test does not
/// use the cluster of `CX_TEST_KUBECONFIG`.
fn announce_fake_only() {
    if let Ok(path) = std::env::var("CX_TEST_KUBECONFIG") {
        let _ = writeln!(
            std::io::stderr(),
            "tests/rbac.rs: CX_TEST_KUBECONFIG={path} is NOT used: the RBAC check reads the fake API server's audit log, \
             so it verifies config/rbac against the fake API server only."
        );
    }
}

async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in api::crds() {
        api.patch(&crd.name_any(), &PatchParams::apply("cx-operator-tests").force(), &Patch::Apply(&crd)).await.expect("CRD is accepted");
    }
    for crd in api::crds() {
        let name = crd.name_any();
        wait_until(&format!("CRD {name} established"), LIMIT, || async {
            api.get_opt(&name).await.ok().flatten().is_some_and(|c| {
                c.status.and_then(|s| s.conditions).unwrap_or_default().iter().any(|c| c.type_ == "Established" && c.status == "True")
            })
        })
        .await;
    }
}

async fn create_namespace(client: &Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).expect("a namespace");
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.expect("the namespace is created");
}

async fn put_secret(client: &Client, namespace: &str, name: &str, type_: Option<&str>, data: &[(&str, &str)]) {
    let secret = Secret {
        metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() },
        type_: type_.map(String::from),
        data: Some(data.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect()),
        ..Secret::default()
    };
    Api::<Secret>::namespaced(client.clone(), namespace)
        .patch(name, &PatchParams::apply("cx-operator-tests").force(), &Patch::Apply(&secret))
        .await
        .expect("the Secret is stored");
}

async fn secret_data(client: &Client, namespace: &str, name: &str) -> BTreeMap<String, String> {
    let secret =
        Api::<Secret>::namespaced(client.clone(), namespace).get(name).await.unwrap_or_else(|e| panic!("Secret {namespace}/{name}: {e}"));
    secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, String::from_utf8(v.0).expect("text"))).collect()
}

/// A TLS Secret for `host` in the platform namespace, as cert-manager would store it.
async fn put_tls_secret(client: &Client, name: &str, host: &str) {
    let now = jiff::Timestamp::now();
    let ca = issue_ca(now, Duration::from_secs(86_400)).expect("a CA");
    let serving = issue_serving(&ca, &[host.to_string()], now, Duration::from_secs(86_400)).expect("a certificate");
    put_secret(client, PLATFORM_NS, name, Some("kubernetes.io/tls"), &[("tls.crt", &serving.cert_pem), ("tls.key", &serving.key_pem)])
        .await;
}

/// The ValidatingWebhookConfiguration of `examples/webhook.yaml`, in the operator
/// namespace of this test.
async fn create_webhook_configuration(client: &Client) {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/webhook.yaml")).expect("the example exists");
    let mut vwc: ValidatingWebhookConfiguration = serde_yaml_ng::from_str(&text).expect("a ValidatingWebhookConfiguration");
    assert_eq!(vwc.name_any(), CONFIGURATION);
    vwc.metadata.annotations = None;
    for webhook in vwc.webhooks.as_mut().expect("webhooks") {
        webhook.client_config.service.as_mut().expect("a Service reference").namespace = OPERATOR_NS.into();
    }
    Api::<ValidatingWebhookConfiguration>::all(client.clone()).create(&PostParams::default(), &vwc).await.expect("created");
}

/// Every backend the scenario runs against.
struct Backends {
    /// A real redis-server: the cache.
    redis: RedisServer,
    /// The fake Keycloak: identity.
    keycloak: FakeKeycloak,
    /// The in-memory MongoDB: the database.
    mongo: Arc<MemoryMongo>,
    /// The fake Grafana: the tenants' hosts in a data source.
    grafana: FakeGrafana,
    /// Receives the lifecycle notifications.
    receiver: WebhookReceiver,
}

/// The operator configuration: every backend, TLS on, the webhook in SelfSigned mode,
/// short leases and backoffs; names at their defaults where RBAC names them.
fn operator_config(b: &Backends, service: &str) -> Config {
    let text = format!(
        "rootDomain: cx.test\nnamespacePrefix: {TENANT_PREFIX}\nplatformNamespace: {PLATFORM_NS}\noperatorNamespace: {OPERATOR_NS}\n\
         reconcile: {{resyncInterval: 10m, minBackoff: 200ms, maxBackoff: 2s}}\n\
         leaderElection: {{leaseNamespace: {OPERATOR_NS}, leaseDuration: 3s, renewGrace: 1s}}\n\
         cache: {{nodes: ['{redis}'], credentialsSecret: redis-admin}}\n\
         database: {{uriSecret: mongo-admin}}\n\
         identity: {{url: '{keycloak}', credentialsSecret: keycloak-admin, timeout: 2s, \
         realm: {{smtp: {{host: smtp.cx.test, port: '25', from: noreply@cx.test}}}}}}\n\
         grafana: {{url: '{grafana}', credentialsSecret: grafana-token, dataSourceUid: {DATA_SOURCE}}}\n\
         notifications:\n  source: /cx-operator/rbac\n  timeout: 2s\n  minBackoff: 200ms\n  maxBackoff: 1s\n\
         \x20 webhooks:\n  - {{name: receiver, url: '{receiver}', signingKey: {{secretName: webhook-keys}}}}\n\
         defaults: {{quota: {{agents: 10}}}}\nlicence: {{agents: 50}}\n\
         webhook: {{enabled: true, bindAddress: 127.0.0.1, port: 0, serviceName: {service}, configurationName: {CONFIGURATION}, \
         certificate: {{mode: SelfSigned}}}}\n",
        redis = b.redis.url(),
        keycloak = b.keycloak.url(),
        grafana = b.grafana.url(),
        receiver = b.receiver.url(),
    );
    Config::parse(&text).unwrap_or_else(|e| panic!("the test configuration is valid: {e}"))
}

/// An HTTPS client for the webhook that trusts only the CA in its Secret and reaches
/// the Service name on loopback, as the API server would call it.
struct WebhookClient {
    /// Trusts the webhook's CA and resolves the Service name to the loopback server.
    http: reqwest::Client,
    /// `https://<service>.<namespace>.svc:<port>`.
    url: String,
}

impl WebhookClient {
    async fn new(client: &Client, webhook: &Webhook) -> WebhookClient {
        let ca = secret_data(client, OPERATOR_NS, "cx-operator-webhook-tls").await[CA_CRT].clone();
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
            roots.add(cert.expect("PEM")).expect("a CA certificate");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let host = format!("{SERVICE}.{OPERATOR_NS}.svc");
        let addr: SocketAddr = webhook.local_addr();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .resolve(&host, addr)
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client builds");
        WebhookClient { http, url: format!("https://{host}:{}", addr.port()) }
    }

    /// Sends one AdmissionReview, as the API server does for a write, and returns
    /// whether it was allowed.
    async fn review(&self, kind: &str, operation: &str, object: Option<&Value>, old: Option<&Value>) -> bool {
        let obj = object.or(old).expect("an object");
        let (path, resource) = match kind {
            "Tenant" => ("/validate/tenants", "tenants"),
            "Agent" => ("/validate/agents", "agents"),
            _ => ("/validate/capabilityquotas", "capabilityquotas"),
        };
        let request = json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": format!("{kind}-{operation}-{}", rand::random::<u32>()),
                "kind": {"group": "cx-operator.io", "version": "v1alpha1", "kind": kind},
                "resource": {"group": "cx-operator.io", "version": "v1alpha1", "resource": resource},
                "name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"],
                "operation": operation, "userInfo": {"username": "alice"},
                "object": object, "oldObject": old, "dryRun": false
            }
        });
        let response = self.http.post(format!("{}{path}", self.url)).json(&request).send().await.expect("the webhook answers");
        let review: Value = response.error_for_status().expect("200").json().await.expect("an AdmissionReview");
        assert_eq!(review["response"]["uid"], request["request"]["uid"], "{review}");
        let allowed = review["response"]["allowed"].as_bool().expect("allowed is set");
        assert!(allowed || review["response"]["status"]["message"].as_str().is_some_and(|m| !m.is_empty()), "a denial says why: {review}");
        allowed
    }
}

/// Ready, for the current generation.
fn ready(t: &Tenant) -> bool {
    t.status.as_ref().is_some_and(|s| conditions::is_true(&s.conditions, types::READY) && s.observed_generation == t.metadata.generation)
}

fn agent_ready(a: &Agent) -> bool {
    a.status.as_ref().is_some_and(|s| conditions::is_true(&s.conditions, types::READY) && s.observed_generation == a.metadata.generation)
}

fn tenant(name: &str, extra: Value) -> Tenant {
    let mut spec = json!({
        "displayName": "Acme", "company": {"name": "Acme GmbH"},
        "admin": {"username": "alice", "email": "alice@acme.test", "firstName": "Alice", "activation": "Credentials"},
    });
    spec.as_object_mut().expect("an object").extend(extra.as_object().expect("an object").clone());
    serde_json::from_value(json!({"apiVersion": "cx-operator.io/v1alpha1", "kind": "Tenant", "metadata": {"name": name}, "spec": spec}))
        .expect("a well-formed Tenant")
}

fn agent(namespace: &str, name: &str, spec: Value) -> Agent {
    serde_json::from_value(json!({
        "apiVersion": "cx-operator.io/v1alpha1", "kind": "Agent", "metadata": {"name": name, "namespace": namespace}, "spec": spec,
    }))
    .expect("a well-formed Agent")
}

async fn redis_auth(server: &RedisServer, user: &str, password: &str) -> bool {
    server.connect_as(user, password).await.is_ok()
}

/// Whether the fake Keycloak has the realm, read as its administrator.
async fn realm_exists(keycloak: &FakeKeycloak, realm: &str) -> bool {
    let token = keycloak.admin_token().await;
    let status = reqwest::Client::new()
        .get(format!("{}/admin/realms/{realm}", keycloak.url()))
        .bearer_auth(token)
        .send()
        .await
        .expect("the fake Keycloak answers")
        .status()
        .as_u16();
    assert!(status == 200 || status == 404, "GET realm {realm}: {status}");
    status == 200
}

/// Events in `namespace` about the object `name` with `reason`.
async fn events(client: &Client, namespace: &str, name: &str, reason: &str) -> Vec<Event> {
    let all = Api::<Event>::namespaced(client.clone(), namespace).list(&ListParams::default()).await.expect("Events can be listed").items;
    all.into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason) && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect()
}

// ---------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn every_request_of_the_operator_is_granted_and_every_grant_is_used() {
    announce_fake_only();
    let rbac = Rbac::load();
    for grant in &rbac.grants {
        let r = &grant.rule;
        let all: Vec<&String> = r.api_groups.iter().chain(r.resources.iter()).flatten().chain(r.verbs.iter()).collect();
        assert!(!all.iter().any(|v| v.contains('*')), "{}: no wildcards: {r:?}", grant.file);
        for list in [r.api_groups.as_deref().unwrap_or_default(), r.resources.as_deref().unwrap_or_default(), &r.verbs] {
            assert!(list.windows(2).all(|w| w[0] < w[1]), "{}: sorted and without duplicates: {list:?}", grant.file);
        }
    }
    let order: Vec<(String, String)> = rbac
        .grants
        .iter()
        .filter(|g| g.scope == Scope::Cluster)
        .map(|g| (g.rule.api_groups.clone().unwrap_or_default().join(","), g.rule.resources.clone().unwrap_or_default().join(",")))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "role.yaml rules are sorted by API group, then resource: {order:?}");

    // The world: the fake API server, the test's own client (no credentials), and the
    // operator's client, authenticated as the ServiceAccount of config/rbac.
    let fake = FakeApiServer::start().await;
    let admin = fake.client().await;
    let op_client = fake.client_as(&rbac.user).await;
    install_crds(&admin).await;
    for ns in [OPERATOR_NS, PLATFORM_NS] {
        create_namespace(&admin, ns).await;
    }
    let b = Backends {
        redis: RedisServer::start(),
        keycloak: FakeKeycloak::start().await,
        mongo: MemoryMongo::new(),
        grafana: FakeGrafana::start().await,
        receiver: WebhookReceiver::start(SIGNING_KEY.as_bytes()).await,
    };
    b.grafana.add_data_source(DATA_SOURCE, &[], false);
    let (redis, keycloak, mongo) = (&b.redis, &b.keycloak, &b.mongo);
    put_secret(&admin, OPERATOR_NS, "redis-admin", None, &[("password", redis.password())]).await;
    put_secret(&admin, OPERATOR_NS, "mongo-admin", None, &[("uri", &mongo.uri())]).await;
    put_secret(
        &admin,
        OPERATOR_NS,
        "keycloak-admin",
        None,
        &[("clientId", keycloak.admin_client_id()), ("clientSecret", keycloak.admin_client_secret())],
    )
    .await;
    put_secret(&admin, OPERATOR_NS, "grafana-token", None, &[("token", b.grafana.token())]).await;
    put_secret(&admin, OPERATOR_NS, "webhook-keys", None, &[("signingKey", SIGNING_KEY)]).await;
    create_webhook_configuration(&admin).await;
    let config = Arc::new(operator_config(&b, SERVICE));
    let providers = {
        let memory = MongoProvider::new(mongo.client(&mongo.uri()), MongoSettings { uri: mongo.uri(), ..MongoSettings::default() })
            .expect("the in-memory MongoDB provider");
        setup::from_config(&op_client, &config)
            .await
            .expect("providers set up from the configuration")
            .with(Arc::new(DatabaseProvisioner::new(Arc::new(memory), &mongo.uri())))
    };

    // The webhook issues its certificate and injects the CA; two replicas compete for
    // the lease.
    let webhook = Webhook::start(op_client.clone(), config.clone()).await.expect("the webhook starts");
    let vwc = Api::<ValidatingWebhookConfiguration>::all(admin.clone()).get(CONFIGURATION).await.expect("the configuration exists");
    let ca = secret_data(&admin, OPERATOR_NS, "cx-operator-webhook-tls").await[CA_CRT].clone();
    assert!(
        vwc.webhooks
            .unwrap_or_default()
            .iter()
            .all(|w| w.client_config.ca_bundle.as_ref().map(|b| b.0.clone()) == Some(ca.clone().into_bytes()))
    );
    let hooks = WebhookClient::new(&admin, &webhook).await;
    let first = Operator::start(op_client.clone(), config.clone(), providers.clone(), "replica-a".into());
    wait_until("replica-a to lead", LIMIT, || async { first.is_leader() }).await;
    let second = Operator::start(op_client.clone(), config.clone(), providers.clone(), "replica-b".into());

    // A Tenant (deletionPolicy Delete), admitted by the webhook; Ready once its TLS
    // Secret appears.
    let tenants: Api<Tenant> = Api::all(admin.clone());
    let acme = tenant("acme", json!({"features": {"widgets": true}, "deletionPolicy": "Delete"}));
    let acme_json = serde_json::to_value(&acme).unwrap();
    assert!(hooks.review("Tenant", "CREATE", Some(&acme_json), None).await);
    tenants.create(&PostParams::default(), &acme).await.expect("the Tenant is created");
    let t = wait_for(&tenants, "acme", LIMIT, "DomainSecure SecretMissing", |t| {
        condition(t, types::DOMAIN_SECURE).is_some_and(|c| c.1 == reasons::SECRET_MISSING)
    })
    .await;
    assert!(!ready(&t));
    put_tls_secret(&admin, "acme-tls", "acme.cx.test").await;
    let t = wait_for(&tenants, "acme", LIMIT, "Ready", ready).await;
    let ns = t.status.as_ref().and_then(|s| s.namespace.clone()).expect("the tenant namespace");
    assert_eq!(ns, "tenant-acme");
    let cache = secret_data(&admin, &ns, CACHE_SECRET).await;
    assert!(redis_auth(redis, &cache["username"], &cache["password"]).await, "the cache user works");
    assert!(secret_data(&admin, &ns, DATABASE_SECRET).await.contains_key("password"));
    assert!(realm_exists(keycloak, "acme").await);
    assert_eq!(b.grafana.allowed_hosts(DATA_SOURCE), ["https://acme.cx.test"], "the tenant's URL is allowed in Grafana");
    wait_until("the ready notification", LIMIT, || async { b.receiver.accepted_types().contains(&"ready".to_string()) }).await;

    // Edit: the tenant ConfigMap follows.
    tenants
        .patch(
            "acme",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"displayName": "Acme Inc", "config": {"campaign": "spring"}}})),
        )
        .await
        .unwrap();
    wait_for(&tenants, "acme", LIMIT, "Ready after the edit", ready).await;
    wait_until("the ConfigMap to carry the edit", LIMIT, || async {
        let cms = Api::<ConfigMap>::namespaced(admin.clone(), &ns).list(&ListParams::default()).await.unwrap().items;
        cms.iter().any(|cm| serde_json::to_string(&cm.data).unwrap_or_default().contains("spring"))
    })
    .await;

    // Disable and enable.
    tenants.patch("acme", &PatchParams::default(), &Patch::Merge(json!({"spec": {"enabled": false}}))).await.unwrap();
    wait_for(&tenants, "acme", LIMIT, "Disabled", |t| phase(t) == Some(TenantPhase::Disabled)).await;
    wait_until("the cache user off", LIMIT, || async { !redis_auth(redis, &cache["username"], &cache["password"]).await }).await;
    tenants.patch("acme", &PatchParams::default(), &Patch::Merge(json!({"spec": {"enabled": true}}))).await.unwrap();
    wait_for(&tenants, "acme", LIMIT, "Ready again", |t| ready(t) && phase(t) == Some(TenantPhase::Ready)).await;

    // Agents: one with a generated password, one with a password from a Secret; both
    // admitted by the webhook.
    let agents: Api<Agent> = Api::namespaced(admin.clone(), &ns);
    let bob = agent(&ns, "bob", json!({"email": "bob@acme.test", "firstName": "Bob", "roles": ["agent"], "activation": "Credentials"}));
    assert!(hooks.review("Agent", "CREATE", Some(&serde_json::to_value(&bob).unwrap()), None).await);
    agents.create(&PostParams::default(), &bob).await.unwrap();
    put_secret(&admin, &ns, "carol-password", None, &[("password", "Carol-Secret-Password-1")]).await;
    let carol = agent(
        &ns,
        "carol",
        json!({"email": "carol@acme.test", "firstName": "Carol", "passwordSecretRef": {"name": "carol-password", "key": "password"}}),
    );
    assert!(hooks.review("Agent", "CREATE", Some(&serde_json::to_value(&carol).unwrap()), None).await);
    agents.create(&PostParams::default(), &carol).await.unwrap();
    wait_for(&agents, "bob", LIMIT, "bob Ready", agent_ready).await;
    wait_for(&agents, "carol", LIMIT, "carol Ready", agent_ready).await;
    assert!(secret_data(&admin, &ns, "bob-credentials").await.contains_key("password"));

    // Edit an Agent and reset its password; delete another.
    agents
        .patch(
            "bob",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {RESET_PASSWORD_ANNOTATION: "r1"}}, "spec": {"roles": ["agent", "supervisor"]}}),
            ),
        )
        .await
        .unwrap();
    wait_for(&agents, "bob", LIMIT, "password reset", |a| {
        agent_ready(a) && a.status.as_ref().and_then(|s| s.last_password_reset.as_deref()) == Some("r1")
    })
    .await;
    agents.delete("carol", &DeleteParams::default()).await.unwrap();
    wait_gone(&agents, "carol", LIMIT).await;

    // The tenant administrator's Agent: the webhook refuses its deletion; forced
    // through anyway, the controller refuses it too, and a repeat of that refusal
    // becomes the series of one Event.
    let admin_agent = wait_for(&agents, "admin", LIMIT, "the administrator's Agent", |a| a.labels().contains_key(TENANT_ADMIN_LABEL)).await;
    assert!(!hooks.review("Agent", "DELETE", None, Some(&serde_json::to_value(&admin_agent).unwrap())).await);
    agents.delete("admin", &DeleteParams::default()).await.unwrap();
    wait_until("a DeletionRefused Event", LIMIT, || async { !events(&admin, &ns, "admin", "DeletionRefused").await.is_empty() }).await;
    tenants.patch("acme", &PatchParams::default(), &Patch::Merge(json!({"spec": {"displayName": "Acme Group"}}))).await.unwrap();
    wait_until("the refusal repeated as a series", LIMIT, || async {
        events(&admin, &ns, "admin", "DeletionRefused").await.iter().any(|e| e.series.as_ref().is_some_and(|s| s.count >= 2))
    })
    .await;
    assert!(agents.get_opt("admin").await.unwrap().is_some(), "the administrator's Agent is kept while its Tenant exists");

    // Leader election: replica-a steps down, replica-b takes over and carries on.
    first.stop().await.expect("replica-a stops and releases the lease");
    wait_until("replica-b to lead", LIMIT, || async { second.is_leader() }).await;
    let lease = Api::<Lease>::namespaced(admin.clone(), OPERATOR_NS).get("cx-operator-leader").await.expect("the lease");
    assert_eq!(lease.spec.and_then(|s| s.holder_identity).as_deref(), Some("replica-b"));

    // The CapabilityQuota: created from the defaults, measured, edited through the
    // webhook's licence check.
    let quotas: Api<CapabilityQuota> = Api::namespaced(admin.clone(), &ns);
    let quota = wait_for(&quotas, "default", LIMIT, "measured", |q| {
        q.status.as_ref().is_some_and(|s| s.observed_generation == q.metadata.generation && s.used.contains_key("agents"))
    })
    .await;
    let old = serde_json::to_value(&quota).unwrap();
    let mut new = old.clone();
    new["spec"]["limits"]["agents"] = json!(20);
    assert!(hooks.review("CapabilityQuota", "UPDATE", Some(&new), Some(&old)).await);
    quotas.patch("default", &PatchParams::default(), &Patch::Merge(json!({"spec": {"limits": {"agents": 20}}}))).await.unwrap();
    wait_for(&quotas, "default", LIMIT, "measured for the edit", |q| {
        q.status
            .as_ref()
            .is_some_and(|s| s.observed_generation == q.metadata.generation && s.hard.get("agents").is_some_and(|h| h.0 == "20"))
    })
    .await;

    // Credential rotation: new passwords, the old ones stop working.
    tenants
        .patch("acme", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {ROTATE_CREDENTIALS_ANNOTATION: "r1"}}})))
        .await
        .unwrap();
    wait_for(&tenants, "acme", LIMIT, "rotation recorded", |t| {
        t.status.as_ref().and_then(|s| s.last_credential_rotation.as_deref()) == Some("r1")
    })
    .await;
    let rotated = secret_data(&admin, &ns, CACHE_SECRET).await;
    assert_ne!(rotated["password"], cache["password"]);
    assert!(redis_auth(redis, &rotated["username"], &rotated["password"]).await);
    assert!(!redis_auth(redis, &cache["username"], &cache["password"]).await);

    // A second Tenant with deletionPolicy Retain: its data outlives it.
    let keep =
        tenant("keep", json!({"deletionPolicy": "Retain", "admin": {"username": "kim", "email": "kim@keep.test", "firstName": "Kim"}}));
    assert!(hooks.review("Tenant", "CREATE", Some(&serde_json::to_value(&keep).unwrap()), None).await);
    put_tls_secret(&admin, "keep-tls", "keep.cx.test").await;
    tenants.create(&PostParams::default(), &keep).await.unwrap();
    wait_for(&tenants, "keep", LIMIT, "Ready", ready).await;
    tenants.delete("keep", &DeleteParams::default()).await.unwrap();
    wait_gone(&tenants, "keep", LIMIT).await;
    assert!(realm_exists(keycloak, "keep").await, "Retain keeps the realm");
    assert!(mongo.database_exists("cx_keep"), "Retain keeps the database");

    // The first Tenant with deletionPolicy Delete: its data goes, and so does its
    // administrator's Agent.
    tenants.delete("acme", &DeleteParams::default()).await.unwrap();
    wait_gone(&tenants, "acme", LIMIT).await;
    assert!(!realm_exists(keycloak, "acme").await, "Delete removes the realm");
    assert!(!mongo.database_exists("cx_acme"), "Delete drops the database");
    assert!(!redis_auth(redis, &rotated["username"], &rotated["password"]).await, "Delete removes the cache user");
    assert_eq!(b.grafana.allowed_hosts(DATA_SOURCE), ["https://keep.cx.test"], "Delete removes the URL from Grafana, Retain keeps it");
    wait_until("the deleted notifications", LIMIT, || async {
        b.receiver.accepted_types().iter().filter(|t| t.as_str() == "deleted").count() == 2
    })
    .await;
    wait_gone(&agents, "admin", LIMIT).await;

    // The webhook's Service is renamed: a restarted replica reissues the serving
    // certificate for the new name under the same CA.
    webhook.stop().await.expect("the webhook stops");
    let before = secret_data(&admin, OPERATOR_NS, "cx-operator-webhook-tls").await;
    let renamed = Arc::new(operator_config(&b, "cx-operator-admission"));
    let webhook = Webhook::start(op_client.clone(), renamed).await.expect("the webhook starts again");
    let after = secret_data(&admin, OPERATOR_NS, "cx-operator-webhook-tls").await;
    assert_ne!(after[TLS_CRT], before[TLS_CRT], "a certificate for the new Service name");
    assert_eq!(after[CA_CRT], before[CA_CRT], "the same CA, so the caBundle stays");
    webhook.stop().await.expect("the webhook stops");
    second.stop().await.expect("replica-b stops");

    // The proof.
    let audit = fake.audit(&rbac.user);
    let own: Vec<RequestRecord> = fake.requests().into_iter().filter(|r| r.user.is_empty()).collect();
    assert!(own.iter().any(|r| r.resource == "tenants" && r.verb == "create"), "the test's own requests are recorded apart");
    assert!(!audit.iter().any(|r| r.resource == "tenants" && r.verb == "create"), "the test's requests are not the operator's");
    assert!(audit.len() > 100, "the operator's requests are recorded: {}", audit.len());
    let checks = authorization_checks(&audit);
    let denied: BTreeSet<String> = checks.iter().filter(|r| rbac.allowing(r).is_none()).map(describe).collect();
    let unused = rbac.unused(&checks);
    let report = usage_report(&checks);
    assert!(
        denied.is_empty() && unused.is_empty(),
        "config/rbac does not fit the operator.\nRequests not allowed ({}):\n  {}\nGrants never used ({}):\n  {}\nWhat the operator used:\n{report}",
        denied.len(),
        denied.into_iter().collect::<Vec<_>>().join("\n  "),
        unused.len(),
        unused.join("\n  "),
    );
    eprintln!("What the operator used (group, resource, verb, where):\n{report}");
    fake.shutdown().await;
}

#[tokio::test]
async fn the_fake_records_who_asked_and_names_verbs_as_rbac_does() {
    let fake = FakeApiServer::start().await;
    let admin = fake.client().await;
    let user = "system:serviceaccount:cx-operator:cx-operator";
    let operator = fake.client_as(user).await;

    let mine: Api<ConfigMap> = Api::namespaced(operator.clone(), "default");
    mine.list(&ListParams::default()).await.unwrap();
    let stream = mine.watch(&WatchParams::default().timeout(1), "0").await.unwrap();
    drop(stream);
    let _ = mine.get_opt("missing").await.unwrap();
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "me"}})).unwrap();
    let leases: Api<Lease> = Api::namespaced(operator.clone(), "kube-node-lease");
    leases.create(&PostParams::default(), &lease).await.unwrap();
    leases.patch("l", &PatchParams::default(), &Patch::Merge(json!({"spec": {"holderIdentity": "you"}}))).await.unwrap();
    leases.replace("l", &PostParams::default(), &leases.get("l").await.unwrap()).await.unwrap();
    Api::<Namespace>::all(operator.clone()).list(&ListParams::default()).await.unwrap();
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"}});
    for value in ["v", "w"] {
        let mut cm = applied.clone();
        cm["data"]["k"] = json!(value);
        mine.patch("applied", &PatchParams::apply("cx-operator"), &Patch::Apply(&cm)).await.unwrap();
    }
    Api::<ConfigMap>::namespaced(admin.clone(), "default")
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .unwrap();
    admin.apiserver_version().await.unwrap();

    let audit: Vec<(String, String, String, String, String)> = fake
        .audit(user)
        .iter()
        .map(|r| (r.verb.clone(), r.group.clone(), r.rbac_resource(), r.namespace.clone(), r.name.clone()))
        .collect();
    let expected = [
        ("list", "", "configmaps", "default", ""),
        ("watch", "", "configmaps", "default", ""),
        ("get", "", "configmaps", "default", "missing"),
        ("create", "coordination.k8s.io", "leases", "kube-node-lease", ""),
        ("patch", "coordination.k8s.io", "leases", "kube-node-lease", "l"),
        ("get", "coordination.k8s.io", "leases", "kube-node-lease", "l"),
        ("update", "coordination.k8s.io", "leases", "kube-node-lease", "l"),
        ("list", "", "namespaces", "", ""),
        ("patch", "", "configmaps", "default", "applied"),
        ("patch", "", "configmaps", "default", "applied"),
    ]
    .map(|(v, g, r, n, name)| (v.to_string(), g.to_string(), r.to_string(), n.to_string(), name.to_string()));
    assert_eq!(audit, expected, "the operator's requests, named as RBAC names them");
    let applies: Vec<Vec<String>> = fake
        .audit(user)
        .iter()
        .filter(|r| r.name == "applied")
        .map(|r| r.authorized_verbs().into_iter().map(String::from).collect())
        .collect();
    assert_eq!(applies, [vec!["patch", "create"], vec!["patch"]], "an apply that creates is also authorized as create");
    let own: Vec<(String, bool)> =
        fake.requests().iter().filter(|r| r.user.is_empty()).map(|r| (r.verb.clone(), r.is_resource_request())).collect();
    assert_eq!(own, [("deletecollection".to_string(), true), ("get".to_string(), false)], "the test's own requests carry no user");

    // A token the server never issued is refused, as a real server refuses it.
    let mut forged = fake.kubeconfig();
    forged.auth_infos[0].auth_info.get_or_insert_with(Default::default).token = Some("forged".to_string().into());
    let config = kube::Config::from_custom_kubeconfig(forged, &kube::config::KubeConfigOptions::default()).await.unwrap();
    let intruder = Client::try_from(config).unwrap();
    match Api::<ConfigMap>::namespaced(intruder, "default").list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (401, "Unauthorized")),
        other => panic!("a forged token must be refused: {other:?}"),
    }
    fake.shutdown().await;
}

#[test]
fn rbac_matching_follows_kubernetes() {
    let rule = |groups: &[&str], resources: &[&str], verbs: &[&str], names: &[&str]| PolicyRule {
        api_groups: Some(groups.iter().map(|s| s.to_string()).collect()),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        resource_names: (!names.is_empty()).then(|| names.iter().map(|s| s.to_string()).collect()),
        non_resource_urls: None,
    };
    let request = |verb: &str, group: &str, resource: &str, sub: &str, namespace: &str, name: &str| RequestRecord {
        verb: verb.into(),
        group: group.into(),
        version: "v1".into(),
        resource: resource.into(),
        subresource: sub.into(),
        namespace: namespace.into(),
        name: name.into(),
        user: "u".into(),
        user_agent: String::new(),
        status: 200,
        created: false,
        path: String::new(),
    };
    let cluster = |rule| Grant { file: "test", scope: Scope::Cluster, rule };
    let in_ns = |rule| Grant { file: "test", scope: Scope::Namespace("ops".into()), rule };

    let tenants = cluster(rule(&["cx-operator.io"], &["tenants"], &["get", "patch"], &[]));
    assert!(grant_allows(&tenants, &request("get", "cx-operator.io", "tenants", "", "", "acme")));
    assert!(!grant_allows(&tenants, &request("list", "cx-operator.io", "tenants", "", "", "")), "verb");
    assert!(!grant_allows(&tenants, &request("get", "other.io", "tenants", "", "", "acme")), "group");
    assert!(
        !grant_allows(&tenants, &request("patch", "cx-operator.io", "tenants", "status", "", "acme")),
        "a subresource is its own resource"
    );
    let status = cluster(rule(&["cx-operator.io"], &["tenants/status"], &["patch"], &[]));
    assert!(grant_allows(&status, &request("patch", "cx-operator.io", "tenants", "status", "", "acme")));
    assert!(!grant_allows(&status, &request("patch", "cx-operator.io", "tenants", "", "", "acme")));
    let any_status = cluster(rule(&["*"], &["*/status"], &["*"], &[]));
    assert!(grant_allows(&any_status, &request("update", "x.io", "widgets", "status", "n", "w")));
    assert!(!grant_allows(&any_status, &request("update", "x.io", "widgets", "", "n", "w")));
    let core = cluster(rule(&[""], &["secrets"], &["get"], &[]));
    assert!(grant_allows(&core, &request("get", "", "secrets", "", "any", "s")));
    assert!(!grant_allows(&core, &request("get", "apps", "secrets", "", "any", "s")));

    let named = cluster(rule(&["admissionregistration.k8s.io"], &["validatingwebhookconfigurations"], &["get", "patch"], &["cx-operator"]));
    assert!(grant_allows(
        &named,
        &request("patch", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "", "", "cx-operator")
    ));
    assert!(!grant_allows(&named, &request("patch", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "", "", "other")));
    assert!(
        !grant_allows(&named, &request("get", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "", "", "")),
        "lists have no name"
    );

    let leases = in_ns(rule(&["coordination.k8s.io"], &["leases"], &["create", "get", "patch"], &[]));
    assert!(grant_allows(&leases, &request("get", "coordination.k8s.io", "leases", "", "ops", "l")));
    assert!(!grant_allows(&leases, &request("get", "coordination.k8s.io", "leases", "", "other", "l")), "a Role stays in its namespace");
    assert!(!grant_allows(&leases, &request("get", "coordination.k8s.io", "leases", "", "", "")), "a Role grants nothing cluster-wide");

    // Unused grants are named per verb, and a use in the wrong namespace does not count.
    let rbac = Rbac { grants: vec![tenants, leases], user: "u".into() };
    let used =
        [request("get", "cx-operator.io", "tenants", "", "", "acme"), request("get", "coordination.k8s.io", "leases", "", "other", "l")];
    assert_eq!(
        rbac.unused(&used),
        [
            "test: patch tenants in group \"cx-operator.io\"",
            "test: create leases in group \"coordination.k8s.io\"",
            "test: get leases in group \"coordination.k8s.io\"",
            "test: patch leases in group \"coordination.k8s.io\"",
        ]
    );
}
