//! The desired state of a tenant realm and its OIDC client, and how it is compared
//! with what Keycloak has. Pure functions, so the comparison is tested without a
//! server.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use keycloak::types::{ClientRepresentation, RealmRepresentation};
use serde_json::json;

use super::{BACKEND, RealmSpec, RealmTemplate};
use crate::provider::{PlannedObject, ProviderError, password};

/// The realm attribute holding the UID of the Tenant the realm belongs to.
pub const TENANT_UID_ATTRIBUTE: &str = "cx-operator.tenant-uid";

/// The realm attribute holding the SHA-256 of `<realm>:<SMTP password>`: Keycloak
/// masks the SMTP password when it returns a realm, so this is how a changed password
/// is noticed.
pub const SMTP_PASSWORD_DIGEST_ATTRIBUTE: &str = "cx-operator.smtp-password-sha256";

/// The key of the password in Keycloak's `smtpServer` settings.
pub(super) const SMTP_PASSWORD: &str = "password";

/// The description of the roles the operator creates.
pub(super) const ROLE_DESCRIPTION: &str = "Platform role, created by cx-operator";

/// The OIDC protocol of the platform's client.
const OIDC: &str = "openid-connect";

/// The client attributes the operator manages.
const PKCE_METHOD: &str = "pkce.code.challenge.method";
const POST_LOGOUT_REDIRECT_URIS: &str = "post.logout.redirect.uris";

/// The SMTP settings without the password.
pub(super) fn smtp_without_password<'a>(smtp: impl IntoIterator<Item = (&'a String, &'a String)>) -> BTreeMap<String, String> {
    smtp.into_iter().filter(|(k, _)| k.as_str() != SMTP_PASSWORD).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The digest of the realm's SMTP password, empty without one. Salted with the realm
/// name so that realms sharing a password do not show the same digest.
fn smtp_password_digest(template: &RealmTemplate, realm: &str) -> String {
    template.smtp.get(SMTP_PASSWORD).map(|p| password::sha256_hex(&format!("{realm}:{p}"))).unwrap_or_default()
}

fn int(value: u32) -> Option<i32> {
    Some(i32::try_from(value).unwrap_or(i32::MAX))
}

