//! Decides whether an object needs a write, so that an unchanged object costs none.

use serde_json::Value;

/// Whether applying `desired` would change `observed`: some field `desired` sets has
/// another value in `observed`, or a section listed in `exact` (JSON pointers such as
/// `/data`) differs as a whole, which catches keys the operator no longer sets.
pub fn needs_apply(desired: &Value, observed: &Value, exact: &[&str]) -> bool {
    !is_subset(desired, observed) || exact.iter().any(|p| desired.pointer(p) != observed.pointer(p))
}

/// Whether every field of `desired` is present in `observed` with the same value.
/// Array elements of `desired` must each match some element of `observed`, because
/// lists such as ownerReferences may hold entries of other owners.
pub fn is_subset(desired: &Value, observed: &Value) -> bool {
    match (desired, observed) {
        (Value::Object(d), Value::Object(o)) => d.iter().all(|(k, v)| match o.get(k) {
            Some(ov) => is_subset(v, ov),
            None => v.is_null(),
        }),
        (Value::Array(d), Value::Array(o)) => d.iter().all(|dv| o.iter().any(|ov| is_subset(dv, ov))),
        (Value::Number(d), Value::Number(o)) => d.as_f64() == o.as_f64(),
        _ => desired == observed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_added_fields_do_not_count_as_drift() {
        let desired = json!({"metadata": {"labels": {"a": "1"}}, "data": {"k": "v"}});
        let observed = json!({"metadata": {"labels": {"a": "1", "b": "2"}, "resourceVersion": "7"}, "data": {"k": "v"}});
        assert!(!needs_apply(&desired, &observed, &["/data"]));
    }

    #[test]
    fn a_changed_or_missing_field_is_drift() {
        let desired = json!({"data": {"k": "v"}});
        assert!(needs_apply(&desired, &json!({"data": {"k": "w"}}), &[]));
        assert!(needs_apply(&desired, &json!({}), &[]));
    }

    #[test]
    fn extra_keys_in_an_exact_section_are_drift() {
        let desired = json!({"data": {"k": "v"}});
        let observed = json!({"data": {"k": "v", "stale": "x"}});
        assert!(!needs_apply(&desired, &observed, &[]));
        assert!(needs_apply(&desired, &observed, &["/data"]));
    }

    #[test]
    fn list_entries_of_others_are_tolerated() {
        let desired = json!({"ownerReferences": [{"uid": "1"}]});
        let observed = json!({"ownerReferences": [{"uid": "0"}, {"uid": "1", "kind": "Tenant"}]});
        assert!(is_subset(&desired, &observed));
        assert!(!is_subset(&json!({"ownerReferences": [{"uid": "2"}]}), &observed));
    }
}
