"""The Helm chart (charts/cx-operator) and the kustomize bases (config/).

The chart is rendered and linted by the real Helm v4 library (helm-python-sdk); every
rendered object is validated against the Kubernetes 1.33 OpenAPI schemas
(kubernetes-validate, strict: unknown fields are errors). config/ is built with a real
kustomize when one is on the PATH and with tests/chart/mini_kustomize.py otherwise
(and both, compared, when possible); its objects are validated the same way.

Run with `make chart-test` (builds target/debug/cx-operator first: the ConfigMaps'
configurations are checked with `cx-operator check-config`).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

import mini_kustomize

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "cx-operator"
K8S_VERSION = "1.33.0"
BINARY = Path(os.environ.get("CX_OPERATOR_BIN", REPO / "target" / "debug" / "cx-operator"))
RELEASE = "cx-operator"
NAMESPACE = "cx-operator"

# Every optional feature on.
ALL_FEATURES: dict[str, Any] = {
    "webhook": {"certificate": {"mode": "CertManager"}},
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "podDisruptionBudget": {"enabled": True},
    "networkPolicy": {
        "enabled": True,
        "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}],
    },
    "dashboard": {"enabled": True, "annotations": {"grafana_folder": "cx"}},
    "logLevel": "info,cx_operator=debug",
    "extraEnv": [{"name": "EXTRA", "value": "1"}],
    "config": {
        "rootDomain": "cx.example.org",
        "platformNamespace": "platform",
        "defaults": {"quota": {"agents": 10, "aiAgents": 0, "extraWorkflowTriggers": 0}},
        "licence": {"agents": 5000, "aiAgents": 200, "workflowTriggers": 1000000},
        "webhook": {"certificate": {"validity": "90d", "renewBefore": "30d"}},
    },
}

# Objects of kinds whose schema is a CRD that is not part of Kubernetes: checked by
# the structural schemas below (the parts of the upstream CRDs the chart uses) and
# ObjectMeta, instead of kubernetes-validate, which has no schema for them.
STRING = {"type": "string", "minLength": 1}
CRD_TYPED: dict[tuple[str, str], dict[str, Any]] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "type": "object",
        "required": ["selector", "endpoints"],
        "additionalProperties": False,
        "properties": {
            "selector": {"type": "object", "required": ["matchLabels"]},
            "namespaceSelector": {"type": "object", "properties": {"matchNames": {"type": "array", "items": STRING}}},
            "endpoints": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["port"],
                    "properties": {
                        "port": STRING,
                        "path": STRING,
                        "scheme": {"enum": ["http", "https"]},
                        "interval": {"type": "string", "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"},
                        "scrapeTimeout": {"type": "string", "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"},
                    },
                },
            },
        },
    },
    ("cert-manager.io/v1", "Certificate"): {
        "type": "object",
        "required": ["secretName", "issuerRef"],
        "additionalProperties": False,
        "properties": {
            "secretName": STRING,
            "duration": {"type": "string", "pattern": "^([0-9]+(h|m|s))+$"},
            "renewBefore": {"type": "string", "pattern": "^([0-9]+(h|m|s))+$"},
            "dnsNames": {"type": "array", "minItems": 1, "items": STRING},
            "issuerRef": {
                "type": "object",
                "required": ["name"],
                "additionalProperties": False,
                "properties": {"name": STRING, "kind": {"enum": ["Issuer", "ClusterIssuer"]}, "group": STRING},
            },
        },
    },
    ("cert-manager.io/v1", "Issuer"): {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "maxProperties": 1,
        "properties": {"selfSigned": {"type": "object"}, "ca": {"type": "object", "required": ["secretName"]}},
    },
}


# ---------------------------------------------------------------------------------------
# Helpers


def parse_documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def render(values: dict[str, Any] | None = None, name: str = RELEASE, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values=values, name=name, namespace=namespace, is_install=True)
    objects = []
    for template, text in sorted(manifests.items()):
        if template.endswith("NOTES.txt"):
            continue
        objects.extend(parse_documents(text))
    assert objects, "the chart rendered no objects"
    return objects


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in by_kind(objects, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"no single {kind} {name} among {[(o['kind'], o['metadata']['name']) for o in objects]}"
    return found[0]


def validate_object(doc: dict[str, Any]) -> None:
    """Validates one object against the Kubernetes 1.33 schemas (strict), or against
    the CRD_TYPED structure plus ObjectMeta for kinds Kubernetes does not define."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    if key in CRD_TYPED:
        assert set(doc) <= {"apiVersion", "kind", "metadata", "spec"}, f"{where}: unexpected top-level fields {set(doc)}"
        assert "spec" in doc, f"{where}: no spec"
        try:
            jsonschema.validate(doc["spec"], CRD_TYPED[key])
        except jsonschema.ValidationError as e:
            pytest.fail(f"{where}: spec invalid: {e.message} at {list(e.absolute_path)}")
        meta = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc["metadata"]}
        validate_object(meta)  # ObjectMeta through a kind whose only required part is metadata
        return
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        pytest.fail(f"{where}: {e.message} at {'/'.join(str(p) for p in e.absolute_path)}")
    except kubernetes_validate.SchemaNotFoundError as e:
        pytest.fail(f"{where}: no Kubernetes {K8S_VERSION} schema: {e.message}")
    assert doc["metadata"].get("name"), f"{where}: metadata.name missing"
    assert len(doc["metadata"]["name"]) <= 253
    for key, value in doc["metadata"].get("labels", {}).items():
        assert re.fullmatch(r"(([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", key), f"{where}: label key {key}"
        assert re.fullmatch(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?", value), f"{where}: label {key}={value!r}"


def config_of(objects: list[dict[str, Any]], configmap: str) -> dict[str, Any]:
    return yaml.safe_load(named(objects, "ConfigMap", configmap)["data"]["config.yaml"])


def check_config(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    if not BINARY.is_file():
        pytest.fail(f"{BINARY} does not exist: build it first (`cargo build`, done by `make chart-test`)")
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return subprocess.run([str(BINARY), "check-config", str(path)], capture_output=True, text=True, timeout=60)


def rbac_file(name: str) -> Path:
    path = REPO / "config" / "rbac" / name
    if not path.is_file():
        pytest.fail(f"{path.relative_to(REPO)} does not exist: the chart's rules must be copied from it")
    return path


def rules_by_kind(objects: list[dict[str, Any]]) -> dict[str, list[list[dict[str, Any]]]]:
    out: dict[str, list[list[dict[str, Any]]]] = {"ClusterRole": [], "Role": []}
    for o in objects:
        if o["kind"] in out:
            out[o["kind"]].append(o.get("rules", []))
    return {k: sorted(v, key=json.dumps) for k, v in out.items()}


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]


# ---------------------------------------------------------------------------------------
# Helm: lint, render, validate


@pytest.mark.parametrize("values", [None, ALL_FEATURES], ids=["defaults", "all-features"])
def test_chart_lints_clean(values: dict[str, Any] | None) -> None:
    report = helm.lint(CHART, values, strict=True, kube_version="v" + K8S_VERSION, namespace=NAMESPACE)
    assert report["total_charts_linted"] == 1
    assert report["errors"] == [], report
    serious = [m for m in report["messages"] if m["severity"] >= 2]
    assert serious == [], serious


EXPECTED_KINDS_DEFAULT = {
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "ConfigMap",
    "Deployment",
    "Service",
    "ValidatingWebhookConfiguration",
}
OPTIONAL_KINDS = {"ServiceMonitor", "PodDisruptionBudget", "NetworkPolicy", "Certificate", "Issuer"}


@pytest.mark.parametrize(
    "values,extra_kinds",
    [
        (None, set()),
        (ALL_FEATURES, OPTIONAL_KINDS),
        ({"webhook": {"certificate": {"mode": "Secret", "caBundle": "TFMwdExTMUNSVWRKVGlCRFJWSlVTVVpKUTBGVVJTMHRMUzB0Q2c9PQ=="}}}, set()),
        ({"webhook": {"certificate": {"mode": "CertManager", "certManager": {"issuerRef": {"kind": "ClusterIssuer", "name": "ca"}}}}}, {"Certificate"}),
        ({"webhook": {"enabled": False}, "metrics": {"service": {"enabled": False}}, "rbac": {"create": False}, "serviceAccount": {"create": False, "name": "existing"}}, set()),
    ],
    ids=["defaults", "all-features", "secret-mode", "cert-manager-cluster-issuer", "minimal"],
)
def test_every_rendered_object_is_valid(values: dict[str, Any] | None, extra_kinds: set[str]) -> None:
    objects = render(values)
    kinds = {o["kind"] for o in objects}
    if values and values.get("rbac", {}).get("create") is False:
        assert kinds == {"ConfigMap", "Deployment"}, kinds
    else:
        assert kinds == EXPECTED_KINDS_DEFAULT | extra_kinds, kinds
    for o in objects:
        validate_object(o)
        labels = o["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/instance") == RELEASE, f"{o['kind']} lacks the standard labels"
        if o["kind"] not in ("ClusterRole", "ClusterRoleBinding", "ValidatingWebhookConfiguration"):
            assert o["metadata"]["namespace"] == NAMESPACE, f"{o['kind']}/{o['metadata']['name']} is not in the release namespace"


def test_crd_typed_checks_catch_mistakes() -> None:
    """The structural checks for ServiceMonitor/Certificate/Issuer are not vacuous."""
    cert = named(render(ALL_FEATURES), "Certificate", "cx-operator-webhook")
    broken = copy.deepcopy(cert)
    del broken["spec"]["issuerRef"]
    with pytest.raises(pytest.fail.Exception, match="issuerRef"):
        validate_object(broken)
    broken = copy.deepcopy(cert)
    broken["spec"]["dnsName"] = ["typo"]
    with pytest.raises(pytest.fail.Exception):
        validate_object(broken)


def test_kubernetes_validation_is_strict() -> None:
    deployment = one(render(), "Deployment")
    pod_spec(deployment)["containers"][0]["securityContxt"] = {}
    with pytest.raises(pytest.fail.Exception, match="securityContxt"):
        validate_object(deployment)


@pytest.mark.parametrize(
    "values,complaint",
    [
        ({"replicas": 2}, "replicas"),
        ({"replicaCount": "two"}, "replicaCount"),
        ({"replicaCount": 0}, "replicaCount"),
        ({"logFormat": "xml"}, "logFormat"),
        ({"webhook": {"certificate": {"mode": "Manual"}}}, "mode"),
        ({"webhook": {"port": 70000}}, "port"),
        ({"metrics": {"serviceMonitor": {"interval": "soon"}}}, "interval"),
        ({"config": {"rootDomain": "Not A Domain"}}, "rootDomain"),
        ({"config": {"unknownSection": {}}}, "unknownSection"),
        ({"config": {"operatorNamespace": "elsewhere"}}, "operatorNamespace"),
        ({"config": {"leaderElection": {"leaseNamespace": "elsewhere"}}}, "leaseNamespace"),
        ({"config": {"webhook": {"serviceName": "other"}}}, "serviceName"),
        ({"config": {"webhook": {"certificate": {"mode": "Secret"}}}}, "mode"),
        ({"dashboard": {"enabled": "yes"}}, "enabled"),
    ],
)
def test_values_schema_refuses_bad_values(values: dict[str, Any], complaint: str) -> None:
    with helm.Chart.load(CHART) as chart:
        with pytest.raises(helm.HelmValuesError, match=complaint):
            chart.render(values=values, name=RELEASE, namespace=NAMESPACE)
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema(values)


def test_values_schema_accepts_defaults_and_every_feature() -> None:
    with helm.Chart.load(CHART) as chart:
        schema = chart.schema
        assert schema is not None and schema["additionalProperties"] is False
        chart.validate_schema(None)
        chart.validate_schema(ALL_FEATURES)
        # Every default value is described by the schema (it refuses unknown keys).
        assert set(chart.values) == set(schema["properties"]), set(chart.values) ^ set(schema["properties"])


def test_secret_mode_needs_a_ca_bundle() -> None:
    with helm.Chart.load(CHART) as chart:
        with pytest.raises(helm.HelmRenderError, match="caBundle is required"):
            chart.render(values={"webhook": {"certificate": {"mode": "Secret"}}}, name=RELEASE, namespace=NAMESPACE)
    vwc = one(render({"webhook": {"certificate": {"mode": "Secret", "caBundle": "Y2E="}}}), "ValidatingWebhookConfiguration")
    assert [w["clientConfig"]["caBundle"] for w in vwc["webhooks"]] == ["Y2E="] * 3


# ---------------------------------------------------------------------------------------
# Helm: what the chart installs matches what the operator expects


def test_chart_crds_are_the_repository_crds_byte_for_byte() -> None:
    repo_crds = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    assert len(repo_crds) == 3, repo_crds
    for copy_dir in (CHART / "crds", REPO / "config" / "crd"):
        copies = sorted(p.name for p in copy_dir.glob("*.yaml") if p.name != "kustomization.yaml")
        assert copies == repo_crds, f"{copy_dir.relative_to(REPO)} holds {copies}; run `make crds`"
        for name in repo_crds:
            assert (copy_dir / name).read_bytes() == (REPO / "crds" / name).read_bytes(), (
                f"{copy_dir.relative_to(REPO)}/{name} differs from crds/{name}; run `make crds`"
            )
    with helm.Chart.load(CHART) as chart:
        loaded = chart.crds
    assert sorted(Path(c["filename"]).name for c in loaded) == repo_crds
    for path in (REPO / "crds").glob("*.yaml"):
        for doc in parse_documents(path.read_text()):
            validate_object(doc)


def test_rbac_rules_are_those_of_config_rbac() -> None:
    for name in ("role.yaml", "leader_election_role.yaml"):
        source = rbac_file(name)
        copy_path = CHART / "files" / "rbac" / name
        assert copy_path.read_bytes() == source.read_bytes(), (
            f"charts/cx-operator/files/rbac/{name} differs from config/rbac/{name}: copy it (make sync-manifests)"
        )
    expected_docs = [
        d
        for name in ("role.yaml", "leader_election_role.yaml")
        for d in parse_documents(rbac_file(name).read_text())
        if d["kind"] in ("ClusterRole", "Role")
    ]
    assert expected_docs, "config/rbac holds no Role or ClusterRole"
    for release in (RELEASE, "shard-b"):
        objects = render(name=release, namespace="ops")
        # Verbatim, except that the caBundle rule names this release's configuration.
        configuration = one(objects, "ValidatingWebhookConfiguration")["metadata"]["name"]
        expected = copy.deepcopy(expected_docs)
        for doc in expected:
            for rule in doc["rules"]:
                if "validatingwebhookconfigurations" in rule["resources"] and "resourceNames" in rule:
                    assert release != RELEASE or rule["resourceNames"] == [configuration]
                    rule["resourceNames"] = [configuration]
        assert rules_by_kind(objects) == rules_by_kind(expected)
        sa = one(objects, "ServiceAccount")["metadata"]["name"]
        roles = {(o["kind"], o["metadata"]["name"]) for o in objects if o["kind"] in ("ClusterRole", "Role")}
        bindings = [o for o in objects if o["kind"] in ("ClusterRoleBinding", "RoleBinding")]
        assert len(bindings) == len(roles)
        for b in bindings:
            assert (b["roleRef"]["kind"], b["roleRef"]["name"]) in roles
            assert b["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": "ops"}]
            assert (b["kind"] == "RoleBinding") == (b["roleRef"]["kind"] == "Role")


