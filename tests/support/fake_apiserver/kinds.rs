//! The resource types the server serves: built-ins and those registered by CRDs.

use super::builtin_schemas;
use super::errors::GroupResource;
use serde_json::Value;

/// Identifies a resource type's storage: (group, plural).
pub(crate) type ResKey = (String, String);

/// Kinds that get behaviour beyond plain storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Special {
    None,
    Namespace,
    Secret,
    Service,
    ServiceAccount,
    Deployment,
    StatefulSet,
    Pod,
    Crd,
    Webhook,
}

/// One served version of a type.
#[derive(Debug, Clone)]
pub(crate) struct VersionInfo {
    pub name: String,
    /// The CRD version's `openAPIV3Schema`; `None` for built-ins.
    pub schema: Option<Value>,
    /// The schema server-side apply and strategic merge read.
    pub merge_schema: Value,
    /// `selectableFields` of a CRD version: (field label, JSON path without the leading dot).
    pub selectable_fields: Vec<(String, String)>,
}

/// A resource type.
#[derive(Debug, Clone)]
pub(crate) struct ResourceType {
    pub group: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Served versions, preferred first.
    pub versions: Vec<VersionInfo>,
    pub status_subresource: bool,
    pub tracks_generation: bool,
    /// A custom resource (served from a CRD).
    pub custom: bool,
    pub special: Special,
    /// Set while the owning CRD is being deleted: creates are refused.
    pub terminating: bool,
}

impl ResourceType {
    pub fn key(&self) -> ResKey {
        (self.group.clone(), self.plural.clone())
    }

    pub fn group_resource(&self) -> GroupResource {
        GroupResource::new(&self.group, &self.plural)
    }

    pub fn version(&self, name: &str) -> Option<&VersionInfo> {
        self.versions.iter().find(|v| v.name == name)
    }

    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() { version.to_string() } else { format!("{}/{}", self.group, version) }
    }

    /// The verbs discovery lists for the main resource.
    pub fn verbs(&self) -> Vec<&'static str> {
        if self.special == Special::Namespace {
            vec!["create", "delete", "get", "list", "patch", "update", "watch"]
        } else {
            vec!["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
        }
    }

    /// Subresources served besides the main resource, with their verbs.
    pub fn subresources(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        let mut out = Vec::new();
        if self.status_subresource {
            out.push(("status", vec!["get", "patch", "update"]));
        }
        if self.special == Special::Namespace {
            out.push(("finalize", vec!["update"]));
        }
        out
    }

    /// Field labels `fieldSelector` accepts beyond `metadata.name` and `metadata.namespace`.
    pub fn extra_field_labels(&self, version: &str) -> Vec<(String, String)> {
        let builtin: &[&str] = match (self.group.as_str(), self.kind.as_str()) {
            ("", "Event") => &[
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ],
            ("events.k8s.io", "Event") => &[
                "regarding.kind",
                "regarding.namespace",
                "regarding.name",
                "regarding.uid",
                "regarding.apiVersion",
                "regarding.resourceVersion",
                "regarding.fieldPath",
                "reason",
                "reportingController",
                "type",
            ],
            ("", "Secret") => &["type"],
            ("", "Namespace") => &["status.phase"],
            ("", "Pod") => &[
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "status.phase",
                "status.podIP",
                "status.nominatedNodeName",
            ],
            _ => &[],
        };
        let mut out: Vec<(String, String)> = builtin
            .iter()
            .map(|f| {
                let path = if *f == "source" { "source.component" } else { f };
                (f.to_string(), path.to_string())
            })
            .collect();
        if let Some(v) = self.version(version) {
            out.extend(v.selectable_fields.iter().cloned());
        }
        out
    }
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    categories: &'static [&'static str],
    status: bool,
    generation: bool,
    special: Special,
}

