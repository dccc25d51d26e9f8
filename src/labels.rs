//! Labels, annotations and names the operator puts on what it creates.

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "cx-operator";
/// `app.kubernetes.io/managed-by` value on everything the operator creates.
pub const MANAGED_BY: &str = "cx-operator";
/// The standard managed-by label key.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Label naming the tenant an object belongs to.
pub const TENANT_LABEL: &str = "cx-operator.io/tenant";
/// Finalizer that holds a Tenant until its external resources are cleaned up.
pub const TENANT_FINALIZER: &str = "cx-operator.io/cleanup";
/// Name of the tenant ConfigMap in the tenant namespace.
pub const TENANT_CONFIGMAP: &str = "cx-tenant";
/// Label selector matching everything the operator manages.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY}")
}