def test_deployment_is_locked_down_and_wired() -> None:
    objects = render(ALL_FEATURES)
    deployment = one(objects, "Deployment")
    pod = pod_spec(deployment)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsNonRoot"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "privileged" not in sc or sc["privileged"] is False
    assert container["resources"]["limits"]["memory"] and container["resources"]["requests"]["cpu"]
    # `cx-operator run --config <mounted file>`.
    args = container["args"]
    assert args[0] == "run"
    config_path = Path(args[args.index("--config") + 1])
    (mount,) = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == config_path.parent]
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    configmap = named(objects, "ConfigMap", volume["configMap"]["name"])
    assert config_path.name in configmap["data"]
    # Probes on the metrics port, which --metrics-addr binds.
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    metrics_addr = args[args.index("--metrics-addr") + 1]
    assert metrics_addr.endswith(f":{ports['metrics']}")
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["RUST_LOG"]["value"] == "info,cx_operator=debug"
    assert pod["serviceAccountName"] == one(objects, "ServiceAccount")["metadata"]["name"]
    # A configuration change rolls the pods.
    other = one(render({**ALL_FEATURES, "config": {**ALL_FEATURES["config"], "namespacePrefix": "t-"}}), "Deployment")
    key = "checksum/config"
    assert deployment["spec"]["template"]["metadata"]["annotations"][key] != other["spec"]["template"]["metadata"]["annotations"][key]
    # Services select the operator pods on the right ports.
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    for service in by_kind(objects, "Service"):
        assert service["spec"]["selector"].items() <= pod_labels.items()
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    netpol = one(objects, "NetworkPolicy")
    assert netpol["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert {p["port"] for rule in netpol["spec"]["ingress"] for p in rule["ports"]} == {"webhook", "metrics"}
    monitor = one(objects, "ServiceMonitor")
    metrics_service = named(objects, "Service", "cx-operator-metrics")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= metrics_service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in metrics_service["spec"]["ports"]}
    assert monitor["metadata"]["labels"]["release"] == "prometheus"