/// Every realm setting the operator manages, without attributes.
fn settings(template: &RealmTemplate, spec: &RealmSpec) -> RealmRepresentation {
    let brute = &template.brute_force;
    let otp = &template.otp_policy;
    RealmRepresentation {
        display_name: Some(spec.display_name.clone()),
        enabled: Some(spec.enabled),
        default_locale: Some(spec.default_locale.clone()),
        internationalization_enabled: Some(true),
        brute_force_protected: Some(brute.enabled),
        failure_factor: int(brute.failure_factor),
        permanent_lockout: Some(brute.permanent_lockout),
        max_temporary_lockouts: int(brute.max_temporary_lockouts),
        wait_increment_seconds: int(brute.wait_increment_seconds),
        max_failure_wait_seconds: int(brute.max_failure_wait_seconds),
        minimum_quick_login_wait_seconds: int(brute.minimum_quick_login_wait_seconds),
        quick_login_check_milli_seconds: Some(i64::from(brute.quick_login_check_milli_seconds)),
        max_delta_time_seconds: int(brute.max_delta_time_seconds),
        password_policy: Some(template.password_policy.clone()),
        otp_policy_type: Some(otp.otp_type.clone()),
        otp_policy_algorithm: Some(otp.algorithm.clone()),
        otp_policy_digits: int(otp.digits),
        otp_policy_period: int(otp.period_seconds),
        otp_policy_look_ahead_window: int(otp.look_ahead_window),
        smtp_server: Some(template.smtp.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        ..Default::default()
    }
}

/// The realm to create: every managed setting and the tenant UID marker.
pub(super) fn new_realm(template: &RealmTemplate, spec: &RealmSpec) -> RealmRepresentation {
    let attributes = HashMap::from([
        (TENANT_UID_ATTRIBUTE.to_string(), spec.tenant_uid.clone()),
        (SMTP_PASSWORD_DIGEST_ATTRIBUTE.to_string(), smtp_password_digest(template, &spec.name)),
    ]);
    RealmRepresentation {
        realm: Some(spec.name.clone()),
        supported_locales: Some(vec![spec.default_locale.clone()]),
        attributes: Some(attributes),
        ..settings(template, spec)
    }
}

/// Fails unless the realm carries the tenant's UID.
pub(super) fn check_owner(actual: &RealmRepresentation, spec: &RealmSpec) -> Result<(), ProviderError> {
    check_owner_uid(actual, &spec.name, &spec.tenant_uid)
}

/// Fails unless the realm carries `tenant_uid`.
pub(super) fn check_owner_uid(actual: &RealmRepresentation, name: &str, tenant_uid: &str) -> Result<(), ProviderError> {
    let message = match actual.attributes.as_ref().and_then(|a| a.get(TENANT_UID_ATTRIBUTE)).filter(|uid| !uid.is_empty()) {
        Some(uid) if uid == tenant_uid => return Ok(()),
        Some(uid) => format!("realm {name} belongs to another tenant (UID {uid}); it is left alone"),
        None => {
            format!("realm {name} exists but was not created by cx-operator (no {TENANT_UID_ATTRIBUTE} attribute); it is never adopted")
        }
    };
    Err(ProviderError::Conflict { backend: BACKEND, message })
}

/// The names of the managed settings in which `actual` differs from the template and
/// spec; empty when the realm is up to date.
pub(super) fn drift(template: &RealmTemplate, spec: &RealmSpec, actual: &RealmRepresentation) -> Vec<&'static str> {
    let desired = settings(template, spec);
    let mut changed = Vec::new();
    let mut check = |name: &'static str, same: bool| {
        if !same {
            changed.push(name);
        }
    };
    check("displayName", desired.display_name == actual.display_name);
    check("enabled", desired.enabled == actual.enabled);
    check("defaultLocale", desired.default_locale == actual.default_locale);
    check("internationalizationEnabled", desired.internationalization_enabled == actual.internationalization_enabled);
    check("supportedLocales", actual.supported_locales.as_ref().is_some_and(|l| l.contains(&spec.default_locale)));
    check("bruteForceProtected", desired.brute_force_protected == actual.brute_force_protected);
    check("failureFactor", desired.failure_factor == actual.failure_factor);
    check("permanentLockout", desired.permanent_lockout == actual.permanent_lockout);
    check("maxTemporaryLockouts", desired.max_temporary_lockouts == actual.max_temporary_lockouts);
    check("waitIncrementSeconds", desired.wait_increment_seconds == actual.wait_increment_seconds);
    check("maxFailureWaitSeconds", desired.max_failure_wait_seconds == actual.max_failure_wait_seconds);
    check("minimumQuickLoginWaitSeconds", desired.minimum_quick_login_wait_seconds == actual.minimum_quick_login_wait_seconds);
    check("quickLoginCheckMilliSeconds", desired.quick_login_check_milli_seconds == actual.quick_login_check_milli_seconds);
    check("maxDeltaTimeSeconds", desired.max_delta_time_seconds == actual.max_delta_time_seconds);
    check("passwordPolicy", policy_terms(desired.password_policy.as_deref()) == policy_terms(actual.password_policy.as_deref()));
    check("otpPolicyType", desired.otp_policy_type == actual.otp_policy_type);
    check("otpPolicyAlgorithm", desired.otp_policy_algorithm == actual.otp_policy_algorithm);
    check("otpPolicyDigits", desired.otp_policy_digits == actual.otp_policy_digits);
    check("otpPolicyPeriod", desired.otp_policy_period == actual.otp_policy_period);
    check("otpPolicyLookAheadWindow", desired.otp_policy_look_ahead_window == actual.otp_policy_look_ahead_window);
    check("smtpServer", smtp_without_password(&template.smtp) == smtp_without_password(actual.smtp_server.iter().flatten()));
    let actual_digest =
        actual.attributes.as_ref().and_then(|a| a.get(SMTP_PASSWORD_DIGEST_ATTRIBUTE)).map(String::as_str).unwrap_or_default();
    check("smtpServer.password", smtp_password_digest(template, &spec.name) == actual_digest);
    changed
}

