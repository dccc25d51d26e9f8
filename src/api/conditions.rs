//! Condition types and reasons, named once so controllers, tests and docs agree.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition status values, as Kubernetes spells them.
pub const TRUE: &str = "True";
/// See [`TRUE`].
pub const FALSE: &str = "False";
/// See [`TRUE`].
pub const UNKNOWN: &str = "Unknown";

/// Condition types.
pub mod types {
    /// The object is fully provisioned and serving.
    pub const READY: &str = "Ready";
    /// The tenant namespace exists with its labels.
    pub const NAMESPACE_READY: &str = "NamespaceReady";
    /// The tenant's identity realm is provisioned.
    pub const REALM_READY: &str = "RealmReady";
    /// The tenant's database and database user are provisioned.
    pub const DATABASE_READY: &str = "DatabaseReady";
    /// The tenant's cache user is provisioned.
    pub const CACHE_READY: &str = "CacheReady";
    /// The tenant's Ingress exists.
    pub const INGRESS_READY: &str = "IngressReady";
    /// The tenant's host is served with a valid certificate.
    pub const DOMAIN_SECURE: &str = "DomainSecure";
    /// The tenant's URL is allowed by the platform's Grafana data source.
    pub const GRAFANA_READY: &str = "GrafanaReady";
    /// The Agent would exceed its tenant's agent quota.
    pub const QUOTA_EXCEEDED: &str = "QuotaExceeded";
    /// Every measured capability is within its limit.
    pub const WITHIN_LIMITS: &str = "WithinLimits";
}

/// Condition reasons (CamelCase, as Kubernetes requires).
pub mod reasons {
    /// Everything this condition covers is in place.
    pub const PROVISIONED: &str = "Provisioned";
    /// Work is under way; the condition settles on a later reconcile.
    pub const PROGRESSING: &str = "Progressing";
    /// The backend this condition covers is not configured; the step is skipped.
    pub const NOT_CONFIGURED: &str = "NotConfigured";
    /// The spec is invalid; nothing changes until it is edited.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// The tenant is disabled by `spec.enabled: false`.
    pub const DISABLED: &str = "Disabled";
    /// The tenant passed `spec.expiresAt` and was disabled.
    pub const EXPIRED: &str = "Expired";
    /// An object with the same name exists and belongs to something else.
    pub const CONFLICT: &str = "Conflict";
    /// The Kubernetes API refused or failed a request.
    pub const API_ERROR: &str = "ApiError";
    /// A backend could not be reached or answered with an error.
    pub const BACKEND_UNAVAILABLE: &str = "BackendUnavailable";
    /// The tenant is being deleted.
    pub const DELETING: &str = "Deleting";
    /// One or more other conditions are not True.
    pub const NOT_READY: &str = "NotReady";
    /// TLS is served with a certificate that covers the host and is valid now.
    pub const CERTIFICATE_VALID: &str = "CertificateValid";
    /// The TLS Secret does not exist (yet).
    pub const SECRET_MISSING: &str = "SecretMissing";
    /// The TLS Secret holds no parseable certificate.
    pub const CERTIFICATE_INVALID: &str = "CertificateInvalid";
    /// The certificate's validity period has ended or not begun.
    pub const CERTIFICATE_EXPIRED: &str = "CertificateExpired";
    /// The certificate does not name the tenant's host.
    pub const HOST_NOT_COVERED: &str = "HostNotCovered";
    /// TLS is switched off in the operator's Ingress configuration.
    pub const TLS_DISABLED: &str = "TLSDisabled";
    /// The quota has room for this object.
    pub const WITHIN_QUOTA: &str = "WithinQuota";
    /// The quota has no room for this object.
    pub const OVER_QUOTA: &str = "OverQuota";
    /// The object's tenant is missing, disabled or being deleted.
    pub const TENANT_UNAVAILABLE: &str = "TenantUnavailable";
    /// Every capability is within its limit.
    pub const WITHIN_LIMITS: &str = "WithinLimits";
    /// At least one capability is over its limit.
    pub const LIMITS_EXCEEDED: &str = "LimitsExceeded";
    /// A capability passed 80 % of its limit.
    pub const NEAR_LIMIT: &str = "NearLimit";
    /// A capability reached its limit.
    pub const LIMIT_REACHED: &str = "LimitReached";
}

/// A condition as the operator computes it, before timestamps are settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    /// Condition type, one of [`types`].
    pub type_: &'static str,
    /// `True`, `False` or `Unknown`.
    pub status: &'static str,
    /// One of [`reasons`].
    pub reason: &'static str,
    /// Human-readable detail; never contains a credential.
    pub message: String,
}

impl Cond {
    /// A True condition.
    pub fn ok(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self { type_, status: TRUE, reason, message: message.into() }
    }

    /// A False condition.
    pub fn fail(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self { type_, status: FALSE, reason, message: message.into() }
    }

    /// An Unknown condition.
    pub fn unknown(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self { type_, status: UNKNOWN, reason, message: message.into() }
    }

    /// Whether the status is True.
    pub fn is_true(&self) -> bool {
        self.status == TRUE
    }
}

/// Turns computed conditions into API conditions, keeping `lastTransitionTime` from
/// `previous` when the status did not change, so an unchanged object yields an
/// identical status (and no write).
pub fn settle(previous: &[Condition], computed: &[Cond], generation: Option<i64>, now: Time) -> Vec<Condition> {
    computed
        .iter()
        .map(|c| {
            let last_transition_time = previous
                .iter()
                .find(|p| p.type_ == c.type_ && p.status == c.status)
                .map(|p| p.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: c.type_.to_string(),
                status: c.status.to_string(),
                reason: c.reason.to_string(),
                message: c.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// Sets one condition in place, keeping the others.
pub fn set(conditions: &mut Vec<Condition>, cond: &Cond, generation: Option<i64>, now: Time) {
    let settled = settle(conditions, std::slice::from_ref(cond), generation, now).remove(0);
    match conditions.iter_mut().find(|c| c.type_ == cond.type_) {
        Some(existing) => *existing = settled,
        None => conditions.push(settled),
    }
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of this type is present and True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == TRUE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    #[test]
    fn settle_keeps_transition_time_when_status_is_unchanged() {
        let before = settle(&[], &[Cond::ok(types::READY, reasons::PROVISIONED, "ok")], Some(1), time("2026-01-01T00:00:00Z"));
        let after = settle(&before, &[Cond::ok(types::READY, reasons::PROVISIONED, "ok")], Some(1), time("2026-02-01T00:00:00Z"));
        assert_eq!(before, after);
    }

    #[test]
    fn settle_moves_transition_time_when_status_flips() {
        let before = settle(&[], &[Cond::ok(types::READY, reasons::PROVISIONED, "ok")], Some(1), time("2026-01-01T00:00:00Z"));
        let after = settle(&before, &[Cond::fail(types::READY, reasons::NOT_READY, "no")], Some(2), time("2026-02-01T00:00:00Z"));
        assert_eq!(after[0].last_transition_time, time("2026-02-01T00:00:00Z"));
        assert_eq!(after[0].observed_generation, Some(2));
        assert!(!is_true(&after, types::READY));
    }
}
