//! Custom resource types of the `cx-operator.io/v1alpha1` API.
//!
//! The CRD YAML in `crds/` is generated from these types (`cx-operator crd`); every
//! field's doc comment becomes its `kubectl explain` text.

pub mod agent;
pub mod common;
pub mod conditions;
pub mod notifications;
pub mod quota;
pub mod tenant;

pub use agent::{Agent, AgentSpec, AgentStatus};
pub use common::{Activation, SecretKeyRef};
pub use quota::{Capability, CapabilityQuota, CapabilityQuotaSpec, CapabilityQuotaStatus};
pub use tenant::{Tenant, TenantPhase, TenantSpec, TenantStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The API group of every cx-operator resource.
pub const GROUP: &str = "cx-operator.io";
/// The served and stored API version.
pub const VERSION: &str = "v1alpha1";
/// Prefix of every label and annotation the operator reads or writes.
pub const DOMAIN_PREFIX: &str = "cx-operator.io/";

/// Every CRD the operator serves, in the order they are printed and installed.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![Tenant::crd(), Agent::crd(), CapabilityQuota::crd()]
}

/// The CRDs as one multi-document YAML stream, as `cx-operator crd` prints it.
pub fn crds_yaml() -> Result<String, serde_yaml_ng::Error> {
    crds().iter().map(crd_yaml).collect::<Result<Vec<_>, _>>().map(|docs| docs.concat())
}

/// One CRD as a YAML document starting with `---`.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_yaml_ng::Error> {
    Ok(format!("---\n{}", serde_yaml_ng::to_string(crd)?))
}
