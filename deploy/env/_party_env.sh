# shellcheck shell=bash disable=SC2034  # variables read by deploy/deploy.sh
# Tessera party env file for Kubernetes: the template. Copy it (e.g. to tessera-30000.sh), fill
# it in, and install the party with `deploy/deploy.sh setup tessera-30000.sh`.
# Plain KEY=value lines: deploy.sh reads it with `set -a; . FILE`. Relative file paths are
# relative to this file's directory. PowerFL's variable names where they exist.
# (The local example parties party-10000.env / party-20000.env are for `make up`, not for this.)

# --- who this party is -------------------------------------------------------------------------
# Numeric party id; the release and namespace are tessera-<PARTY_ID>.
PARTY_ID=
# The host name the dashboard (/, /pipelines) and the REST API (/flow-server) are served on.
DOMAIN=

# --- the party's Kafka ---------------------------------------------------------------------------
# Bundled (a single-node KRaft StatefulSet) unless DISABLED_COMPONENTS names kafka; then this
# external broker is used.
INTERNAL_MQ_HOST=kafka
INTERNAL_MQ_TCP_PORT=9092

# --- the federation bridge: the party's only door ------------------------------------------------
# The port peers reach this party's bridge on over HTTPS: a nodePort (30000-32767) when
# BRIDGE_SERVICE_TYPE=NodePort, the load balancer's port when LoadBalancer.
EXPOSE_MQ_HTTP_PORT=30370
BRIDGE_SERVICE_TYPE=NodePort
# PowerFL exposed Kafka's TCP port too; Tessera never exposes Kafka. Accepted, unused.
EXPOSE_MQ_TCP_PORT=
# The bridge's TLS certificate and key (PEM) for DOMAIN; `deploy.sh keygen` makes a self-signed one.
BRIDGE_TLS_CERT=keys/PARTY/bridge-tls.crt
BRIDGE_TLS_KEY=keys/PARTY/bridge-tls.key

# --- the other parties ---------------------------------------------------------------------------
# Comma-separated ids; for each, its bridge's base URL (https://) and optionally PowerFL's proxy URL.
OTHER_PARTIES=
# PARTY_MQ_HTTP_URL_20000=https://party-b.example.org:30371
# PARTY_MQ_PROXY_URL_20000=
# The CA (PEM) a peer's bridge certificate chains to, when it is not publicly trusted (e.g. the
# peer's self-signed bridge-tls.crt from `deploy.sh keygen`).
# PARTY_MQ_CA_20000=keys/20000/bridge-tls.crt

# --- keys ----------------------------------------------------------------------------------------
# This party's Ed25519 private key and every party's public key, this one's included (PEM files;
# `deploy.sh keygen` writes this party's pair). Exchange public keys out of band.
PARTY_PRIVATE_KEY=keys/PARTY/private.pem
# PARTY_PUBLIC_KEY_10000=keys/10000/public.pem
# PARTY_PUBLIC_KEY_20000=keys/20000/public.pem
# The token for the REST API; generated at every install when empty (set it to keep one).
TESSERA_API_TOKEN=

# --- what not to install ------------------------------------------------------------------------
# Any of: flow_server task_engine federation_bridge dashboard kafka postgres ingress
# (comma-separated). kafka / postgres: use INTERNAL_MQ_HOST / DATABASE_URL instead.
DISABLED_COMPONENTS=
# flow_server's database when postgres is disabled (SQLAlchemy URL, e.g. postgresql+psycopg://...).
DATABASE_URL=

# --- deadlines and liveness (seconds; empty: the default) ----------------------------------------
# How long a job's initiator waits for every party to accept it (default 60).
ACCEPT_TIMEOUT_S=
# The longest a step may run, and each step Job's activeDeadlineSeconds; a job's task-timeout may
# only lower it (default 3600). A step waiting for a peer's message counts that time too, so this
# is also the longest a peer's bridge may be away while a job runs.
TASK_TIMEOUT_S=
# How often the task_engine lists its running steps to the flow_server (default 5), and how long a
# running step may go unlisted before it counts as lost with its worker, a platform fault (default
# three intervals; must exceed the interval).
HEARTBEAT_INTERVAL_S=
HEARTBEAT_TIMEOUT_S=
# How many times this party reruns a step its platform lost (a lost worker, an evicted step pod, a
# lost node), at attempt + 1 on every party, apart from a job's auto-retries (default 2; 0: fail).
PLATFORM_RETRIES=

# --- Spark (docs/deploy.md, "Steps on Spark"; empty: a job may use local[*] only) ----------------
# An external Spark master a job's spark-master-name may name (spark://host:7077), or
# SPARK_ON_KUBERNETES=1 for executors as pods in this namespace (the master is then
# k8s://https://kubernetes.default.svc:443).
SPARK_MASTER=
SPARK_ON_KUBERNETES=
# The CIDRs of an external Spark cluster: the only network a step on it may reach (comma-separated).
SPARK_CLUSTER_CIDRS=
# The party's default spark-submit flags, Hadoop configuration dir, the Hadoop users a job may
# pick (comma-separated, first = default), and where a job's hdfs-libs-path may point.
SPARK_SUBMIT_ARGS=
HADOOP_CONF_DIR=
HADOOP_USER_NAME=
SPARK_EXTRA_LIBS_PATH=

# --- images and cluster ---------------------------------------------------------------------------
SERVICE_IMAGE=tessera/service:0.1.0
# The default step image; a job picks another with its `runtime-image` argument.
RUNTIME_IMAGE=tessera/runtime:0.1.0
KAFKA_IMAGE=apache/kafka:4.0.0
POSTGRES_IMAGE=postgres:17
INGRESS_CLASS=nginx
# The web certificate for DOMAIN (PEM files; the chart makes a Secret of them), or an existing
# kubernetes.io/tls Secret in the party's namespace. Neither: plain HTTP (deploy.sh warns).
INGRESS_TLS_CERT=
INGRESS_TLS_KEY=
INGRESS_TLS_SECRET=
# The namespace of the ingress controller: the NetworkPolicies let only it reach the web ports.
INGRESS_CONTROLLER_NAMESPACE=ingress-nginx
STORAGE_CLASS=