const BUILTINS: &[Builtin] = &[
    Builtin {
        group: "",
        version: "v1",
        plural: "namespaces",
        kind: "Namespace",
        namespaced: false,
        short: &["ns"],
        categories: &[],
        status: true,
        generation: false,
        special: Special::Namespace,
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "configmaps",
        kind: "ConfigMap",
        namespaced: true,
        short: &["cm"],
        categories: &[],
        status: false,
        generation: false,
        special: Special::None,
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "secrets",
        kind: "Secret",
        namespaced: true,
        short: &[],
        categories: &[],
        status: false,
        generation: false,
        special: Special::Secret,
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "services",
        kind: "Service",
        namespaced: true,
        short: &["svc"],
        categories: &["all"],
        status: true,
        generation: false,
        special: Special::Service,
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "serviceaccounts",
        kind: "ServiceAccount",
        namespaced: true,
        short: &["sa"],
        categories: &[],
        status: false,
        generation: false,
        special: Special::ServiceAccount,
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "events",
        kind: "Event",
        namespaced: true,
        short: &["ev"],
        categories: &[],
        status: false,
        generation: false,
        special: Special::None,
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "pods",
        kind: "Pod",
        namespaced: true,
        short: &["po"],
        categories: &["all"],
        status: true,
        generation: false,
        special: Special::Pod,
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "persistentvolumeclaims",
        kind: "PersistentVolumeClaim",
        namespaced: true,
        short: &["pvc"],
        categories: &[],
        status: true,
        generation: false,
        special: Special::None,
    },
    Builtin {
        group: "events.k8s.io",
        version: "v1",
        plural: "events",
        kind: "Event",
        namespaced: true,
        short: &["ev"],
        categories: &[],
        status: false,
        generation: false,
        special: Special::None,
    },
    Builtin {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        kind: "Lease",
        namespaced: true,
        short: &[],
        categories: &[],
        status: false,
        generation: false,
        special: Special::None,
    },
    Builtin {
        group: "networking.k8s.io",
        version: "v1",
        plural: "ingresses",
        kind: "Ingress",
        namespaced: true,
        short: &["ing"],
        categories: &[],
        status: true,
        generation: true,
        special: Special::None,
    },
    Builtin {
        group: "networking.k8s.io",
        version: "v1",
        plural: "networkpolicies",
        kind: "NetworkPolicy",
        namespaced: true,
        short: &["netpol"],
        categories: &[],
        status: false,
        generation: true,
        special: Special::None,
    },
    Builtin {
        group: "apiextensions.k8s.io",
        version: "v1",
        plural: "customresourcedefinitions",
        kind: "CustomResourceDefinition",
        namespaced: false,
        short: &["crd", "crds"],
        categories: &["api-extensions"],
        status: true,
        generation: true,
        special: Special::Crd,
    },
    Builtin {
        group: "admissionregistration.k8s.io",
        version: "v1",
        plural: "validatingwebhookconfigurations",
        kind: "ValidatingWebhookConfiguration",
        namespaced: false,
        short: &[],
        categories: &["api-extensions"],
        status: false,
        generation: true,
        special: Special::Webhook,
    },
    Builtin {
        group: "admissionregistration.k8s.io",
        version: "v1",
        plural: "mutatingwebhookconfigurations",
        kind: "MutatingWebhookConfiguration",
        namespaced: false,
        short: &[],
        categories: &["api-extensions"],
        status: false,
        generation: true,
        special: Special::Webhook,
    },
    Builtin {
        group: "apps",
        version: "v1",
        plural: "deployments",
        kind: "Deployment",
        namespaced: true,
        short: &["deploy"],
        categories: &["all"],
        status: true,
        generation: true,
        special: Special::Deployment,
    },
    Builtin {
        group: "apps",
        version: "v1",
        plural: "statefulsets",
        kind: "StatefulSet",
        namespaced: true,
        short: &["sts"],
        categories: &["all"],
        status: true,
        generation: true,
        special: Special::StatefulSet,
    },
    Builtin {
        group: "policy",
        version: "v1",
        plural: "poddisruptionbudgets",
        kind: "PodDisruptionBudget",
        namespaced: true,
        short: &["pdb"],
        categories: &[],
        status: true,
        generation: true,
        special: Special::None,
    },
    Builtin {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "roles",
        kind: "Role",
        namespaced: true,
        short: &[],
        categories: &[],
        status: false,
        generation: false,
        special: Special::None,
    },
    Builtin {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "rolebindings",
        kind: "RoleBinding",
        namespaced: true,
        short: &[],
        categories: &[],
        status: false,
        generation: false,
        special: Special::None,
    },
    Builtin {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "clusterroles",
        kind: "ClusterRole",
        namespaced: false,
        short: &[],
        categories: &[],
        status: false,
        generation: false,
        special: Special::None,
    },
    Builtin {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "clusterrolebindings",
        kind: "ClusterRoleBinding",
        namespaced: false,
        short: &[],
        categories: &[],
        status: false,
        generation: false,
        special: Special::None,
    },
];

