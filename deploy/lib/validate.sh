# shellcheck shell=bash
# Validation of a party env file (sourced by deploy/deploy.sh). Every check appends a message to
# ERRORS naming the variable and what is wrong; nothing is applied while ERRORS is non-empty.

ERRORS=()
KNOWN_COMPONENTS=(flow_server task_engine federation_bridge dashboard kafka postgres ingress)
# The variables a party env file sets; unset first so that only the file counts.
# shellcheck disable=SC2034  # used by deploy.sh
PARTY_VARS=(PARTY_ID DOMAIN INTERNAL_MQ_HOST INTERNAL_MQ_TCP_PORT EXPOSE_MQ_HTTP_PORT
  EXPOSE_MQ_TCP_PORT BRIDGE_SERVICE_TYPE BRIDGE_TLS_CERT BRIDGE_TLS_KEY OTHER_PARTIES
  PARTY_PRIVATE_KEY TESSERA_API_TOKEN DISABLED_COMPONENTS DATABASE_URL SERVICE_IMAGE
  RUNTIME_IMAGE KAFKA_IMAGE POSTGRES_IMAGE INGRESS_CLASS INGRESS_TLS_SECRET INGRESS_TLS_CERT
  INGRESS_TLS_KEY INGRESS_CONTROLLER_NAMESPACE STORAGE_CLASS ACCEPT_TIMEOUT_S TASK_TIMEOUT_S HEARTBEAT_INTERVAL_S
  HEARTBEAT_TIMEOUT_S SPARK_MASTER SPARK_SUBMIT_ARGS HADOOP_CONF_DIR HADOOP_USER_NAME
  SPARK_EXTRA_LIBS_PATH SPARK_ON_KUBERNETES SPARK_CLUSTER_CIDRS PLATFORM_RETRIES)
TIMING_VARS=(ACCEPT_TIMEOUT_S TASK_TIMEOUT_S HEARTBEAT_INTERVAL_S HEARTBEAT_TIMEOUT_S)

err() { ERRORS+=("$1"); }

# The value of the variable named $1 ("" when unset).
val() { printf '%s' "${!1-}"; }

is_seconds() { [[ "$1" =~ ^[0-9]+(\.[0-9]+)?$ ]] && awk -v s="$1" 'BEGIN { exit !(s > 0) }'; }

is_port() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le 65535 ]; }

disabled() { # component: is it in DISABLED_COMPONENTS (already normalised)?
  [[ ",$DISABLED," == *",$1,"* ]]
}

