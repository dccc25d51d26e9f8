#!/usr/bin/env bash
# A real test environment on loopback ports, which the project builds and starts itself:
# etcd, kube-apiserver and kube-controller-manager built from their Go modules, Keycloak
# from its Maven Central distribution, and an SMTP sink that keeps every mail as a file.
# See docs/testing.md.
#
#   tests/env/test-env.sh build    build/download everything into the cache (once per version)
#   tests/env/test-env.sh start    build if needed, start a fresh environment, write env.sh
#   tests/env/test-env.sh stop     stop what start started
#   tests/env/test-env.sh status   show the processes, their ports and memory
#
# CX_TEST_ENV_CACHE   binaries and downloads  (default ~/.cache/cx-operator-test-env)
# CX_TEST_ENV_DIR     state, logs, env.sh     (default <repo>/target/test-env)
# CX_TEST_ENV_JAVA_HOME  JDK for Keycloak     (default $JAVA_HOME, else the newest JDK >= 17
#                                             under /usr/lib/jvm, else the `java` on PATH)
# CX_TEST_ENV_TIMEOUT seconds each component may take to become healthy (default 180)
# CX_TEST_KEYCLOAK_HEAP  Keycloak's heap options (default "-Xms64m -Xmx768m")
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

# Versions. Kubernetes and etcd: the ones required by the go.mod files beside this script.
modver() { # MODULE GO.MOD
  awk -v m="$1" '($1 == "require" && $2 == m) || $1 == m { print ($1 == m ? $2 : $3); exit }' "$2"
}
K8S_VERSION="$(modver k8s.io/kubernetes "$HERE/k8s/go.mod")"
ETCD_VERSION="$(modver go.etcd.io/etcd/server/v3 "$HERE/etcd/go.mod")"
[[ -n "$K8S_VERSION" && -n "$ETCD_VERSION" ]] || { echo "test-env: no versions in $HERE/{k8s,etcd}/go.mod" >&2; exit 1; }
KEYCLOAK_VERSION="26.7.3"
AIOSMTPD_VERSION="1.4.6"
MAVEN_DEPENDENCY_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

CACHE="${CX_TEST_ENV_CACHE:-$HOME/.cache/cx-operator-test-env}"
STATE="${CX_TEST_ENV_DIR:-$REPO/target/test-env}"
case "$STATE" in /*) ;; *) STATE="$PWD/$STATE" ;; esac
TIMEOUT="${CX_TEST_ENV_TIMEOUT:-180}"

K8S_BIN="$CACHE/k8s-$K8S_VERSION"
ETCD_BIN="$CACHE/etcd-$ETCD_VERSION"
KEYCLOAK_DIST="$CACHE/keycloak-$KEYCLOAK_VERSION"
SMTP_VENV="$CACHE/aiosmtpd-$AIOSMTPD_VERSION"

SERVICE_CIDR="10.0.0.0/24"
SERVICE_IP="10.0.0.1"
SA_ISSUER="https://kubernetes.default.svc.cluster.local"
KEYCLOAK_CLIENT_ID="cx-operator"
KEYCLOAK_ADMIN_USER="admin"

# Stop order; start is the reverse.
COMPONENTS=(keycloak smtp kube-controller-manager kube-apiserver etcd)

log() { printf '[test-env] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { printf '%s' "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }'; }

# `phase NAME COMMAND...` runs COMMAND and prints how long it took.
phase() {
  local name="$1" t0
  shift
  t0="$(now)"
  "$@"
  log "$name: $(since "$t0")"
}

need() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' is needed (Debian: apt-get install the package that has it)"
  done
}

# The JDK for Keycloak: CX_TEST_ENV_JAVA_HOME, else JAVA_HOME, else the newest JDK (17 or
# later) under /usr/lib/jvm (Keycloak 26 supports 17, 21 and 25 and starts faster on the
# newer ones), else the `java` on PATH.
java_major() { # JAVA_HOME -> major version, from its release file
  sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$1/release" 2>/dev/null
}
java_home() {
  local home="${CX_TEST_ENV_JAVA_HOME:-${JAVA_HOME:-}}" candidate major best=0
  if [[ -z "$home" ]]; then
    for candidate in /usr/lib/jvm/*/; do
      candidate="$(readlink -f "$candidate")"
      major="$(java_major "$candidate")"
      if [[ -x "$candidate/bin/java" && -n "$major" ]] && ((major >= 17 && major > best)); then
        home="$candidate"
        best="$major"
      fi
    done
  fi
  if [[ -z "$home" ]]; then
    need java
    home="$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")"
  fi
  [[ -x "$home/bin/java" ]] || die "no java in $home (set CX_TEST_ENV_JAVA_HOME)"
  major="$(java_major "$home")"
  [[ -n "$major" ]] || major="$("$home/bin/java" -XshowSettings:properties -version 2>&1 |
    awk -F' = ' '/java.specification.version/ { print $2 }')"
  ((${major%%.*} >= 17)) || die "Keycloak $KEYCLOAK_VERSION needs Java 17 or newer; $home is $major"
  printf '%s' "$home"
}

