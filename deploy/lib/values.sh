# shellcheck shell=bash
# Helm values and flags from a validated party env file (sourced by deploy/deploy.sh).

# A YAML (JSON) string: every value the operator wrote goes through here.
yq_str() {
  local s="$1"
  s="${s//\\/\\\\}"
  s="${s//\"/\\\"}"
  printf '"%s"' "$s"
}

image_repo() { printf '%s' "${1%:*}"; }
image_tag() { printf '%s' "${1##*:}"; }

# write_values FILE: the values file of this party (PEM files are passed with --set-file).
write_values() {
  local out="$1" p c
  {
    echo "party:"
    echo "  id: $(yq_str "$PARTY_ID")"
    echo "  domain: $(yq_str "$DOMAIN")"
    echo "peers:"
    [ "${#PEERS[@]}" -eq 0 ] && echo "  []"
    for p in "${PEERS[@]}"; do
      echo "  - id: $(yq_str "$p")"
      echo "    httpUrl: $(yq_str "$(val "PARTY_MQ_HTTP_URL_$p")")"
      echo "    proxyUrl: $(yq_str "$(val "PARTY_MQ_PROXY_URL_$p")")"
    done
    echo "disabledComponents:"
    [ -z "$DISABLED" ] && echo "  []"
    for c in ${DISABLED//,/ }; do echo "  - $(yq_str "$c")"; done
    echo "images:"
    local name var
    for name in service runtime kafka postgres; do
      var="$(echo "$name" | tr '[:lower:]' '[:upper:]')_IMAGE"
      [ -n "$(val "$var")" ] || continue
      echo "  $name: {repository: $(yq_str "$(image_repo "$(val "$var")")"), tag: $(yq_str "$(image_tag "$(val "$var")")")}"
    done
    echo "kafka:"
    echo "  external: {host: $(yq_str "${INTERNAL_MQ_HOST-}"), port: ${INTERNAL_MQ_TCP_PORT}}"
    echo "postgres:"
    echo "  externalUrl: $(yq_str "${DATABASE_URL-}")"
    echo "storageClass: $(yq_str "${STORAGE_CLASS-}")"
    echo "apiToken: $(yq_str "${TESSERA_API_TOKEN-}")"
    local timing=() pair
    for pair in acceptTimeoutS=ACCEPT_TIMEOUT_S taskTimeoutS=TASK_TIMEOUT_S \
      heartbeatIntervalS=HEARTBEAT_INTERVAL_S heartbeatTimeoutS=HEARTBEAT_TIMEOUT_S; do
      [ -n "$(val "${pair#*=}")" ] && timing+=("${pair%=*}: $(yq_str "$(val "${pair#*=}")")")
    done
    # only what the env file sets: the chart's defaults stand for the rest
    echo "timing: {$(IFS=,; echo "${timing[*]}")}"
    echo "spark:"
    echo "  master: $(yq_str "${SPARK_MASTER-}")"
    echo "  submitArgs: $(yq_str "${SPARK_SUBMIT_ARGS-}")"
    echo "  hadoopConfDir: $(yq_str "${HADOOP_CONF_DIR-}")"
    echo "  hadoopUserName: $(yq_str "${HADOOP_USER_NAME-}")"
    echo "  extraLibsPath: $(yq_str "${SPARK_EXTRA_LIBS_PATH-}")"
    echo "  clusterCidrs: [$(for c in ${SPARK_CLUSTER_CIDRS//,/ }; do printf '%s,' "$(yq_str "$c")"; done | sed 's/,$//')]"
    echo "  kubernetes: {enabled: $([ "${SPARK_ON_KUBERNETES-}" = 1 ] && echo true || echo false)}"
    if [ -n "$(val PLATFORM_RETRIES)" ]; then echo "platformRetries: $(val PLATFORM_RETRIES)"; fi
    echo "bridge:"
    echo "  service: {type: $(yq_str "${BRIDGE_SERVICE_TYPE-NodePort}"), port: ${EXPOSE_MQ_HTTP_PORT:-30370}}"
    echo "ingress:"
    echo "  className: $(yq_str "${INGRESS_CLASS-}")"
    echo "  tlsSecret: $(yq_str "${INGRESS_TLS_SECRET-}")"
    echo "  controllerNamespace: $(yq_str "${INGRESS_CONTROLLER_NAMESPACE:-ingress-nginx}")"
  } >"$out"
}

# set_file_flags: the --set-file flags of the party's PEM files, into the array SET_FILES.
set_file_flags() {
  local p
  SET_FILES=(--set-file "keys.privateKey=$(resolve_path "$PARTY_PRIVATE_KEY")")
  for p in "$PARTY_ID" "${PEERS[@]}"; do
    SET_FILES+=(--set-file "keys.publicKeys.$p=$(resolve_path "$(val "PARTY_PUBLIC_KEY_$p")")")
  done
  for p in "${PEERS[@]}"; do
    if [ -n "$(val "PARTY_MQ_CA_$p")" ]; then
      SET_FILES+=(--set-file "keys.peerCAs.$p=$(resolve_path "$(val "PARTY_MQ_CA_$p")")")
    fi
  done
  if ! disabled federation_bridge; then
    SET_FILES+=(--set-file "bridge.tls.cert=$(resolve_path "$BRIDGE_TLS_CERT")")
    SET_FILES+=(--set-file "bridge.tls.key=$(resolve_path "$BRIDGE_TLS_KEY")")
  fi
  if [ -n "${INGRESS_TLS_CERT-}" ]; then
    SET_FILES+=(--set-file "ingress.tls.cert=$(resolve_path "$INGRESS_TLS_CERT")")
    SET_FILES+=(--set-file "ingress.tls.key=$(resolve_path "$INGRESS_TLS_KEY")")
  fi
}