/// Every built-in type.
pub(crate) fn builtins() -> Vec<ResourceType> {
    BUILTINS
        .iter()
        .map(|b| ResourceType {
            group: b.group.to_string(),
            plural: b.plural.to_string(),
            singular: b.kind.to_lowercase(),
            kind: b.kind.to_string(),
            list_kind: format!("{}List", b.kind),
            namespaced: b.namespaced,
            short_names: b.short.iter().map(|s| s.to_string()).collect(),
            categories: b.categories.iter().map(|s| s.to_string()).collect(),
            versions: vec![VersionInfo {
                name: b.version.to_string(),
                schema: None,
                merge_schema: builtin_schemas::for_kind(b.group, b.kind),
                selectable_fields: Vec::new(),
            }],
            status_subresource: b.status,
            tracks_generation: b.generation,
            custom: false,
            special: b.special,
            terminating: false,
        })
        .collect()
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array).map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// The type a CRD defines, from its (defaulted) spec. `None` when the spec lacks the
/// names the registration needs; `check_crd` rejects such CRDs first.
pub(crate) fn from_crd(crd: &Value) -> Option<ResourceType> {
    let spec = crd.get("spec")?;
    let names = spec.get("names")?;
    let kind = names.get("kind")?.as_str()?.to_string();
    let plural = names.get("plural")?.as_str()?.to_string();
    let mut versions: Vec<(VersionInfo, bool)> = Vec::new();
    for v in spec.get("versions")?.as_array()? {
        if v.get("served").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        let schema = v.pointer("/schema/openAPIV3Schema").cloned();
        let selectable_fields = v
            .get("selectableFields")
            .and_then(Value::as_array)
            .map(|fields| {
                fields
                    .iter()
                    .filter_map(|f| f.get("jsonPath").and_then(Value::as_str))
                    .map(|p| {
                        let label = p.trim_start_matches('.').to_string();
                        (label.clone(), label)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let status = v.pointer("/subresources/status").is_some();
        versions.push((
            VersionInfo {
                name: v.get("name")?.as_str()?.to_string(),
                merge_schema: builtin_schemas::for_custom(schema.as_ref()),
                schema,
                selectable_fields,
            },
            status,
        ));
    }
    versions.sort_by_key(|v| std::cmp::Reverse(version_priority(&v.0.name)));
    let status_subresource = versions.iter().any(|(_, s)| *s);
    Some(ResourceType {
        group: spec.get("group")?.as_str()?.to_string(),
        singular: names.get("singular").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| kind.to_lowercase()),
        list_kind: names.get("listKind").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| format!("{kind}List")),
        kind,
        plural,
        namespaced: spec.get("scope").and_then(Value::as_str) != Some("Cluster"),
        short_names: strings(names.get("shortNames")),
        categories: strings(names.get("categories")),
        versions: versions.into_iter().map(|(v, _)| v).collect(),
        status_subresource,
        tracks_generation: true,
        custom: true,
        special: Special::None,
        terminating: false,
    })
}

/// Orders version names the way Kubernetes prefers them: GA over beta over alpha,
/// higher numbers first, anything unparsable last.
pub(crate) fn version_priority(name: &str) -> (u8, u32, u32) {
    let Some(rest) = name.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let Ok(major) = digits.parse::<u32>() else {
        return (0, 0, 0);
    };
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        return (3, major, 0);
    }
    let (level, num) = if let Some(n) = tail.strip_prefix("beta") {
        (2, n)
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n)
    } else {
        return (0, 0, 0);
    };
    match num.parse::<u32>() {
        Ok(minor) => (level, major, minor),
        Err(_) => (0, 0, 0),
    }
}
