#!/usr/bin/env bash
# Checks a running test environment (tests/env/test-env.sh start) does what the tests
# expect of it: the API server answers the admin, the garbage collector and the namespace
# controller work, service-account tokens are issued, the audit log records who did what,
# Keycloak grants the operator's client a token that may use the admin API, and the SMTP
# sink keeps mails as files. Usage: bash tests/env/smoke.sh   (make test-env-smoke)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${CX_TEST_ENV_DIR:-$REPO/target/test-env}"
case "$STATE" in /*) ;; *) STATE="$PWD/$STATE" ;; esac
[[ -f "$STATE/env.sh" ]] || { echo "no $STATE/env.sh: run tests/env/test-env.sh start" >&2; exit 1; }
# shellcheck disable=SC1091
source "$STATE/env.sh"

kubectl() { "$CX_TEST_KUBECTL" --kubeconfig "$CX_TEST_KUBECONFIG" "$@"; }
passed=0
failed=0
check() { # NAME COMMAND...
  local name="$1" t0="$EPOCHREALTIME"
  shift
  # errexit holds inside the check's subshell only when it is not an if/&&/|| operand
  set +e
  (
    set -e
    "$@"
  )
  local rc=$?
  set -e
  if ((rc == 0)); then
    passed=$((passed + 1))
    printf 'ok    %-40s %ss\n' "$name" "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')"
  else
    failed=$((failed + 1))
    printf 'FAIL  %s\n' "$name"
  fi
}
# `eventually SECONDS COMMAND...`
eventually() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}
gone() { ! kubectl "$@" >/dev/null 2>&1; }
has_pods() { [[ -n "$(kubectl -n "$NS" get pods -o name)" ]]; }

NS="cx-smoke-$$"

api_as_admin() {
  curl -sf --cacert "$STATE/pki/ca.crt" --cert "$STATE/pki/admin.crt" --key "$STATE/pki/admin.key" \
    "$CX_TEST_APISERVER_URL/api" | grep -q '"v1"'
}

garbage_collector() {
  kubectl create namespace "$NS" >/dev/null
  kubectl -n "$NS" create configmap owner --from-literal=k=v >/dev/null
  local uid
  uid="$(kubectl -n "$NS" get configmap owner -o jsonpath='{.metadata.uid}')"
  kubectl -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: child
  ownerReferences:
    - {apiVersion: v1, kind: ConfigMap, name: owner, uid: "$uid"}
data: {k: v}
EOF
  kubectl -n "$NS" delete configmap owner >/dev/null
  eventually 30 gone -n "$NS" get configmap child
}

service_account_token() {
  eventually 30 kubectl -n "$NS" get serviceaccount default &&
    kubectl -n "$NS" create token default --duration=10m | grep -q '^ey' &&
    eventually 30 kubectl -n "$NS" get configmap kube-root-ca.crt
}

namespace_deletion() {
  kubectl -n "$NS" create deployment web --image=registry.invalid/web:1 >/dev/null
  eventually 30 has_pods &&
    kubectl delete namespace "$NS" --wait=true --timeout=60s >/dev/null
}

audit_log() {
  # (jq 1.6's -e judges by the last line only: grep decides)
  jq -c --arg ns "$NS" 'select(.objectRef.namespace == $ns and .objectRef.name == "child"
      and .verb == "delete" and .user.username == "system:serviceaccount:kube-system:generic-garbage-collector")' \
    "$CX_TEST_AUDIT_LOG" | grep -q .
}

keycloak_client_credentials() {
  local token
  token="$(curl -sf "$CX_TEST_KEYCLOAK_URL/realms/master/protocol/openid-connect/token" \
    -d grant_type=client_credentials -d client_id="$CX_TEST_KEYCLOAK_CLIENT_ID" \
    --data-urlencode client_secret="$CX_TEST_KEYCLOAK_CLIENT_SECRET" | jq -er .access_token)" &&
    curl -sf -H "Authorization: Bearer $token" "$CX_TEST_KEYCLOAK_URL/admin/realms" | jq -e 'map(.realm) | index("master")' >/dev/null
}

smtp_sink() {
  local subject="smoke $$ $RANDOM"
  python3 - "$CX_TEST_SMTP_HOST" "$CX_TEST_SMTP_PORT" "$subject" <<'EOF'
import smtplib, sys
from email.message import EmailMessage
host, port, subject = sys.argv[1], int(sys.argv[2]), sys.argv[3]
m = EmailMessage()
m["From"], m["To"], m["Subject"] = "smoke@cx-test.invalid", "someone@cx-test.invalid", subject
m.set_content("hello")
with smtplib.SMTP(host, port, timeout=10) as s:
    s.send_message(m)
EOF
  eventually 10 grep -lqs "^Subject: $subject" "$CX_TEST_SMTP_DIR"/*.eml
}

check "API server answers the admin" api_as_admin
check "garbage collector removes dependants" garbage_collector
check "service-account token, kube-root-ca.crt" service_account_token
check "namespace deletion finishes" namespace_deletion
check "audit log names the garbage collector" audit_log
check "Keycloak client-credentials grant" keycloak_client_credentials
check "SMTP sink stores the mail" smtp_sink
echo "smoke: $passed passed, $failed failed"
((failed == 0))
