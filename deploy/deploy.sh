#!/usr/bin/env bash
# Install, upgrade or remove one Tessera party on Kubernetes from its env file.
#
#   deploy/deploy.sh [--dry-run] [--yes] [--timeout 10m] setup|upgrade|cleanup ENV_FILE
#   deploy/deploy.sh keygen ENV_FILE
#
#   setup    validate ENV_FILE, `helm upgrade --install` the chart as release tessera-<PARTY_ID>
#            in namespace tessera-<PARTY_ID>, wait until every pod is ready, then run
#            `tessera diagnose <peer>` from the flow_server pod against each other party
#   upgrade  the same for a party that is installed (refuses otherwise)
#   cleanup  `helm uninstall` and delete the namespace with the party's data (asks first; --yes
#            skips the question)
#   keygen   write this party's Ed25519 key pair and a self-signed bridge TLS certificate for
#            DOMAIN at the paths ENV_FILE names (existing files are kept)
#   --dry-run  validate and print the manifests (`helm template`); touch no cluster
#
# Needs helm (deploy/tools/install.sh builds one into .cache/bin) and, unless --dry-run, kubectl
# with a context for the target cluster. Exit status: 2 for a usage or validation error.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CHART="$here/helm/tessera"
# shellcheck source=deploy/lib/validate.sh
. "$here/lib/validate.sh"
# shellcheck source=deploy/lib/values.sh
. "$here/lib/values.sh"

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}
die() { echo "deploy.sh: $*" >&2; exit "${2:-1}"; }
log() { echo "deploy.sh: $*" >&2; }

DRY_RUN=0 YES=0 TIMEOUT=10m
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --yes | -y) YES=1 ;;
    --timeout) TIMEOUT="${2:?--timeout needs a value}"; shift ;;
    -h | --help) usage ;;
    -*) die "unknown option $1" 2 ;;
    *) break ;;
  esac
  shift
done
[ $# -eq 2 ] || usage
COMMAND="$1" ENV_FILE="$2"
case "$COMMAND" in setup | upgrade | cleanup | keygen) ;; *) die "unknown command $COMMAND" 2 ;; esac
[ -r "$ENV_FILE" ] || die "cannot read env file $ENV_FILE" 2
ENV_DIR="$(cd "$(dirname "$ENV_FILE")" && pwd)"

load_env() {
  unset "${PARTY_VARS[@]}"
  local name
  for name in $(compgen -v | grep -E '^PARTY_(MQ_HTTP_URL|MQ_PROXY_URL|MQ_CA|PUBLIC_KEY)_' || true); do
    unset "$name"
  done
  set -a
  # shellcheck source=/dev/null
  . "$ENV_FILE"
  set +a
  : "${INTERNAL_MQ_TCP_PORT:=9092}"
}

find_helm() {
  if [ -n "${HELM:-}" ]; then echo "$HELM"
  elif command -v helm >/dev/null; then command -v helm
  elif [ -x "$here/../.cache/bin/helm" ]; then echo "$here/../.cache/bin/helm"
  else die "helm not found: run deploy/tools/install.sh (or set HELM=/path/to/helm)"
  fi
}

keygen() {
  command -v openssl >/dev/null || die "keygen needs openssl"
  [[ "${PARTY_ID-}" =~ ^[0-9]+$ ]] || die "PARTY_ID must be set to a numeric id for keygen" 2
  local priv pub cert key
  priv="$(resolve_path "${PARTY_PRIVATE_KEY:?PARTY_PRIVATE_KEY is not set}")"
  pub="$(resolve_path "$(val "PARTY_PUBLIC_KEY_$PARTY_ID")")"
  [ -n "$(val "PARTY_PUBLIC_KEY_$PARTY_ID")" ] || die "PARTY_PUBLIC_KEY_$PARTY_ID is not set" 2
  mkdir -p "$(dirname "$priv")" "$(dirname "$pub")"
  if [ ! -e "$priv" ]; then
    (umask 077 && openssl genpkey -algorithm ed25519 -out "$priv")
    openssl pkey -in "$priv" -pubout -out "$pub"
    log "wrote $priv and $pub (send $pub to the other parties)"
  fi
  cert="$(resolve_path "${BRIDGE_TLS_CERT:?BRIDGE_TLS_CERT is not set}")"
  key="$(resolve_path "${BRIDGE_TLS_KEY:?BRIDGE_TLS_KEY is not set}")"
  if [ ! -e "$cert" ]; then
    mkdir -p "$(dirname "$cert")" "$(dirname "$key")"
    (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -days 825 -subj "/CN=${DOMAIN:?DOMAIN is not set}" \
      -addext "subjectAltName=DNS:$DOMAIN,DNS:bridge.$DOMAIN" -keyout "$key" -out "$cert" 2>/dev/null)
    log "wrote a self-signed bridge certificate $cert (peers must trust it)"
  fi
}

