//! The admission webhook end to end: the HTTPS server on loopback, its self-signed
//! certificate kept in a Secret and injected into a ValidatingWebhookConfiguration,
//! renewal, and every rule through real AdmissionReview JSON, against the fake API
//! server (or `CX_TEST_KUBECONFIG`).

mod support;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use async_trait::async_trait;
use cx_operator::{
    api::{Agent, CapabilityQuota, Tenant, agent::TENANT_ADMIN_LABEL},
    config::Config,
    webhook::{
        Webhook,
        certificate::{CA_CRT, CA_KEY, TLS_CRT, TLS_KEY, issue_ca, issue_serving, service_dns_names},
        handlers::{ClusterView, ViewError},
    },
};
use k8s_openapi::api::{admissionregistration::v1::ValidatingWebhookConfiguration, core::v1::Secret};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, PostParams},
};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use serde_json::{Value, json};
use support::cluster::{TestCluster, wait_until};

const LIMIT: Duration = Duration::from_secs(20);
const SERVICE: &str = "cx-operator-webhook";

/// A test's webhook: the server, the cluster, and an HTTPS client trusting the CA.
struct Harness {
    cluster: TestCluster,
    config: Arc<Config>,
    webhook: Option<Webhook>,
    http: reqwest::Client,
}

impl Harness {
    /// Starts a cluster, creates the ValidatingWebhookConfiguration, starts the webhook
    /// with `extra` top-level configuration and an HTTPS client for it.
    async fn start(extra: &str, certificate: &str) -> Harness {
        let cluster = TestCluster::start().await;
        let config = Arc::new(cluster.config_with(&format!(
            "operatorNamespace: {ns}\n\
             webhook: {{enabled: true, bindAddress: 127.0.0.1, port: 0, serviceName: {SERVICE}, configurationName: {vwc}, certificate: {certificate}}}\n{extra}",
            ns = cluster.platform_namespace(),
            vwc = configuration_name(&cluster),
        )));
        create_configuration(&cluster).await;
        let webhook = Webhook::start(cluster.client.clone(), config.clone()).await.expect("the webhook starts");
        let ca = secret_text(&cluster, CA_CRT).await;
        let http = https_client(&ca, &host(&cluster), webhook.local_addr());
        Harness { cluster, config, webhook: Some(webhook), http }
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}:{}{path}", host(&self.cluster), self.webhook.as_ref().expect("running").local_addr().port())
    }

    /// Sends one AdmissionReview and returns its `response`.
    async fn review(&self, path: &str, request: Value) -> Value {
        let body =
            self.http.post(self.url(path)).json(&request).send().await.expect("the webhook answers").error_for_status().expect("200");
        let review: Value = body.json().await.expect("an AdmissionReview");
        assert_eq!(review["kind"], "AdmissionReview", "{review}");
        assert_eq!(review["response"]["uid"], request["request"]["uid"], "{review}");
        review["response"].clone()
    }

    fn prefix(&self) -> String {
        self.config.namespace_prefix.clone()
    }

    async fn stop(mut self) {
        if let Some(webhook) = self.webhook.take() {
            webhook.stop().await.expect("the webhook stops cleanly");
        }
        let vwc: Api<ValidatingWebhookConfiguration> = Api::all(self.cluster.client.clone());
        let _ = vwc.delete(&configuration_name(&self.cluster), &DeleteParams::default()).await;
        self.cluster.cleanup().await;
    }
}

fn configuration_name(cluster: &TestCluster) -> String {
    format!("cxt-{}-webhook", cluster.run)
}

fn host(cluster: &TestCluster) -> String {
    format!("{SERVICE}.{}.svc", cluster.platform_namespace())
}

fn self_signed(validity: &str, renew_before: &str) -> String {
    format!("{{mode: SelfSigned, secretName: webhook-tls, validity: {validity}, renewBefore: {renew_before}}}")
}