# A file path from the env file: relative paths are relative to the env file's directory.
resolve_path() {
  case "$1" in
    /*) printf '%s' "$1" ;;
    *) printf '%s/%s' "$ENV_DIR" "$1" ;;
  esac
}

check_spark() { # what a party offers its steps (docs/deploy.md, "Steps on Spark")
  local master k8s cidr
  master="$(val SPARK_MASTER)" k8s="$(val SPARK_ON_KUBERNETES)"
  if [ -n "$k8s" ] && [ "$k8s" != 0 ] && [ "$k8s" != 1 ]; then
    err "SPARK_ON_KUBERNETES='$k8s' must be 0 or 1"
  elif [ "$k8s" = 1 ] && [ -n "$master" ]; then
    err "SPARK_MASTER='$master': SPARK_ON_KUBERNETES=1 sets the master itself; leave it empty"
  fi
  if [ -n "$master" ] && ! [[ "$master" =~ ^(spark|k8s|mesos)://[^[:space:]]+$|^yarn$ ]]; then
    err "SPARK_MASTER='$master' is malformed: expected spark://host:port, k8s://... or yarn"
  fi
  for cidr in $(val SPARK_CLUSTER_CIDRS | tr ',' ' '); do
    [[ "$cidr" =~ ^[0-9a-fA-F.:]+/[0-9]{1,3}$ ]] || err "SPARK_CLUSTER_CIDRS: '$cidr' is not a CIDR"
  done
}

check_required() { # name regex what
  local v
  v="$(val "$1")"
  if [ -z "$v" ]; then
    err "$1 is not set ($3)"
  elif ! [[ "$v" =~ $2 ]]; then
    err "$1='$v' is malformed: expected $3"
  fi
}

check_pem() { # name kind ("PRIVATE KEY", "PUBLIC KEY", "CERTIFICATE")
  local v path
  v="$(val "$1")"
  if [ -z "$v" ]; then
    err "$1 is not set (a PEM file; deploy.sh keygen writes this party's)"
    return
  fi
  path="$(resolve_path "$v")"
  if [ ! -r "$path" ]; then
    err "$1: cannot read $path (run: deploy/deploy.sh keygen ENV_FILE, or fix the path)"
  elif ! grep -q -- "-----BEGIN .*$2-----" "$path"; then
    err "$1: $path is not a PEM $2"
  fi
}

check_timing() {
  local name v interval lost
  for name in "${TIMING_VARS[@]}"; do
    v="$(val "$name")"
    if [ -n "$v" ] && ! is_seconds "$v"; then
      err "$name='$v' is malformed: expected a number of seconds above 0 (e.g. 30 or 0.5), or nothing for the default"
    fi
  done
  interval="${HEARTBEAT_INTERVAL_S:-5}" lost="$(val HEARTBEAT_TIMEOUT_S)"
  if [ -n "$lost" ] && is_seconds "$lost" && is_seconds "$interval" &&
    awk -v t="$lost" -v i="$interval" 'BEGIN { exit !(t <= i) }'; then
    err "HEARTBEAT_TIMEOUT_S=$lost must exceed HEARTBEAT_INTERVAL_S=$interval, or every running step would be failed as lost"
  fi
  v="$(val PLATFORM_RETRIES)"
  if [ -n "$v" ] && ! [[ "$v" =~ ^[0-9]+$ ]]; then
    err "PLATFORM_RETRIES='$v' is malformed: expected a whole number of retries (0 or more), or nothing for the default"
  fi
}

check_image() {
  local v
  v="$(val "$1")"
  if [ -z "$v" ]; then
    err "$1 is not set (an image reference with a tag, e.g. registry/name:1.0)"
  elif ! [[ "$v" =~ ^[a-z0-9][a-z0-9./_:-]*:[A-Za-z0-9_][A-Za-z0-9_.-]*$ ]] || [[ "$v" == *://* ]]; then
    err "$1='$v' is malformed: expected an image reference with a tag, e.g. registry/name:1.0"
  fi
}

validate_env() {
  local url_re='^https://[A-Za-z0-9.-]+(:[0-9]+)?(/.*)?$'
  local dns_re='^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'
  check_required PARTY_ID '^[0-9]{1,10}$' "a numeric party id, e.g. 10000"
  check_required DOMAIN "$dns_re" "a lower-case DNS name, e.g. party-a.example.org"

  local c
  DISABLED="$(val DISABLED_COMPONENTS | tr -d ' ' | tr '-' '_')"
  for c in ${DISABLED//,/ }; do
    if ! [[ " ${KNOWN_COMPONENTS[*]} " == *" $c "* ]]; then
      err "DISABLED_COMPONENTS names '$c': expected any of ${KNOWN_COMPONENTS[*]}"
    fi
  done

  if disabled kafka; then
    check_required INTERNAL_MQ_HOST "$dns_re|^[0-9.]+$" \
      "the external Kafka's host (kafka is in DISABLED_COMPONENTS)"
  fi
  if ! is_port "$(val INTERNAL_MQ_TCP_PORT)"; then
    err "INTERNAL_MQ_TCP_PORT='$(val INTERNAL_MQ_TCP_PORT)' is malformed: expected a port 1-65535"
  fi
  if [ -n "$(val EXPOSE_MQ_TCP_PORT)" ] && ! is_port "$(val EXPOSE_MQ_TCP_PORT)"; then
    err "EXPOSE_MQ_TCP_PORT='$(val EXPOSE_MQ_TCP_PORT)' is malformed: expected a port or nothing"
  fi

  if ! disabled federation_bridge; then
    local type port
    type="$(val BRIDGE_SERVICE_TYPE)"
    port="$(val EXPOSE_MQ_HTTP_PORT)"
    case "$type" in
      NodePort)
        if ! [[ "$port" =~ ^[0-9]+$ ]] || [ "$port" -lt 30000 ] || [ "$port" -gt 32767 ]; then
          err "EXPOSE_MQ_HTTP_PORT='$port' is malformed: a NodePort bridge needs 30000-32767"
        fi ;;
      LoadBalancer)
        is_port "$port" || err "EXPOSE_MQ_HTTP_PORT='$port' is malformed: expected a port 1-65535" ;;
      *) err "BRIDGE_SERVICE_TYPE='$type' is malformed: expected NodePort or LoadBalancer" ;;
    esac
    check_pem BRIDGE_TLS_CERT CERTIFICATE
    check_pem BRIDGE_TLS_KEY "PRIVATE KEY"
  fi

  local others p
  others="$(val OTHER_PARTIES | tr -d ' ')"
  PEERS=()
  for p in ${others//,/ }; do
    if ! [[ "$p" =~ ^[0-9]{1,10}$ ]]; then
      err "OTHER_PARTIES names '$p': expected comma-separated numeric party ids"
      continue
    fi
    [ "$p" = "$(val PARTY_ID)" ] && err "OTHER_PARTIES names this party ($p) itself"
    PEERS+=("$p")
    check_required "PARTY_MQ_HTTP_URL_$p" "$url_re" \
      "party $p's bridge URL, https://host:port (peers' bridges speak TLS only)"
    local proxy
    proxy="$(val "PARTY_MQ_PROXY_URL_$p")"
    if [ -n "$proxy" ] && ! [[ "$proxy" =~ ^https?://[^[:space:]]+$ ]]; then
      err "PARTY_MQ_PROXY_URL_$p='$proxy' is malformed: expected an http(s) URL or nothing"
    fi
    check_pem "PARTY_PUBLIC_KEY_$p" "PUBLIC KEY"
    [ -z "$(val "PARTY_MQ_CA_$p")" ] || check_pem "PARTY_MQ_CA_$p" CERTIFICATE
  done

  check_pem PARTY_PRIVATE_KEY "PRIVATE KEY"
  if [[ "$(val PARTY_ID)" =~ ^[0-9]+$ ]]; then
    check_pem "PARTY_PUBLIC_KEY_$(val PARTY_ID)" "PUBLIC KEY"
  fi

  local token
  token="$(val TESSERA_API_TOKEN)"
  if [ -n "$token" ] && ! [[ "$token" =~ ^[A-Za-z0-9._~+/=-]{16,}$ ]]; then
    err "TESSERA_API_TOKEN is malformed: at least 16 characters of [A-Za-z0-9._~+/=-], or empty"
  fi
  if disabled postgres; then
    check_required DATABASE_URL '^[a-z0-9+]+://[^[:space:]]+$' \
      "flow_server's database URL (postgres is in DISABLED_COMPONENTS)"
  fi

  check_timing
  check_image SERVICE_IMAGE
  check_image RUNTIME_IMAGE
  disabled kafka || check_image KAFKA_IMAGE
  disabled postgres || check_image POSTGRES_IMAGE
  if ! disabled ingress; then
    check_required INGRESS_CLASS "$dns_re" "the IngressClass name, e.g. nginx"
    check_required INGRESS_CONTROLLER_NAMESPACE "$dns_re" "the ingress controller's namespace"
  fi
  check_spark
  local tls
  tls="$(val INGRESS_TLS_SECRET)"
  if [ -n "$tls" ] && ! [[ "$tls" =~ $dns_re ]]; then
    err "INGRESS_TLS_SECRET='$tls' is malformed: expected a Secret name"
  fi
  if [ -n "$(val INGRESS_TLS_CERT)$(val INGRESS_TLS_KEY)" ]; then
    [ -n "$tls" ] && err "INGRESS_TLS_CERT/KEY and INGRESS_TLS_SECRET both name the web certificate"
    check_pem INGRESS_TLS_CERT CERTIFICATE
    check_pem INGRESS_TLS_KEY "PRIVATE KEY"
  fi
  return 0
}
