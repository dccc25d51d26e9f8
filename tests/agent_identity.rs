//! Agents as users of their tenant's realm, end to end: the operator against a
//! Kubernetes API (the fake, or `CX_TEST_KUBECONFIG`) and the fake Keycloak, whose
//! request log and sent e-mails the tests read.

mod support;

use std::{collections::BTreeMap, time::Duration};

use cx_operator::{
    api::{
        Agent, Tenant,
        agent::{AgentPhase, TENANT_ADMIN_LABEL},
        conditions::{self, reasons, types},
    },
    operator::Operator,
    provider::setup,
};
use k8s_openapi::api::{core::v1::Secret, events::v1::Event};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use support::{
    cluster::{TestCluster, wait_for, wait_gone, wait_until},
    fake_keycloak::FakeKeycloak,
};

const LIMIT: Duration = Duration::from_secs(30);
const VERIFY_EMAIL: &str = "VERIFY_EMAIL";
const UPDATE_PASSWORD: &str = "UPDATE_PASSWORD";
const CONFIGURE_TOTP: &str = "CONFIGURE_TOTP";

fn condition(a: &Agent, type_: &str) -> Option<(String, String, String)> {
    let c = conditions::find(&a.status.as_ref()?.conditions, type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn is_ready(a: &Agent) -> bool {
    a.status.as_ref().is_some_and(|s| conditions::is_true(&s.conditions, types::READY) && s.observed_generation == a.metadata.generation)
}

fn user_id(a: &Agent) -> String {
    a.status.as_ref().and_then(|s| s.user_id.clone()).expect("the Agent has a user id")
}

/// Reads and drives Keycloak as an administrator and as the realm's users would.
struct Keycloak {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Keycloak {
    async fn new(fake: &FakeKeycloak) -> Keycloak {
        Keycloak { http: reqwest::Client::new(), url: fake.url(), token: fake.admin_token().await }
    }

    async fn get(&self, path: &str) -> Option<Value> {
        let response = self.http.get(format!("{}/admin/realms/{path}", self.url)).bearer_auth(&self.token).send().await.unwrap();
        match response.status().as_u16() {
            404 => None,
            200 => Some(response.json().await.unwrap()),
            other => panic!("GET {path}: {other}"),
        }
    }

    async fn user(&self, realm: &str, id: &str) -> Option<Value> {
        self.get(&format!("{realm}/users/{id}")).await
    }

    async fn users_named(&self, realm: &str, username: &str) -> Vec<Value> {
        let users = self.get(&format!("{realm}/users?username={username}&exact=true")).await.unwrap_or(json!([]));
        users.as_array().unwrap().clone()
    }

    async fn roles(&self, realm: &str, id: &str) -> Vec<String> {
        let roles = self.get(&format!("{realm}/users/{id}/role-mappings/realm")).await.unwrap();
        let mut names: Vec<String> = roles
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["name"].as_str())
            .filter(|n| !n.starts_with("default-roles-"))
            .map(String::from)
            .collect();
        names.sort();
        names
    }

    async fn credential_types(&self, realm: &str, id: &str) -> Vec<String> {
        let credentials = self.get(&format!("{realm}/users/{id}/credentials")).await.unwrap();
        credentials.as_array().unwrap().iter().filter_map(|c| c["type"].as_str().map(String::from)).collect()
    }

    async fn add_otp(&self, realm: &str, id: &str, fake: &FakeKeycloak) {
        fake.add_otp_credential(realm, id);
        assert!(self.credential_types(realm, id).await.contains(&"otp".to_string()));
    }

    /// A password login through `admin-cli`, as a person logs in; the error is the
    /// status and Keycloak's `error_description`.
    async fn login(&self, realm: &str, username: &str, password: &str) -> Result<(), (u16, String)> {
        let form = [("grant_type", "password"), ("client_id", "admin-cli"), ("username", username), ("password", password)];
        let response =
            self.http.post(format!("{}/realms/{realm}/protocol/openid-connect/token", self.url)).form(&form).send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or_default();
        if status == 200 { Ok(()) } else { Err((status, body["error_description"].as_str().unwrap_or_default().to_string())) }
    }
}

/// The configuration of these tests: the fake Keycloak with SMTP settings (so that
/// activation e-mails can be sent) and a short request timeout.
async fn identity_config(cluster: &TestCluster, keycloak: &FakeKeycloak) -> cx_operator::config::Config {
    let data = [("clientId", keycloak.admin_client_id()), ("clientSecret", keycloak.admin_client_secret())];
    cluster.put_platform_secret("keycloak-admin", &data).await;
    cluster.config_with(&format!(
        "identity: {{url: '{}', credentialsSecret: keycloak-admin, timeout: 1s, \
         realm: {{smtp: {{host: smtp.cx.test, port: '25', from: noreply@cx.test}}}}}}\n\
         operatorNamespace: {}\ningress: {{tls: {{enabled: false}}}}\n",
        keycloak.url(),
        cluster.platform_namespace()
    ))
}

/// A cluster, the fake Keycloak and a running operator.
struct Setup {
    cluster: TestCluster,
    fake: FakeKeycloak,
    keycloak: Keycloak,
    op: Operator,
}

impl Setup {
    async fn start() -> Setup {
        let cluster = TestCluster::start().await;
        let fake = FakeKeycloak::start().await;
        let config = identity_config(&cluster, &fake).await;
        let providers = setup::from_config(&cluster.client, &config).await.expect("providers set up");
        let (op, _) = cluster.operator(config, providers, "a").await;
        let keycloak = Keycloak::new(&fake).await;
        Setup { cluster, fake, keycloak, op }
    }

    /// Creates a ready Tenant whose administrator gets a generated password, and
    /// returns its realm and namespace.
    async fn tenant(&self, name: &str) -> (String, String) {
        let mut spec = TestCluster::minimal_spec();
        spec["admin"]["activation"] = json!("Credentials");
        let tenant = self.cluster.tenant(name, spec);
        self.cluster.create_tenant(&tenant).await;
        let api: Api<Tenant> = Api::all(self.cluster.client.clone());
        wait_for(&api, &tenant.name_any(), LIMIT, "Ready", |t| {
            t.status.as_ref().is_some_and(|s| conditions::is_true(&s.conditions, types::READY))
        })
        .await;
        (tenant.name_any(), format!("{}{}", self.cluster.namespace_prefix(), tenant.name_any()))
    }

    fn agents(&self, namespace: &str) -> Api<Agent> {
        Api::namespaced(self.cluster.client.clone(), namespace)
    }

    async fn create_agent(&self, namespace: &str, name: &str, spec: Value) -> Agent {
        let agent: Agent = serde_json::from_value(json!({
            "apiVersion": "cx-operator.io/v1alpha1", "kind": "Agent",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec,
        }))
        .unwrap();
        self.agents(namespace).create(&PostParams::default(), &agent).await.unwrap()
    }

    async fn patch_agent(&self, namespace: &str, name: &str, patch: Value) {
        self.agents(namespace).patch(name, &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    }

    async fn annotate(&self, namespace: &str, name: &str, key: &str, value: &str) {
        self.patch_agent(namespace, name, json!({"metadata": {"annotations": {key: value}}})).await;
    }

    async fn secret(&self, namespace: &str, name: &str) -> BTreeMap<String, String> {
        let api: Api<Secret> = Api::namespaced(self.cluster.client.clone(), namespace);
        let secret = api.get(name).await.unwrap_or_else(|e| panic!("Secret {name}: {e}"));
        secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, String::from_utf8(v.0).unwrap())).collect()
    }

    async fn events(&self, namespace: &str, name: &str) -> Vec<Event> {
        let api: Api<Event> = Api::namespaced(self.cluster.client.clone(), namespace);
        let events = api.list(&ListParams::default()).await.unwrap().items;
        events.into_iter().filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)).collect()
    }

    /// Writes to the user `id` (its representation and its sub-resources) so far.
    fn writes_to_user(&self, id: &str) -> Vec<String> {
        self.fake
            .writes()
            .into_iter()
            .filter(|r| r.path.contains(&format!("/users/{id}")))
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    async fn stop(self) {
        self.op.stop().await.unwrap();
        self.cluster.cleanup().await;
    }
}