/// The ValidatingWebhookConfiguration of `examples/webhook.yaml`, pointed at this test.
async fn create_configuration(cluster: &TestCluster) {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/webhook.yaml")).expect("the example exists");
    let mut vwc: ValidatingWebhookConfiguration = serde_yaml_ng::from_str(&text).expect("the example is a ValidatingWebhookConfiguration");
    vwc.metadata.name = Some(configuration_name(cluster));
    vwc.metadata.annotations = None;
    for webhook in vwc.webhooks.as_mut().expect("webhooks") {
        let service = webhook.client_config.service.as_mut().expect("a Service reference");
        service.namespace = cluster.platform_namespace();
        assert!(webhook.client_config.ca_bundle.is_none(), "the example leaves caBundle to the operator");
    }
    Api::<ValidatingWebhookConfiguration>::all(cluster.client.clone()).create(&PostParams::default(), &vwc).await.expect("created");
}

async fn secret(cluster: &TestCluster) -> Secret {
    Api::<Secret>::namespaced(cluster.client.clone(), &cluster.platform_namespace()).get("webhook-tls").await.expect("the Secret exists")
}

async fn secret_text(cluster: &TestCluster, key: &str) -> String {
    let s = secret(cluster).await;
    String::from_utf8(s.data.expect("data")[key].0.clone()).expect("PEM text")
}

fn tls_config(ca_pem: &str) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("PEM")).expect("a CA certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// An HTTPS client that trusts only `ca_pem` and resolves the Service name to the
/// loopback server, so the certificate's name is checked as the API server would.
fn https_client(ca_pem: &str, host: &str, addr: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config(ca_pem))
        .resolve(host, addr)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client builds")
}

/// The certificate the server presents to a client trusting `ca_pem`.
async fn served_certificate(ca_pem: &str, host: &str, addr: SocketAddr) -> Vec<u8> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config(ca_pem)));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connects");
    let name = ServerName::try_from(host.to_string()).expect("a DNS name");
    let tls = connector.connect(name, tcp).await.expect("the handshake verifies against the CA");
    tls.get_ref().1.peer_certificates().expect("a certificate")[0].to_vec()
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::pem_slice_iter(pem.as_bytes()).next().expect("a certificate").expect("PEM").to_vec()
}

static UID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// An AdmissionReview request for a cx-operator.io object.
fn review(kind: &str, operation: &str, object: Option<&Value>, old: Option<&Value>) -> Value {
    let obj = object.or(old).expect("an object");
    let resource = match kind {
        "Tenant" => "tenants",
        "Agent" => "agents",
        _ => "capabilityquotas",
    };
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": format!("uid-{}", UID.fetch_add(1, std::sync::atomic::Ordering::SeqCst)),
            "kind": {"group": "cx-operator.io", "version": "v1alpha1", "kind": kind},
            "resource": {"group": "cx-operator.io", "version": "v1alpha1", "resource": resource},
            "name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"],
            "operation": operation, "userInfo": {"username": "alice"},
            "object": object, "oldObject": old, "dryRun": false
        }
    })
}

#[track_caller]
fn assert_allowed(response: &Value) {
    assert_eq!(response["allowed"], true, "{response}");
}

#[track_caller]
fn assert_denied(response: &Value, field: &str, words: &str) {
    assert_eq!(response["allowed"], false, "{response}");
    let message = response["status"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with(&format!("{field}: ")) && message.contains(words), "expected {field}: ...{words}...; got {response}");
    assert_eq!(response["status"]["code"], 403, "{response}");
}

fn tenant_json(h: &Harness, name: &str, extra: Value) -> Value {
    let mut spec = TestCluster::minimal_spec();
    spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    serde_json::to_value(h.cluster.tenant(name, spec)).unwrap()
}

async fn create_tenant(h: &Harness, name: &str, extra: Value) -> Value {
    let tenant: Tenant = serde_json::from_value(tenant_json(h, name, extra)).unwrap();
    let created = h.cluster.create_tenant(&tenant).await;
    h.cluster.ensure_namespace(&format!("{}{}", h.prefix(), created.name_any())).await;
    serde_json::to_value(created).unwrap()
}

