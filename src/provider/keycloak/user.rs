//! The desired state of a user and how it is compared with what Keycloak has. Pure
//! functions, so the comparison is tested without a server.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use keycloak::types::{RoleRepresentation, UserRepresentation};
use serde_json::json;

use super::{CONFIGURE_TOTP, UserSpec, VERIFY_EMAIL};
use crate::provider::PlannedObject;

/// The user attributes the operator owns: one missing from a [`UserSpec`] is removed
/// from the user. Other attributes are left alone.
pub const MANAGED_USER_ATTRIBUTES: [&str; 8] = ["alias", "phone", "title", "bio", "queues", "skills", "mobileApp", "timeFormat"];

/// The user attribute that holds an e-mail address whose verification e-mail is still
/// to be sent. It is set together with the new address and cleared once the e-mail
/// went out, so a failure to send is retried instead of forgotten.
pub const PENDING_VERIFICATION_ATTRIBUTE: &str = "cxPendingEmailVerification";

/// Realm roles Keycloak gives every user; role mapping never removes them.
const BUILT_IN_ROLES: [&str; 2] = ["offline_access", "uma_authorization"];

/// The attributes as Keycloak keeps them: no empty lists.
type Attributes = BTreeMap<String, Vec<String>>;

fn desired_attributes(spec: &UserSpec) -> Attributes {
    spec.attributes.iter().filter(|(_, values)| !values.is_empty()).map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn attributes_of(user: &UserRepresentation) -> Attributes {
    user.attributes.iter().flatten().filter(|(_, values)| !values.is_empty()).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The user to create. The e-mail address starts unverified: the caller decides how
/// the user is activated.
pub(super) fn new_user(spec: &UserSpec) -> UserRepresentation {
    let required_actions = if spec.require_otp { vec![CONFIGURE_TOTP.to_string()] } else { Vec::new() };
    UserRepresentation {
        username: Some(spec.username.clone()),
        email: Some(spec.email.clone()),
        email_verified: Some(false),
        first_name: Some(spec.first_name.clone()),
        last_name: spec.last_name.clone().filter(|n| !n.is_empty()),
        enabled: Some(spec.enabled),
        attributes: Some(desired_attributes(spec).into_iter().collect()),
        required_actions: Some(required_actions),
        ..Default::default()
    }
}

/// An update of an existing user.
#[derive(Debug)]
pub(super) struct UserUpdate {
    /// The whole user, as it is to be written.
    pub(super) body: UserRepresentation,
    /// The names of the changed fields.
    pub(super) changes: Vec<&'static str>,
}

/// The update that makes `actual` match `spec`, or `None` when it matches. `enabled`
/// is written only when it changes (writing `true` clears Keycloak's login failures),
/// and `true` only when `may_enable`.
pub(super) fn update(spec: &UserSpec, actual: &UserRepresentation, may_enable: bool) -> Option<UserUpdate> {
    let mut body = writable(actual.clone());
    let mut changes = Vec::new();

    let email_changed = !actual.email.as_deref().unwrap_or_default().eq_ignore_ascii_case(&spec.email);
    if email_changed {
        body.email = Some(spec.email.clone());
        body.email_verified = Some(false);
        changes.push("email");
    }
    if actual.first_name.as_deref().unwrap_or_default() != spec.first_name {
        body.first_name = Some(spec.first_name.clone());
        changes.push("firstName");
    }
    let last_name = spec.last_name.as_deref().unwrap_or_default();
    if actual.last_name.as_deref().unwrap_or_default() != last_name {
        // An empty name clears it; leaving the field out would keep the old one.
        body.last_name = Some(last_name.to_string());
        changes.push("lastName");
    }

    let current = attributes_of(actual);
    let mut attributes = merge_attributes(&current, spec);
    if attributes != current {
        changes.push("attributes");
    }
    if email_changed {
        attributes.insert(PENDING_VERIFICATION_ATTRIBUTE.to_string(), vec![spec.email.to_lowercase()]);
    }
    body.attributes = Some(attributes.into_iter().collect());

    if actual.enabled != Some(spec.enabled) && (may_enable || !spec.enabled) {
        body.enabled = Some(spec.enabled);
        changes.push("enabled");
    }

    let current_actions: BTreeSet<String> = actual.required_actions.iter().flatten().cloned().collect();
    let actions = required_actions(spec, actual, &current_actions, email_changed);
    if actions != current_actions {
        body.required_actions = Some(actions.into_iter().collect());
        changes.push("requiredActions");
    }

    (!changes.is_empty()).then_some(UserUpdate { body, changes })
}

/// The user's attributes with the managed ones replaced by the spec's.
fn merge_attributes(current: &Attributes, spec: &UserSpec) -> Attributes {
    let mut merged: Attributes =
        current.iter().filter(|(k, _)| !MANAGED_USER_ATTRIBUTES.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
    merged.extend(desired_attributes(spec));
    merged
}

/// `CONFIGURE_TOTP` while OTP is required and the user has none (Keycloak removes the
/// action once it is done, and adding it again would make the user set up a second
/// generator); `VERIFY_EMAIL` after an e-mail change.
fn required_actions(spec: &UserSpec, actual: &UserRepresentation, current: &BTreeSet<String>, email_changed: bool) -> BTreeSet<String> {
    let mut actions = current.clone();
    if spec.require_otp && actual.totp != Some(true) {
        actions.insert(CONFIGURE_TOTP.to_string());
    } else if !spec.require_otp {
        actions.remove(CONFIGURE_TOTP);
    }
    if email_changed {
        actions.insert(VERIFY_EMAIL.to_string());
    }
    actions
}

/// A user as read, made fit to write back: fields only Keycloak sets are dropped and
/// `enabled` is left out unless the caller sets it.
fn writable(user: UserRepresentation) -> UserRepresentation {
    UserRepresentation { access: None, user_profile_metadata: None, enabled: None, ..user }
}

/// Whether the user's current address still waits for its verification e-mail.
pub(super) fn verification_pending(user: &UserRepresentation) -> bool {
    let pending = user.attributes.as_ref().and_then(|a| a.get(PENDING_VERIFICATION_ATTRIBUTE)).and_then(|v| v.first());
    match (pending, user.email.as_deref()) {
        (Some(pending), Some(email)) => pending.eq_ignore_ascii_case(email),
        _ => false,
    }
}

/// The user without the pending-verification attribute, fit to write back.
pub(super) fn without_pending_verification(user: UserRepresentation) -> UserRepresentation {
    let mut user = writable(user);
    forget_pending_verification(&mut user);
    user
}

/// Removes the pending-verification attribute, for realms that cannot send e-mail:
/// the `VERIFY_EMAIL` required action alone then asks the user to verify.
pub(super) fn forget_pending_verification(user: &mut UserRepresentation) {
    let attributes: HashMap<String, Vec<String>> = user.attributes.take().unwrap_or_default();
    user.attributes = Some(attributes.into_iter().filter(|(k, _)| k != PENDING_VERIFICATION_ATTRIBUTE).collect());
}

/// The realm roles to grant (by name) and to revoke, so that the user's direct role
/// mappings are exactly `desired` plus the realm's built-in roles.
pub(super) fn role_changes(realm: &str, desired: &[String], mapped: &[RoleRepresentation]) -> (Vec<String>, Vec<RoleRepresentation>) {
    let default_roles = format!("default-roles-{realm}");
    let built_in = |name: &str| name == default_roles || BUILT_IN_ROLES.contains(&name);
    let mapped_names: BTreeSet<&str> = mapped.iter().filter_map(|r| r.name.as_deref()).collect();
    let wanted: BTreeSet<&str> = desired.iter().map(String::as_str).collect();
    let to_add = wanted.iter().filter(|name| !mapped_names.contains(*name)).map(|name| name.to_string()).collect();
    let to_remove = mapped
        .iter()
        .filter(|r| r.name.as_deref().is_some_and(|name| !built_in(name) && !wanted.contains(name)))
        .map(|r| RoleRepresentation { id: r.id.clone(), name: r.name.clone(), ..Default::default() })
        .collect();
    (to_add, to_remove)
}

/// The user, as `cx-operator plan` shows it.
pub(super) fn plan(spec: &UserSpec) -> PlannedObject {
    let user = new_user(spec);
    PlannedObject {
        kind: "user".into(),
        name: spec.username.clone(),
        settings: json!({
            "username": user.username,
            "email": user.email,
            "firstName": user.first_name,
            "lastName": user.last_name,
            "enabled": user.enabled,
            "attributes": desired_attributes(spec),
            "realmRoles": spec.roles,
            "requiredActions": user.required_actions,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> UserSpec {
        UserSpec {
            username: "ana".into(),
            email: "ana@example.com".into(),
            first_name: "Ana".into(),
            last_name: Some("Lima".into()),
            enabled: true,
            attributes: BTreeMap::from([
                ("alias".into(), vec!["Ana L.".into()]),
                ("queues".into(), vec!["sales".into(), "support".into()]),
            ]),
            roles: vec!["agent".into()],
            require_otp: false,
        }
    }

    /// The user as Keycloak returns it after creation.
    fn created(spec: &UserSpec) -> UserRepresentation {
        let mut user = new_user(spec);
        user.id = Some("id-1".into());
        user.email = Some(spec.email.to_lowercase());
        user.totp = Some(false);
        user
    }

    #[test]
    fn a_created_user_needs_no_update() {
        let spec = spec();
        assert!(update(&spec, &created(&spec), true).is_none());
        let upper = UserSpec { email: "Ana@Example.com".into(), ..spec };
        assert!(update(&upper, &created(&upper), true).is_none(), "Keycloak stores e-mail addresses in lower case");
    }

    #[test]
    fn an_email_change_unverifies_and_asks_for_verification() {
        let spec = spec();
        let mut actual = created(&spec);
        actual.email_verified = Some(true);
        let moved = UserSpec { email: "ana@new.example.com".into(), ..spec };
        let update = update(&moved, &actual, true).expect("an update");
        assert_eq!(update.changes, ["email", "requiredActions"]);
        assert_eq!(update.body.email_verified, Some(false));
        assert!(update.body.required_actions.as_ref().unwrap().contains(&VERIFY_EMAIL.to_string()));
        assert!(verification_pending(&update.body));
        assert!(!verification_pending(&without_pending_verification(update.body)));
    }

    #[test]
    fn managed_attributes_are_replaced_and_others_kept() {
        let spec = spec();
        let mut actual = created(&spec);
        let attributes = actual.attributes.as_mut().unwrap();
        attributes.insert("phone".into(), vec!["+4930123456".into()]);
        attributes.insert("locale".into(), vec!["de".into()]);
        let update = update(&spec, &actual, true).expect("an update");
        assert_eq!(update.changes, ["attributes"]);
        let written = update.body.attributes.unwrap();
        assert!(!written.contains_key("phone"), "phone is managed and not in the spec");
        assert_eq!(written.get("locale"), Some(&vec!["de".to_string()]));
        assert!(update.body.enabled.is_none(), "enabled is written only when it changes");
    }

    #[test]
    fn a_locked_user_is_not_enabled() {
        let spec = spec();
        let mut actual = created(&spec);
        actual.enabled = Some(false);
        assert!(update(&spec, &actual, false).is_none());
        assert_eq!(update(&spec, &actual, true).unwrap().body.enabled, Some(true));
        let disabled = UserSpec { enabled: false, ..spec };
        assert_eq!(update(&disabled, &created(&disabled), false).map(|u| u.changes), None);
    }

    #[test]
    fn otp_setup_is_required_only_until_done() {
        let spec = UserSpec { require_otp: true, ..spec() };
        let mut actual = created(&UserSpec { require_otp: false, ..spec.clone() });
        assert_eq!(update(&spec, &actual, true).unwrap().body.required_actions, Some(vec![CONFIGURE_TOTP.to_string()]));
        actual.totp = Some(true);
        assert!(update(&spec, &actual, true).is_none());
    }

    #[test]
    fn roles_change_by_difference() {
        let role = |id: &str, name: &str| RoleRepresentation { id: Some(id.into()), name: Some(name.into()), ..Default::default() };
        let mapped = [role("1", "default-roles-acme"), role("2", "agent"), role("3", "supervisor"), role("4", "offline_access")];
        let (add, remove) = role_changes("acme", &["agent".into(), "admin".into()], &mapped);
        assert_eq!(add, ["admin"]);
        assert_eq!(remove.iter().map(|r| r.name.as_deref().unwrap()).collect::<Vec<_>>(), ["supervisor"]);
    }
}
