//! Runs operator instances against a Kubernetes API: the fake API server by default,
//! or the cluster named by `CX_TEST_KUBECONFIG`. Every test gets unique names (a run
//! id in the namespace prefix, the platform namespace and a shard label), so tests
//! may run in parallel against one real cluster, and cleans up after itself.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use cx_operator::{
    api::{self, Tenant},
    config::Config,
    operator::Operator,
    provider::Providers,
};
use http::Request;
use k8s_openapi::{
    ByteString,
    api::core::v1::{Namespace, Secret},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use rand::Rng;
use serde::de::DeserializeOwned;

use super::fake_apiserver::FakeApiServer;

/// The label that puts a test's Tenants in its operator's shard.
pub const RUN_LABEL: &str = "cx-operator.io/test-run";

/// A Kubernetes API with the CRDs installed, and a run id for unique names.
pub struct TestCluster {
    /// A client for the test itself (its requests are not counted as the operator's).
    pub client: Client,
    /// The fake API server, unless a real cluster is used.
    pub fake: Option<FakeApiServer>,
    kubeconfig: Kubeconfig,
    /// Unique id of this test's objects.
    pub run: String,
}

/// A client whose mutating requests are counted.
pub struct CountingClient {
    /// The client.
    pub client: Client,
    /// Mutating requests (POST, PUT, PATCH, DELETE) sent so far.
    pub writes: Arc<AtomicU64>,
}

impl CountingClient {
    /// Mutating requests sent so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Waits until this client has written nothing for `quiet`; panics after `limit`.
    ///
    /// An operator stopped while it still converges leaves the rest (a status that
    /// follows a quota measurement, an Agent that follows its Tenant) to the next
    /// instance: a test that hands over to count the next instance's writes first waits
    /// until this one is idle.
    pub async fn wait_idle(&self, quiet: Duration, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        let mut seen = self.writes();
        loop {
            tokio::time::sleep(quiet).await;
            let now = self.writes();
            if now == seen {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "the operator kept writing for {limit:?}");
            seen = now;
        }
    }
}

impl TestCluster {
    /// Connects to `CX_TEST_KUBECONFIG` or starts a fake API server, installs the CRDs
    /// and creates the test's platform namespace.
    pub async fn start() -> TestCluster {
        let (kubeconfig, fake) = match std::env::var("CX_TEST_KUBECONFIG") {
            Ok(path) => (Kubeconfig::read_from(&path).expect("CX_TEST_KUBECONFIG is a readable kubeconfig"), None),
            Err(_) => {
                let fake = FakeApiServer::start().await;
                (fake.kubeconfig(), Some(fake))
            }
        };
        let client = client_from(&kubeconfig).await;
        let run: String = {
            let mut rng = rand::rng();
            (0..6).map(|_| (b'a' + rng.random_range(0..26u8)) as char).collect()
        };
        let cluster = TestCluster { client, fake, kubeconfig, run };
        cluster.install_crds().await;
        for ns in ["default".to_string(), cluster.platform_namespace()] {
            cluster.ensure_namespace(&ns).await;
        }
        cluster
    }

    /// A new client whose writes are counted.
    pub async fn counting_client(&self) -> CountingClient {
        let writes = Arc::new(AtomicU64::new(0));
        let counter = writes.clone();
        let config = kube::Config::from_custom_kubeconfig(self.kubeconfig.clone(), &KubeConfigOptions::default())
            .await
            .expect("kubeconfig is usable");
        let layer = tower::layer::layer_fn(move |service| {
            let counter = counter.clone();
            tower::util::MapRequest::new(service, move |req: Request<kube::client::Body>| {
                if req.method() != http::Method::GET {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                req
            })
        });
        let client = kube::client::ClientBuilder::try_from(config).expect("client builds").with_layer(&layer).build();
        CountingClient { client, writes }
    }

    /// The platform namespace of this test.
    pub fn platform_namespace(&self) -> String {
        format!("cxt-{}-platform", self.run)
    }

    /// The tenant namespace prefix of this test.
    pub fn namespace_prefix(&self) -> String {
        format!("cxt-{}-", self.run)
    }

    /// The operator configuration for this test: its own namespaces, its own shard,
    /// short intervals.
    pub fn config(&self) -> Config {
        self.config_with("")
    }

    /// The test configuration with more top-level YAML appended.
    pub fn config_with(&self, extra: &str) -> Config {
        let text = self.config_text(extra);
        Config::parse(&text).unwrap_or_else(|e| panic!("test configuration is valid: {e}"))
    }

    /// The YAML of the test configuration with more top-level YAML appended, for an
    /// operator started as a process.
    pub fn config_text(&self, extra: &str) -> String {
        format!(
            "rootDomain: cx.test\nnamespacePrefix: {prefix}\nplatformNamespace: {platform}\n\
             sharding: {{tenantSelector: {RUN_LABEL}={run}}}\n\
             reconcile: {{resyncInterval: 10m, minBackoff: 200ms, maxBackoff: 2s}}\n\
             leaderElection: {{leaseName: cx-operator-{run}, leaseNamespace: {platform}, leaseDuration: 3s, renewGrace: 1s}}\n{extra}",
            prefix = self.namespace_prefix(),
            platform = self.platform_namespace(),
            run = self.run,
        )
    }

    /// Writes a kubeconfig of this cluster into `dir`, for an operator started as a process.
    pub fn write_kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(&path, serde_yaml_ng::to_string(&self.kubeconfig).expect("kubeconfig serializes")).expect("kubeconfig is written");
        path
    }

    /// Starts an operator instance with its own counting client.
    pub async fn operator(&self, config: Config, providers: Providers, identity: &str) -> (Operator, CountingClient) {
        let counting = self.counting_client().await;
        let op = Operator::start(counting.client.clone(), Arc::new(config), providers, identity.to_string());
        (op, counting)
    }

    /// A Tenant of this test (labelled into its shard), from a JSON spec.
    pub fn tenant(&self, name: &str, spec: serde_json::Value) -> Tenant {
        let mut t: Tenant = serde_json::from_value(serde_json::json!({
            "apiVersion": "cx-operator.io/v1alpha1", "kind": "Tenant",
            "metadata": {"name": self.tenant_name(name), "labels": {RUN_LABEL: self.run}},
            "spec": spec,
        }))
        .expect("test tenant is well formed");
        t.metadata.namespace = None;
        t
    }

    /// The unique cluster name of a test tenant.
    pub fn tenant_name(&self, name: &str) -> String {
        format!("{}-{name}", self.run)
    }

    /// A minimal valid Tenant spec.
    pub fn minimal_spec() -> serde_json::Value {
        serde_json::json!({
            "displayName": "Acme", "company": {"name": "Acme GmbH"},
            "admin": {"username": "alice", "email": "alice@acme.test", "firstName": "Alice"}
        })
    }

    /// Creates a Tenant.
    pub async fn create_tenant(&self, tenant: &Tenant) -> Tenant {
        Api::<Tenant>::all(self.client.clone()).create(&PostParams::default(), tenant).await.expect("tenant is created")
    }

    async fn install_crds(&self) {
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        for crd in api::crds() {
            api.patch(&crd.name_any(), &PatchParams::apply("cx-operator-tests").force(), &Patch::Apply(&crd))
                .await
                .expect("CRD is accepted");
        }
        for crd in api::crds() {
            let name = crd.name_any();
            wait_until(&format!("CRD {name} established"), Duration::from_secs(30), || async {
                api.get_opt(&name).await.ok().flatten().is_some_and(|c| {
                    c.status.and_then(|s| s.conditions).unwrap_or_default().iter().any(|c| c.type_ == "Established" && c.status == "True")
                })
            })
            .await;
        }
    }

    /// Creates or replaces a Secret in the test's platform namespace (the operator
    /// namespace of the tests), e.g. a backend's admin credentials.
    pub async fn put_platform_secret(&self, name: &str, data: &[(&str, &str)]) {
        let secret = Secret {
            metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
            data: Some(data.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect()),
            ..Default::default()
        };
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.platform_namespace());
        secrets.patch(name, &PatchParams::apply("cx-operator-tests").force(), &Patch::Apply(&secret)).await.expect("the Secret is stored");
    }

    /// Creates a namespace unless it exists.
    pub async fn ensure_namespace(&self, name: &str) {
        let api: Api<Namespace> = Api::all(self.client.clone());
        if api.get_opt(name).await.expect("namespace can be read").is_none() {
            let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("namespace");
            match api.create(&PostParams::default(), &ns).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => panic!("cannot create namespace {name}: {e}"),
            }
        }
    }

    /// Deletes what the test created on a real cluster: its Tenants (finalizers are run
    /// by the test's operator, or removed here when none runs) and its namespaces. A
    /// fake API server is shut down instead.
    pub async fn cleanup(self) {
        // A fake API server goes with everything in it.
        if let Some(fake) = self.fake {
            fake.shutdown().await;
            return;
        }
        let tenants: Api<Tenant> = Api::all(self.client.clone());
        let selector = ListParams::default().labels(&format!("{RUN_LABEL}={}", self.run));
        for t in tenants.list(&selector).await.map(|l| l.items).unwrap_or_default() {
            let name = t.name_any();
            let _ = tenants
                .patch(&name, &PatchParams::default(), &Patch::Merge(serde_json::json!({"spec": {"deletionProtection": false}})))
                .await;
            let _ = tenants.delete(&name, &DeleteParams::default()).await;
            let _ =
                tenants.patch(&name, &PatchParams::default(), &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}}))).await;
        }
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        for ns in namespaces.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default() {
            if ns.name_any().starts_with(&format!("cxt-{}-", self.run)) {
                let _ = namespaces.delete(&ns.name_any(), &DeleteParams::default()).await;
            }
        }
    }
}

async fn client_from(kubeconfig: &Kubeconfig) -> Client {
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig.clone(), &KubeConfigOptions::default()).await.expect("kubeconfig is usable");
    Client::try_from(config).expect("client builds")
}

/// Polls `check` every 50 ms until it holds; panics with `what` after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the object exists and satisfies `check`, and returns it.
pub async fn wait_for<K, F>(api: &Api<K>, name: &str, limit: Duration, what: &str, check: F) -> K
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
    F: Fn(&K) -> bool,
{
    let mut last = None;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Ok(Some(obj)) = api.get_opt(name).await {
            if check(&obj) {
                return obj;
            }
            last = Some(obj);
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {limit:?} waiting for {name}: {what}; last seen: {last:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the object is gone.
pub async fn wait_gone<K>(api: &Api<K>, name: &str, limit: Duration)
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    wait_until(&format!("{name} to be deleted"), limit, || async { matches!(api.get_opt(name).await, Ok(None)) }).await;
}