/// The realm update: every managed setting, the default locale added to the
/// supported ones, and the realm's attributes with the SMTP password digest. Other
/// settings are left out, so Keycloak keeps them.
pub(super) fn update(template: &RealmTemplate, spec: &RealmSpec, actual: &RealmRepresentation) -> RealmRepresentation {
    let mut locales = actual.supported_locales.clone().unwrap_or_default();
    if !locales.contains(&spec.default_locale) {
        locales.push(spec.default_locale.clone());
    }
    // The whole attribute map goes back, so the update is right whether Keycloak
    // replaces the attributes or merges them.
    let mut attributes = actual.attributes.clone().unwrap_or_default();
    attributes.insert(SMTP_PASSWORD_DIGEST_ATTRIBUTE.to_string(), smtp_password_digest(template, &spec.name));
    RealmRepresentation { supported_locales: Some(locales), attributes: Some(attributes), ..settings(template, spec) }
}

/// A password policy as a set of terms, so that `notUsername` and Keycloak's
/// `notUsername(undefined)`, or a different order, compare equal.
pub(super) fn policy_terms(policy: Option<&str>) -> BTreeMap<String, String> {
    policy
        .unwrap_or_default()
        .split(" and ")
        .map(str::trim)
        .filter(|term| !term.is_empty())
        .map(|term| match term.split_once('(') {
            Some((name, rest)) => {
                let argument = rest.strip_suffix(')').unwrap_or(rest).trim();
                (name.trim().to_string(), if argument == "undefined" { String::new() } else { argument.to_string() })
            }
            None => (term.to_string(), String::new()),
        })
        .collect()
}

/// The platform's OIDC client: a public client (the platform runs in the browser)
/// using the authorization-code flow with PKCE, redirecting only to the tenant's URL.
pub(super) fn desired_client(template: &RealmTemplate, spec: &RealmSpec) -> ClientRepresentation {
    let url = spec.url.trim_end_matches('/');
    let pattern = format!("{url}/*");
    ClientRepresentation {
        client_id: Some(template.client_id.clone()),
        protocol: Some(OIDC.into()),
        enabled: Some(true),
        public_client: Some(true),
        standard_flow_enabled: Some(true),
        implicit_flow_enabled: Some(false),
        direct_access_grants_enabled: Some(false),
        service_accounts_enabled: Some(false),
        root_url: Some(url.to_string()),
        base_url: Some("/".into()),
        redirect_uris: Some(vec![pattern.clone()]),
        web_origins: Some(vec![url.to_string()]),
        attributes: Some(HashMap::from([(PKCE_METHOD.to_string(), "S256".to_string()), (POST_LOGOUT_REDIRECT_URIS.to_string(), pattern)])),
        ..Default::default()
    }
}

/// The names of the managed client settings in which `actual` differs.
pub(super) fn client_drift(desired: &ClientRepresentation, actual: &ClientRepresentation) -> Vec<&'static str> {
    let set = |v: &Option<Vec<String>>| v.iter().flatten().cloned().collect::<BTreeSet<_>>();
    let attribute = |c: &ClientRepresentation, key: &str| c.attributes.as_ref().and_then(|a| a.get(key)).cloned().unwrap_or_default();
    let mut changed = Vec::new();
    let mut check = |name: &'static str, same: bool| {
        if !same {
            changed.push(name);
        }
    };
    check("protocol", desired.protocol == actual.protocol);
    check("enabled", desired.enabled == actual.enabled);
    check("publicClient", desired.public_client == actual.public_client);
    check("standardFlowEnabled", desired.standard_flow_enabled == actual.standard_flow_enabled);
    check("implicitFlowEnabled", desired.implicit_flow_enabled == actual.implicit_flow_enabled);
    check("directAccessGrantsEnabled", desired.direct_access_grants_enabled == actual.direct_access_grants_enabled);
    check("serviceAccountsEnabled", desired.service_accounts_enabled == actual.service_accounts_enabled);
    check("rootUrl", desired.root_url == actual.root_url);
    check("baseUrl", desired.base_url == actual.base_url);
    check("redirectUris", set(&desired.redirect_uris) == set(&actual.redirect_uris));
    check("webOrigins", set(&desired.web_origins) == set(&actual.web_origins));
    check(PKCE_METHOD, attribute(desired, PKCE_METHOD) == attribute(actual, PKCE_METHOD));
    check(POST_LOGOUT_REDIRECT_URIS, attribute(desired, POST_LOGOUT_REDIRECT_URIS) == attribute(actual, POST_LOGOUT_REDIRECT_URIS));
    changed
}