fn agent_json(namespace: &str, name: &str, admin: bool) -> Value {
    let labels = if admin { json!({TENANT_ADMIN_LABEL: "true"}) } else { json!({}) };
    json!({
        "apiVersion": "cx-operator.io/v1alpha1", "kind": "Agent",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"email": format!("{name}@acme.test"), "firstName": name}
    })
}

async fn create_agent(h: &Harness, namespace: &str, name: &str) {
    let agent: Agent = serde_json::from_value(agent_json(namespace, name, false)).unwrap();
    Api::<Agent>::namespaced(h.cluster.client.clone(), namespace).create(&PostParams::default(), &agent).await.expect("agent created");
}

fn quota_json(namespace: &str, name: &str, limits: Value) -> Value {
    json!({
        "apiVersion": "cx-operator.io/v1alpha1", "kind": "CapabilityQuota",
        "metadata": {"name": name, "namespace": namespace}, "spec": {"limits": limits}
    })
}

async fn create_quota(h: &Harness, namespace: &str, name: &str, limits: Value) -> Value {
    let quota: CapabilityQuota = serde_json::from_value(quota_json(namespace, name, limits)).unwrap();
    let created = Api::<CapabilityQuota>::namespaced(h.cluster.client.clone(), namespace)
        .create(&PostParams::default(), &quota)
        .await
        .expect("quota created");
    serde_json::to_value(created).unwrap()
}

#[tokio::test]
async fn the_self_signed_certificate_is_stored_injected_and_served() {
    let h = Harness::start("", &self_signed("365d", "30d")).await;
    let stored = secret(&h.cluster).await;
    assert_eq!(stored.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = stored.data.clone().expect("data");
    for key in [TLS_CRT, TLS_KEY, CA_CRT, CA_KEY] {
        assert!(data.contains_key(key), "the Secret holds {key}");
    }
    let ca = secret_text(&h.cluster, CA_CRT).await;

    // Every webhook of the configuration trusts the CA.
    let vwc: Api<ValidatingWebhookConfiguration> = Api::all(h.cluster.client.clone());
    let configuration = vwc.get(&configuration_name(&h.cluster)).await.expect("exists");
    let webhooks = configuration.webhooks.expect("webhooks");
    assert_eq!(webhooks.len(), 3);
    for webhook in &webhooks {
        assert_eq!(webhook.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice()), Some(ca.as_bytes()), "{}", webhook.name);
    }

    // The server presents the stored certificate under the Service's name.
    let addr = h.webhook.as_ref().unwrap().local_addr();
    assert!(addr.ip().is_loopback());
    assert_eq!(served_certificate(&ca, &host(&h.cluster), addr).await, der(&secret_text(&h.cluster, TLS_CRT).await));
    let health = h.http.get(h.url("/healthz")).send().await.expect("HTTPS works with the CA from the Secret");
    assert!(health.status().is_success());

    // A second replica uses the same Secret rather than issuing its own, and a pass
    // with nothing to do writes nothing.
    let writes = h.cluster.fake.as_ref().map(|f| f.mutating_requests());
    let second = Webhook::start(h.cluster.client.clone(), h.config.clone()).await.expect("a second replica starts");
    if let (Some(fake), Some(before)) = (h.cluster.fake.as_ref(), writes) {
        assert_eq!(fake.mutating_requests(), before, "the second replica found everything in place");
    }
    assert_eq!(secret(&h.cluster).await.data, Some(data));
    assert_eq!(served_certificate(&ca, &host(&h.cluster), second.local_addr()).await, der(&secret_text(&h.cluster, TLS_CRT).await));
    second.stop().await.expect("stops");
    h.stop().await;
}