@pytest.mark.parametrize("values", [None, ALL_FEATURES], ids=["defaults", "all-features"])
def test_configmap_passes_check_config(values: dict[str, Any] | None, tmp_path: Path) -> None:
    objects = render(values)
    text = named(objects, "ConfigMap", "cx-operator-config")["data"]["config.yaml"]
    result = check_config(text, tmp_path)
    assert result.returncode == 0, f"check-config refused the chart's configuration:\n{text}\n{result.stderr}"
    assert "valid" in result.stdout
    # The check is real: a broken configuration from the same chart is refused.
    broken = yaml.safe_load(text)
    broken["reconcile"] = {"jitter": 3}
    result = check_config(yaml.safe_dump(broken), tmp_path)
    assert result.returncode != 0 and "reconcile.jitter" in result.stderr, result.stderr


@pytest.mark.parametrize("release,namespace", [(RELEASE, NAMESPACE), ("shard-b", "ops")])
@pytest.mark.parametrize("mode", ["SelfSigned", "CertManager"])
def test_webhook_matches_the_operator_configuration(release: str, namespace: str, mode: str) -> None:
    objects = render({"webhook": {"certificate": {"mode": mode}}}, name=release, namespace=namespace)
    fullname = release if "cx-operator" in release else f"{release}-cx-operator"
    config = config_of(objects, f"{fullname}-config")["webhook"]
    assert config["enabled"] is True
    assert config["certificate"]["mode"] == mode
    vwc = one(objects, "ValidatingWebhookConfiguration")
    assert vwc["metadata"]["name"] == config["configurationName"]
    service = named(objects, "Service", config["serviceName"])
    assert service["metadata"]["namespace"] == namespace
    (https,) = service["spec"]["ports"]
    assert https["port"] == 443
    container = pod_spec(one(objects, "Deployment"))["containers"][0]
    assert {p["name"]: p["containerPort"] for p in container["ports"]}[https["targetPort"]] == config["port"]
    # Rules and failure policies: those of examples/webhook.yaml, the reference.
    reference = parse_documents((REPO / "examples" / "webhook.yaml").read_text())[0]
    expected = {w["name"]: w for w in reference["webhooks"]}
    assert [w["name"] for w in vwc["webhooks"]] == list(expected)
    policies = {w["name"]: w["failurePolicy"] for w in vwc["webhooks"]}
    assert policies == {"tenants.cx-operator.io": "Fail", "agents.cx-operator.io": "Ignore", "capabilityquotas.cx-operator.io": "Fail"}
    for hook in vwc["webhooks"]:
        ref = expected[hook["name"]]
        for field in ("rules", "failurePolicy", "matchPolicy", "sideEffects", "admissionReviewVersions", "timeoutSeconds"):
            assert hook[field] == ref[field], f"{hook['name']}.{field}"
        svc = hook["clientConfig"]["service"]
        assert svc == {"name": config["serviceName"], "namespace": namespace, "path": ref["clientConfig"]["service"]["path"], "port": 443}
        assert "caBundle" not in hook["clientConfig"], "the operator or cert-manager fills caBundle"
    annotations = vwc["metadata"].get("annotations", {})
    if mode == "SelfSigned":
        assert "cert-manager.io/inject-ca-from" not in annotations
        assert not by_kind(objects, "Certificate") and not by_kind(objects, "Issuer")
    else:
        certificate = one(objects, "Certificate")
        assert annotations["cert-manager.io/inject-ca-from"] == f"{namespace}/{certificate['metadata']['name']}"
        assert certificate["spec"]["secretName"] == config["certificate"]["secretName"]
        svc_name = config["serviceName"]
        assert f"{svc_name}.{namespace}.svc" in certificate["spec"]["dnsNames"]
        issuer = one(objects, "Issuer")
        assert certificate["spec"]["issuerRef"] == {"kind": "Issuer", "name": issuer["metadata"]["name"]}