/// The client as read, with the managed settings replaced: the whole client goes
/// back, so no setting made elsewhere is lost.
pub(super) fn merge_client(desired: ClientRepresentation, actual: ClientRepresentation) -> ClientRepresentation {
    let mut attributes = actual.attributes.clone().unwrap_or_default();
    attributes.extend(desired.attributes.unwrap_or_default());
    ClientRepresentation {
        protocol: desired.protocol,
        enabled: desired.enabled,
        public_client: desired.public_client,
        standard_flow_enabled: desired.standard_flow_enabled,
        implicit_flow_enabled: desired.implicit_flow_enabled,
        direct_access_grants_enabled: desired.direct_access_grants_enabled,
        service_accounts_enabled: desired.service_accounts_enabled,
        root_url: desired.root_url,
        base_url: desired.base_url,
        redirect_uris: desired.redirect_uris,
        web_origins: desired.web_origins,
        attributes: Some(attributes),
        ..actual
    }
}

/// The realm, its roles and its client, without credentials.
pub(super) fn plan(template: &RealmTemplate, spec: &RealmSpec) -> Vec<PlannedObject> {
    let brute = &template.brute_force;
    let otp = &template.otp_policy;
    let mut smtp = json!(smtp_without_password(&template.smtp));
    if template.smtp.contains_key(SMTP_PASSWORD) {
        smtp[SMTP_PASSWORD] = json!("<from Secret>");
    }
    let realm = PlannedObject {
        kind: "realm".into(),
        name: spec.name.clone(),
        settings: json!({
            "displayName": spec.display_name,
            "enabled": spec.enabled,
            "defaultLocale": spec.default_locale,
            "attributes": { TENANT_UID_ATTRIBUTE: spec.tenant_uid },
            "bruteForce": {
                "enabled": brute.enabled,
                "failureFactor": brute.failure_factor,
                "permanentLockout": brute.permanent_lockout,
                "maxTemporaryLockouts": brute.max_temporary_lockouts,
                "waitIncrementSeconds": brute.wait_increment_seconds,
                "maxFailureWaitSeconds": brute.max_failure_wait_seconds,
                "minimumQuickLoginWaitSeconds": brute.minimum_quick_login_wait_seconds,
                "quickLoginCheckMilliSeconds": brute.quick_login_check_milli_seconds,
                "maxDeltaTimeSeconds": brute.max_delta_time_seconds,
            },
            "passwordPolicy": template.password_policy,
            "otpPolicy": {
                "type": otp.otp_type,
                "algorithm": otp.algorithm,
                "digits": otp.digits,
                "period": otp.period_seconds,
                "lookAheadWindow": otp.look_ahead_window,
            },
            "smtpServer": smtp,
            "userProfile": { "unmanagedAttributePolicy": "ADMIN_EDIT" },
        }),
    };
    let roles = template.roles.iter().map(|role| PlannedObject {
        kind: "realmRole".into(),
        name: format!("{}/{role}", spec.name),
        settings: json!({ "realm": spec.name, "name": role }),
    });
    let client = desired_client(template, spec);
    let client = PlannedObject {
        kind: "oidcClient".into(),
        name: format!("{}/{}", spec.name, template.client_id),
        settings: json!({
            "realm": spec.name,
            "clientId": client.client_id,
            "publicClient": client.public_client,
            "standardFlowEnabled": client.standard_flow_enabled,
            "directAccessGrantsEnabled": client.direct_access_grants_enabled,
            "rootUrl": client.root_url,
            "redirectUris": client.redirect_uris,
            "webOrigins": client.web_origins,
            "attributes": client.attributes.map(|a| a.into_iter().collect::<BTreeMap<_, _>>()),
        }),
    };
    std::iter::once(realm).chain(roles).chain(std::iter::once(client)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RealmSpec {
        RealmSpec {
            name: "acme".into(),
            display_name: "Acme".into(),
            enabled: true,
            default_locale: "de".into(),
            tenant_uid: "uid-1".into(),
            url: "https://acme.example.com".into(),
        }
    }

    fn template() -> RealmTemplate {
        RealmTemplate {
            smtp: BTreeMap::from([("host".into(), "smtp.example.com".into()), (SMTP_PASSWORD.into(), "smtp-secret".into())]),
            ..RealmTemplate::default()
        }
    }

    /// The realm as Keycloak returns it after creation: the SMTP password masked, the
    /// password policy with Keycloak's filled-in arguments.
    fn as_returned(template: &RealmTemplate, spec: &RealmSpec) -> RealmRepresentation {
        let mut realm = new_realm(template, spec);
        realm.smtp_server.as_mut().unwrap().insert(SMTP_PASSWORD.into(), "**********".into());
        realm.password_policy = Some("length(12) and digits(1) and upperCase(1) and notUsername(undefined)".into());
        realm
    }

    #[test]
    fn a_created_realm_has_no_drift() {
        let (template, spec) = (template(), spec());
        assert_eq!(drift(&template, &spec, &as_returned(&template, &spec)), Vec::<&str>::new());
    }

    #[test]
    fn changes_are_named() {
        let (template, spec) = (template(), spec());
        let mut actual = as_returned(&template, &spec);
        actual.display_name = Some("Other".into());
        actual.failure_factor = Some(30);
        assert_eq!(drift(&template, &spec, &actual), ["displayName", "failureFactor"]);
        let mut rotated = template.clone();
        rotated.smtp.insert(SMTP_PASSWORD.into(), "new-secret".into());
        assert_eq!(drift(&rotated, &spec, &as_returned(&template, &spec)), ["smtpServer.password"]);
    }

    #[test]
    fn the_update_keeps_other_attributes_and_locales() {
        let (template, spec) = (template(), spec());
        let mut actual = as_returned(&template, &spec);
        actual.supported_locales = Some(vec!["fr".into()]);
        actual.attributes.as_mut().unwrap().insert("frontendUrl".into(), "https://x".into());
        let update = update(&template, &spec, &actual);
        assert_eq!(update.supported_locales, Some(vec!["fr".to_string(), "de".to_string()]));
        let attributes = update.attributes.unwrap();
        assert_eq!(attributes.get("frontendUrl").map(String::as_str), Some("https://x"));
        assert_eq!(attributes.get(TENANT_UID_ATTRIBUTE).map(String::as_str), Some("uid-1"));
        assert!(update.realm.is_none(), "an update never renames");
    }

    #[test]
    fn only_the_tenants_realm_is_accepted() {
        let spec = spec();
        let mut realm = new_realm(&template(), &spec);
        assert!(check_owner(&realm, &spec).is_ok());
        realm.attributes.as_mut().unwrap().insert(TENANT_UID_ATTRIBUTE.into(), "uid-2".into());
        assert!(matches!(check_owner(&realm, &spec), Err(ProviderError::Conflict { .. })));
        realm.attributes = None;
        assert!(matches!(check_owner(&realm, &spec), Err(ProviderError::Conflict { .. })));
    }

    #[test]
    fn password_policies_compare_by_terms() {
        assert_eq!(policy_terms(Some("digits(1) and length(12)")), policy_terms(Some("length(12) and digits(1)")));
        assert_eq!(policy_terms(Some("notUsername")), policy_terms(Some("notUsername(undefined)")));
        assert_ne!(policy_terms(Some("length(12)")), policy_terms(Some("length(8)")));
        assert_eq!(policy_terms(Some("")), policy_terms(None));
    }

    #[test]
    fn the_client_redirects_to_the_tenant_url_only() {
        let client = desired_client(&template(), &spec());
        assert_eq!(client.redirect_uris, Some(vec!["https://acme.example.com/*".to_string()]));
        assert_eq!(client.web_origins, Some(vec!["https://acme.example.com".to_string()]));
        assert!(client_drift(&client, &client).is_empty());
        let mut moved = client.clone();
        moved.redirect_uris = Some(vec!["https://evil.example.com/*".into()]);
        assert_eq!(client_drift(&client, &moved), ["redirectUris"]);
    }

    #[test]
    fn the_plan_holds_no_smtp_password() {
        let plan = plan(&template(), &spec());
        let text = serde_json::to_string(&plan.iter().map(|p| &p.settings).collect::<Vec<_>>()).unwrap();
        assert!(!text.contains("smtp-secret"), "{text}");
        assert_eq!(
            plan.iter().map(|p| p.kind.as_str()).collect::<Vec<_>>(),
            ["realm", "realmRole", "realmRole", "realmRole", "oidcClient"]
        );
    }
}