confirm() {
  [ "$YES" -eq 1 ] && return 0
  if [ ! -t 0 ]; then
    die "cleanup deletes party $PARTY_ID's data: pass --yes to confirm without a terminal" 2
  fi
  local answer
  read -r -p "Delete party $PARTY_ID (release and namespace $RELEASE, with its data)? [y/N] " answer
  [[ "$answer" =~ ^[Yy]([Ee][Ss])?$ ]] || die "cleanup cancelled"
}

diagnose_peers() {
  local p failed=0
  for p in "${PEERS[@]}"; do
    log "tessera diagnose $p (from the flow_server pod)"
    if ! kubectl -n "$RELEASE" exec deploy/flow-server -- \
      tessera diagnose "$p" --pings 5 --throughput-mb 4 --max-probe-mb 8; then
      failed=1
      log "party $p: diagnose failed (is its bridge up, and are the keys exchanged?)"
    fi
  done
  return "$failed"
}

load_env
if [ "$COMMAND" = keygen ]; then
  keygen
  exit 0
fi
validate_env
if [ "${#ERRORS[@]}" -gt 0 ]; then
  echo "deploy.sh: $ENV_FILE has ${#ERRORS[@]} problem(s); nothing was applied:" >&2
  printf '  - %s\n' "${ERRORS[@]}" >&2
  exit 2
fi
RELEASE="tessera-$PARTY_ID"

if [ "$COMMAND" = cleanup ]; then
  if [ "$DRY_RUN" -eq 1 ]; then
    echo "would run: helm uninstall $RELEASE -n $RELEASE; kubectl delete namespace $RELEASE"
    exit 0
  fi
  confirm
  HELM_BIN="$(find_helm)"
  "$HELM_BIN" uninstall "$RELEASE" -n "$RELEASE" --wait || log "release $RELEASE was not installed"
  kubectl delete namespace "$RELEASE" --ignore-not-found --wait=true
  log "party $PARTY_ID removed"
  exit 0
fi

warn_plain_http() {
  disabled ingress && return 0
  [ -n "${INGRESS_TLS_CERT-}${INGRESS_TLS_SECRET-}" ] && return 0
  cat >&2 <<EOF
deploy.sh: ***********************************************************************************
deploy.sh: WARNING: no web certificate (INGRESS_TLS_CERT/INGRESS_TLS_KEY or INGRESS_TLS_SECRET):
deploy.sh: the dashboard and the flow_server API at http://$DOMAIN/ are served over PLAIN HTTP,
deploy.sh: API tokens and session cookies included. Give a certificate before real use.
deploy.sh: ***********************************************************************************
EOF
}

HELM_BIN="$(find_helm)"
warn_plain_http
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
write_values "$work/values.yaml"
set_file_flags

if [ "$DRY_RUN" -eq 1 ]; then
  "$HELM_BIN" template "$RELEASE" "$CHART" -n "$RELEASE" -f "$work/values.yaml" "${SET_FILES[@]}"
  exit 0
fi

command -v kubectl >/dev/null || die "kubectl not found (needed to wait and to run diagnose)"
if [ "$COMMAND" = upgrade ] && ! "$HELM_BIN" status "$RELEASE" -n "$RELEASE" >/dev/null 2>&1; then
  die "party $PARTY_ID is not installed (release $RELEASE): use setup"
fi
log "installing party $PARTY_ID as release $RELEASE in namespace $RELEASE"
"$HELM_BIN" upgrade --install "$RELEASE" "$CHART" -n "$RELEASE" --create-namespace \
  -f "$work/values.yaml" "${SET_FILES[@]}" --wait --timeout "$TIMEOUT"
kubectl -n "$RELEASE" wait --for=condition=Ready pod \
  -l "app.kubernetes.io/instance=$RELEASE,tessera.io/role!=step" --timeout "$TIMEOUT"
log "party $PARTY_ID is ready"
if disabled flow_server; then
  log "flow_server is disabled: skipping tessera diagnose"
elif ! diagnose_peers; then
  die "installed, but a peer check failed (see above)" 3
fi