#[tokio::test]
async fn the_serving_certificate_is_renewed_before_expiry_without_restart() {
    // Valid 4s, renewed 3s before expiry: a renewal is due about a second after issue.
    let h = Harness::start("", &self_signed("4s", "3s")).await;
    let ca = secret_text(&h.cluster, CA_CRT).await;
    let first = der(&secret_text(&h.cluster, TLS_CRT).await);
    let addr = h.webhook.as_ref().unwrap().local_addr();
    assert_eq!(served_certificate(&ca, &host(&h.cluster), addr).await, first);

    wait_until("the Secret to hold a renewed certificate", LIMIT, || async { der(&secret_text(&h.cluster, TLS_CRT).await) != first }).await;
    wait_until("the server to present the renewed certificate", LIMIT, || async {
        served_certificate(&ca, &host(&h.cluster), addr).await != first
    })
    .await;
    // The serving certificate changed; the CA, and so the caBundle, did not.
    assert_eq!(secret_text(&h.cluster, CA_CRT).await, ca);
    let vwc: Api<ValidatingWebhookConfiguration> = Api::all(h.cluster.client.clone());
    let configuration = vwc.get(&configuration_name(&h.cluster)).await.expect("exists");
    assert_eq!(configuration.webhooks.unwrap()[0].client_config.ca_bundle.as_ref().map(|b| b.0.clone()), Some(ca.into_bytes()));
    h.stop().await;
}

#[tokio::test]
async fn tenant_rules_end_to_end() {
    let h = Harness::start("", &self_signed("365d", "30d")).await;
    let protected = create_tenant(&h, "acme", json!({"deletionProtection": true})).await;
    let plain = create_tenant(&h, "shop", json!({"domain": {"fqdn": "shop.example.org"}})).await;
    let path = "/validate/tenants";

    assert_denied(&h.review(path, review("Tenant", "DELETE", None, Some(&protected))).await, "spec.deletionProtection", "protected");
    assert_allowed(&h.review(path, review("Tenant", "DELETE", None, Some(&plain))).await);

    let copy = tenant_json(&h, "copy", json!({"domain": {"fqdn": "shop.example.org"}}));
    assert_denied(
        &h.review(path, review("Tenant", "CREATE", Some(&copy), None)).await,
        "spec.domain.fqdn",
        plain["metadata"]["name"].as_str().unwrap(),
    );
    let other = tenant_json(&h, "other", json!({"domain": {"fqdn": "other.example.org"}}));
    assert_allowed(&h.review(path, review("Tenant", "CREATE", Some(&other), None)).await);
    // An update that keeps the host name passes; one that takes another's is refused.
    let mut renamed = protected.clone();
    renamed["spec"]["displayName"] = "Acme Inc".into();
    assert_allowed(&h.review(path, review("Tenant", "UPDATE", Some(&renamed), Some(&protected))).await);
    renamed["spec"]["domain"] = json!({"fqdn": "shop.example.org"});
    assert_denied(&h.review(path, review("Tenant", "UPDATE", Some(&renamed), Some(&protected))).await, "spec.domain.fqdn", "already used");
    h.stop().await;
}

#[tokio::test]
async fn agent_rules_end_to_end() {
    let h = Harness::start("", &self_signed("365d", "30d")).await;
    let acme = create_tenant(&h, "acme", json!({})).await;
    let off = create_tenant(&h, "off", json!({"enabled": false})).await;
    let ns = format!("{}{}", h.prefix(), acme["metadata"]["name"].as_str().unwrap());
    let off_ns = format!("{}{}", h.prefix(), off["metadata"]["name"].as_str().unwrap());
    create_quota(&h, &ns, "default", json!({"agents": 2})).await;
    let path = "/validate/agents";

    let bob = agent_json(&ns, "bob", false);
    assert_allowed(&h.review(path, review("Agent", "CREATE", Some(&bob), None)).await);
    create_agent(&h, &ns, "ann").await;
    create_agent(&h, &ns, "al").await;
    assert_denied(&h.review(path, review("Agent", "CREATE", Some(&bob), None)).await, "metadata.namespace", "2 of 2");

    let nowhere = agent_json("default", "bob", false);
    assert_denied(&h.review(path, review("Agent", "CREATE", Some(&nowhere), None)).await, "metadata.namespace", "not a tenant namespace");
    let ghost = agent_json(&format!("{}ghost", h.prefix()), "bob", false);
    assert_denied(&h.review(path, review("Agent", "CREATE", Some(&ghost), None)).await, "metadata.namespace", "does not exist");
    let disabled = agent_json(&off_ns, "bob", false);
    assert_denied(&h.review(path, review("Agent", "CREATE", Some(&disabled), None)).await, "metadata.namespace", "disabled");

    let admin = agent_json(&ns, "admin", true);
    assert_denied(&h.review(path, review("Agent", "DELETE", None, Some(&admin))).await, "metadata.name", "tenant administrator");
    assert_allowed(&h.review(path, review("Agent", "DELETE", None, Some(&bob))).await);
    h.stop().await;
}