# ---------------------------------------------------------------------------------------
# The Grafana dashboard


def registered_metrics() -> set[str]:
    """The metric names src/telemetry.rs registers, as Prometheus exposes them."""
    source = (REPO / "src" / "telemetry.rs").read_text()
    names = set()
    sub = re.search(r'sub_registry_with_prefix\("([a-z_]+)"\)', source)
    assert sub, "src/telemetry.rs: no sub-registry prefix found"
    block = source[sub.end() : source.index("}", sub.end())]
    for name in re.findall(r'\.register\(\s*"([a-z_]+)"', block):
        names.add(f"{sub.group(1)}_{name}")
    for name in re.findall(r'registry\.register\(\s*"(cx_[a-z_]+)"', source):
        names.add(name)
    assert len(names) >= 8, names
    return names


def test_dashboard_uses_exactly_the_operator_metrics() -> None:
    objects = render(ALL_FEATURES)
    configmap = named(objects, "ConfigMap", "cx-operator-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "cx"}
    dashboard = json.loads(configmap["data"]["cx-operator.json"])
    assert dashboard["uid"] == "cx-operator" and dashboard["panels"]
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs
    registered = registered_metrics()
    used = set()
    for expr in exprs:
        for token in re.findall(r"\b(cx_[a-z_]+)\b", expr):
            base = re.sub(r"_(total|bucket|sum|count)$", "", token)
            assert token in registered or base in registered, f"{token} in {expr!r} is not a metric of src/telemetry.rs"
            used.add(token if token in registered else base)
    assert used == registered, f"metrics without a panel: {registered - used}"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert [c["metadata"]["name"] for c in by_kind(render(), "ConfigMap")] == ["cx-operator-config"], "the dashboard is off by default"


# ---------------------------------------------------------------------------------------
# kustomize


def real_kustomize() -> list[str] | None:
    """A real kustomize command, if one is on the PATH."""
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        probe = subprocess.run(["kubectl", "kustomize", "--help"], capture_output=True, timeout=60)
        if probe.returncode == 0:
            return ["kubectl", "kustomize"]
    return None


def kustomize_build(directory: Path) -> list[dict[str, Any]]:
    command = real_kustomize()
    if command is None:
        return mini_kustomize.build(directory)
    result = subprocess.run([*command, str(directory)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{' '.join(command)} {directory}: {result.stderr}"
    return parse_documents(result.stdout)


def identity(o: dict[str, Any]) -> tuple[str, str, str]:
    return (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])


def test_mini_kustomize_agrees_with_real_kustomize() -> None:
    command = real_kustomize()
    if command is None:
        pytest.skip("no kustomize or kubectl on the PATH: config/ is built by mini_kustomize alone")
    for base in ("crd", "manager", "webhook", "default"):
        real = sorted(kustomize_build(REPO / "config" / base), key=identity)
        mini = sorted(mini_kustomize.build(REPO / "config" / base), key=identity)
        assert [identity(o) for o in mini] == [identity(o) for o in real], base
        assert mini == real, f"config/{base}: mini_kustomize differs from {' '.join(command)}"


def test_mini_kustomize_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\npatches: [{path: p.yaml}]\n")
    with pytest.raises(mini_kustomize.UnsupportedError, match="patches"):
        mini_kustomize.build(tmp_path)


def test_kustomize_default_is_valid_and_consistent(tmp_path: Path) -> None:
    objects = kustomize_build(REPO / "config" / "default")
    for o in objects:
        validate_object(o)
    names = {identity(o) for o in objects}
    assert len(names) == len(objects), "duplicate objects"
    namespace = one(objects, "Namespace")["metadata"]["name"]
    assert namespace == NAMESPACE
    for o in objects:
        if o["kind"] not in mini_kustomize.CLUSTER_SCOPED:
            assert o["metadata"]["namespace"] == namespace, identity(o)
        assert o["metadata"]["labels"]["app.kubernetes.io/part-of"] == "cx-operator"
    # CRDs: the repository's.
    crds = {o["metadata"]["name"]: o for o in by_kind(objects, "CustomResourceDefinition")}
    for path in (REPO / "crds").glob("*.yaml"):
        (expected,) = parse_documents(path.read_text())
        got = copy.deepcopy(crds.pop(expected["metadata"]["name"]))
        del got["metadata"]["labels"]
        assert got == expected
    assert not crds
    # The same pod as the chart's defaults (names and labels aside).
    deployment = one(objects, "Deployment")
    chart_objects = render()
    chart_deployment = one(chart_objects, "Deployment")
    assert deployment["metadata"]["name"] == chart_deployment["metadata"]["name"]
    mine, theirs = copy.deepcopy(pod_spec(deployment)), copy.deepcopy(pod_spec(chart_deployment))
    mine["containers"][0]["image"] = theirs["containers"][0]["image"]
    assert mine == theirs
    assert deployment["spec"]["replicas"] == chart_deployment["spec"]["replicas"]
    # References resolve inside the build.
    sa = pod_spec(deployment)["serviceAccountName"]
    assert ("ServiceAccount", namespace, sa) in names
    config_name = pod_spec(deployment)["volumes"][0]["configMap"]["name"]
    config = yaml.safe_load(named(objects, "ConfigMap", config_name)["data"]["config.yaml"])
    result = check_config(named(objects, "ConfigMap", config_name)["data"]["config.yaml"], tmp_path)
    assert result.returncode == 0, result.stderr
    for b in by_kind(objects, "ClusterRoleBinding") + by_kind(objects, "RoleBinding"):
        role_ns = "" if b["roleRef"]["kind"] == "ClusterRole" else b["metadata"]["namespace"]
        assert (b["roleRef"]["kind"], role_ns, b["roleRef"]["name"]) in names, f"{identity(b)}: roleRef"
        for s in b["subjects"]:
            assert (s["kind"], s["namespace"], s["name"]) in names, f"{identity(b)}: subject {s}"
    vwc = one(objects, "ValidatingWebhookConfiguration")
    assert vwc["metadata"]["name"] == config["webhook"]["configurationName"]
    for hook in vwc["webhooks"]:
        svc = hook["clientConfig"]["service"]
        assert ("Service", svc["namespace"], svc["name"]) in names, f"{hook['name']}: no Service {svc}"
        assert svc["name"] == config["webhook"]["serviceName"]
    chart_vwc = one(chart_objects, "ValidatingWebhookConfiguration")
    assert vwc["webhooks"] == chart_vwc["webhooks"], "config/webhook and the chart install the same webhooks"
    # The same rules as the chart.
    assert rules_by_kind(objects) == rules_by_kind(chart_objects)


# ---------------------------------------------------------------------------------------
# Documentation


def test_troubleshooting_names_every_condition_type_and_reason() -> None:
    source = (REPO / "src" / "api" / "conditions.rs").read_text()
    page = (REPO / "docs" / "troubleshooting.md").read_text()
    names = {}
    for module in ("types", "reasons"):
        block = re.search(rf"pub mod {module} \{{(.*?)\n\}}", source, re.S)
        assert block, f"src/api/conditions.rs: no module {module}"
        names[module] = re.findall(r'pub const [A-Z_]+: &str = "([A-Za-z]+)";', block.group(1))
        assert len(names[module]) >= 8, names[module]
    missing = [n for module in names.values() for n in module if f"`{n}`" not in page]
    assert not missing, f"docs/troubleshooting.md does not explain {missing}"


def test_install_docs_and_readme_link_the_pages() -> None:
    readme = (REPO / "README.md").read_text()
    for page in ("docs/install.md", "docs/troubleshooting.md"):
        assert (REPO / page).is_file()
        assert f"({page})" in readme, f"README.md does not link {page}"
    assert "charts/cx-operator" in readme


def test_values_schema_knows_every_configuration_section() -> None:
    """values.schema.json's `config` lists the operator's top-level configuration keys
    (src/config.rs), less operatorNamespace, which the chart sets."""
    source = (REPO / "src" / "config.rs").read_text()
    body = source[source.index("fn section_problems") :]
    body = body[: body.index("other =>")]
    operator_keys = set(re.findall(r'"([a-zA-Z]+)"\s*(?:\||=>)', body))
    assert {"rootDomain", "webhook", "leaderElection"} <= operator_keys, operator_keys
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]["config"]
    assert set(schema["properties"]) == operator_keys - {"operatorNamespace"}
    assert "leaseNamespace" not in schema["properties"]["leaderElection"]["properties"]


# Sections of values.yaml that are Kubernetes (or operator configuration) objects,
# documented by their own references rather than key by key.
PASSTHROUGH = {"podSecurityContext", "securityContext", "resources", "probes", "labels", "leaderElection"}


def test_every_value_is_documented() -> None:
    """Every key of values.yaml down to the third level has a comment right above it,
    except inside Kubernetes objects passed through as they are."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    parents: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z][A-Za-z0-9]*):", line)
        if not match:
            continue
        indent, key = len(match.group(1)), match.group(2)
        parents = [(n, k) for n, k in parents if n < indent]
        inside_passthrough = any(k in PASSTHROUGH for _, k in parents)
        parents.append((indent, key))
        if inside_passthrough or indent > 6:
            continue
        previous = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        if not previous.startswith("#"):
            undocumented.append(".".join(k for _, k in parents))
    assert not undocumented, f"values.yaml keys without a comment: {undocumented}"