#[tokio::test]
async fn the_tenant_admin_is_an_agent_that_cannot_be_deleted_while_its_tenant_exists() {
    let s = Setup::start().await;
    let (realm, ns) = s.tenant("admin").await;
    let agents = s.agents(&ns);
    let admin = wait_for(&agents, "admin", LIMIT, "Ready", is_ready).await;
    assert_eq!(admin.labels().get(TENANT_ADMIN_LABEL).map(String::as_str), Some("true"));
    assert_eq!(admin.spec.roles, ["admin"]);
    assert_eq!(admin.owner_references()[0].kind, "Tenant");
    let id = user_id(&admin);
    let user = s.keycloak.user(&realm, &id).await.expect("the administrator is a user of the realm");
    assert_eq!(user["username"], "alice");
    assert_eq!(user["email"], "alice@acme.test");
    assert_eq!(s.keycloak.roles(&realm, &id).await, ["admin"]);

    // Credentials activation: a temporary password in a Secret of the tenant namespace.
    let credentials = s.secret(&ns, "admin-credentials").await;
    assert_eq!(credentials["username"], "alice");
    let password = &credentials["password"];
    let refused = s.keycloak.login(&realm, "alice", password).await.unwrap_err();
    assert_eq!(refused.1, "Account is not fully set up", "the generated password is temporary");
    assert!(user["requiredActions"].as_array().unwrap().contains(&json!(UPDATE_PASSWORD)));

    // Deleting the administrator is refused with an Event while the Tenant exists.
    agents.delete("admin", &DeleteParams::default()).await.unwrap();
    wait_until("a DeletionRefused Event", LIMIT, || async {
        s.events(&ns, "admin").await.iter().any(|e| e.reason.as_deref() == Some("DeletionRefused") && e.type_.as_deref() == Some("Warning"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(agents.get_opt("admin").await.unwrap().is_some(), "the administrator Agent is kept");
    assert!(s.keycloak.user(&realm, &id).await.is_some(), "the administrator keeps its user");

    // With the Tenant gone, it goes too.
    Api::<Tenant>::all(s.cluster.client.clone()).delete(&realm, &DeleteParams::default()).await.unwrap();
    wait_gone(&Api::<Tenant>::all(s.cluster.client.clone()), &realm, LIMIT).await;
    wait_gone(&agents, "admin", LIMIT).await;
    assert!(s.keycloak.get(&realm).await.is_none(), "the realm is deleted with the Tenant");
    s.stop().await;
}

#[tokio::test]
async fn an_agent_follows_its_spec_and_is_removed_with_its_user() {
    let s = Setup::start().await;
    let (realm, ns) = s.tenant("spec").await;
    let spec = json!({
        "email": "bob@acme.test", "firstName": "Bob", "lastName": "Meyer", "phone": "+4930123456",
        "title": "Support", "roles": ["agent"], "queues": ["billing"], "skills": ["german"],
        "mobileApp": true, "timeFormat": "24h", "activation": "Email", "twoFactor": "required",
    });
    s.create_agent(&ns, "bob", spec).await;
    let agents = s.agents(&ns);
    let bob = wait_for(&agents, "bob", LIMIT, "Ready", is_ready).await;
    assert_eq!(bob.status.as_ref().unwrap().phase, Some(AgentPhase::Ready));
    assert_eq!(bob.status.as_ref().unwrap().locked, Some(false));
    let id = user_id(&bob);
    let user = s.keycloak.user(&realm, &id).await.unwrap();
    assert_eq!(user["username"], "bob");
    assert_eq!(user["lastName"], "Meyer");
    assert_eq!(user["attributes"]["alias"], json!(["Bob Meyer"]), "the alias defaults to the full name");
    assert_eq!(user["attributes"]["phone"], json!(["+4930123456"]));
    assert_eq!(user["attributes"]["queues"], json!(["billing"]));
    assert_eq!(user["attributes"]["skills"], json!(["german"]));
    assert_eq!(user["attributes"]["mobileApp"], json!(["true"]));
    assert_eq!(user["attributes"]["timeFormat"], json!(["24h"]));
    assert!(user["requiredActions"].as_array().unwrap().contains(&json!(CONFIGURE_TOTP)), "twoFactor: required");
    assert_eq!(s.keycloak.roles(&realm, &id).await, ["agent"]);
    let emails: Vec<_> = s.fake.sent_emails().into_iter().filter(|e| e.user_id == id).collect();
    assert_eq!(emails.len(), 1, "one activation e-mail: {emails:?}");
    assert_eq!(emails[0].to, "bob@acme.test");
    assert!(emails[0].actions.contains(&VERIFY_EMAIL.to_string()) && emails[0].actions.contains(&UPDATE_PASSWORD.to_string()));

    // Edits: roles by difference, attributes, names.
    s.patch_agent(&ns, "bob", json!({"spec": {"roles": ["agent", "supervisor"], "title": "Lead", "alias": "Bobby"}})).await;
    wait_for(&agents, "bob", LIMIT, "edit applied", is_ready).await;
    wait_until("roles applied", LIMIT, || async { s.keycloak.roles(&realm, &id).await == ["agent", "supervisor"] }).await;
    let user = s.keycloak.user(&realm, &id).await.unwrap();
    assert_eq!(user["attributes"]["title"], json!(["Lead"]));
    assert_eq!(user["attributes"]["alias"], json!(["Bobby"]));
    s.patch_agent(&ns, "bob", json!({"spec": {"roles": ["supervisor"]}})).await;
    wait_until("a role removed", LIMIT, || async { s.keycloak.roles(&realm, &id).await == ["supervisor"] }).await;

    // Disable and enable.
    s.patch_agent(&ns, "bob", json!({"spec": {"enabled": false}})).await;
    let disabled =
        wait_for(&agents, "bob", LIMIT, "Disabled", |a| a.status.as_ref().and_then(|s| s.phase) == Some(AgentPhase::Disabled)).await;
    assert_eq!(condition(&disabled, types::READY).unwrap().1, reasons::DISABLED);
    wait_until("the user disabled", LIMIT, || async { s.keycloak.user(&realm, &id).await.unwrap()["enabled"] == false }).await;
    s.patch_agent(&ns, "bob", json!({"spec": {"enabled": true}})).await;
    wait_for(&agents, "bob", LIMIT, "Ready again", is_ready).await;
    wait_until("the user enabled", LIMIT, || async { s.keycloak.user(&realm, &id).await.unwrap()["enabled"] == true }).await;

    // An e-mail change unverifies the address and sends a verification.
    s.patch_agent(&ns, "bob", json!({"spec": {"email": "robert@acme.test"}})).await;
    wait_until("a verification e-mail to the new address", LIMIT, || async {
        s.fake.sent_emails().iter().any(|e| e.to == "robert@acme.test" && e.actions.contains(&VERIFY_EMAIL.to_string()))
    })
    .await;
    let user = s.keycloak.user(&realm, &id).await.unwrap();
    assert_eq!(user["email"], "robert@acme.test");
    assert_eq!(user["emailVerified"], false);

    // Deletion removes the user.
    agents.delete("bob", &DeleteParams::default()).await.unwrap();
    wait_gone(&agents, "bob", LIMIT).await;
    assert!(s.keycloak.user(&realm, &id).await.is_none(), "the user is removed with its Agent");
    assert!(s.events(&ns, "bob").await.iter().any(|e| e.reason.as_deref() == Some("Deleted")));
    s.stop().await;
}

#[tokio::test]
async fn imperative_operations_run_once_per_annotation_value() {
    let s = Setup::start().await;
    let (realm, ns) = s.tenant("ops").await;
    let secrets: Api<Secret> = Api::namespaced(s.cluster.client.clone(), &ns);
    let chosen = "Carol-Chose-This-1";
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "carol-initial"}, "stringData": {"password": chosen}})).unwrap();
    secrets.create(&PostParams::default(), &secret).await.unwrap();
    let spec = json!({
        "email": "carol@acme.test", "firstName": "Carol", "roles": ["agent"],
        "passwordSecretRef": {"name": "carol-initial", "key": "password"},
    });
    s.create_agent(&ns, "carol", spec).await;
    let agents = s.agents(&ns);
    let id = user_id(&wait_for(&agents, "carol", LIMIT, "Ready", is_ready).await);
    s.keycloak.login(&realm, "carol", chosen).await.expect("the password from passwordSecretRef works");

    // Five failed logins lock the user out; the status shows it, the unlock clears it.
    for _ in 0..5 {
        assert!(s.keycloak.login(&realm, "carol", "wrong-password").await.is_err());
    }
    assert!(s.keycloak.login(&realm, "carol", chosen).await.is_err(), "locked out after five failures");
    s.patch_agent(&ns, "carol", json!({"metadata": {"labels": {"poke": "1"}}})).await;
    wait_for(&agents, "carol", LIMIT, "locked", |a| a.status.as_ref().and_then(|s| s.locked) == Some(true)).await;
    s.annotate(&ns, "carol", "cx-operator.io/unlock", "first").await;
    let a =
        wait_for(&agents, "carol", LIMIT, "unlocked", |a| a.status.as_ref().and_then(|s| s.last_unlock.as_deref()) == Some("first")).await;
    assert_eq!(a.status.unwrap().locked, Some(false));
    s.keycloak.login(&realm, "carol", chosen).await.expect("unlocked");

    // Reset password: a temporary password in carol-credentials, once per value.
    s.fake.clear_requests();
    s.annotate(&ns, "carol", "cx-operator.io/reset-password", "2026-11-23").await;
    wait_for(&agents, "carol", LIMIT, "password reset", |a| {
        a.status.as_ref().and_then(|s| s.last_password_reset.as_deref()) == Some("2026-11-23")
    })
    .await;
    let temporary = s.secret(&ns, "carol-credentials").await["password"].clone();
    assert_eq!(s.keycloak.login(&realm, "carol", chosen).await.unwrap_err().1, "Invalid user credentials");
    assert_eq!(s.keycloak.login(&realm, "carol", &temporary).await.unwrap_err().1, "Account is not fully set up");
    s.patch_agent(&ns, "carol", json!({"metadata": {"labels": {"poke": "2"}}})).await;
    wait_until("another reconcile", LIMIT, || async { s.op.metrics.reconcile_count("agent") > 0 }).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let resets = s.writes_to_user(&id).into_iter().filter(|w| w.ends_with("/reset-password")).count();
    assert_eq!(resets, 1, "one reset per annotation value");
    assert_eq!(s.secret(&ns, "carol-credentials").await["password"], temporary, "the Secret is not rewritten");

    // Reset 2FA: OTP credentials removed, a recovery credential in carol-recovery.
    s.keycloak.add_otp(&realm, &id, &s.fake).await;
    s.annotate(&ns, "carol", "cx-operator.io/reset-2fa", "lost-phone").await;
    wait_for(&agents, "carol", LIMIT, "2FA reset", |a| {
        a.status.as_ref().and_then(|s| s.last_two_factor_reset.as_deref()) == Some("lost-phone")
    })
    .await;
    assert!(!s.keycloak.credential_types(&realm, &id).await.contains(&"otp".to_string()), "OTP credentials are removed");
    let recovery = s.secret(&ns, "carol-recovery").await;
    assert_eq!(recovery["username"], "carol");
    assert_eq!(s.keycloak.login(&realm, "carol", &recovery["recoveryCode"]).await.unwrap_err().1, "Account is not fully set up");
    let events = s.events(&ns, "carol").await;
    assert!(events.iter().any(|e| e.note.as_deref().is_some_and(|n| n.contains("carol-recovery"))), "{events:?}");
    for e in &events {
        let note = e.note.as_deref().unwrap_or_default();
        assert!(!note.contains(chosen) && !note.contains(&temporary) && !note.contains(&recovery["recoveryCode"]), "{note}");
    }
    s.stop().await;
}