#[tokio::test]
async fn quota_rules_end_to_end() {
    let h = Harness::start("licence: {agents: 10}\ndefaults: {quota: {agents: 2}}\n", &self_signed("365d", "30d")).await;
    let acme = create_tenant(&h, "acme", json!({})).await;
    let shop = create_tenant(&h, "shop", json!({})).await;
    let acme_ns = format!("{}{}", h.prefix(), acme["metadata"]["name"].as_str().unwrap());
    let shop_ns = format!("{}{}", h.prefix(), shop["metadata"]["name"].as_str().unwrap());
    create_quota(&h, &acme_ns, "default", json!({"agents": 6})).await;
    let shop_default = create_quota(&h, &shop_ns, "default", json!({"agents": 2})).await;
    let path = "/validate/capabilityquotas";

    let ai = quota_json(&shop_ns, "ai", json!({"agents": 1, "aiAgents": 3}));
    assert_denied(
        &h.review(path, review("CapabilityQuota", "CREATE", Some(&ai), None)).await,
        "spec.limits.aiAgents",
        "feature aiAgents is off",
    );

    let mut raise = shop_default.clone();
    raise["spec"]["limits"]["agents"] = 4.into();
    assert_allowed(&h.review(path, review("CapabilityQuota", "UPDATE", Some(&raise), Some(&shop_default))).await);
    raise["spec"]["limits"]["agents"] = 5.into();
    assert_denied(
        &h.review(path, review("CapabilityQuota", "UPDATE", Some(&raise), Some(&shop_default))).await,
        "spec.limits.agents",
        "over the licence cap of 10",
    );
    let no_limit = quota_json(&shop_ns, "default", json!({"widgets": 1}));
    assert_denied(
        &h.review(path, review("CapabilityQuota", "UPDATE", Some(&no_limit), Some(&shop_default))).await,
        "spec.limits.agents",
        "required",
    );
    h.stop().await;
}

#[tokio::test]
async fn malformed_reviews_are_answered_with_their_uid() {
    let h = Harness::start("", &self_signed("365d", "30d")).await;
    let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u-1", "object": 5}});
    let response: Value = h.http.post(h.url("/validate/tenants")).json(&body).send().await.unwrap().json().await.unwrap();
    assert_eq!(response["response"]["uid"], "u-1", "{response}");
    assert_eq!(response["response"]["allowed"], false, "{response}");
    h.stop().await;
}

/// A view whose every read fails, as when the API server is unreachable.
struct Unreachable;

fn unreachable() -> ViewError {
    ViewError { context: "listing Tenants".into(), source: kube::Error::Service("connection refused".into()) }
}

#[async_trait]
impl ClusterView for Unreachable {
    async fn tenant(&self, _: &str) -> Result<Option<Tenant>, ViewError> {
        Err(unreachable())
    }
    async fn tenants(&self) -> Result<Vec<Tenant>, ViewError> {
        Err(unreachable())
    }
    async fn agent_count(&self, _: &str) -> Result<usize, ViewError> {
        Err(unreachable())
    }
    async fn quotas(&self, _: Option<&str>) -> Result<Vec<CapabilityQuota>, ViewError> {
        Err(unreachable())
    }
}