# ---------------------------------------------------------------------------------------
# build

# A cache directory is complete when its .cx-ready stamp holds the fingerprint of what
# went into it; anything else is rebuilt from scratch.
fingerprint() { cat "$@" | sha256sum | cut -c1-16; }
ready() { [[ -f "$1/.cx-ready" && "$(cat "$1/.cx-ready")" == "$2" ]]; }

go_env() {
  export CGO_ENABLED=0 GOTOOLCHAIN=local
  export GOFLAGS="${GOFLAGS:-} -mod=readonly -trimpath -buildvcs=false"
}

build_k8s() {
  local ldflags="-s -w" v pkg
  local major="${K8S_VERSION#v}" minor
  minor="${major#*.}"
  minor="${minor%%.*}"
  major="${major%%.*}"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  v="$(fingerprint "$HERE/k8s/go.mod" "$HERE/k8s/go.sum" <(go version; echo "$ldflags"))"
  if ready "$K8S_BIN" "$v"; then
    log "kube-apiserver, kube-controller-manager, kubectl $K8S_VERSION: cached in $K8S_BIN"
    return
  fi
  log "building kube-apiserver, kube-controller-manager, kubectl $K8S_VERSION (cold: many minutes)"
  rm -rf "$K8S_BIN"
  mkdir -p "$K8S_BIN"
  (
    cd "$HERE/k8s"
    go_env
    go build -ldflags "$ldflags" -o "$K8S_BIN/" \
      k8s.io/kubernetes/cmd/kube-apiserver \
      k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kubectl
  )
  echo "$v" >"$K8S_BIN/.cx-ready"
}

build_etcd() {
  local v
  v="$(fingerprint "$HERE/etcd/go.mod" "$HERE/etcd/go.sum" <(go version))"
  if ready "$ETCD_BIN" "$v"; then
    log "etcd $ETCD_VERSION: cached in $ETCD_BIN"
    return
  fi
  log "building etcd $ETCD_VERSION"
  rm -rf "$ETCD_BIN"
  mkdir -p "$ETCD_BIN"
  (
    cd "$HERE/etcd"
    go_env
    go build -ldflags "-s -w" -o "$ETCD_BIN/etcd" go.etcd.io/etcd/server/v3
  )
  echo "$v" >"$ETCD_BIN/.cx-ready"
}