#[tokio::test]
async fn a_password_the_realm_refuses_and_an_agent_over_quota_are_reported() {
    let s = Setup::start().await;
    let (realm, ns) = s.tenant("refuse").await;
    let secrets: Api<Secret> = Api::namespaced(s.cluster.client.clone(), &ns);
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "weak"}, "stringData": {"password": "short"}})).unwrap();
    secrets.create(&PostParams::default(), &secret).await.unwrap();
    let spec = json!({"email": "dan@acme.test", "firstName": "Dan", "passwordSecretRef": {"name": "weak", "key": "password"}});
    s.create_agent(&ns, "dan", spec).await;
    let agents = s.agents(&ns);
    let dan =
        wait_for(&agents, "dan", LIMIT, "refused", |a| condition(a, types::READY).is_some_and(|c| c.1 == reasons::INVALID_SPEC)).await;
    let (status, _, message) = condition(&dan, types::READY).unwrap();
    assert_eq!(status, "False");
    assert!(message.contains("Invalid password: minimum length 12"), "Keycloak's explanation is shown: {message}");
    assert!(!message.contains("short"), "never the password: {message}");
    assert_eq!(dan.status.unwrap().phase, Some(AgentPhase::Failed));

    // A password that fits the policy is taken once the Secret changes and the Agent is touched.
    secrets.patch("weak", &PatchParams::default(), &Patch::Merge(json!({"stringData": {"password": "Long-Enough-Pass-9"}}))).await.unwrap();
    s.patch_agent(&ns, "dan", json!({"metadata": {"labels": {"poke": "1"}}})).await;
    wait_for(&agents, "dan", LIMIT, "Ready", is_ready).await;
    s.keycloak.login(&realm, "dan", "Long-Enough-Pass-9").await.expect("the accepted password works");

    // The admin and dan fill a limit of two; a third Agent is not provisioned.
    let quotas: Api<cx_operator::api::CapabilityQuota> = Api::namespaced(s.cluster.client.clone(), &ns);
    quotas.patch("default", &PatchParams::default(), &Patch::Merge(json!({"spec": {"limits": {"agents": 2}}}))).await.unwrap();
    s.create_agent(&ns, "erin", json!({"email": "erin@acme.test", "firstName": "Erin", "activation": "Credentials"})).await;
    let erin =
        wait_for(&agents, "erin", LIMIT, "QuotaExceeded", |a| a.status.as_ref().and_then(|s| s.phase) == Some(AgentPhase::QuotaExceeded))
            .await;
    assert_eq!(condition(&erin, types::QUOTA_EXCEEDED).unwrap().0, "True");
    assert!(s.keycloak.users_named(&realm, "erin").await.is_empty(), "an Agent over quota gets no user");
    quotas.patch("default", &PatchParams::default(), &Patch::Merge(json!({"spec": {"limits": {"agents": 3}}}))).await.unwrap();
    wait_for(&agents, "erin", LIMIT, "Ready once the limit allows", is_ready).await;
    assert_eq!(s.keycloak.users_named(&realm, "erin").await.len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn keycloak_outages_and_timeouts_are_reported_and_recovered_without_duplicates() {
    let s = Setup::start().await;
    let (realm, ns) = s.tenant("outage").await;
    let agents = s.agents(&ns);

    s.fake.set_down(true);
    s.create_agent(&ns, "finn", json!({"email": "finn@acme.test", "firstName": "Finn", "activation": "Email"})).await;
    let finn = wait_for(&agents, "finn", LIMIT, "Ready False", |a| condition(a, types::READY).is_some_and(|c| c.0 == "False")).await;
    assert_eq!(condition(&finn, types::READY).unwrap().1, reasons::BACKEND_UNAVAILABLE);
    assert_eq!(finn.status.unwrap().phase, Some(AgentPhase::Pending));
    s.fake.set_down(false);
    let id = user_id(&wait_for(&agents, "finn", LIMIT, "Ready after the outage", is_ready).await);
    assert_eq!(s.keycloak.users_named(&realm, "finn").await.len(), 1);
    assert_eq!(s.fake.sent_emails().iter().filter(|e| e.user_id == id).count(), 1, "one activation e-mail");

    // Answers slower than the configured timeout: the writes happen, their answers are
    // lost; the retries find what was done instead of doing it twice.
    s.fake.set_write_delay(Duration::from_secs(2));
    s.create_agent(&ns, "gus", json!({"email": "gus@acme.test", "firstName": "Gus", "activation": "Credentials"})).await;
    let gus = wait_for(&agents, "gus", LIMIT, "Ready False", |a| condition(a, types::READY).is_some_and(|c| c.0 == "False")).await;
    assert_eq!(condition(&gus, types::READY).unwrap().1, reasons::BACKEND_UNAVAILABLE);
    s.fake.set_write_delay(Duration::ZERO);
    let gus = wait_for(&agents, "gus", LIMIT, "Ready after the timeouts", is_ready).await;
    assert_eq!(s.keycloak.users_named(&realm, "gus").await.len(), 1, "no duplicate user");
    let password = s.secret(&ns, "gus-credentials").await["password"].clone();
    assert_eq!(
        s.keycloak.login(&realm, "gus", &password).await.unwrap_err().1,
        "Account is not fully set up",
        "the stored password is the one set"
    );
    assert_eq!(gus.status.unwrap().user_id.as_deref(), s.keycloak.users_named(&realm, "gus").await[0]["id"].as_str());
    s.stop().await;
}