#[tokio::test]
async fn failed_reads_follow_each_rules_failure_policy() {
    let mut h = Harness::start("licence: {agents: 10}\ndefaults: {quota: {agents: 2}}\n", &self_signed("365d", "30d")).await;
    h.webhook.take().unwrap().stop().await.expect("stops");
    let webhook = Webhook::start_with_view(h.cluster.client.clone(), h.config.clone(), Arc::new(Unreachable)).await.expect("starts");
    h.http = https_client(&secret_text(&h.cluster, CA_CRT).await, &host(&h.cluster), webhook.local_addr());
    h.webhook = Some(webhook);
    let ns = format!("{}acme", h.prefix());

    // Fail: Tenants and CapabilityQuotas are refused with the reason.
    let tenant = tenant_json(&h, "acme", json!({}));
    let response = h.review("/validate/tenants", review("Tenant", "CREATE", Some(&tenant), None)).await;
    assert_eq!(response["allowed"], false, "{response}");
    assert!(response["status"]["message"].as_str().unwrap().contains("could not check this Tenant"), "{response}");
    let quota = quota_json(&ns, "default", json!({"agents": 1}));
    assert_eq!(h.review("/validate/capabilityquotas", review("CapabilityQuota", "CREATE", Some(&quota), None)).await["allowed"], false);
    // A rule that needs no read still decides.
    let protected = tenant_json(&h, "acme", json!({"deletionProtection": true}));
    assert_denied(
        &h.review("/validate/tenants", review("Tenant", "DELETE", None, Some(&protected))).await,
        "spec.deletionProtection",
        "protected",
    );

    // Ignore: Agents are admitted with a warning; the Agent controller checks them.
    let response = h.review("/validate/agents", review("Agent", "CREATE", Some(&agent_json(&ns, "bob", false)), None)).await;
    assert_allowed(&response);
    assert!(response["warnings"][0].as_str().unwrap().contains("could not check this Agent"), "{response}");
    h.stop().await;
}

#[tokio::test]
async fn secret_mode_serves_the_certificate_it_is_given() {
    let cluster = TestCluster::start().await;
    let ns = cluster.platform_namespace();
    let now = jiff::Timestamp::now();
    let ca = issue_ca(now, Duration::from_secs(3600)).expect("CA");
    let serving = issue_serving(&ca, &service_dns_names(SERVICE, &ns), now, Duration::from_secs(3600)).expect("certificate");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "given-tls", "namespace": ns},
        "type": "kubernetes.io/tls",
        "stringData": {TLS_CRT: serving.cert_pem, TLS_KEY: serving.key_pem},
    }))
    .unwrap();
    Api::<Secret>::namespaced(cluster.client.clone(), &ns).create(&PostParams::default(), &secret).await.expect("created");
    let config = |secret: &str| {
        Arc::new(cluster.config_with(&format!(
            "operatorNamespace: {ns}\nwebhook: {{enabled: true, bindAddress: 127.0.0.1, port: 0, certificate: {{mode: Secret, secretName: {secret}}}}}\n"
        )))
    };

    let webhook = Webhook::start(cluster.client.clone(), config("given-tls")).await.expect("starts");
    assert_eq!(served_certificate(&ca.cert_pem, &format!("{SERVICE}.{ns}.svc"), webhook.local_addr()).await, der(&serving.cert_pem));
    let stored = Api::<Secret>::namespaced(cluster.client.clone(), &ns).get("given-tls").await.unwrap();
    assert_eq!(stored.data.unwrap().len(), 2, "the operator never writes a Secret it is given");
    webhook.stop().await.expect("stops");

    let missing = Webhook::start(cluster.client.clone(), config("missing-tls")).await.err().expect("no certificate, no server");
    assert!(missing.to_string().contains(&format!("Secret {ns}/missing-tls: does not exist")), "{missing}");
    cluster.cleanup().await;
}