# Keycloak's distribution, unpacked, with its Quarkus build already done for start-dev:
# start-dev re-runs that build (about 30 s) whenever it finds none for the dev profile,
# and `kc.sh build` refuses the dev profile, so one start-dev here warms the cache.
fetch_keycloak() {
  local v="$KEYCLOAK_VERSION" jhome tmp home port pid
  if ready "$KEYCLOAK_DIST" "$v"; then
    log "Keycloak $v: cached in $KEYCLOAK_DIST"
    return
  fi
  need mvn unzip curl
  jhome="$(java_home)"
  log "fetching Keycloak $v (org.keycloak:keycloak-quarkus-dist:$v:zip)"
  rm -rf "$KEYCLOAK_DIST"
  tmp="$(mktemp -d "$CACHE/keycloak-download.XXXXXX")"
  if ! mvn -B -q -Dstyle.color=never "$MAVEN_DEPENDENCY_PLUGIN:copy" \
    -Dartifact="org.keycloak:keycloak-quarkus-dist:$v:zip" -DoutputDirectory="$tmp" >"$tmp/mvn.log" 2>&1; then
    tail -n 50 "$tmp/mvn.log" >&2
    die "mvn could not fetch org.keycloak:keycloak-quarkus-dist:$v:zip"
  fi
  unzip -q "$tmp/keycloak-quarkus-dist-$v.zip" -d "$tmp"
  mv "$tmp/keycloak-$v" "$KEYCLOAK_DIST"
  rm -rf "$tmp"

  log "Keycloak $v: first start-dev, to keep its dev-mode build (Java: $jhome)"
  home="$(mktemp -d "$CACHE/keycloak-warmup.XXXXXX")"
  keycloak_home "$home"
  port="$(free_ports 1)"
  (
    export JAVA_HOME="$jhome" KC_BOOTSTRAP_ADMIN_USERNAME=warmup KC_BOOTSTRAP_ADMIN_PASSWORD=warmup
    export JAVA_OPTS_KC_HEAP="${CX_TEST_KEYCLOAK_HEAP:--Xms64m -Xmx768m}"
    exec setsid "$home/bin/kc.sh" start-dev --http-port="$port" --http-host=127.0.0.1 \
      </dev/null >"$home/warmup.log" 2>&1
  ) &
  pid=$!
  local deadline=$((SECONDS + TIMEOUT * 2))
  until curl -sf "http://127.0.0.1:$port/realms/master/.well-known/openid-configuration" >/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null || ((SECONDS > deadline)); then
      tail -n 50 "$home/warmup.log" >&2 || true
      kill -TERM -- "-$pid" 2>/dev/null || true
      die "Keycloak's first start failed (log above)"
    fi
    sleep 1
  done
  kill -TERM -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$home"
  echo "$v" >"$KEYCLOAK_DIST/.cx-ready"
}

build_smtp_sink() {
  local v="aiosmtpd==$AIOSMTPD_VERSION"
  if ready "$SMTP_VENV" "$v"; then
    log "aiosmtpd $AIOSMTPD_VERSION: cached in $SMTP_VENV"
    return
  fi
  need python3
  log "installing aiosmtpd $AIOSMTPD_VERSION into $SMTP_VENV"
  rm -rf "$SMTP_VENV"
  python3 -m venv "$SMTP_VENV"
  "$SMTP_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$v"
  echo "$v" >"$SMTP_VENV/.cx-ready"
}

cmd_build() {
  need go
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.lock"
  flock 9 # one build at a time per cache
  local t0
  t0="$(now)"
  phase "etcd" build_etcd
  phase "kubernetes" build_k8s
  phase "keycloak" fetch_keycloak
  phase "smtp sink" build_smtp_sink
  log "build total: $(since "$t0")"
  exec 9>&-
}

# ---------------------------------------------------------------------------------------
# start

free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# A Keycloak home of its own for each environment (its data/ lives there) that shares
# the cached lib/ and so its prepared build.
keycloak_home() {
  local home="$1" d
  mkdir -p "$home/data"
  cp -a "$KEYCLOAK_DIST/bin" "$KEYCLOAK_DIST/conf" "$home/"
  for d in lib providers themes; do ln -s "$KEYCLOAK_DIST/$d" "$home/$d"; done
}

# Certificates and keys, in $STATE/pki: a cluster CA (API server serving certificate, the
# admin's and the controller manager's client certificates), a front-proxy CA (the
# request-header authentication of aggregated API servers, which the controller manager's
# delegated authentication also reads) and the service-account signing key pair.
pki() {
  local dir="$STATE/pki"
  mkdir -p "$dir"
  (
    cd "$dir"
    ca() { # NAME CN
      openssl req -x509 -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.crt" -days 365 \
        -subj "/CN=$2" -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    }
    issue() { # CA NAME SUBJECT EXTENDED-KEY-USAGE [SUBJECT-ALT-NAMES]
      openssl req -new -newkey rsa:2048 -nodes -keyout "$2.key" -out "$2.csr" -subj "$3" 2>/dev/null
      openssl x509 -req -in "$2.csr" -CA "$1.crt" -CAkey "$1.key" -CAcreateserial -days 365 \
        -out "$2.crt" -extfile <(
          printf '%s\n' "basicConstraints=CA:FALSE" \
            "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=$4"
          [[ -z "${5:-}" ]] || printf 'subjectAltName=%s\n' "$5"
        ) 2>/dev/null
      rm -f "$2.csr"
    }
    ca ca cx-test-env-ca
    issue ca apiserver "/CN=kube-apiserver" serverAuth \
      "IP:127.0.0.1,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    issue ca admin "/O=system:masters/CN=cx-test-admin" clientAuth
    issue ca kube-controller-manager "/CN=system:kube-controller-manager" clientAuth
    ca front-proxy-ca cx-test-env-front-proxy-ca
    issue front-proxy-ca front-proxy-client "/CN=front-proxy-client" clientAuth
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
    openssl pkey -in sa.key -pubout -out sa.pub 2>/dev/null
    chmod 600 ./*.key
  )
}

kubeconfig() {
  local file="$1" user="$2" server="$3"
  local b64="base64 -w0"
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: cx-test
    cluster:
      server: $server
      certificate-authority-data: $($b64 "$STATE/pki/ca.crt")
users:
  - name: $user
    user:
      client-certificate-data: $($b64 "$STATE/pki/$user.crt")
      client-key-data: $($b64 "$STATE/pki/$user.key")
contexts:
  - name: cx-test
    context:
      cluster: cx-test
      user: $user
current-context: cx-test
EOF
  chmod 600 "$file"
}

# `launch NAME COMMAND...`: COMMAND in a session of its own (so it outlives this shell and
# stop can end its whole process group), output to logs/NAME.log, pid to pids/NAME.pid.
launch() {
  local name="$1"
  shift
  local pidfile="$STATE/pids/$name.pid"
  rm -f "$pidfile"
  # shellcheck disable=SC2016 # $$, $0 and $@ are the inner shell's
  setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" \
    </dev/null >"$STATE/logs/$name.log" 2>&1 &
  local i
  for i in $(seq 50); do
    [[ -s "$pidfile" ]] && return
    sleep 0.1
  done
  die "$name did not start"
}

# `ours PID`: PID is still a process this environment started (its command line names the
# state directory), not a later process that got the same number.
ours() {
  [[ -r "/proc/$1/cmdline" ]] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$STATE"
}

alive() {
  local pidfile="$STATE/pids/$1.pid"
  [[ -s "$pidfile" ]] && ours "$(cat "$pidfile")"
}

# `wait_for NAME CHECK...`: until CHECK succeeds, at most $TIMEOUT seconds; fails with the
# end of NAME's log if NAME dies or the time runs out.
wait_for() {
  local name="$1" t0 deadline=$((SECONDS + TIMEOUT))
  shift
  t0="$(now)"
  until "$@" >/dev/null 2>&1; do
    if ! alive "$name"; then
      fail "$name exited before it was healthy"
    elif ((SECONDS > deadline)); then
      fail "$name not healthy after ${TIMEOUT}s"
    fi
    sleep 0.5
  done
  log "$name healthy after $(since "$t0")"
}

# `fail "NAME message"`: the error, the end of NAME's log, and everything stopped.
fail() {
  local name="${1%% *}"
  log "ERROR: $*"
  if [[ -f "$STATE/logs/$name.log" ]]; then
    log "last 50 lines of $STATE/logs/$name.log:"
    tail -n 50 "$STATE/logs/$name.log" >&2 || true
  fi
  log "stopping what was started (logs stay in $STATE/logs)"
  cmd_stop || true
  exit 1
}

api() { # curl against the API server as the admin
  curl -sf --cacert "$STATE/pki/ca.crt" --cert "$STATE/pki/admin.crt" --key "$STATE/pki/admin.key" "$@"
}

smtp_ready() {
  local line
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  read -r -t 2 line <&3 || true
  printf 'QUIT\r\n' >&3
  exec 3>&- 3<&-
  [[ "$line" == 220* ]]
}

start_etcd() {
  mkdir -p "$STATE/etcd"
  launch etcd "$ETCD_BIN/etcd" \
    --name=cx-test \
    --data-dir="$STATE/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="cx-test=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync \
    --log-level=warn
  wait_for etcd curl -sf "http://127.0.0.1:$ETCD_PORT/health"
}

start_apiserver() {
  local p="$STATE/pki"
  launch kube-apiserver "$K8S_BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --endpoint-reconciler-type=none \
    --secure-port="$API_PORT" \
    --cert-dir="$p/generated" \
    --tls-cert-file="$p/apiserver.crt" \
    --tls-private-key-file="$p/apiserver.key" \
    --client-ca-file="$p/ca.crt" \
    --requestheader-client-ca-file="$p/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$p/front-proxy-client.crt" \
    --proxy-client-key-file="$p/front-proxy-client.key" \
    --authorization-mode=Node,RBAC \
    --service-account-issuer="$SA_ISSUER" \
    --service-account-key-file="$p/sa.pub" \
    --service-account-signing-key-file="$p/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --allow-privileged=true \
    --enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook \
    --audit-policy-file="$HERE/audit-policy.yaml" \
    --audit-log-path="$STATE/audit.log" \
    --audit-log-format=json \
    --audit-log-maxsize=200 \
    --audit-log-maxbackup=1 \
    --profiling=false
  wait_for kube-apiserver api "https://127.0.0.1:$API_PORT/readyz"
}

start_controller_manager() {
  local p="$STATE/pki" kc="$STATE/kube-controller-manager.kubeconfig"
  kubeconfig "$kc" kube-controller-manager "https://127.0.0.1:$API_PORT"
  launch kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig="$kc" \
    --authentication-kubeconfig="$kc" \
    --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 \
    --secure-port="$KCM_PORT" \
    --cert-dir="$p/generated" \
    --controllers='*' \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$p/sa.key" \
    --root-ca-file="$p/ca.crt" \
    --cluster-signing-cert-file="$p/ca.crt" \
    --cluster-signing-key-file="$p/ca.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --cluster-name=cx-test \
    --flex-volume-plugin-dir="$STATE/kube-controller-manager/flexvolume" \
    --leader-elect=false \
    --profiling=false
  wait_for kube-controller-manager curl -sfk "https://127.0.0.1:$KCM_PORT/healthz"
}

start_smtp() {
  mkdir -p "$STATE/smtp"
  launch smtp "$SMTP_VENV/bin/python" "$HERE/smtp-sink.py" \
    --host 127.0.0.1 --port "$SMTP_PORT" --dir "$STATE/smtp"
  wait_for smtp smtp_ready "$SMTP_PORT"
}

kc_admin() { # METHOD PATH [JSON]: Keycloak admin REST as the bootstrap admin
  local method="$1" path="$2"
  shift 2
  curl -sf -X "$method" -H "Authorization: Bearer $KC_TOKEN" -H 'Content-Type: application/json' \
    "$KEYCLOAK_URL/admin/realms/$path" "$@"
}

# The operator's client: confidential, service account with the master realm's admin role.
configure_keycloak() {
  local client uuid sa_user role token
  KC_TOKEN="$(curl -sf "$KEYCLOAK_URL/realms/master/protocol/openid-connect/token" \
    -d grant_type=password -d client_id=admin-cli \
    -d username="$KEYCLOAK_ADMIN_USER" --data-urlencode password="$KEYCLOAK_PASSWORD" |
    jq -er .access_token)" || fail "keycloak admin login failed"
  KEYCLOAK_CLIENT_SECRET="$(openssl rand -hex 24)"
  client="$(jq -n --arg id "$KEYCLOAK_CLIENT_ID" --arg secret "$KEYCLOAK_CLIENT_SECRET" '{
    clientId: $id, name: "cx-operator (test environment)", enabled: true,
    protocol: "openid-connect", publicClient: false, clientAuthenticatorType: "client-secret",
    secret: $secret, serviceAccountsEnabled: true, standardFlowEnabled: false,
    directAccessGrantsEnabled: false, implicitFlowEnabled: false }')"
  kc_admin POST master/clients -d "$client" >/dev/null || fail "keycloak: creating client $KEYCLOAK_CLIENT_ID failed"
  uuid="$(kc_admin GET "master/clients?clientId=$KEYCLOAK_CLIENT_ID" | jq -er '.[0].id')"
  sa_user="$(kc_admin GET "master/clients/$uuid/service-account-user" | jq -er .id)"
  role="$(kc_admin GET master/roles/admin)"
  kc_admin POST "master/users/$sa_user/role-mappings/realm" -d "[$role]" >/dev/null \
    || fail "keycloak: granting admin to the $KEYCLOAK_CLIENT_ID service account failed"
  # The master realm's own mails go to the sink too.
  kc_admin PUT master -d "$(jq -n --arg port "$SMTP_PORT" \
    '{smtpServer: {host: "127.0.0.1", port: $port, from: "keycloak@cx-test.invalid", fromDisplayName: "Keycloak (cx test)"}}')" \
    >/dev/null || fail "keycloak: setting the master realm's SMTP server failed"
  # The client-credentials grant works and its token may use the admin API.
  token="$(curl -sf "$KEYCLOAK_URL/realms/master/protocol/openid-connect/token" \
    -d grant_type=client_credentials -d client_id="$KEYCLOAK_CLIENT_ID" \
    --data-urlencode client_secret="$KEYCLOAK_CLIENT_SECRET" | jq -er .access_token)" \
    || fail "keycloak: client-credentials grant for $KEYCLOAK_CLIENT_ID failed"
  curl -sf -H "Authorization: Bearer $token" "$KEYCLOAK_URL/admin/realms" >/dev/null \
    || fail "keycloak: the $KEYCLOAK_CLIENT_ID token is refused by the admin API"
}

write_env() {
  local kubeconfig="$STATE/kubeconfig"
  kubeconfig "$kubeconfig" admin "https://127.0.0.1:$API_PORT"
  cat >"$STATE/env.sh" <<EOF
# Written by tests/env/test-env.sh start on $(date -u +%Y-%m-%dT%H:%M:%SZ). Source it.
export CX_TEST_KUBECONFIG='$kubeconfig'
export CX_TEST_KEYCLOAK_URL='$KEYCLOAK_URL'
export CX_TEST_KEYCLOAK_CLIENT_ID='$KEYCLOAK_CLIENT_ID'
export CX_TEST_KEYCLOAK_CLIENT_SECRET='$KEYCLOAK_CLIENT_SECRET'
export CX_TEST_KEYCLOAK_USERNAME='$KEYCLOAK_ADMIN_USER'
export CX_TEST_KEYCLOAK_PASSWORD='$KEYCLOAK_PASSWORD'
export CX_TEST_SMTP_HOST='127.0.0.1'
export CX_TEST_SMTP_PORT='$SMTP_PORT'
export CX_TEST_SMTP_DIR='$STATE/smtp'
export CX_TEST_AUDIT_LOG='$STATE/audit.log'
# Extras for people and scripts.
export CX_TEST_ENV_DIR='$STATE'
export CX_TEST_KUBECTL='$K8S_BIN/kubectl'
export CX_TEST_APISERVER_URL='https://127.0.0.1:$API_PORT'
export CX_TEST_ETCD_URL='http://127.0.0.1:$ETCD_PORT'
EOF
  cat >"$STATE/ports" <<EOF
etcd $ETCD_PORT
etcd-peer $ETCD_PEER_PORT
kube-apiserver $API_PORT
kube-controller-manager $KCM_PORT
keycloak $KEYCLOAK_PORT
smtp $SMTP_PORT
EOF
}

cmd_start() {
  need curl openssl jq python3 setsid flock
  local t0 name
  t0="$(now)"
  phase "build (cached unless versions changed)" cmd_build
  for name in "${COMPONENTS[@]}"; do
    alive "$name" && die "$name is already running from $STATE (run: $0 stop)"
  done
  # A fresh state directory each time; one that is not ours is left alone.
  if [[ -d "$STATE" && -n "$(ls -A "$STATE")" && ! -f "$STATE/.cx-test-env" ]] &&
    ! [[ -d "$STATE/pids" && -d "$STATE/logs" ]]; then
    die "$STATE is not empty and was not made by $0: choose another CX_TEST_ENV_DIR"
  fi
  rm -rf "$STATE"
  mkdir -p "$STATE/pids" "$STATE/logs"
  touch "$STATE/.cx-test-env"
  read -r ETCD_PORT ETCD_PEER_PORT API_PORT KCM_PORT KEYCLOAK_PORT SMTP_PORT <<<"$(free_ports 6)"
  KEYCLOAK_URL="http://127.0.0.1:$KEYCLOAK_PORT"
  phase "certificates" pki
  # The SMTP sink, then Keycloak in the background (it is the slowest: the control plane
  # comes up while it boots), then etcd, the API server and the controller manager.
  phase "smtp sink" start_smtp
  local kt0
  kt0="$(now)"
  phase "keycloak launch" start_keycloak_async
  phase "etcd" start_etcd
  phase "kube-apiserver" start_apiserver
  phase "kube-controller-manager" start_controller_manager
  wait_for keycloak curl -sf "$KEYCLOAK_URL/realms/master/.well-known/openid-configuration"
  log "keycloak: $(since "$kt0") since launch"
  phase "keycloak client" configure_keycloak
  write_env
  log "start total: $(since "$t0")"
  log "environment up; source $STATE/env.sh"
  cat "$STATE/env.sh"
}

start_keycloak_async() {
  local home="$STATE/keycloak"
  keycloak_home "$home"
  local jhome
  jhome="$(java_home)"
  log "keycloak $KEYCLOAK_VERSION on Java $(java_major "$jhome") ($jhome)"
  KEYCLOAK_PASSWORD="$(openssl rand -hex 12)"
  JAVA_HOME="$jhome" \
    KC_BOOTSTRAP_ADMIN_USERNAME="$KEYCLOAK_ADMIN_USER" \
    KC_BOOTSTRAP_ADMIN_PASSWORD="$KEYCLOAK_PASSWORD" \
    JAVA_OPTS_KC_HEAP="${CX_TEST_KEYCLOAK_HEAP:--Xms64m -Xmx768m}" \
    launch keycloak "$home/bin/kc.sh" start-dev \
    --http-port="$KEYCLOAK_PORT" --http-host=127.0.0.1
}

# ---------------------------------------------------------------------------------------
# stop, status

# `session_alive PID`: a process of the session PID leads still runs (zombies, which
# whoever inherited them may reap late, do not count).
session_alive() {
  # shellcheck disable=SC2009 # pgrep would count the zombies
  ps -o stat= -s "$1" 2>/dev/null | grep -qv '^Z'
}

cmd_stop() {
  local name pid i stopped=0
  for name in "${COMPONENTS[@]}"; do
    local pidfile="$STATE/pids/$name.pid"
    [[ -s "$pidfile" ]] || continue
    pid="$(cat "$pidfile")"
    if ours "$pid"; then
      local t0
      t0="$(now)"
      # the process group: kc.sh runs java as its child
      kill -TERM -- "-$pid" 2>/dev/null || true
      for i in $(seq 100); do
        session_alive "$pid" || break
        sleep 0.1
      done
      if session_alive "$pid"; then
        log "$name ($pid) ignored SIGTERM for 10s: SIGKILL"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      fi
      log "stopped $name ($pid) in $(since "$t0")"
      stopped=$((stopped + 1))
    fi
    rm -f "$pidfile"
  done
  ((stopped > 0)) || log "nothing running from $STATE"
}

cmd_status() {
  local name pid port rss total=0 running=0
  printf '%-24s %-8s %-7s %-8s %s\n' COMPONENT PID PORT RSS_MiB STATE
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
    name="${COMPONENTS[$i]}"
    pid="$(cat "$STATE/pids/$name.pid" 2>/dev/null || true)"
    port="$(awk -v n="$name" '$1 == n { print $2 }' "$STATE/ports" 2>/dev/null || true)"
    if [[ -n "$pid" ]] && ours "$pid"; then
      # the whole session (kc.sh runs java as its child)
      rss="$(ps -o rss= -s "$pid" | awk '{ s += $1 } END { printf "%d", s / 1024 }')"
      total=$((total + rss))
      running=$((running + 1))
      printf '%-24s %-8s %-7s %-8s %s\n' "$name" "$pid" "${port:--}" "$rss" running
    else
      printf '%-24s %-8s %-7s %-8s %s\n' "$name" "${pid:--}" "${port:--}" - stopped
    fi
  done
  printf '%-24s %-8s %-7s %-8s\n' total "" "" "$total"
  [[ -f "$STATE/env.sh" ]] && log "env file: $STATE/env.sh"
  ((running == ${#COMPONENTS[@]}))
}

case "${1:-}" in
  build) cmd_build ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *)
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
